//! `roster completions <shell>` and `roster man --out DIR`: shell completions and a man page
//! per command, generated from the same command tree that parses the arguments, so they cannot
//! drift from `--help`.

use std::path::PathBuf;

use clap::CommandFactory;
use roster_platform::config::ConfigError;

use super::{Cli, Failure};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for; load the output as that shell does, e.g.
    /// `roster completions bash > ~/.local/share/bash-completion/completions/roster`.
    shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory for the pages (`roster.1`, `roster-up.1`, `roster-ops-list.1`, ...); created
    /// if absent. Read one with `man -l DIR/roster-up.1`.
    #[arg(long)]
    out: PathBuf,
}

pub fn completions(args: &CompletionsArgs) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "roster", &mut script);
    out!("{}", String::from_utf8_lossy(&script).trim_end_matches('\n'));
    Ok(())
}

pub fn man(args: &ManArgs) -> Result<(), Failure> {
    let written = std::fs::create_dir_all(&args.out).and_then(|()| clap_mangen::generate_to(Cli::command(), &args.out));
    written.map_err(|e| ConfigError::new("--out", format!("cannot write man pages to {}: {e}", args.out.display())))?;
    out!("man pages written to {}", args.out.display());
    Ok(())
}
