//! `roster serve identity|licensing`: one service, configured the way production runs it.

use roster_platform::config::{MetricsArgs, TelemetryArgs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use roster_identity::{IdentityArgs, PeerArgs};
use roster_licensing::LicensingArgs;
use roster_platform::auth::{IDENTITY_SERVICE, LICENSING_SERVICE, Principal, Signer, Verifier};
use roster_platform::clock::SystemClock;
use roster_platform::config::{AuthArgs, ConfigError, LimitArgs, PoolArgs};
use roster_platform::pagination::PageTokens;
use roster_platform::server::shutdown_signal;
use roster_platform::tls::TlsArgs;

use super::{Failure, ServiceDb, database_url, runtime};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A keys directory as `roster keys generate` writes it: the JWKS, the page-token keys and
    /// `service-<this service>.pem` are taken from it when `ROSTER_JWKS`,
    /// `ROSTER_PAGE_TOKEN_KEYS` and `ROSTER_SERVICE_SIGNING_KEY` are not set.
    #[arg(long = "keys-dir", env = "ROSTER_KEYS_DIR", global = true)]
    keys_dir: Option<PathBuf>,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
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
        tls: TlsArgs,
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
        tls: TlsArgs,
        #[command(flatten)]
        auth: AuthArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        pool: PoolArgs,
    },
}

impl ServeArgs {
    /// The service's name in traces.
    pub fn service_name(&self) -> &'static str {
        match self.service {
            Service::Identity { .. } => "roster-identity",
            Service::Licensing { .. } => "roster-licensing",
        }
    }
}

/// The keys a service works with, loaded: the tokens it trusts, the one it signs its own
/// service token with, and the page-token keys.
pub struct Trust {
    pub verifier: Arc<Verifier>,
    pub signer: Arc<Signer>,
    pub pages: PageTokens,
}

/// Identity's settings from parsed arguments; `trust.signer` mints identity's service token
/// for licensing at `licensing_url`.
pub fn identity_settings(
    data_dir: &Path,
    identity: &IdentityArgs,
    licensing_url: String,
    trust: Trust,
    limits: LimitArgs,
    pool: &PoolArgs,
) -> Result<roster_identity::Settings, ConfigError> {
    let Trust { verifier, signer, pages } = trust;
    let database_url = database_url(data_dir, ServiceDb::Identity, identity.database_url.as_deref())?;
    Ok(roster_identity::Settings {
        listen: identity.listen,
        workflow: identity.workflow.engine_config(&database_url),
        database_url,
        db_max_connections: pool.db_max_connections,
        verifier,
        limits,
        mailer: identity.mailer(data_dir)?,
        outbox_poll: Duration::from_millis(identity.outbox_poll_ms.max(10)),
        clock: Arc::new(SystemClock),
        dev_clock: None,
        licensing_url,
        signer,
        pages,
        tls: TlsArgs::default(),
    })
}

/// Licensing's settings; `identity_url` overrides the flag (`roster up` knows identity's
/// bound address), and `signer` mints licensing's service tokens.
pub fn licensing_settings(
    data_dir: &Path,
    licensing: &LicensingArgs,
    trust: Trust,
    limits: LimitArgs,
    pool: &PoolArgs,
) -> Result<roster_licensing::Settings, ConfigError> {
    let Trust { verifier, signer, pages } = trust;
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
        pages,
        tls: TlsArgs::default(),
    })
}

/// A file the setting names, or else the one of that name in the keys directory.
fn key_file(given: Option<&Path>, keys_dir: Option<&Path>, name: &str) -> Option<PathBuf> {
    given.map(Path::to_path_buf).or_else(|| keys_dir.map(|dir| dir.join(name)))
}

pub fn load_verifier(auth: &AuthArgs, keys_dir: Option<&Path>) -> Result<Arc<Verifier>, ConfigError> {
    const KEY: &str = "ROSTER_JWKS";
    let path = key_file(auth.jwks.as_deref(), keys_dir, "jwks.json").ok_or_else(|| {
        ConfigError::new(
            KEY,
            "a JWKS file of the trusted keys is required (`roster keys generate` writes one; or set ROSTER_KEYS_DIR)",
        )
    })?;
    let path = path.as_path();
    Verifier::from_jwks_file(path, &auth.claims.jwt_audience, &auth.claims.jwt_issuer)
        .map(|verifier| Arc::new(verifier.with_max_lifetimes(auth.token_max_lifetime)))
        .map_err(|e| ConfigError::new(KEY, e.to_string()))
}

