//! Building and running the identity server. Start-up order: bind, connect, migrate, health
//! SERVING, serve; shutdown in reverse (health NOT_SERVING, drain, stop background tasks,
//! close the database).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use roster_platform::api_server;
use roster_platform::auth::{Signer, Verifier};
use roster_platform::clock::SharedClock;
use roster_platform::config::{ConfigError, LimitArgs};
use roster_platform::db::{Backend, Database, redact};
use roster_platform::event_log::EventLog;
use roster_platform::event_log::serve::EventsService;
use roster_platform::pagination::PageTokens;
use roster_platform::saga_retry::SagaRetryArgs;
use roster_platform::server::{ServeError, ServiceSet, StartError, bind_health, serve};
use roster_platform::tls::{ServerTls, TlsArgs};
use roster_proto::dev::v1::clock_service_server::ClockServiceServer;
use roster_proto::events::v1::events_server::EventsServer;
use roster_proto::identity::v1::account_service_server::AccountServiceServer;
use roster_proto::identity::v1::bulk_service_server::BulkServiceServer;
use roster_proto::identity::v1::directory_service_server::DirectoryServiceServer;
use roster_proto::identity::v1::role_service_server::RoleServiceServer;
use roster_proto::identity::v1::user_service_server::UserServiceServer;
use roster_proto::operations::v1::operations_server::OperationsServer;
use roster_workflow::{Engine, EngineConfig};
use tokio::net::TcpListener;

use crate::api::Api;
use crate::dev_clock::{DevClock, KeptClock};
use crate::notify::{Dispatcher, Mailer, Smtp, SmtpConfigError};
use crate::sagas::{self, Licensing};
use crate::store::MIGRATIONS;

/// Identity's own settings, as flags and `ROSTER_IDENTITY_*` variables.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// Address the identity gRPC server listens on.
    #[arg(long = "identity-listen", env = "ROSTER_IDENTITY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// PostgreSQL URL; without it identity uses SQLite in the data directory.
    #[arg(long = "identity-database-url", env = "ROSTER_IDENTITY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// How often the outbox is polled for e-mails to send.
    #[arg(long = "outbox-poll-ms", env = "ROSTER_OUTBOX_POLL_MS", default_value_t = 1_000)]
    pub outbox_poll_ms: u64,
    /// Send e-mail through this SMTP server: `smtps://user:pass@host:465` (implicit TLS),
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS), or `smtp://host:25` (plain, for a
    /// relay on the same host). Unset, e-mails are written as files in the data directory.
    #[arg(long = "smtp-url", env = "ROSTER_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of every e-mail.
    #[arg(long = "mail-from", env = "ROSTER_MAIL_FROM", default_value = "Roster <noreply@roster.invalid>")]
    pub mail_from: String,
    #[command(flatten)]
    pub workflow: WorkflowArgs,
}

/// How a separately run identity (`roster serve identity`) reaches licensing; `roster up`
/// wires both itself and does not take these.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// Where licensing's gRPC API is (identity's sagas call its step RPCs). Calls are spread
    /// over every address the name resolves to (a headless Service: every replica), and over
    /// several URLs if given with commas.
    #[arg(long = "licensing-url", env = "ROSTER_LICENSING_URL", default_value = "http://127.0.0.1:50052")]
    pub licensing_url: String,
    /// Ed25519 private key (PEM) identity signs its own service tokens with; the JWKS the
    /// services trust must bind its public key to `service:identity`.
    #[arg(long = "service-signing-key", env = "ROSTER_SERVICE_SIGNING_KEY")]
    pub service_signing_key: Option<PathBuf>,
}

/// The saga worker's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkflowArgs {
    #[command(flatten)]
    pub retry: SagaRetryArgs,
    /// Sagas one replica drives at once. Sagas mostly wait on licensing and on commits, and
    /// hold a pooled connection only while they write, so this runs well above the pool size:
    /// 32 is where a bulk removal on the 2-core machine stops getting faster (README,
    /// "Measuring").
    #[arg(long = "workflow-concurrency", env = "ROSTER_WORKFLOW_CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub concurrency: u64,
    /// The fallback poll for due sagas when no notification arrives.
    #[arg(long = "workflow-poll-ms", env = "ROSTER_WORKFLOW_POLL_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub poll_ms: u64,
}

