//! `roster token`: mint a token for grpcurl and scripts, signed with the private key bound to
//! the principal's kind (by default the one `roster up` generated in the data directory).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use roster_platform::auth::{KeyDir, KeyScope, Principal, Signer};
use roster_platform::config::{ClaimArgs, ConfigError};

use super::Failure;

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
    /// Lifetime in seconds.
    #[arg(long = "ttl-seconds", default_value_t = 3_600, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    ttl_seconds: u64,
    /// Ed25519 private key (PEM) bound to the principal's kind; defaults to the one in the data
    /// directory's `keys/` (`users.pem`, `operators.pem`, `service-<name>.pem`).
    #[arg(long = "private-key", env = "ROSTER_JWT_PRIVATE_KEY")]
    private_key: Option<PathBuf>,
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
    let key = args.private_key.unwrap_or_else(|| {
        KeyDir { dir: super::keys::default_dir(data_dir) }.private_key(&KeyScope::for_principal(&principal))
    });
    let signer = Signer::from_pem_file(&key, &args.claims.jwt_audience, &args.claims.jwt_issuer)
        .map_err(|e| ConfigError::new("ROSTER_JWT_PRIVATE_KEY", e.to_string()))?;
    println!("{}", signer.mint(&principal, now_seconds(), args.ttl_seconds));
    Ok(())
}