fn load_page_tokens(auth: &AuthArgs, keys_dir: Option<&Path>) -> Result<PageTokens, ConfigError> {
    const KEY: &str = "ROSTER_PAGE_TOKEN_KEYS";
    let path = key_file(auth.page_token_keys.as_deref(), keys_dir, "page-token.keys").ok_or_else(|| {
        ConfigError::new(
            KEY,
            "a page-token key file is required (`roster keys generate` writes page-token.keys; or set ROSTER_KEYS_DIR)",
        )
    })?;
    PageTokens::from_file(&path).map_err(|e| ConfigError::new(KEY, e))
}

/// The key a service signs its own service tokens with; `calls` names the other service. The
/// services' JWKS must bind its public key to `service:<this service>`.
fn load_signer(
    key: Option<&Path>,
    keys_dir: Option<&Path>,
    me: &str,
    auth: &AuthArgs,
    calls: &str,
) -> Result<Arc<Signer>, ConfigError> {
    const KEY: &str = "ROSTER_SERVICE_SIGNING_KEY";
    let path = key_file(key, keys_dir, &format!("service-{me}.pem")).ok_or_else(|| {
        ConfigError::new(
            KEY,
            format!("an Ed25519 private key file (PEM) is required to call {calls} (or set ROSTER_KEYS_DIR)"),
        )
    })?;
    Signer::from_pem_file(&path, &auth.claims.jwt_audience, &auth.claims.jwt_issuer)
        .map(Arc::new)
        .map_err(|e| ConfigError::new(KEY, e.to_string()))
}

/// Refuses to start a service whose signing key its trusted keys would not accept as
/// `service:<name>`: otherwise it starts normally and fails only at its first call to the
/// other service (which trusts the same JWKS). Checked by minting a token and verifying it,
/// the path every call takes.
fn check_signing_key(trust: &Trust, name: &str) -> Result<(), ConfigError> {
    let me = Principal::Service { name: name.to_owned() };
    let token = trust.signer.mint(&me, super::token::now_seconds(), 60);
    match trust.verifier.verify(&token) {
        Ok(principal) if principal == me => Ok(()),
        Ok(other) => Err(ConfigError::new(
            "ROSTER_SERVICE_SIGNING_KEY",
            format!("its tokens verify as {}, not service:{name}", other.audit_name()),
        )),
        Err(refused) => Err(ConfigError::new(
            "ROSTER_SERVICE_SIGNING_KEY",
            format!(
                "its public key is not trusted for service:{name} by ROSTER_JWKS ({}): use service-{name}.pem from \
                 the same `roster keys generate`",
                refused.reason()
            ),
        )),
    }
}

pub async fn run(data_dir: &Path, args: ServeArgs) -> Result<(), Failure> {
    let keys_dir = args.keys_dir.as_deref();
    match args.service {
        Service::Identity { identity, peer, tls, auth, limits, pool } => {
            let trust = Trust {
                verifier: load_verifier(&auth, keys_dir)?,
                signer: load_signer(
                    peer.service_signing_key.as_deref(),
                    keys_dir,
                    IDENTITY_SERVICE,
                    &auth,
                    "licensing",
                )?,
                pages: load_page_tokens(&auth, keys_dir)?,
            };
            check_signing_key(&trust, IDENTITY_SERVICE)?;
            let mut settings = identity_settings(data_dir, &identity, peer.licensing_url, trust, limits, &pool)?;
            settings.tls = tls;
            let server = roster_identity::Server::build(settings).await?;
            server.run(shutdown_signal()).await.map_err(runtime)
        }
        Service::Licensing { licensing, tls, auth, limits, pool } => {
            let trust = Trust {
                verifier: load_verifier(&auth, keys_dir)?,
                signer: load_signer(
                    licensing.service_signing_key.as_deref(),
                    keys_dir,
                    LICENSING_SERVICE,
                    &auth,
                    "identity",
                )?,
                pages: load_page_tokens(&auth, keys_dir)?,
            };
            check_signing_key(&trust, LICENSING_SERVICE)?;
            let mut settings = licensing_settings(data_dir, &licensing, trust, limits, &pool)?;
            settings.tls = tls;
            let server = roster_licensing::Server::build(settings).await?;
            server.run(shutdown_signal()).await.map_err(runtime)
        }
    }
}
