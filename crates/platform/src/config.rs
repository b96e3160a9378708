//! Configuration shared by both services: flags with `ROSTER_*` environment variables
//! (clap), and the configuration error that makes the process exit 64 naming the key.

use std::path::PathBuf;
use std::time::Duration;

/// Exit status for bad configuration (sysexits `EX_USAGE`).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// Exit status when something the command depends on is down, such as its database (sysexits
/// `EX_UNAVAILABLE`).
pub const EXIT_UNAVAILABLE: i32 = 69;

/// A setting that cannot be used. `key` is the environment variable the operator edits.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {key}: {message}")]
pub struct ConfigError {
    pub key: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self { key, message: message.into() }
    }
}

/// Token verification.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// JWKS file of the trusted Ed25519 keys, each bound by `roster_signs` to what it may sign
    /// (`users`, `operators`, `service:<name>`); `roster keys generate` writes one.
    #[arg(long = "jwks", env = "ROSTER_JWKS")]
    pub jwks: Option<PathBuf>,
    /// File of the HMAC keys page tokens are sealed with, one base64 key per line: the first
    /// signs, all verify. Every replica of a service needs the same file (`roster keys
    /// generate` writes `page-token.keys`).
    #[arg(long = "page-token-keys", env = "ROSTER_PAGE_TOKEN_KEYS")]
    pub page_token_keys: Option<PathBuf>,
    /// The longest a token may be valid (`exp - iat`) per kind of principal, e.g.
    /// `users=24h,operators=8h,services=1h`; kinds not named keep their default (a day for
    /// users and operators, an hour for services). Longer tokens are refused.
    #[arg(long = "token-max-lifetime", env = "ROSTER_TOKEN_MAX_LIFETIME",
          value_parser = crate::auth::tokens::MaxLifetimes::parse,
          default_value = "users=24h,operators=24h,services=1h")]
    pub token_max_lifetime: crate::auth::tokens::MaxLifetimes,
    #[command(flatten)]
    pub claims: ClaimArgs,
}

/// The claims every token must carry, for those who verify and those who mint.
#[derive(Debug, Clone, clap::Args)]
pub struct ClaimArgs {
    /// The `aud` claim every token must carry.
    #[arg(long = "jwt-audience", env = "ROSTER_JWT_AUDIENCE", default_value = "roster")]
    pub jwt_audience: String,
    /// The `iss` claim every token must carry.
    #[arg(long = "jwt-issuer", env = "ROSTER_JWT_ISSUER", default_value = "roster")]
    pub jwt_issuer: String,
}

impl Default for ClaimArgs {
    fn default() -> Self {
        Self { jwt_audience: "roster".to_owned(), jwt_issuer: "roster".to_owned() }
    }
}

