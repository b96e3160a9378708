//! Test harness: boots the real identity server on `127.0.0.1:0` with a fresh database
//! (a SQLite file, or a new PostgreSQL database), and gives typed clients and tokens.
//! Licensing runs beside it (on SQLite), since identity's sagas call it.
//!
//! PostgreSQL: `ROSTER_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! When it cannot be reached the PostgreSQL half of a test is skipped with a printed notice,
//! unless `CI=true`, where it fails. `TEST_LOG=1` turns server logs on.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use roster_identity::notify::Mailer;
use roster_identity::{Server, Settings};
use roster_platform::auth::{IDENTITY_SERVICE, KeyScope, LICENSING_SERVICE, Principal, SignerSet, Verifier};
use roster_platform::clock::{ManualClock, SharedClock};
use roster_platform::config::LimitArgs;
use roster_platform::db::Database;
use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use roster_testkit::FreshDatabase;
// Each test binary uses a different subset.
#[allow(unused_imports)]
pub use roster_testkit::grpc::{authed, bad_field, product_code, reason, rid};
use tonic::transport::Channel;

pub use pb::account_service_client::AccountServiceClient;
pub use pb::directory_service_client::DirectoryServiceClient;
pub use pb::role_service_client::RoleServiceClient;
pub use pb::user_service_client::UserServiceClient;

pub const AUDIENCE: &str = "roster";
pub const ISSUER: &str = "roster";
/// The sign-in front end, a service with a key of its own.
pub const AUTH_FRONTEND: &str = "auth-frontend";
/// 2026-11-01T00:00:00Z; tests run on a manual clock.
pub const START_MS: i64 = 1_793_491_200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub channel: Channel,
    pub db: Database,
    pub clock: Arc<ManualClock>,
    pub signers: SignerSet,
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    postgres_db: Option<FreshDatabase>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    licensing_stop: Option<tokio::sync::oneshot::Sender<()>>,
    licensing_task: Option<tokio::task::JoinHandle<()>>,
}

/// A database URL for `backend`: a SQLite file in `dir`, or a fresh PostgreSQL database
/// (with its name, to drop afterwards). `None` when PostgreSQL is unreachable outside CI.
async fn database_url(backend: Backend, dir: &std::path::Path) -> Option<(String, Option<FreshDatabase>)> {
    Some(match backend {
        Backend::Sqlite => (Database::sqlite_url(dir, "identity"), None),
        Backend::Postgres => {
            let fresh = FreshDatabase::create().await?;
            (fresh.url.clone(), Some(fresh))
        }
    })
}

/// A migrated database of its own, without a server (store tests).
pub struct TestDb {
    pub db: Database,
    pub backend: Backend,
    _dir: tempfile::TempDir,
    postgres_db: Option<FreshDatabase>,
}

impl TestDb {
    /// `None` only for PostgreSQL when it is unreachable outside CI.
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, postgres_db) = database_url(backend, dir.path()).await?;
        let db = Database::connect(&url, 10).await.expect("connect");
        db.migrate(roster_identity::store::MIGRATIONS).await.expect("migrate");
        Some(Self { db, backend, _dir: dir, postgres_db })
    }

    pub async fn drop_database(mut self) {
        self.db.close().await;
        drop_postgres_database(self.postgres_db.take()).await;
    }
}

async fn drop_postgres_database(fresh: Option<FreshDatabase>) {
    if let Some(fresh) = fresh {
        fresh.drop_database().await;
    }
}

/// Runs an async store test body against a bare SQLite and PostgreSQL database.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    let db = $crate::support::TestDb::new($crate::support::Backend::Sqlite).await.expect("sqlite");
                    super::$name(&db).await;
                    db.drop_database().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    if let Some(db) = $crate::support::TestDb::new($crate::support::Backend::Postgres).await {
                        super::$name(&db).await;
                        db.drop_database().await;
                    }
                }
            }
        )+
    };
}