impl WorkflowArgs {
    /// The engine's configuration for this process; `database_url` turns on PostgreSQL
    /// wake-ups. Worker ids are unique per process start.
    pub fn engine_config(&self, database_url: &str) -> EngineConfig {
        let mut config =
            EngineConfig::new(format!("identity-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
        config.retry = self.retry.retry();
        config.concurrency = usize::try_from(self.concurrency).unwrap_or(8);
        config.poll_interval = Duration::from_millis(self.poll_ms);
        config.listen_url =
            (Backend::from_url(database_url) == Some(Backend::Postgres)).then(|| database_url.to_owned());
        config
    }
}

/// Everything needed to start identity, already validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub db_max_connections: u32,
    pub verifier: Arc<Verifier>,
    pub limits: LimitArgs,
    pub mailer: Mailer,
    pub outbox_poll: Duration,
    pub clock: SharedClock,
    /// The same clock when it may be moved ahead (`roster up --manual-clock`): identity then
    /// also serves `roster.dev.v1.ClockService` to move it. Never set by `roster serve`.
    pub dev_clock: Option<KeptClock>,
    pub licensing_url: String,
    /// Mints identity's service token for licensing.
    pub signer: Arc<Signer>,
    /// Seals and opens list page tokens.
    pub pages: PageTokens,
    pub workflow: EngineConfig,
    /// TLS on the port and to licensing; all off by default.
    pub tls: TlsArgs,
}

/// A bound, migrated identity server, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    db: Database,
    settings: Settings,
    licensing: Licensing,
    tls: Option<Arc<ServerTls>>,
    health: Option<TcpListener>,
}

