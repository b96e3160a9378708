//! Test harness: boots the real identity and licensing servers on `127.0.0.1:0`, each with a
//! fresh database of its own (SQLite files, or new PostgreSQL databases), sharing one key pair
//! and one manual clock, and gives typed clients and tokens.
//!
//! PostgreSQL: `ROSTER_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! when unreachable the PostgreSQL half of a test is skipped with a notice, unless `CI=true`.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use roster_identity::demo::Demo;
use roster_identity::domain::values::{AccountId, UserId};
use roster_identity::notify::Mailer;
use roster_platform::auth::{IDENTITY_SERVICE, KeyScope, LICENSING_SERVICE, Principal, SignerSet, Verifier};
use roster_platform::clock::{Clock, ManualClock, SharedClock};
use roster_platform::config::LimitArgs;
use roster_platform::db::Database;
use roster_proto::identity::v1 as idpb;
use roster_proto::licensing::v1 as pb;
use roster_testkit::FreshDatabase;
use roster_workflow::{EngineConfig, Faults};
// Each test binary uses a different subset.
#[allow(unused_imports)]
pub use roster_testkit::grpc::{authed, bad_field, product_code, reason, rid};
use tonic::transport::Channel;

pub use pb::billing_service_client::BillingServiceClient;
pub use pb::content_service_client::ContentServiceClient;
pub use pb::license_service_client::LicenseServiceClient;

pub const AUDIENCE: &str = "roster";
pub const ISSUER: &str = "roster";
/// A trusted service that is neither identity nor licensing.
pub const OTHER_SERVICE: &str = "reporting";
/// 2026-11-01T00:00:00Z; tests run on a manual clock.
pub const START_MS: i64 = 1_793_491_200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

pub struct TestApp {
    pub identity_channel: Channel,
    pub channel: Channel,
    pub identity_db: Database,
    pub db: Database,
    pub clock: Arc<ManualClock>,
    pub signers: SignerSet,
    pub backend: Backend,
    _dir: tempfile::TempDir,
    postgres: Vec<FreshDatabase>,
    servers: Vec<Running>,
    licensing_settings: roster_licensing::Settings,
}

async fn database_url(
    backend: Backend,
    dir: &std::path::Path,
    name: &str,
    fresh: &mut Vec<FreshDatabase>,
) -> Option<String> {
    Some(match backend {
        Backend::Sqlite => Database::sqlite_url(dir, name),
        Backend::Postgres => {
            let db = FreshDatabase::create().await?;
            let url = db.url.clone();
            fresh.push(db);
            url
        }
    })
}

fn spawn<F>(run: impl FnOnce(tokio::sync::oneshot::Receiver<()>) -> F) -> Running
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(stopped));
    Running { stop, task }
}

fn serve_licensing(server: roster_licensing::Server) -> Running {
    spawn(move |stopped| async move {
        server
            .run(async {
                let _ = stopped.await;
            })
            .await
            .expect("licensing serves");
    })
}

