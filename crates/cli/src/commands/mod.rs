//! The `roster` commands and their arguments.

mod bulk;
mod docs;
mod events;
mod keys;
mod migrate;
mod ops;
mod remote;
mod render;
mod serve;
mod token;
mod up;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};
use roster_platform::config::{ConfigError, TelemetryArgs};
use roster_platform::server::StartError;

#[derive(Debug, Parser)]
#[command(name = "roster", version, about = "Roster: the identity and licensing services of a multi-user SaaS product")]
pub struct Cli {
    /// Directory for embedded databases, dev keys, the dev inbox and demo data.
    #[arg(long = "data-dir", env = "ROSTER_DATA_DIR", default_value = ".roster", global = true)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system on this machine: embedded SQLite, generated dev keys, e-mails as
    /// files. `--demo` seeds an account and prints tokens and grpcurl commands.
    Up(up::UpArgs),
    /// Run one service the way production does (keys from files, PostgreSQL or SQLite).
    Serve(Box<serve::ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(migrate::MigrateArgs),
    /// Mint a token for a user, operator or service, signed with the key bound to its kind.
    Token(token::TokenArgs),
    /// Generate signing keys, one per kind of principal, and the JWKS file the services trust.
    Keys(keys::KeysArgs),
    /// List, follow and repair long-running operations: list, get, watch, retry, resolve, cancel.
    Ops(ops::OpsArgs),
    /// Deactivate, unlink or delete many users from a CSV file: template, run.
    Bulk(bulk::BulkArgs),
    /// Follow a service's event log as the services acting on its changes do: tail.
    Events(events::EventsArgs),
    /// Print shell completions for bash, zsh, fish, elvish or PowerShell.
    Completions(docs::CompletionsArgs),
    /// Write a man page for every command into a directory.
    Man(docs::ManArgs),
}

impl Command {
    /// The logging and metrics settings of the commands that run services or touch their
    /// databases; the client commands (`token`, `keys`, `ops`, `bulk`, `events`) have none to show.
    fn telemetry(&self) -> Option<&TelemetryArgs> {
        match self {
            Self::Up(args) => Some(&args.telemetry),
            Self::Serve(args) => Some(&args.telemetry),
            Self::Migrate(args) => Some(&args.telemetry),
            Self::Token(_)
            | Self::Keys(_)
            | Self::Ops(_)
            | Self::Bulk(_)
            | Self::Events(_)
            | Self::Completions(_)
            | Self::Man(_) => None,
        }
    }

    fn metrics_listen(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Up(args) => args.metrics.metrics_listen,
            Self::Serve(args) => args.metrics.metrics_listen,
            _ => None,
        }
    }
}

/// Runs the command; returns the process exit status.
pub async fn run(cli: Cli) -> i32 {
    // Only servers export traces, each under its own service name.
    let traced = match &cli.command {
        Command::Up(_) => Some("roster"),
        Command::Serve(args) => Some(args.service_name()),
        _ => None,
    };
    // Client commands log only what goes wrong underneath them (a warning from the transport).
    let quiet = TelemetryArgs { log_filter: "warn".into(), ..TelemetryArgs::default() };
    let settings = cli.command.telemetry().unwrap_or(&quiet);
    let telemetry = match roster_platform::telemetry::init(settings, traced) {
        Ok(telemetry) => telemetry,
        Err(error) => crate::settings::exit_config(&Cli::command(), &error),
    };
    // Only servers have metrics to serve (`roster up` serves both services' on one port).
    if let Some(listen) = cli.command.metrics_listen()
        && let Err(error) = roster_platform::metrics::install(listen)
    {
        crate::settings::exit_config(&Cli::command(), &error);
    }
    let result = match cli.command {
        Command::Up(args) => up::run(&cli.data_dir, args).await,
        Command::Serve(args) => serve::run(&cli.data_dir, *args).await,
        Command::Migrate(args) => migrate::run(&cli.data_dir, args).await,
        Command::Token(args) => token::run(&cli.data_dir, args),
        Command::Keys(args) => keys::run(&cli.data_dir, args),
        Command::Ops(args) => ops::run(args).await,
        Command::Bulk(args) => bulk::run(args).await,
        Command::Events(args) => events::run(args).await,
        Command::Completions(args) => docs::completions(&args),
        Command::Man(args) => docs::man(&args),
    };
    // Flushing waits for the exporter, which needs the runtime's other threads: off this one.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    // Each failure is said once, on stderr, naming what to look at.
    match result {
        Ok(()) => 0,
        Err(Failure::Config(error)) => crate::settings::exit_config(&Cli::command(), &error),
        Err(Failure::Unavailable(error)) => crate::settings::exit_unavailable(&Cli::command(), &error),
        Err(Failure::Runtime(message)) => {
            eprintln!("roster: {message}");
            1
        }
    }
}