impl TestApp {
    /// Boots identity on the given backend; `None` only for PostgreSQL when it is unreachable
    /// outside CI.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_mailing(backend, None).await
    }

    /// [`TestApp::spawn`] sending e-mail with `mailer` instead of writing files.
    pub async fn spawn_mailing(backend: Backend, mailer: Option<Mailer>) -> Option<Self> {
        Self::spawn_configured(backend, mailer, LimitArgs { shutdown_grace_ms: 2_000, ..LimitArgs::default() }).await
    }

    /// [`TestApp::spawn`] with `limits` of its own (both services).
    pub async fn spawn_configured(backend: Backend, mailer: Option<Mailer>, limits: LimitArgs) -> Option<Self> {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = tracing_subscriber_init();
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (database_url, postgres_db) = database_url(backend, dir.path()).await?;
        // Every party, plus the sign-in front end (a service that asks CheckSignIn).
        let scopes = [KeyScope::all(), vec![KeyScope::Service(AUTH_FRONTEND.into())]].concat();
        let (keys, signers) = SignerSet::generate(&dir.path().join("keys"), &scopes, AUDIENCE, ISSUER).expect("keys");
        let verifier = Verifier::from_jwks_file(&keys.jwks(), AUDIENCE, ISSUER).expect("verifier");
        let clock = Arc::new(ManualClock::starting_at(START_MS));
        let shared: SharedClock = clock.clone();
        let verifier = Arc::new(verifier);
        let mut workflow = roster_workflow::EngineConfig::new(format!("test-{}", rid()));
        workflow.poll_interval = Duration::from_millis(50);
        let settings = Settings {
            listen: "127.0.0.1:0".parse().expect("addr"),
            database_url,
            db_max_connections: 20,
            verifier: verifier.clone(),
            limits: limits.clone(),
            mailer: mailer.unwrap_or_else(|| Mailer::Files(dir.path().join("mail"))),
            outbox_poll: Duration::from_millis(20),
            clock: shared.clone(),
            dev_clock: None,
            licensing_url: "http://127.0.0.1:9".into(),
            signer: signers.signer(&KeyScope::Service(IDENTITY_SERVICE.into())),
            workflow,
            pages: roster_platform::pagination::PageTokens::random(),
            tls: Default::default(),
        };
        let mut server = Server::build(settings).await.expect("identity starts");
        let addr = server.local_addr();
        let licensing = roster_licensing::Server::build(roster_licensing::Settings {
            listen: "127.0.0.1:0".parse().expect("addr"),
            database_url: Database::sqlite_url(dir.path(), "licensing"),
            db_max_connections: 1,
            verifier,
            limits,
            identity_url: format!("http://{addr}"),
            signer: signers.signer(&KeyScope::Service(LICENSING_SERVICE.into())),
            directory_cache: Duration::from_millis(2_000),
            clock: shared,
            saga_retry: roster_platform::saga_retry::SagaRetry::default(),
            pages: roster_platform::pagination::PageTokens::random(),
            tls: Default::default(),
        })
        .await
        .expect("licensing starts");
        server.set_licensing_url(format!("http://{}", licensing.local_addr())).expect("licensing url");
        let (licensing_stop, licensing_stopped) = tokio::sync::oneshot::channel::<()>();
        let licensing_task = tokio::spawn(async move {
            licensing
                .run(async {
                    let _ = licensing_stopped.await;
                })
                .await
                .expect("licensing serves");
        });
        let db = server.database().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("identity serves");
        });
        let channel = Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect");
        Some(Self {
            addr,
            channel,
            db,
            clock,
            signers,
            dir,
            backend,
            postgres_db,
            stop: Some(stop),
            task: Some(task),
            licensing_stop: Some(licensing_stop),
            licensing_task: Some(licensing_task),
        })
    }

    pub fn accounts(&self) -> AccountServiceClient<Channel> {
        AccountServiceClient::new(self.channel.clone())
    }

    pub fn users(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.channel.clone())
    }

    pub fn directory(&self) -> DirectoryServiceClient<Channel> {
        DirectoryServiceClient::new(self.channel.clone())
    }

    pub fn operations(&self) -> ops::operations_client::OperationsClient<Channel> {
        ops::operations_client::OperationsClient::new(self.channel.clone())
    }

    pub fn bulk(&self) -> pb::bulk_service_client::BulkServiceClient<Channel> {
        pb::bulk_service_client::BulkServiceClient::new(self.channel.clone())
    }

    pub fn roles(&self) -> RoleServiceClient<Channel> {
        RoleServiceClient::new(self.channel.clone())
    }

    /// `by` deactivates `user` of `account`: the operation as the call returns it.
    pub async fn deactivate(&self, account: &str, by: &str, user: &str) -> Result<ops::Operation, tonic::Status> {
        self.users()
            .deactivate_user(authed(
                pb::DeactivateUserRequest {
                    request_id: rid(),
                    account_id: account.into(),
                    user_id: user.into(),
                    validate_only: false,
                },
                &self.user_token(by),
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    pub fn events(&self) -> roster_proto::events::v1::events_client::EventsClient<Channel> {
        roster_proto::events::v1::events_client::EventsClient::new(self.channel.clone())
    }

    fn now_s(&self) -> u64 {
        // Tokens are checked against the wall clock by the JWT library.
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs()
    }

    pub fn token(&self, principal: &Principal) -> String {
        self.signers.mint(principal, self.now_s(), 600)
    }

    pub fn user_token(&self, user_id: &str) -> String {
        self.token(&Principal::User { user_id: user_id.to_owned() })
    }

    pub fn operator_token(&self) -> String {
        self.token(&Principal::Operator { name: "support".into() })
    }

    pub fn service_token(&self) -> String {
        self.token(&Principal::Service { name: AUTH_FRONTEND.into() })
    }

    /// PostgreSQL only: ends every connection the services hold to their database (see
    /// `FreshDatabase::terminate_connections`); `None` on SQLite.
    pub async fn terminate_database_connections(&self) -> Option<i64> {
        Some(self.postgres_db.as_ref()?.terminate_connections().await)
    }

    /// Stops the server and drops a PostgreSQL test database.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(stop) = self.licensing_stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.licensing_task.take() {
            let _ = task.await;
        }
        drop_postgres_database(self.postgres_db.take()).await;
    }
}

