//! The baselines: a plain tonic server of the same tonic version (health checks only, no
//! authentication, no database), and `pgbench` on the PostgreSQL Roster uses.

use std::net::SocketAddr;
use std::process::Command;

use roster_e2e::Error;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Serves `grpc.health.v1` on `addr` until killed.
pub async fn echo_server(addr: Option<&str>) -> Result<(), Error> {
    let addr: SocketAddr = addr.ok_or("echo-server needs an address")?.parse()?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    tonic::transport::Server::builder().add_service(health).serve(addr).await?;
    Ok(())
}

pub async fn echo_call(channel: Channel) -> Result<(), String> {
    HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .map(drop)
        .map_err(|status| status.to_string())
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    format!("{server}/{name}")
}

fn tool(program: &str, args: &[&str]) -> Result<String, Error> {
    let output = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// An empty database `name` on the server of `url` (dropped first if it exists); its URL.
pub async fn fresh_database(url: &str, name: &str) -> Result<String, Error> {
    tool("dropdb", &["--if-exists", "--maintenance-db", url, name])?;
    tool("createdb", &["--maintenance-db", url, name])?;
    Ok(with_database(url, name))
}

/// `pgbench` runs on a database of its own, with the same number of clients as Roster has
/// callers.
pub struct Pgbench {
    url: String,
    seconds: String,
    insert_script: tempfile::NamedTempFile,
}

const CLIENTS: &str = "8";

impl Pgbench {
    /// Creates the database, loads pgbench's tables (scale 8) and a table for one-row inserts.
    pub async fn prepare(url: &str, seconds: u64) -> Result<Self, Error> {
        let url = fresh_database(url, "roster_bench_pgbench").await?;
        tool("pgbench", &["-i", "-q", "-s", "8", &url])?;
        tool(
            "psql",
            &[
                &url,
                "-q",
                "-c",
                "CREATE TABLE bench_insert (id BIGSERIAL PRIMARY KEY, account TEXT NOT NULL, email TEXT NOT NULL, \
                 created_at_ms BIGINT NOT NULL)",
            ],
        )?;
        let insert_script = tempfile::NamedTempFile::new()?;
        std::fs::write(
            insert_script.path(),
            "\\set n random(1, 1000000000)\n\
             INSERT INTO bench_insert (account, email, created_at_ms) VALUES ('acct-' || :client_id, 'u' || :n || '@bench.example', :n);\n",
        )?;
        Ok(Self { url, seconds: seconds.to_string(), insert_script })
    }

    fn tps(&self, extra: &[&str]) -> Result<f64, Error> {
        let mut args = vec!["-n", "-c", CLIENTS, "-j", "2", "-T", &self.seconds];
        args.extend_from_slice(extra);
        args.push(&self.url);
        let out = tool("pgbench", &args)?;
        out.lines()
            .find_map(|line| line.strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| format!("no tps in pgbench's output:\n{out}").into())
    }

    /// Read-only: one primary-key SELECT per transaction.
    pub fn select_only(&self) -> Result<f64, Error> {
        self.tps(&["-S"])
    }

    /// pgbench's own TPC-B-like transaction: three updates, a select and an insert, committed.
    pub fn tpc_b(&self) -> Result<f64, Error> {
        self.tps(&[])
    }

    /// One single-row INSERT per transaction, committed (fsync as configured).
    pub fn one_row_insert(&self) -> Result<f64, Error> {
        let script = self.insert_script.path().to_str().ok_or("temp path is not UTF-8")?.to_owned();
        self.tps(&["-f", &script])
    }
}