/// Why a command failed: bad configuration (exit 64), a dependency that is down, such as the
/// database a setting names (exit 69), or a failure while running (exit 1).
#[derive(Debug)]
pub enum Failure {
    Config(ConfigError),
    Unavailable(ConfigError),
    Runtime(String),
}

impl From<ConfigError> for Failure {
    fn from(error: ConfigError) -> Self {
        Self::Config(error)
    }
}

impl From<StartError> for Failure {
    fn from(error: StartError) -> Self {
        match error {
            StartError::Bind { key, addr, source } => {
                Self::Config(ConfigError::new(key, format!("cannot listen on {addr}: {source}")))
            }
            StartError::Connect { key, service, source, .. } => {
                Self::Unavailable(ConfigError::new(key, format!("the {service} database: {source}")))
            }
            StartError::Migrate { .. } => Self::Runtime(error.to_string()),
            StartError::Config(error) => Self::Config(error),
        }
    }
}

fn runtime(error: impl std::fmt::Display) -> Failure {
    Failure::Runtime(error.to_string())
}

/// Which service a database belongs to, and the variable that configures it.
#[derive(Debug, Clone, Copy)]
pub enum ServiceDb {
    Identity,
    Licensing,
}

impl ServiceDb {
    fn key(self) -> &'static str {
        match self {
            Self::Identity => "ROSTER_IDENTITY_DATABASE_URL",
            Self::Licensing => "ROSTER_LICENSING_DATABASE_URL",
        }
    }

    fn embedded(self, data_dir: &std::path::Path) -> String {
        match self {
            Self::Identity => roster_identity::server::embedded_database_url(data_dir),
            Self::Licensing => roster_licensing::server::embedded_database_url(data_dir),
        }
    }
}

/// A service's database URL: the given one after checking its scheme, or SQLite in `data_dir`.
fn database_url(data_dir: &std::path::Path, service: ServiceDb, given: Option<&str>) -> Result<String, ConfigError> {
    match given {
        Some(url) if roster_platform::db::Backend::from_url(url).is_some() => Ok(url.to_owned()),
        Some(_) => Err(ConfigError::new(service.key(), "must start with postgres://, postgresql:// or sqlite:")),
        None => {
            std::fs::create_dir_all(data_dir).map_err(|e| {
                ConfigError::new("ROSTER_DATA_DIR", format!("cannot create {}: {e}", data_dir.display()))
            })?;
            Ok(service.embedded(data_dir))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;
    use crate::settings::all_args;

    #[test]
    fn every_setting_with_a_variable_has_a_flag_and_help() {
        let args = all_args(&Cli::command());
        assert!(args.iter().any(|arg| arg.get_long() == Some("identity-listen")), "serve's settings are walked");
        for arg in args {
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                assert!(arg.get_long().is_some(), "{env} has no flag");
                assert!(arg.get_help().is_some(), "--{} ({env}) has no help text", arg.get_long().unwrap_or("?"));
            }
        }
    }
}