/// Limits applied as tower layers, and the shutdown grace period.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Longest time one RPC may take before it is cancelled.
    #[arg(long = "request-timeout-ms", env = "ROSTER_REQUEST_TIMEOUT_MS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub request_timeout_ms: u64,
    /// RPCs handled at once across all connections; further ones wait for a slot at most
    /// `--concurrency-queue-ms`, then are refused UNAVAILABLE (SERVER_OVERLOADED, with RetryInfo).
    #[arg(long = "concurrency-limit", env = "ROSTER_CONCURRENCY_LIMIT", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency_limit: u64,
    /// Changes of one account handled at once by one process while other callers are being
    /// served; more of that account wait their turn, so a busy account cannot crowd out the
    /// others. Alone, an account's changes go side by side.
    #[arg(long = "account-concurrency", env = "ROSTER_ACCOUNT_CONCURRENCY", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub account_concurrency: u64,
    /// How long a call waits for a slot when `--concurrency-limit` calls are under way.
    #[arg(long = "concurrency-queue-ms", env = "ROSTER_CONCURRENCY_QUEUE_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub concurrency_queue_ms: u64,
    /// Largest request message accepted, in bytes.
    #[arg(long = "max-message-bytes", env = "ROSTER_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    pub max_message_bytes: u64,
    /// How long in-flight RPCs may drain after SIGTERM. Keep it below Kubernetes'
    /// `terminationGracePeriodSeconds` (30 s by default).
    #[arg(long = "shutdown-grace-ms", env = "ROSTER_SHUTDOWN_GRACE_MS", default_value_t = 20_000)]
    pub shutdown_grace_ms: u64,
    /// After SIGTERM, how long health answers NOT_SERVING while the port still takes calls,
    /// so load balancers and readiness probes stop routing here before the listener closes.
    /// 0 closes at once (for a developer's Ctrl-C); in Kubernetes, set it above the readiness
    /// probe's period, and grace plus delay below `terminationGracePeriodSeconds`.
    #[arg(long = "shutdown-delay-ms", env = "ROSTER_SHUTDOWN_DELAY_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=120_000))]
    pub shutdown_delay_ms: u64,
    /// Longest wait for the next part of a request body; a client that sends headers and then
    /// stalls is answered DEADLINE_EXCEEDED after this, not after the whole RPC timeout.
    #[arg(long = "request-body-timeout-ms", env = "ROSTER_REQUEST_BODY_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub request_body_timeout_ms: u64,
    /// Concurrent streams one HTTP/2 connection may open (advertised to clients).
    #[arg(long = "max-concurrent-streams", env = "ROSTER_MAX_CONCURRENT_STREAMS", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrent_streams: u32,
    /// Open connections at once; further ones are closed as they arrive.
    #[arg(long = "max-connections", env = "ROSTER_MAX_CONNECTIONS", default_value_t = 1_024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// How often an idle connection is pinged (HTTP/2 keep-alive).
    #[arg(long = "keepalive-interval-ms", env = "ROSTER_KEEPALIVE_INTERVAL_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1_000..=3_600_000))]
    pub keepalive_interval_ms: u64,
    /// A connection whose ping is not answered within this is closed.
    #[arg(long = "keepalive-timeout-ms", env = "ROSTER_KEEPALIVE_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub keepalive_timeout_ms: u64,
    /// How long the event log (`roster.events.v1`) keeps events; older cursors are
    /// OUT_OF_RANGE.
    #[arg(long = "event-retention-hours", env = "ROSTER_EVENT_RETENTION_HOURS", default_value_t = 168,
          value_parser = clap::value_parser!(u64).range(1..=87_600))]
    pub event_retention_hours: u64,
    /// How long an event stream waits for a consumer that stopped reading before ending it
    /// with RESOURCE_EXHAUSTED and the cursor to resume after.
    #[arg(long = "event-stall-ms", env = "ROSTER_EVENT_STALL_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub event_stall_ms: u64,
}

impl LimitArgs {
    pub fn concurrency_queue_wait(&self) -> Duration {
        Duration::from_millis(self.concurrency_queue_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_millis(self.shutdown_delay_ms)
    }

    pub fn max_message_bytes(&self) -> usize {
        usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX)
    }

    pub fn request_body_timeout(&self) -> Duration {
        Duration::from_millis(self.request_body_timeout_ms)
    }

    pub fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(self.keepalive_interval_ms)
    }

    pub fn keepalive_timeout(&self) -> Duration {
        Duration::from_millis(self.keepalive_timeout_ms)
    }

    pub fn event_log(&self) -> crate::event_log::LogSettings {
        crate::event_log::LogSettings {
            retention: Duration::from_secs(self.event_retention_hours.saturating_mul(3_600)),
            stall_limit: Duration::from_millis(self.event_stall_ms),
        }
    }
}

impl Default for LimitArgs {
    fn default() -> Self {
        Self {
            request_timeout_ms: 15_000,
            concurrency_limit: 512,
            concurrency_queue_ms: 100,
            account_concurrency: 1,
            max_message_bytes: 4 * 1024 * 1024,
            shutdown_grace_ms: 20_000,
            shutdown_delay_ms: 0,
            request_body_timeout_ms: 5_000,
            max_concurrent_streams: 100,
            max_connections: 1_024,
            keepalive_interval_ms: 30_000,
            keepalive_timeout_ms: 10_000,
            event_retention_hours: 168,
            event_stall_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging, for the commands that run services or touch their databases.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// `text` for people, `json` for log collectors.
    #[arg(long = "log-format", env = "ROSTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `roster_identity=debug,info`.
    #[arg(long = "log", env = "ROSTER_LOG", default_value = "info", global = true)]
    pub log_filter: String,
}

impl Default for TelemetryArgs {
    fn default() -> Self {
        Self { log_format: LogFormat::Text, log_filter: "info".into() }
    }
}

/// Metrics, for the commands that run services.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics on this address; off when unset.
    #[arg(long = "metrics-listen", env = "ROSTER_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Database pool sizing (PostgreSQL; SQLite always uses one connection).
#[derive(Debug, Clone, clap::Args)]
pub struct PoolArgs {
    /// PostgreSQL connections each service keeps at most (SQLite always uses one).
    #[arg(long = "db-max-connections", env = "ROSTER_DB_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub db_max_connections: u32,
}
