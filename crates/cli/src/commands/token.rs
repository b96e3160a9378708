//! `roster token`: mint a token for grpcurl and scripts, signed with the private key bound to
//! the principal's kind, found in the keys directory a deployment uses (`--keys-dir`,
//! `ROSTER_KEYS_DIR`; `roster up`'s own in the data directory by default).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use roster_platform::auth::{KeyDir, KeyScope, MaxLifetimes, Principal, Signer};
use roster_platform::config::{ClaimArgs, ConfigError};
use serde_json::json;

use super::Failure;
use super::keys::KeysDirArg;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["user", "operator", "service"])))]
pub struct TokenArgs {
    /// A user id: the token acts as that user, with whatever role they hold now.
    #[arg(long)]
    user: Option<String>,
    /// A platform operator (support) name.
    #[arg(long)]
    operator: Option<String>,
    /// A service name, e.g. `licensing`.
    #[arg(long)]
    service: Option<String>,
    /// Lifetime in seconds; by default the longest the services accept for the kind
    /// (`ROSTER_TOKEN_MAX_LIFETIME`'s defaults: 24 hours for users and operators, as the
    /// demo's tokens, 1 hour for services).
    #[arg(long = "ttl-seconds", value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    ttl_seconds: Option<u64>,
    #[command(flatten)]
    keys: KeysDirArg,
    /// An Ed25519 private key (PEM) to sign with instead of the one in the keys directory
    /// (`users.pem`, `operators.pem`, `service-<name>.pem`).
    #[arg(long = "private-key", env = "ROSTER_JWT_PRIVATE_KEY")]
    private_key: Option<PathBuf>,
    /// Print one JSON object (token, principal, expiry) instead of the bare token.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    claims: ClaimArgs,
}

pub fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

pub fn run(data_dir: &Path, args: TokenArgs) -> Result<(), Failure> {
    let principal = match (args.user, args.operator, args.service) {
        (Some(user_id), _, _) => Principal::User { user_id },
        (_, Some(name), _) => Principal::Operator { name },
        (_, _, Some(name)) => Principal::Service { name },
        (None, None, None) => unreachable!("clap requires one of --user, --operator, --service"),
    };
    let (key, key_setting) = match args.private_key {
        Some(path) => (path, "ROSTER_JWT_PRIVATE_KEY"),
        None => {
            let dir = KeyDir { dir: args.keys.dir(data_dir) };
            (dir.private_key(&KeyScope::for_principal(&principal)), "ROSTER_KEYS_DIR")
        }
    };
    let signer = Signer::from_pem_file(&key, &args.claims.jwt_audience, &args.claims.jwt_issuer)
        .map_err(|e| ConfigError::new(key_setting, e.to_string()))?;
    let ttl = args.ttl_seconds.unwrap_or_else(|| MaxLifetimes::default().of(principal.kind()).as_secs());
    let now = now_seconds();
    let token = signer.mint(&principal, now, ttl);
    if args.json {
        let minted = json!({
            "token": token,
            "principal": principal.audit_name(),
            "expires_at_s": now + ttl,
            "key": key.display().to_string(),
        });
        out!("{minted}");
    } else {
        out!("{token}");
    }
    Ok(())
}
