//! `roster serve identity`: one service, configured the way production runs it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use roster_identity::notify::Mailer;
use roster_identity::{IdentityArgs, Server, Settings};
use roster_platform::auth::Verifier;
use roster_platform::clock::SystemClock;
use roster_platform::config::{AuthArgs, ConfigError, LimitArgs, PoolArgs};
use roster_platform::server::shutdown_signal;

use super::{Failure, identity_database_url, runtime};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(subcommand)]
    service: Service,
}

#[derive(Debug, clap::Subcommand)]
enum Service {
    /// Accounts, users, roles, invitations, ownership.
    Identity {
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(flatten)]
        auth: AuthArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        pool: PoolArgs,
    },
}

/// Identity's settings from parsed arguments; `verifier` is already loaded.
pub fn identity_settings(
    data_dir: &Path,
    identity: &IdentityArgs,
    verifier: Arc<Verifier>,
    limits: LimitArgs,
    pool: &PoolArgs,
) -> Result<Settings, ConfigError> {
    Ok(Settings {
        listen: identity.listen,
        database_url: identity_database_url(data_dir, identity.database_url.as_deref())?,
        db_max_connections: pool.db_max_connections,
        verifier,
        limits,
        mailer: Mailer::Files(roster_identity::server::dev_mail_dir(data_dir)),
        outbox_poll: Duration::from_millis(identity.outbox_poll_ms.max(10)),
        clock: Arc::new(SystemClock),
    })
}

pub fn load_verifier(auth: &AuthArgs) -> Result<Arc<Verifier>, ConfigError> {
    if auth.jwt_public_keys.is_empty() {
        return Err(ConfigError::new(
            "ROSTER_JWT_PUBLIC_KEYS",
            "at least one Ed25519 public key file (PEM) is required",
        ));
    }
    Verifier::from_pem_files(&auth.jwt_public_keys, &auth.jwt_audience)
        .map(Arc::new)
        .map_err(|e| ConfigError::new("ROSTER_JWT_PUBLIC_KEYS", e.to_string()))
}

pub async fn run(data_dir: &Path, args: ServeArgs) -> Result<(), Failure> {
    match args.service {
        Service::Identity { identity, auth, limits, pool } => {
            let verifier = load_verifier(&auth)?;
            let settings = identity_settings(data_dir, &identity, verifier, limits, &pool)?;
            let server = Server::build(settings).await.map_err(runtime)?;
            server.run(shutdown_signal()).await.map_err(runtime)
        }
    }
}
