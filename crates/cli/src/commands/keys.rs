//! `roster keys generate`: a private key for each kind of principal and the JWKS file that
//! binds each public key to what it may sign. `roster up` uses the same files in the data
//! directory; production keeps each private key with the one party that signs with it.

use std::path::{Path, PathBuf};

use roster_platform::auth::{KeyScope, generate_keys};
use roster_platform::config::ConfigError;

use super::Failure;

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Write users.pem, operators.pem, service-identity.pem, service-licensing.pem (kept if
    /// present) and jwks.json trusting them, each for its own kind of principal.
    Generate {
        /// Directory for the keys; defaults to `keys/` in the data directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Where `roster up` and `roster token` keep the dev keys.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

pub fn run(data_dir: &Path, args: KeysArgs) -> Result<(), Failure> {
    let KeysCommand::Generate { out } = args.command;
    let dir = out.unwrap_or_else(|| default_dir(data_dir));
    let keys = generate_keys(&dir, &KeyScope::all()).map_err(|e| ConfigError::new("--out", e.to_string()))?;
    for scope in KeyScope::all() {
        println!("{:<38} {}", scope.as_text(), keys.private_key(&scope).display());
    }
    println!("{:<38} {}", "trusted (ROSTER_JWKS)", keys.jwks().display());
    println!("{:<38} {}", "page tokens (ROSTER_PAGE_TOKEN_KEYS)", keys.page_token_keys().display());
    Ok(())
}
