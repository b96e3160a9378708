//! The `roster` binary: parses arguments and hands over to the command modules.
#![forbid(unsafe_code)]

#[macro_use]
mod output;
mod commands;
mod settings;

use clap::{CommandFactory, FromArgMatches};

#[tokio::main]
async fn main() {
    let parsed = commands::Cli::command()
        .try_get_matches()
        .and_then(|matches| commands::Cli::from_arg_matches(&matches).map(|cli| (cli, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(error) if error.use_stderr() => settings::exit_parse_error(&commands::Cli::command(), &error),
        Err(help_or_version) => help_or_version.exit(),
    };
    let mut path = Vec::new();
    let mut at = &matches;
    while let Some((name, sub)) = at.subcommand() {
        path.push(name.to_owned());
        at = sub;
    }
    // Only the commands that run services or touch their databases, where an ignored setting
    // changes what runs (a shell that exports ROSTER_TOKEN for `roster ops` is no mistake).
    // One environment commonly configures both services and their migrations, so `serve` and
    // `migrate` take each other's variables without a word; `up` runs its own way and names
    // anything it does not read.
    const DEPLOYMENT: [&[&str]; 3] = [&["serve", "identity"], &["serve", "licensing"], &["migrate"]];
    let alike: &[&[&str]] = match path.first().map(String::as_str) {
        Some("serve" | "migrate") => &DEPLOYMENT,
        _ => &[],
    };
    let configures = matches!(path.first().map(String::as_str), Some("up" | "serve" | "migrate"));
    let set = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()).filter(|_| configures);
    for name in settings::unread_variables(&commands::Cli::command(), &path, alike, set) {
        eprintln!(
            "roster: warning: {name} is set, but `roster {}` does not read it (README: Configuration)",
            path.join(" ")
        );
    }
    std::process::exit(commands::run(cli).await);
}
