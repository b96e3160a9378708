//! Logging with `tracing`: human-readable text by default, JSON when asked.

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, LogFormat, TelemetryArgs};

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(args: &TelemetryArgs) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(&args.log_filter).map_err(|e| ConfigError::new("ROSTER_LOG", e.to_string()))?;
    // Colour codes only for a person at a terminal, never into files or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let installed = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (tests that boot several servers) keeps the first subscriber.
    drop(installed);
    Ok(())
}