/// A finished operation, or its refusal as a FAILED_PRECONDITION carrying the same reason
/// (so tests of refusals read alike whether identity or a saga step refused).
pub fn succeeded(operation: ops::Operation) -> Result<ops::Operation, tonic::Status> {
    assert!(operation.done, "the operation finished within the call: {operation:?}");
    match &operation.error {
        None => Ok(operation),
        Some(error) => {
            let metadata: std::collections::HashMap<String, String> =
                [("code".to_owned(), error.code.clone())].into_iter().filter(|(_, c)| !c.is_empty()).collect();
            let details = tonic_types::ErrorDetails::with_error_info(error.reason.clone(), "roster", metadata);
            Err(<tonic::Status as tonic_types::StatusExt>::with_error_details(
                tonic::Code::FailedPrecondition,
                error.message.clone(),
                details,
            ))
        }
    }
}

fn tracing_subscriber_init() -> Result<(), ()> {
    let args = roster_platform::config::TelemetryArgs {
        log_format: roster_platform::config::LogFormat::Text,
        log_filter: "info".into(),
    };
    // The log writer lives as long as the test process.
    roster_platform::telemetry::init(&args, None).map(std::mem::forget).map_err(|_| ())
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

/// The latest invitation code e-mailed to `email` (read from the outbox, as a mailbox would).
pub async fn invitation_code(app: &TestApp, email: &str) -> String {
    let mails = roster_identity::store::outbox::for_recipient(app.db.pool(), email).await.expect("outbox");
    mails
        .iter()
        .rev()
        .find_map(|(kind, _, body)| {
            (kind == "invitation")
                .then(|| body.lines().find_map(|l| l.strip_prefix("Invitation code: ").map(str::to_owned)))
                .flatten()
        })
        .expect("an invitation e-mail")
}

/// An account with one user of each kind, built over gRPC as a client would.
#[derive(Debug, Clone)]
pub struct World {
    pub account: String,
    pub owner: String,
    pub admin: String,
    pub member: String,
    pub deactivated: String,
    pub pending_user: String,
    pub pending_email: String,
    pub invitation_id: String,
    pub invitation_code: String,
    /// A custom role carrying manage-users, held by nobody.
    pub custom_role: String,
}

impl World {
    /// The address of the world's `who` ("owner", "admin", "member", ...).
    pub fn email_of(&self, who: &str) -> String {
        format!("{who}@{}", self.pending_email.split('@').nth(1).expect("domain"))
    }
}

impl TestApp {
    /// Bodies of the e-mails of `kind` sent to `email`, oldest first, read from the outbox as
    /// a mailbox would.
    pub async fn mails(&self, email: &str, kind: &str) -> Vec<String> {
        roster_identity::store::outbox::for_recipient(self.db.pool(), email)
            .await
            .expect("outbox")
            .into_iter()
            .filter(|(k, _, _)| k == kind)
            .map(|(_, _, body)| body)
            .collect()
    }

    pub async fn start_step_up(
        &self,
        account: &str,
        by: &str,
        purpose: pb::StepUpPurpose,
    ) -> Result<pb::StepUpChallenge, tonic::Status> {
        self.accounts()
            .start_step_up(authed(
                pb::StartStepUpRequest { request_id: rid(), account_id: account.into(), purpose: purpose as i32 },
                &self.user_token(by),
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn verify_step_up(
        &self,
        account: &str,
        by: &str,
        challenge: &str,
        code: &str,
    ) -> Result<String, tonic::Status> {
        self.accounts()
            .verify_step_up(authed(
                pb::VerifyStepUpRequest {
                    account_id: account.into(),
                    challenge_id: challenge.into(),
                    code: code.into(),
                },
                &self.user_token(by),
            ))
            .await
            .map(|r| r.into_inner().proof)
    }

    /// The last step-up code e-mailed to `email`.
    pub async fn step_up_code(&self, email: &str) -> String {
        self.mails(email, "step_up_code")
            .await
            .last()
            .and_then(|body| body.split_whitespace().nth(4).map(|c| c.trim_end_matches('.').to_owned()))
            .expect("a step-up code e-mail")
    }

    /// A fresh step-up proof for `purpose`, the way a client gets one (SPEC R10).
    pub async fn step_up_proof(&self, account: &str, by: &str, email: &str, purpose: pb::StepUpPurpose) -> String {
        let challenge = self.start_step_up(account, by, purpose).await.expect("start step-up");
        let code = self.step_up_code(email).await;
        self.verify_step_up(account, by, &challenge.challenge_id, &code).await.expect("verify step-up")
    }

    pub async fn request_ownership(&self, account: &str, by: &str) -> Result<pb::OwnershipRequest, tonic::Status> {
        self.accounts()
            .request_ownership(authed(
                pb::RequestOwnershipRequest { request_id: rid(), account_id: account.into() },
                &self.user_token(by),
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn create_account(&self, name: &str, owner_email: &str) -> (String, String) {
        let account = self
            .accounts()
            .create_account(authed(
                pb::CreateAccountRequest {
                    request_id: rid(),
                    name: name.into(),
                    plan: pb::Plan::Pro as i32,
                    owner_email: owner_email.into(),
                    ..Default::default()
                },
                &self.operator_token(),
            ))
            .await
            .expect("create account")
            .into_inner();
        let owner = account.owner.expect("owner").user_id;
        (account.id, owner)
    }

    pub async fn invite(&self, account: &str, by: &str, email: &str) -> pb::Invitation {
        self.users()
            .invite_user(authed(
                pb::InviteUserRequest {
                    request_id: rid(),
                    account_id: account.into(),
                    email: email.into(),
                    ..Default::default()
                },
                &self.user_token(by),
            ))
            .await
            .expect("invite")
            .into_inner()
    }

    /// Accepts and returns the operation, or the saga's refusal as the status a synchronous
    /// call would have returned.
    pub async fn accept(&self, user: &str, code: &str) -> Result<ops::Operation, tonic::Status> {
        self.users()
            .accept_invitation(authed(
                pb::AcceptInvitationRequest { request_id: rid(), code: code.into() },
                &self.user_token(user),
            ))
            .await
            .and_then(|r| succeeded(r.into_inner()))
    }

    /// The operation once it is done, read as `by` every 50 ms for up to 20 s.
    pub async fn operation_when_done(&self, by: &str, id: &str) -> ops::Operation {
        for _ in 0..400 {
            let request = ops::GetOperationRequest { operation_id: id.into() };
            let operation =
                self.operations().get_operation(authed(request, &self.user_token(by))).await.expect("get").into_inner();
            if operation.done {
                return operation;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("operation {id} did not finish in 20 s");
    }

    /// Invites and accepts; returns the new active member's id.
    pub async fn join(&self, account: &str, owner: &str, email: &str) -> String {
        let invitation = self.invite(account, owner, email).await;
        let code = invitation_code(self, email).await;
        self.accept(&invitation.user_id, &code).await.expect("accept");
        invitation.user_id
    }

    pub async fn assign_role(
        &self,
        account: &str,
        by: &str,
        user: &str,
        role_id: &str,
    ) -> Result<pb::User, tonic::Status> {
        self.roles()
            .assign_role(authed(
                pb::AssignRoleRequest {
                    request_id: rid(),
                    account_id: account.into(),
                    user_id: user.into(),
                    role_id: role_id.into(),
                },
                &self.user_token(by),
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn transfer(&self, account: &str, by: &str, to: &str) -> Result<ops::Operation, tonic::Status> {
        self.accounts()
            .transfer_ownership(authed(
                pb::TransferOwnershipRequest {
                    request_id: rid(),
                    account_id: account.into(),
                    new_owner_user_id: to.into(),
                    confirm_phone_transfer: false,
                },
                &self.user_token(by),
            ))
            .await
            .and_then(|r| succeeded(r.into_inner()))
    }

    pub async fn get_user(&self, account: &str, by: &str, user: &str) -> pb::User {
        self.users()
            .get_user(authed(
                pb::GetUserRequest { account_id: account.into(), user_id: user.into() },
                &self.user_token(by),
            ))
            .await
            .expect("get user")
            .into_inner()
    }

    /// Owners of an account, counted in the database itself.
    pub async fn owner_count(&self, account: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE account_id = $1 AND role = 'owner'")
            .bind(account)
            .fetch_one(self.db.pool())
            .await
            .expect("count owners")
    }

    pub async fn seed_world(&self, tag: &str) -> World {
        let domain = format!("{tag}.example");
        let (account, owner) = self.create_account(&format!("World {tag}"), &format!("owner@{domain}")).await;
        let admin = self.join(&account, &owner, &format!("admin@{domain}")).await;
        self.assign_role(&account, &owner, &admin, "admin").await.expect("promote");
        let member = self.join(&account, &owner, &format!("member@{domain}")).await;
        let deactivated = self.join(&account, &owner, &format!("gone@{domain}")).await;
        self.users()
            .deactivate_user(authed(
                pb::DeactivateUserRequest {
                    request_id: rid(),
                    account_id: account.clone(),
                    user_id: deactivated.clone(),
                    validate_only: false,
                },
                &self.user_token(&owner),
            ))
            .await
            .expect("deactivate");
        let pending_email = format!("pending@{domain}");
        let invitation = self.invite(&account, &owner, &pending_email).await;
        let invitation_code = invitation_code(self, &pending_email).await;
        let custom_role = self
            .roles()
            .create_role(authed(
                pb::CreateRoleRequest {
                    request_id: rid(),
                    account_id: account.clone(),
                    name: "Helpdesk".into(),
                    privileges: vec![pb::Privilege::ManageUsers as i32],
                },
                &self.user_token(&owner),
            ))
            .await
            .expect("create role")
            .into_inner()
            .id;
        World {
            account,
            owner,
            admin,
            member,
            deactivated,
            pending_user: invitation.user_id,
            pending_email,
            invitation_id: invitation.id,
            invitation_code,
            custom_role,
        }
    }
}