impl TestApp {
    /// Boots both services; `None` only for PostgreSQL when it is unreachable outside CI.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, None).await
    }

    /// Boots both services, with failures injected into identity's saga steps.
    pub async fn spawn_with(backend: Backend, faults: Option<Arc<dyn Faults>>) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut postgres = Vec::new();
        let identity_url = database_url(backend, dir.path(), "identity", &mut postgres).await?;
        let licensing_url = database_url(backend, dir.path(), "licensing", &mut postgres).await?;
        // Every party, plus a Roster service that is not identity (its calls are refused).
        let scopes = [KeyScope::all(), vec![KeyScope::Service(OTHER_SERVICE.into())]].concat();
        let (keys, signers) = SignerSet::generate(&dir.path().join("keys"), &scopes, AUDIENCE, ISSUER).expect("keys");
        let verifier = Arc::new(Verifier::from_jwks_file(&keys.jwks(), AUDIENCE, ISSUER).expect("verifier"));
        let clock = Arc::new(ManualClock::starting_at(START_MS));
        let shared: SharedClock = clock.clone();
        let limits = LimitArgs { shutdown_grace_ms: 2_000, ..LimitArgs::default() };

        let mut workflow = EngineConfig::new(format!("test-{}", rid()));
        workflow.poll_interval = Duration::from_millis(50);
        workflow.faults = faults;
        let mut identity = roster_identity::Server::build(roster_identity::Settings {
            listen: "127.0.0.1:0".parse().expect("addr"),
            database_url: identity_url,
            db_max_connections: 20,
            verifier: verifier.clone(),
            limits: limits.clone(),
            mailer: Mailer::Files(dir.path().join("mail")),
            outbox_poll: Duration::from_millis(50),
            clock: shared.clone(),
            dev_clock: None,
            licensing_url: "http://127.0.0.1:9".into(),
            signer: signers.signer(&KeyScope::Service(IDENTITY_SERVICE.into())),
            workflow,
            pages: roster_platform::pagination::PageTokens::random(),
            tls: Default::default(),
        })
        .await
        .expect("identity starts");
        let identity_addr = identity.local_addr();
        let identity_db = identity.database().clone();

        let licensing_settings = roster_licensing::Settings {
            listen: "127.0.0.1:0".parse().expect("addr"),
            database_url: licensing_url,
            db_max_connections: 20,
            verifier,
            limits,
            identity_url: format!("http://{identity_addr}"),
            signer: signers.signer(&KeyScope::Service(LICENSING_SERVICE.into())),
            directory_cache: Duration::from_millis(2_000),
            saga_retry: roster_platform::saga_retry::SagaRetry::default(),
            pages: roster_platform::pagination::PageTokens::random(),
            tls: Default::default(),
            clock: shared,
        };
        let licensing = roster_licensing::Server::build(licensing_settings.clone()).await.expect("licensing starts");
        let addr = licensing.local_addr();
        let licensing_settings = roster_licensing::Settings { listen: addr, ..licensing_settings };
        let db = licensing.database().clone();
        identity.set_licensing_url(format!("http://{addr}")).expect("licensing url");

        let servers = vec![
            spawn(move |stopped| async move {
                identity
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("identity serves");
            }),
            serve_licensing(licensing),
        ];
        let connect = |addr: std::net::SocketAddr| async move {
            Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect")
        };
        Some(Self {
            identity_channel: connect(identity_addr).await,
            channel: connect(addr).await,
            identity_db,
            db,
            clock,
            signers,
            backend,
            _dir: dir,
            postgres,
            servers,
            licensing_settings,
        })
    }

    pub fn licenses(&self) -> LicenseServiceClient<Channel> {
        LicenseServiceClient::new(self.channel.clone())
    }

    pub fn content(&self) -> ContentServiceClient<Channel> {
        ContentServiceClient::new(self.channel.clone())
    }

    pub fn billing(&self) -> BillingServiceClient<Channel> {
        BillingServiceClient::new(self.channel.clone())
    }

    pub fn identity_accounts(&self) -> idpb::account_service_client::AccountServiceClient<Channel> {
        idpb::account_service_client::AccountServiceClient::new(self.identity_channel.clone())
    }

    pub fn operations(&self) -> roster_proto::operations::v1::operations_client::OperationsClient<Channel> {
        roster_proto::operations::v1::operations_client::OperationsClient::new(self.identity_channel.clone())
    }

    pub fn identity_roles(&self) -> idpb::role_service_client::RoleServiceClient<Channel> {
        idpb::role_service_client::RoleServiceClient::new(self.identity_channel.clone())
    }

    pub fn identity_bulk(&self) -> idpb::bulk_service_client::BulkServiceClient<Channel> {
        idpb::bulk_service_client::BulkServiceClient::new(self.identity_channel.clone())
    }

    pub fn identity_users(&self) -> idpb::user_service_client::UserServiceClient<Channel> {
        idpb::user_service_client::UserServiceClient::new(self.identity_channel.clone())
    }

    pub fn token(&self, principal: &Principal) -> String {
        let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
        self.signers.mint(principal, now_s, 600)
    }

    pub fn user_token(&self, user_id: &str) -> String {
        self.token(&Principal::User { user_id: user_id.to_owned() })
    }

    pub fn operator_token(&self) -> String {
        self.token(&Principal::Operator { name: "support".into() })
    }

    /// The token identity's saga worker calls licensing with.
    pub fn identity_token(&self) -> String {
        self.token(&Principal::Service { name: "identity".into() })
    }

    /// Seeds identity's demo account (owner, two admins, two members, a pending invitee and a
    /// solo account), then deactivates the second member.
    pub async fn seed_world(&self) -> World {
        let tag = rid();
        let clock: SharedClock = self.clock.clone();
        let demo = roster_identity::demo::seed_with_domains(
            &self.identity_db,
            &clock,
            &format!("acme-{tag}.example"),
            &format!("solo-{tag}.example"),
        )
        .await
        .expect("seed identity");
        let serial = NEXT_PHONE.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        let phone = format!("+3120{serial:07}");
        let people = roster_licensing::demo::DemoPeople {
            account: demo.account_id.clone(),
            owner: demo.owner.id.clone(),
            admin: demo.admins[0].id.clone(),
            member: demo.members[0].id.clone(),
            contractor: None,
            solo_account: demo.solo.account_id.clone(),
            phone_numbers: [phone.clone(), format!("+3120{:07}", serial + 1)],
        };
        let seeded =
            roster_licensing::demo::seed(&self.db, &people, self.clock.now_ms()).await.expect("seed licensing");
        let deactivated = demo.members[1].id.clone();
        self.identity_users()
            .deactivate_user(authed(
                idpb::DeactivateUserRequest {
                    request_id: rid(),
                    account_id: demo.account_id.clone(),
                    user_id: deactivated.clone(),
                    validate_only: false,
                },
                &self.user_token(&demo.owner.id),
            ))
            .await
            .expect("deactivate");
        World {
            account: demo.account_id.clone(),
            owner: demo.owner.id.clone(),
            admin: demo.admins[0].id.clone(),
            second_admin: demo.admins[1].id.clone(),
            member: demo.members[0].id.clone(),
            deactivated,
            pending: demo.invitee.id.clone(),
            solo_account: demo.solo.account_id.clone(),
            solo_owner: demo.solo.owner.id.clone(),
            phone,
            subscription: seeded.subscription_id,
            demo,
        }
    }

    /// Sets the world's seats of `license_type` to `capacity`, as platform support would.
    pub async fn set_seats(&self, world: &World, license_type: pb::LicenseType, capacity: u32) {
        self.licenses()
            .set_seats(authed(
                pb::SetSeatsRequest {
                    request_id: rid(),
                    account_id: world.account.clone(),
                    license_type: license_type as i32,
                    capacity,
                },
                &self.operator_token(),
            ))
            .await
            .expect("set seats");
    }

    /// `n` more active members of the world's account.
    pub async fn add_members(&self, world: &World, n: usize) -> Vec<String> {
        let account = AccountId::parse(&world.account).expect("account id");
        let owner = UserId::parse(&world.owner).expect("owner id");
        let clock: SharedClock = self.clock.clone();
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let address = format!("extra{i}-{}@acme.example", rid());
            let id =
                roster_identity::demo::join(&self.identity_db, &clock, &account, &owner, &address).await.expect("join");
            members.push(id.to_string());
        }
        members
    }

    /// The owner unlinks `user`, with `transfer` if given; the operation as the call returns it.
    pub async fn unlink(
        &self,
        w: &World,
        user: &str,
        transfer: Option<idpb::ContentTransfer>,
    ) -> Result<roster_proto::operations::v1::Operation, tonic::Status> {
        let request = idpb::UnlinkUserRequest {
            request_id: rid(),
            account_id: w.account.clone(),
            user_id: user.into(),
            transfer,
            validate_only: false,
        };
        self.identity_users()
            .unlink_user(authed(request, &self.user_token(&w.owner)))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Stops licensing (an outage, as identity's sagas see it).
    pub async fn stop_licensing(&mut self) {
        let running = self.servers.remove(1);
        let _ = running.stop.send(());
        let _ = running.task.await;
    }

    /// Starts licensing again on the same address and database.
    pub async fn start_licensing(&mut self) {
        let server =
            roster_licensing::Server::build(self.licensing_settings.clone()).await.expect("licensing restarts");
        // The stopped server closed its pool; the test reads through the new one.
        self.db = server.database().clone();
        self.servers.insert(1, serve_licensing(server));
    }

    pub async fn stop(self) {
        for running in self.servers {
            let _ = running.stop.send(());
            let _ = running.task.await;
        }
        for fresh in self.postgres {
            fresh.drop_database().await;
        }
    }
}

/// Phone numbers unique across every world of a test process.
static NEXT_PHONE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000_000);

/// One demo account as seen by the tests.
#[derive(Debug, Clone)]
pub struct World {
    pub account: String,
    pub owner: String,
    pub admin: String,
    pub second_admin: String,
    pub member: String,
    pub deactivated: String,
    pub pending: String,
    pub solo_account: String,
    pub solo_owner: String,
    /// The phone number attached to the owner.
    pub phone: String,
    /// The solo account's paid subscription.
    pub subscription: String,
    pub demo: Demo,
}

/// Runs an async test body against SQLite and against PostgreSQL, as two test functions.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    let app = $crate::support::TestApp::spawn($crate::support::Backend::Sqlite).await.expect("sqlite");
                    super::$name(&app).await;
                    app.stop().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    if let Some(app) = $crate::support::TestApp::spawn($crate::support::Backend::Postgres).await {
                        super::$name(&app).await;
                        app.stop().await;
                    }
                }
            }
        )+
    };
}
