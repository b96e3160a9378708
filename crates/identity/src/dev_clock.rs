//! `roster.dev.v1.ClockService`: reads and advances the manual clock of a development system
//! (`roster up --manual-clock`), so a day's reminder or a 168-hour deadline can be watched in
//! seconds. Only wired in when a manual clock is configured; `roster serve` never is.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use roster_platform::auth::{Principal, principal};
use roster_platform::clock::{Clock, ShiftedClock};
use roster_platform::status::invalid_argument;
use roster_proto::dev::v1 as pb;
use roster_workflow::Engine;
use tonic::{Request, Response, Status};

use crate::domain::DomainError;

/// The furthest one call moves the clock.
const MAX_STEP: Duration = Duration::from_secs(366 * 24 * 3_600);

/// A movable clock and the file its lead is kept in, so a restarted development system
/// (after a crash, say) goes on at the time it had reached.
#[derive(Debug, Clone)]
pub struct KeptClock {
    pub clock: Arc<ShiftedClock>,
    file: PathBuf,
}

impl KeptClock {
    /// The clock with the lead saved in `file`, or none if there is no such file yet.
    pub fn open(file: PathBuf) -> std::io::Result<Self> {
        let ahead_ms = match std::fs::read_to_string(&file) {
            Ok(text) => text.trim().parse().map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", file.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Self { clock: Arc::new(ShiftedClock::ahead_by(ahead_ms)), file })
    }

    fn advance(&self, by_ms: i64) -> std::io::Result<()> {
        self.clock.advance_ms(by_ms);
        std::fs::write(&self.file, self.clock.ahead_ms().to_string())
    }
}

#[derive(Debug, Clone)]
pub struct DevClock {
    clock: KeptClock,
    /// Woken after a step, so timers that fell due run at once rather than at the next poll.
    engine: Engine,
}

impl DevClock {
    pub fn new(clock: KeptClock, engine: Engine) -> Self {
        Self { clock, engine }
    }

    fn time(&self) -> pb::Time {
        let now_ms = self.clock.clock.now_ms();
        let at = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(now_ms).unwrap_or(0));
        pb::Time { now_ms, now: humantime::format_rfc3339_seconds(at).to_string() }
    }
}

/// Moving time is for operators, as every other system-wide control is.
fn operator_only<T>(request: &Request<T>) -> Result<(), Status> {
    match principal(request)? {
        Principal::Operator { .. } => Ok(()),
        _ => Err(crate::api::error::domain_status(&DomainError::OperatorOnly)),
    }
}

#[tonic::async_trait]
impl pb::clock_service_server::ClockService for DevClock {
    async fn get_time(&self, request: Request<pb::GetTimeRequest>) -> Result<Response<pb::Time>, Status> {
        operator_only(&request)?;
        Ok(Response::new(self.time()))
    }

    async fn advance_time(&self, request: Request<pb::AdvanceTimeRequest>) -> Result<Response<pb::Time>, Status> {
        operator_only(&request)?;
        let by = request.get_ref().by.trim();
        if by.is_empty() {
            return Err(invalid_argument("by", "is required, e.g. \"24h\" or \"90m\""));
        }
        let step = humantime::parse_duration(by)
            .map_err(|e| invalid_argument("by", format!("is not a duration such as \"24h\": {e}")))?;
        if step.is_zero() || step > MAX_STEP {
            return Err(invalid_argument("by", "must be more than zero and at most a year"));
        }
        self.clock
            .advance(i64::try_from(step.as_millis()).unwrap_or(i64::MAX))
            .map_err(|e| Status::internal(format!("the clock moved but its lead was not saved: {e}")))?;
        tracing::info!(by, "manual clock advanced");
        self.engine.wake();
        Ok(Response::new(self.time()))
    }
}
