//! Building and running the licensing server. Start-up order: bind, connect, migrate, health
//! SERVING, serve; shutdown in reverse (health NOT_SERVING, drain, stop housekeeping, close
//! the database).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use roster_platform::api_server;
use roster_platform::auth::{Signer, Verifier};
use roster_platform::clock::SharedClock;
use roster_platform::config::ConfigError;
use roster_platform::config::LimitArgs;
use roster_platform::db::{Database, redact};
use roster_platform::event_log::EventLog;
use roster_platform::event_log::serve::EventsService;
use roster_platform::pagination::PageTokens;
use roster_platform::saga_retry::{SagaRetry, SagaRetryArgs};
use roster_platform::server::{ServeError, ServiceSet, StartError, bind_health, serve};
use roster_platform::tls::{ServerTls, TlsArgs};
use roster_proto::events::v1::events_server::EventsServer;
use roster_proto::licensing::v1::billing_service_server::BillingServiceServer;
use roster_proto::licensing::v1::content_service_server::ContentServiceServer;
use roster_proto::licensing::v1::license_service_server::LicenseServiceServer;
use tokio::net::TcpListener;

use crate::api::Api;
use crate::directory::Directory;
use crate::store::MIGRATIONS;

/// Licensing's own settings, as flags and `ROSTER_*` variables.
#[derive(Debug, Clone, clap::Args)]
pub struct LicensingArgs {
    /// Address the licensing gRPC server listens on.
    #[arg(long = "licensing-listen", env = "ROSTER_LICENSING_LISTEN", default_value = "127.0.0.1:50052")]
    pub listen: SocketAddr,
    /// PostgreSQL URL; without it licensing uses SQLite in the data directory.
    #[arg(long = "licensing-database-url", env = "ROSTER_LICENSING_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where identity's gRPC API is (licensing asks it who callers are). Calls are spread over
    /// every address the name resolves to (a headless Service: every replica), and over
    /// several URLs if given with commas.
    #[arg(long = "identity-url", env = "ROSTER_IDENTITY_URL", default_value = "http://127.0.0.1:50051")]
    pub identity_url: String,
    /// Ed25519 private key (PEM) licensing signs its own service tokens with; the JWKS the
    /// services trust must bind its public key to `service:licensing`.
    #[arg(long = "service-signing-key", env = "ROSTER_SERVICE_SIGNING_KEY")]
    pub service_signing_key: Option<std::path::PathBuf>,
    /// How long identity's answers may be reused for reads of non-billing data (at most 5000).
    #[arg(long = "directory-cache-ms", env = "ROSTER_DIRECTORY_CACHE_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(0..=5_000))]
    pub directory_cache_ms: u64,
    /// Identity's saga retry settings: licensing keeps request ids for as long as identity may
    /// re-send one.
    #[command(flatten)]
    pub saga_retry: SagaRetryArgs,
}

/// Everything needed to start licensing, already validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub db_max_connections: u32,
    pub verifier: Arc<Verifier>,
    pub limits: LimitArgs,
    pub identity_url: String,
    pub signer: Arc<Signer>,
    pub directory_cache: Duration,
    pub clock: SharedClock,
    /// How long identity retries saga steps, which bounds how long request ids are kept.
    pub saga_retry: SagaRetry,
    /// Seals and opens list page tokens.
    pub pages: PageTokens,
    /// TLS on the port and to identity; all off by default.
    pub tls: TlsArgs,
}

/// A bound, migrated licensing server, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    db: Database,
    directory: Directory,
    settings: Settings,
    tls: Option<Arc<ServerTls>>,
    health: Option<TcpListener>,
}

impl Server {
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let directory = Directory::new(
            &settings.identity_url,
            settings.signer.clone(),
            settings.directory_cache,
            settings.tls.client(),
        )
        .map_err(|e| StartError::Config(ConfigError::new("ROSTER_IDENTITY_URL", e.to_string())))?;
        let tls = settings.tls.server()?;
        let listener = TcpListener::bind(settings.listen).await.map_err(|source| StartError::Bind {
            key: "ROSTER_LICENSING_LISTEN",
            addr: settings.listen,
            source,
        })?;
        let db = Database::connect(&settings.database_url, settings.db_max_connections).await.map_err(|source| {
            StartError::Connect {
                key: "ROSTER_LICENSING_DATABASE_URL",
                service: "licensing",
                url: redact(&settings.database_url),
                source,
            }
        })?;
        db.migrate(MIGRATIONS).await.map_err(|source| StartError::Migrate { service: "licensing", source })?;
        let health = bind_health(settings.tls.health_listen).await.map_err(|(addr, source)| StartError::Bind {
            key: "ROSTER_HEALTH_LISTEN",
            addr,
            source,
        })?;
        Ok(Self { listener, db, directory, settings, tls, health })
    }

    /// The bound address (tests bind port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.listen)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let Self { listener, db, directory, settings, tls, health } = self;
        // Cancelled as the listener closes: `WatchEvents` streams then end with a status.
        let draining = tokio_util::sync::CancellationToken::new();
        let events = EventLog::start(
            db.clone(),
            "licensing",
            crate::domain::events::TYPES,
            settings.pages.clone(),
            settings.limits.event_log(),
            settings.clock.clone(),
            draining.clone(),
        );
        let api = Api::new(db.clone(), directory, settings.clock.clone(), settings.pages.clone());
        let max = settings.limits.max_message_bytes();
        let services = ServiceSet::new(draining.clone())
            .serve(api_server!(LicenseServiceServer, api.clone(), max))
            .serve(api_server!(ContentServiceServer, api.clone(), max))
            .serve(api_server!(BillingServiceServer, api.clone(), max))
            .serve(api_server!(
                EventsServer,
                EventsService::new(events.clone(), api, crate::api::convert::event_payload, draining.clone()),
                max
            ));
        tracing::info!(addr = %self_addr(&listener, settings.listen), identity = %settings.identity_url, "licensing serving");
        let (stop_housekeeping, stopped) = tokio::sync::watch::channel(false);
        // Licensing's gauges are its pools'; only when metrics are served.
        let gauges = roster_platform::metrics::installed().then(|| {
            let (db, stopped) = (db.clone(), stopped.clone());
            tokio::spawn(roster_platform::metrics::sample_every(Duration::from_secs(10), stopped, move || {
                roster_platform::metrics::sample_pools("licensing", &db);
                std::future::ready(Ok(()))
            }))
        });
        let housekeeping = tokio::spawn(crate::housekeeping::run(
            db.clone(),
            settings.clock.clone(),
            settings.saga_retry,
            events,
            stopped,
        ));
        let served =
            serve(listener, services, settings.verifier.clone(), &settings.limits, tls.as_deref(), health, shutdown)
                .await;
        let _ = stop_housekeeping.send(true);
        let _ = housekeeping.await;
        if let Some(gauges) = gauges {
            let _ = gauges.await;
        }
        db.close().await;
        tracing::info!("licensing stopped");
        served
    }
}

fn self_addr(listener: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(fallback)
}

/// The SQLite URL licensing uses inside a data directory.
pub fn embedded_database_url(data_dir: &std::path::Path) -> String {
    Database::sqlite_url(data_dir, "licensing")
}
