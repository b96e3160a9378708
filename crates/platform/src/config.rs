//! Configuration shared by both services: flags with `ROSTER_*` environment variables
//! (clap), and the configuration error that makes the process exit 64 naming the key.

use std::path::PathBuf;
use std::time::Duration;

/// Exit status for bad configuration (sysexits `EX_USAGE`).
pub const EXIT_BAD_CONFIG: i32 = 64;

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

    /// Prints the error and exits with [`EXIT_BAD_CONFIG`].
    pub fn exit(&self) -> ! {
        eprintln!("{self}");
        std::process::exit(EXIT_BAD_CONFIG)
    }
}

/// Token verification.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// PEM files of the Ed25519 public keys that may sign tokens (several during a rotation).
    #[arg(long = "jwt-public-keys", env = "ROSTER_JWT_PUBLIC_KEYS", value_delimiter = ',')]
    pub jwt_public_keys: Vec<PathBuf>,
    /// The `aud` claim every token must carry.
    #[arg(long = "jwt-audience", env = "ROSTER_JWT_AUDIENCE", default_value = "roster")]
    pub jwt_audience: String,
}

/// Limits applied as tower layers, and the shutdown grace period.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Longest time one RPC may take before it is cancelled.
    #[arg(long = "request-timeout-ms", env = "ROSTER_REQUEST_TIMEOUT_MS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub request_timeout_ms: u64,
    /// RPCs handled at once across all connections; further ones wait.
    #[arg(long = "concurrency-limit", env = "ROSTER_CONCURRENCY_LIMIT", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency_limit: u64,
    /// Largest request message accepted, in bytes.
    #[arg(long = "max-message-bytes", env = "ROSTER_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    pub max_message_bytes: u64,
    /// How long in-flight RPCs may drain after SIGTERM. Keep it below Kubernetes'
    /// `terminationGracePeriodSeconds` (30 s by default).
    #[arg(long = "shutdown-grace-ms", env = "ROSTER_SHUTDOWN_GRACE_MS", default_value_t = 20_000)]
    pub shutdown_grace_ms: u64,
}

impl LimitArgs {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn max_message_bytes(&self) -> usize {
        usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX)
    }
}

impl Default for LimitArgs {
    fn default() -> Self {
        Self {
            request_timeout_ms: 15_000,
            concurrency_limit: 512,
            max_message_bytes: 4 * 1024 * 1024,
            shutdown_grace_ms: 20_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// `text` for people, `json` for log collectors.
    #[arg(long = "log-format", env = "ROSTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `roster_identity=debug,info`.
    #[arg(long = "log", env = "ROSTER_LOG", default_value = "info")]
    pub log_filter: String,
}

/// Database pool sizing (PostgreSQL; SQLite always uses one connection).
#[derive(Debug, Clone, clap::Args)]
pub struct PoolArgs {
    #[arg(long = "db-max-connections", env = "ROSTER_DB_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub db_max_connections: u32,
}
