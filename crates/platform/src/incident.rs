//! Logging an outage once, not once a poll: a background loop (the saga worker, the outbox,
//! housekeeping) that keeps failing against a database that is down writes one `error` line
//! when it starts failing, `debug` lines while it goes on, and one `info` line when it
//! recovers, with how long it took and how many attempts failed. RPCs that meet a lost
//! database connection write a `warn` line at most every few seconds; each of them still has
//! its own `rpc finished` line with the status.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One loop's run of failures.
#[derive(Debug)]
pub struct Incident {
    task: &'static str,
    /// When the current run of failures started, and how many there have been.
    failing: Mutex<Option<(Instant, u64)>>,
}

impl Incident {
    pub const fn new(task: &'static str) -> Self {
        Self { task, failing: Mutex::new(None) }
    }

    /// Notes a failed attempt: the first of a run is logged at `error`, the others at `debug`.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        let mut failing = self.failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match failing.as_mut() {
            Some((_, count)) => {
                *count += 1;
                tracing::debug!(task = self.task, %error, failures = *count, "still failing; retrying");
            }
            None => {
                *failing = Some((Instant::now(), 1));
                tracing::error!(task = self.task, %error, "failing; retrying until it works (logged again when it does)");
            }
        }
    }

    /// Notes a successful attempt, which ends a run of failures with an `info` line.
    pub fn succeeded(&self) {
        let ended = self.failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some((since, failures)) = ended {
            let failing_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::info!(task = self.task, failures, failing_ms, "recovered");
        }
    }

    /// Whether a run of failures is under way.
    pub fn is_failing(&self) -> bool {
        self.failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some()
    }

    /// Notes how `result` went and passes it on.
    pub fn note<T, E: std::fmt::Display>(&self, result: Result<T, E>) -> Result<T, E> {
        match &result {
            Ok(_) => self.succeeded(),
            Err(error) => self.failed(error),
        }
        result
    }
}

/// How often an RPC's lost database connection is logged.
const RPC_LOG_EVERY: Duration = Duration::from_secs(10);

/// Logs, at most every [`RPC_LOG_EVERY`], that a call lost its database connection.
pub fn database_unavailable(error: &sqlx::Error) {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    let now_ms = u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX) + 1;
    let last = LAST_MS.load(Ordering::Relaxed);
    let due = last == 0 || now_ms.saturating_sub(last) >= RPC_LOG_EVERY.as_millis() as u64;
    if due && LAST_MS.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        tracing::warn!(
            %error,
            "a call lost its database connection (run once more on a fresh one, else answered UNAVAILABLE; \
             logged at most every 10 s)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failures_is_one_incident_until_a_success() {
        let incident = Incident::new("test");
        assert!(!incident.is_failing());
        incident.failed(&"down");
        incident.failed(&"still down");
        assert!(incident.is_failing());
        assert_eq!(incident.failing.lock().expect("lock").map(|(_, n)| n), Some(2));
        assert!(incident.note(Ok::<_, String>(())).is_ok());
        assert!(!incident.is_failing(), "a success ends it");
        assert!(incident.note(Err::<(), _>("down again")).is_err());
        assert!(incident.is_failing(), "a new failure starts a new one");
    }
}
