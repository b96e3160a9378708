//! `roster keys generate`: a private key for each kind of principal and the JWKS file that
//! binds each public key to what it may sign. `roster up` uses the same files in the data
//! directory; production keeps each private key with the one party that signs with it.

use std::path::{Path, PathBuf};

use roster_platform::auth::{KeyScope, generate_keys};
use roster_platform::config::ConfigError;
use serde_json::json;

use super::Failure;

/// Where a deployment's keys are: `roster keys generate` writes them there and `roster token`
/// signs with them.
#[derive(Debug, clap::Args)]
pub struct KeysDirArg {
    /// The keys directory (`users.pem`, `operators.pem`, `service-<name>.pem`, `jwks.json`,
    /// `page-token.keys`); defaults to `keys/` in the data directory, where `roster up` keeps
    /// its own.
    #[arg(long = "keys-dir", visible_alias = "out", env = "ROSTER_KEYS_DIR")]
    keys_dir: Option<PathBuf>,
}

impl KeysDirArg {
    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        self.keys_dir.clone().unwrap_or_else(|| default_dir(data_dir))
    }
}

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Write users.pem, operators.pem, service-identity.pem, service-licensing.pem (each kept
    /// if present), jwks.json trusting them, each for its own kind of principal, and
    /// page-token.keys, the secret that signs page tokens.
    Generate {
        #[command(flatten)]
        keys: KeysDirArg,
        /// Print one JSON object naming each file instead of the table.
        #[arg(long)]
        json: bool,
    },
}

/// Where `roster up` and `roster token` keep the dev keys.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

pub fn run(data_dir: &Path, args: KeysArgs) -> Result<(), Failure> {
    let KeysCommand::Generate { keys, json } = args.command;
    let dir = keys.dir(data_dir);
    let keys = generate_keys(&dir, &KeyScope::all()).map_err(|e| ConfigError::new("ROSTER_KEYS_DIR", e.to_string()))?;
    if json {
        let private: serde_json::Map<String, serde_json::Value> = KeyScope::all()
            .iter()
            .map(|scope| (scope.as_text(), json!(keys.private_key(scope).display().to_string())))
            .collect();
        let written = json!({
            "private_keys": private,
            "jwks": keys.jwks().display().to_string(),
            "page_token_keys": keys.page_token_keys().display().to_string(),
        });
        out!("{written}");
        return Ok(());
    }
    for scope in KeyScope::all() {
        out!("{:<38} {}", scope.as_text(), keys.private_key(&scope).display());
    }
    out!("{:<38} {}", "trusted (ROSTER_JWKS)", keys.jwks().display());
    out!("{:<38} {}", "page tokens (ROSTER_PAGE_TOKEN_KEYS)", keys.page_token_keys().display());
    Ok(())
}
