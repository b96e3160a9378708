//! Keeps licensing's idempotency records bounded. They are kept for
//! [`SagaRetry::idempotency_retention`], derived from the same saga retry settings identity
//! retries with, so a saga step re-sent by identity always finds the record of its first
//! attempt (the proof is in [`roster_platform::saga_retry`]).

use std::time::Duration;

use roster_platform::clock::SharedClock;
use roster_platform::db::Database;
use roster_platform::idempotency;
use roster_platform::saga_retry::SagaRetry;
use tokio::sync::watch;

const EVERY: Duration = Duration::from_secs(600);

/// One pass: forgets request ids answered more than the retention ago. Returns how many.
pub async fn prune(db: &Database, retry: &SagaRetry, now_ms: i64) -> Result<u64, sqlx::Error> {
    let retention = i64::try_from(retry.idempotency_retention().as_millis()).unwrap_or(i64::MAX / 2);
    idempotency::prune(db, now_ms.saturating_sub(retention)).await
}

/// Prunes every ten minutes until `stop` turns true.
pub async fn run(db: Database, clock: SharedClock, retry: SagaRetry, stop: watch::Receiver<bool>) {
    roster_platform::periodic::every("housekeeping", EVERY, stop, || prune(&db, &retry, clock.now_ms())).await;
}