impl Server {
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let listener = TcpListener::bind(settings.listen).await.map_err(|source| StartError::Bind {
            key: "ROSTER_IDENTITY_LISTEN",
            addr: settings.listen,
            source,
        })?;
        let db = Database::connect(&settings.database_url, settings.db_max_connections).await.map_err(|source| {
            StartError::Connect {
                key: "ROSTER_IDENTITY_DATABASE_URL",
                service: "identity",
                url: redact(&settings.database_url),
                source,
            }
        })?;
        db.migrate(MIGRATIONS).await.map_err(|source| StartError::Migrate { service: "identity", source })?;
        let licensing = Self::licensing(&settings)?;
        let tls = settings.tls.server()?;
        let health = bind_health(settings.tls.health_listen).await.map_err(|(addr, source)| StartError::Bind {
            key: "ROSTER_HEALTH_LISTEN",
            addr,
            source,
        })?;
        Ok(Self { listener, db, settings, licensing, tls, health })
    }

    fn licensing(settings: &Settings) -> Result<Licensing, StartError> {
        Licensing::new(&settings.licensing_url, settings.signer.clone(), settings.tls.client())
            .map_err(|e| StartError::Config(ConfigError::new("ROSTER_LICENSING_URL", e.to_string())))
    }

    /// Points the sagas at licensing's address when it is only known after binding (the
    /// all-in-one `roster up` and tests bind both services first).
    pub fn set_licensing_url(&mut self, url: impl Into<String>) -> Result<(), StartError> {
        self.settings.licensing_url = url.into();
        self.licensing = Self::licensing(&self.settings)?;
        Ok(())
    }

    /// The bound address (tests bind port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.listen)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Serves until `shutdown` resolves, then drains, stops the saga worker (handing its
    /// leases back) and the outbox dispatcher.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let Self { listener, db, settings, licensing, tls, health } = self;
        let per_account = usize::try_from(settings.limits.account_concurrency).unwrap_or(usize::MAX);
        let fair = Arc::new(roster_platform::fair::FairShare::new(per_account));
        let workflows = sagas::all(&licensing, &fair);
        let engine = Engine::new(db.clone(), settings.clock.clone(), settings.workflow.clone(), workflows);
        // Cancelled as the listener closes: `WatchOperation` streams then end with a status.
        let draining = tokio_util::sync::CancellationToken::new();
        let events = EventLog::start(
            db.clone(),
            "identity",
            crate::domain::events::TYPES,
            settings.pages.clone(),
            settings.limits.event_log(),
            settings.clock.clone(),
            draining.clone(),
        );
        let api = Api::new(
            db.clone(),
            settings.clock.clone(),
            engine.clone(),
            licensing,
            settings.pages.clone(),
            draining.clone(),
            fair,
        );
        let max = settings.limits.max_message_bytes();
        let services = ServiceSet::new(draining.clone())
            .serve(api_server!(AccountServiceServer, api.clone(), max))
            .serve(api_server!(UserServiceServer, api.clone(), max))
            .serve(api_server!(RoleServiceServer, api.clone(), max))
            .serve(api_server!(BulkServiceServer, api.clone(), max))
            .serve(api_server!(OperationsServer, api.clone(), max))
            .serve(api_server!(
                EventsServer,
                EventsService::new(events.clone(), api.clone(), crate::api::convert::event_payload, draining.clone()),
                max
            ))
            .serve(api_server!(DirectoryServiceServer, api, max));
        let services = match &settings.dev_clock {
            Some(clock) => services.serve(ClockServiceServer::new(DevClock::new(clock.clone(), engine.clone()))),
            None => services,
        };
        let (stop_background, background_stopped) = tokio::sync::watch::channel(false);
        let dispatcher = Dispatcher {
            db: db.clone(),
            mailer: settings.mailer.clone(),
            clock: settings.clock.clone(),
            poll_interval: settings.outbox_poll,
        };
        let outbox = tokio::spawn(dispatcher.run(background_stopped.clone()));
        let worker = tokio::spawn({
            let (engine, stopped) = (engine.clone(), background_stopped.clone());
            async move { engine.run(stopped).await }
        });
        // R20's sweep: often enough that a deletion is at most a minute late, on the saga
        // poll's scale so tests with a fast poll see it quickly.
        let sweep_every = (settings.workflow.poll_interval * 10).min(Duration::from_secs(60));
        let auto_delete = tokio::spawn(crate::app::auto_delete::run(
            db.clone(),
            settings.clock.clone(),
            engine.clone(),
            sweep_every,
            background_stopped.clone(),
        ));
        let gauges = roster_platform::metrics::installed()
            .then(|| tokio::spawn(crate::gauges::run(db.clone(), settings.clock.clone(), background_stopped.clone())));
        let housekeeping =
            tokio::spawn(crate::housekeeping::run(db.clone(), settings.clock.clone(), events, background_stopped));
        tracing::info!(addr = %listener.local_addr().map_or_else(|_| settings.listen.to_string(), |a| a.to_string()), "identity serving");
        let served =
            serve(listener, services, settings.verifier.clone(), &settings.limits, tls.as_deref(), health, shutdown)
                .await;
        let _ = stop_background.send(true);
        let _ = worker.await;
        let _ = outbox.await;
        let _ = housekeeping.await;
        let _ = auto_delete.await;
        if let Some(gauges) = gauges {
            let _ = gauges.await;
        }
        db.close().await;
        tracing::info!("identity stopped");
        served
    }
}

/// The SQLite URL identity uses inside a data directory.
pub fn embedded_database_url(data_dir: &std::path::Path) -> String {
    Database::sqlite_url(data_dir, "identity")
}

impl IdentityArgs {
    /// SMTP when a server is configured; the dev inbox in `data_dir` otherwise.
    pub fn mailer(&self, data_dir: &std::path::Path) -> Result<Mailer, ConfigError> {
        match &self.smtp_url {
            Some(url) => {
                Smtp::new(url, &self.mail_from).map(|smtp| Mailer::Smtp(Box::new(smtp))).map_err(|e| match e {
                    SmtpConfigError::Url(_) => ConfigError::new("ROSTER_SMTP_URL", e.to_string()),
                    SmtpConfigError::From(_) => ConfigError::new("ROSTER_MAIL_FROM", e.to_string()),
                })
            }
            None => Ok(Mailer::Files(dev_mail_dir(data_dir))),
        }
    }
}

/// The dev inbox inside a data directory.
pub fn dev_mail_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("mail")
}
