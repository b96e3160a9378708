//! Keeps licensing's idempotency records bounded. They are kept for
//! [`SagaRetry::idempotency_retention`], derived from the same saga retry settings identity
//! retries with, so a saga step re-sent by identity always finds the record of its first
//! attempt (the proof is in [`roster_platform::saga_retry`]).

use std::time::Duration;

use roster_platform::clock::SharedClock;
use roster_platform::db::Database;
use roster_platform::event_log::EventLog;
use roster_platform::idempotency;
use roster_platform::saga_retry::SagaRetry;
use tokio::sync::watch;

const EVERY: Duration = Duration::from_secs(600);

/// One pass: forgets request ids answered more than the retention ago. Returns how many.
pub async fn prune(db: &Database, retry: &SagaRetry, now_ms: i64) -> Result<u64, sqlx::Error> {
    let retention = i64::try_from(retry.idempotency_retention().as_millis()).unwrap_or(i64::MAX / 2);
    idempotency::prune(db, now_ms.saturating_sub(retention)).await
}

/// Rows one pass of [`run`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    pub idempotency_keys: u64,
    /// Events of the event log older than its retention.
    pub events: u64,
}

impl roster_platform::periodic::PassReport for Pruned {
    fn log(&self, task: &'static str) {
        let Self { idempotency_keys, events } = *self;
        tracing::info!(task, idempotency_keys, events, "maintenance pass done");
    }
}

/// Prunes request ids and the event log every ten minutes until `stop` turns true.
pub async fn run(db: Database, clock: SharedClock, retry: SagaRetry, log: EventLog, stop: watch::Receiver<bool>) {
    roster_platform::periodic::every("housekeeping", EVERY, stop, || async {
        let idempotency_keys = prune(&db, &retry, clock.now_ms()).await?;
        Ok(Pruned { idempotency_keys, events: log.prune().await? })
    })
    .await;
}
