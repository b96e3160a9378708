//! Prometheus metrics on a port of their own (`ROSTER_METRICS_LISTEN`). Values are recorded
//! where things happen, through the `metrics` facade: RPCs in `rpc_log`, saga events in the
//! workflow engine, database waits in `db`, and gauges read from the database by each
//! service's sampler ([`sample_every`]). `metrics-exporter-prometheus` serves them. Unset, no
//! recorder is installed and the facade's calls do nothing.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::sync::watch;

use crate::config::ConfigError;
use crate::db::Database;

/// RPCs handled, by `service`, `method` and `code`.
pub const RPC_REQUESTS: &str = "roster_rpc_requests_total";
/// Their latency, to the response's last frame, by the same labels.
pub const RPC_DURATION: &str = "roster_rpc_duration_seconds";
/// TLS handshakes that failed or stalled (a client with the wrong CA, a port scanner).
pub const TLS_HANDSHAKE_FAILURES: &str = "roster_tls_handshake_failures_total";
/// Saga events (`started`, `step_completed`, `step_retried`, `completed`, `failed`, ...).
pub const SAGA_EVENTS: &str = "roster_saga_events_total";
/// Sagas not finished, by `kind` and `state` (running, compensating).
pub const SAGAS: &str = "roster_sagas";
/// Age of the oldest saga not finished.
pub const SAGA_OLDEST_AGE: &str = "roster_saga_oldest_age_seconds";
/// E-mails waiting to be sent, and the age of the oldest.
pub const OUTBOX_BACKLOG: &str = "roster_outbox_backlog";
pub const OUTBOX_OLDEST_AGE: &str = "roster_outbox_oldest_age_seconds";
/// Database connections by `service`, `pool` (`writer`, `reader`) and `state` (`in_use`,
/// `idle`).
pub const DB_CONNECTIONS: &str = "roster_db_connections";
/// How long a caller waited for a connection, by `pool` (recorded by `db`).
pub use crate::db::DB_ACQUIRE;

/// Histogram buckets, in seconds: from a cached read to a slow saga step.
const BUCKETS: [f64; 12] = [0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Set once the recorder is installed: samplers run only then.
static INSTALLED: OnceLock<SocketAddr> = OnceLock::new();

/// Whether metrics are served by this process.
pub fn installed() -> bool {
    INSTALLED.get().is_some()
}

/// Installs the recorder and serves the scrape endpoint on `listen` (any path answers).
/// Once per process; call inside the Tokio runtime.
pub fn install(listen: SocketAddr) -> Result<(), ConfigError> {
    let refused = |e: &dyn std::fmt::Display| ConfigError::new("ROSTER_METRICS_LISTEN", e.to_string());
    let (recorder, exporter) = PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &BUCKETS)
        .map_err(|e| refused(&e))?
        .build()
        .map_err(|e| refused(&e))?;
    metrics::set_global_recorder(recorder).map_err(|e| refused(&e))?;
    let _ = INSTALLED.set(listen);
    tokio::spawn(async move {
        if let Err(error) = exporter.await {
            // The exporter's error has no Display; its Debug form is all there is to say.
            tracing::warn!(error = ?error, "the metrics endpoint stopped");
        }
    });
    tracing::info!(%listen, "metrics endpoint serving");
    Ok(())
}

/// Runs `sample` now and then every `every` until `stop` turns true; a failed sample is
/// logged and the next one tries again.
pub async fn sample_every<F, Fut>(every: Duration, mut stop: watch::Receiver<bool>, mut sample: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), sqlx::Error>>,
{
    let failing = crate::incident::Incident::new("sampling metrics");
    loop {
        let _ = failing.note(sample().await);
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Log lines dropped because the log writer's queue was full (see `telemetry`).
pub const LOG_LINES_DROPPED: &str = "roster_log_lines_dropped_total";

/// `service`'s pools: connections in use and idle; and the log lines dropped so far.
pub fn sample_pools(service: &'static str, db: &Database) {
    metrics::counter!(LOG_LINES_DROPPED).absolute(crate::telemetry::dropped_lines() as u64);
    for (name, pool) in [("writer", db.pool()), ("reader", db.readers())] {
        let (size, idle) = (f64::from(pool.size()), pool.num_idle() as f64);
        metrics::gauge!(DB_CONNECTIONS, "service" => service, "pool" => name, "state" => "in_use").set(size - idle);
        metrics::gauge!(DB_CONNECTIONS, "service" => service, "pool" => name, "state" => "idle").set(idle);
    }
}
