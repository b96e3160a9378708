//! What identity's metrics read from its database every few seconds: sagas not finished by
//! kind and state and the age of the oldest, the outbox's backlog and the age of its oldest
//! e-mail, and the pools (see `roster_platform::metrics`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use roster_platform::clock::SharedClock;
use roster_platform::db::Database;
use roster_platform::metrics::{self as names, sample_every, sample_pools};
use sqlx::Row;
use tokio::sync::watch;

const EVERY: Duration = Duration::from_secs(10);

/// Samples until `stop` turns true. Only started when metrics are served.
pub async fn run(db: Database, clock: SharedClock, stop: watch::Receiver<bool>) {
    // The (kind, state) pairs the last sample reported.
    let seen = Arc::new(Mutex::new(HashSet::new()));
    sample_every(EVERY, stop, || {
        let (db, now_ms, seen) = (db.clone(), clock.now_ms(), seen.clone());
        async move {
            let before = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let now = sample(&db, now_ms, &before).await?;
            *seen.lock().unwrap_or_else(PoisonError::into_inner) = now;
            Ok(())
        }
    })
    .await;
}

/// One sample; returns the (kind, state) pairs it reported. Those of `seen` (the last
/// sample's) with no saga left are set to zero, so a gauge does not stay at its last count.
async fn sample(
    db: &Database,
    now_ms: i64,
    seen: &HashSet<(String, String)>,
) -> Result<HashSet<(String, String)>, sqlx::Error> {
    let mut conn = db.reader().await?;
    let rows = sqlx::query(
        "SELECT kind, state, COUNT(*) AS n, MIN(created_at_ms) AS oldest FROM workflows \
         WHERE state IN ('running', 'compensating') GROUP BY kind, state",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut now = HashSet::new();
    let mut oldest: Option<i64> = None;
    for row in &rows {
        let (kind, state): (String, String) = (row.try_get("kind")?, row.try_get("state")?);
        let n: i64 = row.try_get("n")?;
        metrics::gauge!(names::SAGAS, "kind" => kind.clone(), "state" => state.clone()).set(n as f64);
        oldest = oldest.into_iter().chain([row.try_get::<i64, _>("oldest")?]).min();
        now.insert((kind, state));
    }
    for (kind, state) in seen.difference(&now) {
        metrics::gauge!(names::SAGAS, "kind" => kind.clone(), "state" => state.clone()).set(0.0);
    }
    metrics::gauge!(names::SAGA_OLDEST_AGE).set(age_s(now_ms, oldest));
    let backlog = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(created_at_ms) AS oldest FROM outbox \
         WHERE sent_at_ms IS NULL AND failed_at_ms IS NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    let waiting: i64 = backlog.try_get("n")?;
    metrics::gauge!(names::OUTBOX_BACKLOG).set(waiting as f64);
    metrics::gauge!(names::OUTBOX_OLDEST_AGE).set(age_s(now_ms, backlog.try_get("oldest")?));
    drop(conn);
    sample_pools("identity", db);
    Ok(now)
}

/// Seconds since `oldest_ms`; zero when there is nothing.
fn age_s(now_ms: i64, oldest_ms: Option<i64>) -> f64 {
    oldest_ms.map_or(0.0, |oldest| (now_ms - oldest).max(0) as f64 / 1_000.0)
}
