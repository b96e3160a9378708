//! The `roster` binary: parses arguments and hands over to the command modules.
#![forbid(unsafe_code)]

mod commands;

use clap::Parser;
use roster_platform::config::EXIT_BAD_CONFIG;

#[tokio::main]
async fn main() {
    let cli = match commands::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if error.use_stderr() => {
            let _ = error.print();
            std::process::exit(EXIT_BAD_CONFIG);
        }
        Err(help_or_version) => help_or_version.exit(),
    };
    std::process::exit(commands::run(cli).await);
}
