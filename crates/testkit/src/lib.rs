//! Helpers shared by the tests of every crate: a fresh PostgreSQL database per test, skips
//! that stay visible, gRPC client helpers (`grpc`), tokens that must be refused (`tokens`) and
//! hostile input for every RPC (`hostile`), and a real SMTP server to send to (`smtp`).
//!
//! PostgreSQL comes from `ROSTER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). When it cannot be reached, a test's PostgreSQL
//! half is skipped with a printed notice, unless `CI=true`, where that is a failure.

#![forbid(unsafe_code)]

pub mod grpc;
pub mod hostile;
pub mod smtp;
pub mod tokens;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;

/// A loopback port that was free a moment ago, chosen below the kernel's range of ephemeral
/// ports. A port from that range (what binding port 0 gives) can be taken meanwhile as the
/// source port of some outgoing connection, or, when a client keeps dialling a server that is
/// not up yet, by that client itself: TCP connects a socket to itself when source and
/// destination coincide. Either way the server started on it later fails to bind. A port is
/// handed out once per process: two calls in a row could otherwise probe their way to the
/// same free port (seen in CI: `roster up` given one port for both services).
pub fn unused_port() -> u16 {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let low = 10_000.min(ephemeral_start / 2);
    let span = ephemeral_start - low;
    // Concurrent tests (threads and processes) start probing at different places.
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let spread = u64::from(nanos) + u64::from(std::process::id()) * 7_919 + CALLS.fetch_add(101, Ordering::Relaxed);
    port_from(low, span, spread % u64::from(span))
}

/// The first port from `low + first` on (wrapping within `span`) that binds and that this
/// process has not handed out before.
fn port_from(low: u16, span: u16, first: u64) -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for probe in 0..u64::from(span) {
        let port = low + u16::try_from((first + probe) % u64::from(span)).expect("within the span");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(port)
        {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{}", u32::from(low) + u32::from(span))
}

pub fn postgres_admin_url() -> String {
    std::env::var("ROSTER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Says that `what` was skipped. Written to the stderr handle rather than with `eprintln!`,
/// which the test harness would swallow for passing tests.
pub fn skipped(what: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {what}");
}

/// A PostgreSQL database made for one test.
#[derive(Debug)]
pub struct FreshDatabase {
    pub url: String,
    name: String,
}

impl FreshDatabase {
    /// Creates a database; `None` (after saying so) when PostgreSQL is unreachable outside CI.
    pub async fn create() -> Option<Self> {
        sqlx::any::install_default_drivers();
        let admin = postgres_admin_url();
        let mut conn = match sqlx::AnyConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(error) => {
                assert!(
                    !std::env::var("CI").is_ok_and(|v| v == "true"),
                    "PostgreSQL is required when CI=true, but {admin} is unreachable: {error}"
                );
                skipped(&format!("the PostgreSQL half of a test (no database at {admin}: {error})"));
                return None;
            }
        };
        let name = unique_name();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create a test database");
        conn.close().await.ok();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
        Some(Self { url: format!("{base}/{name}"), name })
    }

    /// Ends every server process connected to this database, as a failover, a server restart
    /// or a pooler recycling its connections would (SQLSTATE 57P01 at their next statement).
    /// Returns how many it ended.
    pub async fn terminate_connections(&self) -> i64 {
        let mut conn = sqlx::AnyConnection::connect(&postgres_admin_url()).await.expect("admin connection");
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()) AS ended",
        )
        .bind(&self.name)
        .fetch_one(&mut conn)
        .await
        .expect("terminate backends")
    }

    /// Drops the database, closing any connection still open to it.
    pub async fn drop_database(self) {
        if let Ok(mut conn) = sqlx::AnyConnection::connect(&postgres_admin_url()).await {
            let _ =
                sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn).await;
        }
    }
}

fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("roster_test_{}_{}_{}", std::process::id(), nanos, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Marks the workflow `$1` FAILED (failed while running, reason `INJECTED`), as a refusal past
/// its point of no return leaves it, for tests of what operators do with failed operations.
pub const MARK_OPERATION_FAILED: &str = "UPDATE workflows SET state = 'failed', failed_from = 'running', \
     failure = '{\"reason\":\"INJECTED\",\"message\":\"refused past the point of no return\"}' WHERE id = $1";

/// Waits until every event committed before the call can be read from `db`'s event log. On
/// PostgreSQL the log holds events back while any older transaction in the cluster is open
/// (see `roster_platform::event_log`), and other tests' databases share the cluster; SQLite
/// hands out what has committed at once.
pub async fn events_settled(db: &roster_platform::db::Database) {
    use roster_platform::db::Backend;
    if db.backend() != Backend::Postgres {
        return;
    }
    let next: i64 = sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
        .fetch_one(db.pool())
        .await
        .expect("snapshot");
    for _ in 0..1_000 {
        let horizon: i64 = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(db.pool())
            .await
            .expect("snapshot");
        if horizon >= next {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("a transaction older than the test's writes stayed open for 10 s");
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_port_is_handed_out_once_per_process_even_to_probes_from_the_same_place() {
        let (first, second) = (super::port_from(20_000, 5_000, 7), super::port_from(20_000, 5_000, 7));
        assert_ne!(first, second, "two probes from one place get two ports");
        let ports: std::collections::BTreeSet<u16> = (0..300).map(|_| super::unused_port()).collect();
        assert_eq!(ports.len(), 300, "every call gave a port no earlier call gave");
    }
}
