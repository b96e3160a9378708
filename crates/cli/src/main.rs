//! The `roster` binary: parses arguments and hands over to the command modules.
#![forbid(unsafe_code)]

mod commands;
mod settings;

use clap::{CommandFactory, Parser};

#[tokio::main]
async fn main() {
    let cli = match commands::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if error.use_stderr() => settings::exit_parse_error(&commands::Cli::command(), &error),
        Err(help_or_version) => help_or_version.exit(),
    };
    std::process::exit(commands::run(cli).await);
}
