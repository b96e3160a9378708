//! Roster as the benchmark runs it. `Production` (the default) is what operators run: the demo
//! is seeded once with `roster up --demo`, which then stops, and each service runs as its own
//! `roster serve` process on the same databases and keys, with the production overlay's
//! settings: `info` logs as JSON on stderr, read through a pipe as a log shipper reads them,
//! metrics on, and e-mail over SMTP to a local sink: `roster-bench`'s own (`sink`), or with
//! `--smtp-sink aiosmtpd` the tests' (without Python's aiosmtpd, e-mail then goes to files, and
//! the run says so). `Dev` is `roster up --demo` at `--log warn` with e-mail as files, the
//! set-up of the README's first command.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use roster_e2e::{Error, Process, free_port, roster_binary, scrape, wait_serving};
use roster_platform::metrics::LOG_LINES_DROPPED;
use roster_testkit::smtp::{self, SmtpSink};

use crate::measure::Server;
use crate::sink::Sink;

/// Which configuration is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Config {
    Production,
    Dev,
}

impl Config {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "production" => Ok(Self::Production),
            "dev" => Ok(Self::Dev),
            other => Err(format!("--config {other}: production or dev").into()),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Production => "production: roster serve per service, info logs as JSON read from a pipe, metrics on",
            Self::Dev => "dev: roster up, warn logs, e-mail as files",
        }
    }
}

/// Where the production configuration's e-mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailSink {
    /// `roster-bench`'s own SMTP server (`sink`).
    Bench,
    /// The tests' SMTP server, Python's aiosmtpd.
    Aiosmtpd,
}

impl MailSink {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "bench" => Ok(Self::Bench),
            "aiosmtpd" => Ok(Self::Aiosmtpd),
            other => Err(format!("--smtp-sink {other}: bench or aiosmtpd").into()),
        }
    }
}

/// A sink while it runs.
enum Receiving {
    Bench(Sink),
    Aiosmtpd(SmtpSink),
}

/// The running services: their addresses, and the processes whose CPU time is Roster's.
pub struct Running {
    pub identity: SocketAddr,
    pub licensing: SocketAddr,
    pub server: Server,
    processes: Vec<Child>,
    dev: Option<Process>,
    sink: Option<Receiving>,
    log_bytes: Arc<AtomicU64>,
    /// The `serve` processes' metrics ports (production only).
    metrics: Vec<SocketAddr>,
}

impl Running {
    /// Each Roster process's resident memory now, in MB (`VmRSS` in `/proc`).
    pub fn resident_mb(&self) -> Vec<f64> {
        self.server.pids.iter().map(|pid| resident_mb(*pid)).collect()
    }

    /// E-mails `roster-bench`'s own sink has accepted (`None` with another sink, or none).
    pub fn emails_received(&self) -> Option<u64> {
        match &self.sink {
            Some(Receiving::Bench(sink)) => Some(sink.received()),
            _ => None,
        }
    }

    /// Log bytes the services wrote (production only).
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes.load(Ordering::Relaxed)
    }

    /// Log lines the services dropped because their log writer's queue was full, from their
    /// metrics (production only).
    pub async fn log_lines_dropped(&self) -> f64 {
        let mut dropped = 0.0;
        for addr in &self.metrics {
            dropped += scrape::value(&scrape::scrape(*addr).await, LOG_LINES_DROPPED, &[]).unwrap_or(0.0);
        }
        dropped
    }

    pub fn stop(mut self) -> Result<(), Error> {
        if let Some(mut dev) = self.dev.take() {
            dev.terminate(Duration::from_secs(20))?;
        }
        for child in &mut self.processes {
            Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
            child.wait()?;
        }
        Ok(())
    }
}

/// Starts Roster in `config` on `data_dir`, its databases named by `env`, the demo seeded.
pub async fn start(
    config: Config,
    mail: MailSink,
    data_dir: &Path,
    env: &[(&str, &str)],
    log: &str,
) -> Result<Running, Error> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut seeding = Process::start(data_dir, addr, &["up", "--demo", "--log", log], env);
    wait_serving(addr, Duration::from_secs(60)).await?;
    let licensing = seeding.licensing.ok_or("roster up serves licensing")?;
    wait_serving(licensing, Duration::from_secs(60)).await?;
    roster_e2e::demo_env(data_dir, Duration::from_secs(30)).await?;
    if config == Config::Dev {
        let server = Server { pids: vec![seeding.child.id()] };
        let log_bytes = Arc::new(AtomicU64::new(0));
        return Ok(Running {
            identity: addr,
            licensing,
            server,
            processes: Vec::new(),
            dev: Some(seeding),
            sink: None,
            log_bytes,
            metrics: Vec::new(),
        });
    }
    seeding.terminate(Duration::from_secs(20))?;

    let sink = match mail {
        MailSink::Bench => Some(Receiving::Bench(Sink::start().await?)),
        MailSink::Aiosmtpd if smtp::available() => Some(Receiving::Aiosmtpd(SmtpSink::start(free_port()))),
        MailSink::Aiosmtpd => {
            println!("roster-bench: no Python with aiosmtpd (ROSTER_TEST_PYTHON); e-mail goes to files in this run");
            None
        }
    };
    let smtp_url = sink.as_ref().map(|sink| match sink {
        Receiving::Bench(sink) => format!("smtp://{}", sink.addr),
        Receiving::Aiosmtpd(sink) => format!("smtp://127.0.0.1:{}", sink.port),
    });
    let log_bytes = Arc::new(AtomicU64::new(0));
    let keys = data_dir.join("keys");
    let (mut processes, mut metrics) = (Vec::new(), Vec::new());
    for (service, listen, peer_flag, peer) in
        [("identity", addr, "--licensing-url", licensing), ("licensing", licensing, "--identity-url", addr)]
    {
        let metrics_at = SocketAddr::from(([127, 0, 0, 1], free_port()));
        metrics.push(metrics_at);
        let mut command = Command::new(roster_binary());
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", service, &format!("--{service}-listen"), &listen.to_string()])
            .args([peer_flag, &format!("http://{peer}")])
            .args(["--log", "info", "--log-format", "json"])
            .args(["--metrics-listen", &metrics_at.to_string()])
            .env("ROSTER_KEYS_DIR", &keys)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let (Some(url), "identity") = (&smtp_url, service) {
            command.env("ROSTER_SMTP_URL", url);
        }
        let mut child = command.spawn()?;
        let mut stderr = child.stderr.take().ok_or("stderr")?;
        let counted = log_bytes.clone();
        // A log shipper's end of the pipe: read everything, keep nothing.
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(read) = stderr.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                counted.fetch_add(read as u64, Ordering::Relaxed);
            }
        });
        processes.push(child);
    }
    wait_serving(addr, Duration::from_secs(60)).await?;
    wait_serving(licensing, Duration::from_secs(60)).await?;
    let server = Server { pids: processes.iter().map(Child::id).collect() };
    Ok(Running { identity: addr, licensing, server, processes, dev: None, sink, log_bytes, metrics })
}

/// A process's resident memory in MB; 0 when it cannot be read.
fn resident_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}
