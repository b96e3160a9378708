//! `roster serve identity|licensing`: one service, configured the way production runs it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use roster_identity::notify::Mailer;
use roster_identity::{IdentityArgs, PeerArgs};
use roster_licensing::LicensingArgs;
use roster_platform::auth::{Signer, Verifier};
use roster_platform::clock::SystemClock;
use roster_platform::config::{AuthArgs, ConfigError, LimitArgs, PoolArgs};
use roster_platform::server::shutdown_signal;

use super::{Failure, ServiceDb, database_url, runtime};

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
        peer: PeerArgs,
        #[command(flatten)]
        auth: AuthArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        pool: PoolArgs,
    },
    /// Seats, license assignment, phone numbers, licensed data, subscriptions and refunds.
    Licensing {
        #[command(flatten)]
        licensing: LicensingArgs,
        #[command(flatten)]
        auth: AuthArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        pool: PoolArgs,
    },
}

/// Identity's settings from parsed arguments; `verifier` is already loaded and `signer` mints
/// identity's service token for licensing at `licensing_url`.
pub fn identity_settings(
    data_dir: &Path,
    identity: &IdentityArgs,
    licensing_url: String,
    verifier: Arc<Verifier>,
    signer: Arc<Signer>,
    limits: LimitArgs,
    pool: &PoolArgs,
) -> Result<roster_identity::Settings, ConfigError> {
    let database_url = database_url(data_dir, ServiceDb::Identity, identity.database_url.as_deref())?;
    Ok(roster_identity::Settings {
        listen: identity.listen,
        workflow: identity.workflow.engine_config(&database_url),
        database_url,
        db_max_connections: pool.db_max_connections,
        verifier,
        limits,
        mailer: Mailer::Files(roster_identity::server::dev_mail_dir(data_dir)),
        outbox_poll: Duration::from_millis(identity.outbox_poll_ms.max(10)),
        clock: Arc::new(SystemClock),
        licensing_url,
        signer,
    })
}

/// Licensing's settings; `identity_url` overrides the flag (`roster up` knows identity's
/// bound address), and `signer` mints licensing's service tokens.
pub fn licensing_settings(
    data_dir: &Path,
    licensing: &LicensingArgs,
    verifier: Arc<Verifier>,
    signer: Arc<Signer>,
    limits: LimitArgs,
    pool: &PoolArgs,
) -> Result<roster_licensing::Settings, ConfigError> {
    Ok(roster_licensing::Settings {
        listen: licensing.listen,
        database_url: database_url(data_dir, ServiceDb::Licensing, licensing.database_url.as_deref())?,
        db_max_connections: pool.db_max_connections,
        verifier,
        limits,
        identity_url: licensing.identity_url.clone(),
        signer,
        directory_cache: Duration::from_millis(licensing.directory_cache_ms),
        clock: Arc::new(SystemClock),
        saga_retry: licensing.saga_retry.retry(),
    })
}

pub fn load_verifier(auth: &AuthArgs) -> Result<Arc<Verifier>, ConfigError> {
    const KEY: &str = "ROSTER_JWKS";
    let path = auth.jwks.as_deref().ok_or_else(|| {
        ConfigError::new(KEY, "a JWKS file of the trusted keys is required (`roster keys generate` writes one)")
    })?;
    Verifier::from_jwks_file(path, &auth.claims.jwt_audience, &auth.claims.jwt_issuer)
        .map(Arc::new)
        .map_err(|e| ConfigError::new(KEY, e.to_string()))
}

/// The key a service signs its own service tokens with; `calls` names the other service. The
/// services' JWKS must bind its public key to `service:<this service>`.
fn load_signer(key: Option<&Path>, auth: &AuthArgs, calls: &str) -> Result<Arc<Signer>, ConfigError> {
    const KEY: &str = "ROSTER_SERVICE_SIGNING_KEY";
    let path = key.ok_or_else(|| {
        ConfigError::new(KEY, format!("an Ed25519 private key file (PEM) is required to call {calls}"))
    })?;
    Signer::from_pem_file(path, &auth.claims.jwt_audience, &auth.claims.jwt_issuer)
        .map(Arc::new)
        .map_err(|e| ConfigError::new(KEY, e.to_string()))
}

pub async fn run(data_dir: &Path, args: ServeArgs) -> Result<(), Failure> {
    match args.service {
        Service::Identity { identity, peer, auth, limits, pool } => {
            let verifier = load_verifier(&auth)?;
            let signer = load_signer(peer.service_signing_key.as_deref(), &auth, "licensing")?;
            let settings = identity_settings(data_dir, &identity, peer.licensing_url, verifier, signer, limits, &pool)?;
            let server = roster_identity::Server::build(settings).await.map_err(runtime)?;
            server.run(shutdown_signal()).await.map_err(runtime)
        }
        Service::Licensing { licensing, auth, limits, pool } => {
            let verifier = load_verifier(&auth)?;
            let signer = load_signer(licensing.service_signing_key.as_deref(), &auth, "identity")?;
            let settings = licensing_settings(data_dir, &licensing, verifier, signer, limits, &pool)?;
            let server = roster_licensing::Server::build(settings).await.map_err(runtime)?;
            server.run(shutdown_signal()).await.map_err(runtime)
        }
    }
}
