//! Driving the real `roster` binary: start it as a process, wait for health, list services
//! by reflection, read the demo's tokens, stop it with SIGTERM.

pub mod scrape;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use roster_platform::auth::{IDENTITY_SERVICE, KeyDir, KeyScope, LICENSING_SERVICE};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The `roster` binary beside this test executable (`ROSTER_BIN` overrides).
pub fn roster_binary() -> PathBuf {
    if let Ok(path) = std::env::var("ROSTER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let binary = dir.join("roster");
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build --bin roster` (cargo test --workspace does)",
        binary.display()
    );
    binary
}

/// A loopback port that was free a moment ago (see `roster_testkit::unused_port`).
pub use roster_testkit::unused_port as free_port;

/// The trusted JWKS, `service`'s own private key and the page-token keys in `keys`, as paths
/// for the environment.
fn service_keys(keys: &KeyDir, service: &str) -> (String, String, String) {
    let path = |p: PathBuf| p.to_str().expect("utf-8 path").to_owned();
    (path(keys.jwks()), path(keys.private_key(&KeyScope::Service(service.to_owned()))), path(keys.page_token_keys()))
}

/// A running `roster` process; killed when dropped unless it already exited.
#[derive(Debug)]
pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
    /// Licensing's address, for `roster up`.
    pub licensing: Option<SocketAddr>,
}

impl Process {
    /// Starts `roster <args>` with the data directory and identity listen address set (and, for
    /// `roster up`, a free licensing address).
    pub fn start(data_dir: &Path, addr: SocketAddr, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_listening(data_dir, "--identity-listen", addr, args, env)
    }

    /// `roster serve identity` on `addr` with its database at `database_url`, verifying tokens
    /// with `keys`, signing its own with them, its sagas calling licensing at `licensing`.
    /// `extra` adds or overrides settings.
    pub fn serve_identity(
        data_dir: &Path,
        addr: SocketAddr,
        database_url: &str,
        keys: &KeyDir,
        licensing: SocketAddr,
        extra: &[(&str, &str)],
    ) -> Self {
        let licensing_url = format!("http://{licensing}");
        let (jwks, signing_key, page_keys) = service_keys(keys, IDENTITY_SERVICE);
        let mut env = vec![
            ("ROSTER_IDENTITY_DATABASE_URL", database_url),
            ("ROSTER_JWKS", jwks.as_str()),
            ("ROSTER_PAGE_TOKEN_KEYS", page_keys.as_str()),
            ("ROSTER_SERVICE_SIGNING_KEY", signing_key.as_str()),
            ("ROSTER_LICENSING_URL", licensing_url.as_str()),
        ];
        env.extend_from_slice(extra);
        Self::start(data_dir, addr, &["serve", "identity"], &env)
    }

    /// `roster serve licensing` on `addr`, asking identity at `identity` who callers are; its
    /// database at `database_url`, or SQLite in `data_dir` when `None`; `extra` adds to or
    /// overrides the environment.
    pub fn serve_licensing(
        data_dir: &Path,
        addr: SocketAddr,
        database_url: Option<&str>,
        keys: &KeyDir,
        identity: SocketAddr,
        extra: &[(&str, &str)],
    ) -> Self {
        let identity_url = format!("http://{identity}");
        let (jwks, signing_key, page_keys) = service_keys(keys, LICENSING_SERVICE);
        let mut env = vec![
            ("ROSTER_JWKS", jwks.as_str()),
            ("ROSTER_PAGE_TOKEN_KEYS", page_keys.as_str()),
            ("ROSTER_SERVICE_SIGNING_KEY", signing_key.as_str()),
            ("ROSTER_IDENTITY_URL", identity_url.as_str()),
        ];
        env.extend(database_url.map(|url| ("ROSTER_LICENSING_DATABASE_URL", url)));
        env.extend_from_slice(extra);
        Self::start_listening(data_dir, "--licensing-listen", addr, &["serve", "licensing"], &env)
    }

    fn start_listening(
        data_dir: &Path,
        listen_flag: &str,
        addr: SocketAddr,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(roster_binary());
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .arg(listen_flag)
            .arg(addr.to_string())
            .env("ROSTER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let licensing = (args.first() == Some(&"up")).then(|| {
            let licensing = SocketAddr::from(([127, 0, 0, 1], free_port()));
            command.arg("--licensing-listen").arg(licensing.to_string());
            licensing
        });
        for (key, value) in env {
            command.env(key, value);
        }
        Self { child: command.spawn().expect("roster starts"), addr, licensing }
    }

    /// `roster up --demo` on fresh ports.
    pub fn up_demo(data_dir: &Path) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Self::start(data_dir, addr, &["up", "--demo"], &[])
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self, within: Duration) -> Result<ExitStatus, Error> {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status()?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(format!("no exit within {within:?} of SIGTERM").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub async fn channel(addr: SocketAddr) -> Result<Channel, Error> {
    Ok(Channel::from_shared(format!("http://{addr}"))?.connect_timeout(Duration::from_secs(2)).connect().await?)
}

/// Waits until `grpc.health.v1` reports the whole server SERVING.
pub async fn wait_serving(addr: SocketAddr, within: Duration) -> Result<Channel, Error> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(channel) = channel(addr).await {
            let mut health = HealthClient::new(channel.clone());
            let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
            if let Ok(response) = health.check(request).await
                && response.into_inner().status == ServingStatus::Serving as i32
            {
                return Ok(channel);
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{addr} not SERVING within {within:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Service names reflection (v1) lists.
pub async fn list_services(channel: Channel) -> Result<Vec<String>, Error> {
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client.server_reflection_info(futures_util::stream::iter([request])).await?.into_inner();
    let response = responses.message().await?.ok_or("reflection sent no answer")?;
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => Ok(list.service.into_iter().map(|s| s.name).collect()),
        other => Err(format!("unexpected reflection answer {other:?}").into()),
    }
}

/// The `export KEY=value` lines `roster up --demo` writes, waiting for the file to appear.
pub async fn demo_env(data_dir: &Path, within: Duration) -> Result<HashMap<String, String>, Error> {
    let file = data_dir.join("demo.env");
    let deadline = Instant::now() + within;
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let env: HashMap<String, String> = text
                .lines()
                .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            if env.contains_key("OPERATOR_TOKEN") {
                return Ok(env);
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{} did not appear within {within:?}", file.display()).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A request carrying `token` as its bearer.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    request
}

/// An operator's new Business account named `name`, owned by `owner_email`: its id and its
/// owner's user id.
pub async fn create_account(channel: &Channel, operator: &str, name: &str, owner_email: &str) -> (String, String) {
    use roster_proto::identity::v1 as pb;
    let created = pb::account_service_client::AccountServiceClient::new(channel.clone())
        .create_account(authed(
            pb::CreateAccountRequest {
                request_id: format!("e2e-create-{owner_email}"),
                name: name.to_owned(),
                plan: pb::Plan::Business as i32,
                owner_email: owner_email.to_owned(),
                ..Default::default()
            },
            operator,
        ))
        .await
        .expect("create the account")
        .into_inner();
    (created.id, created.owner.expect("an owner").user_id)
}

/// `email` invited into `account` by `inviter` and accepted, with the code read from
/// identity's outbox (`identity_db`, where the invitation e-mail waits); `token_of` mints a
/// user's token. Returns the new member's user id.
pub async fn join(
    channel: &Channel,
    identity_db: &mut sqlx::AnyConnection,
    account: &str,
    email: &str,
    inviter: &str,
    token_of: impl Fn(&str) -> String,
) -> String {
    use roster_proto::identity::v1 as pb;
    let mut users = pb::user_service_client::UserServiceClient::new(channel.clone());
    let invitation = users
        .invite_user(authed(
            pb::InviteUserRequest {
                request_id: format!("e2e-invite-{email}"),
                account_id: account.to_owned(),
                email: email.to_owned(),
                ..Default::default()
            },
            inviter,
        ))
        .await
        .expect("invite")
        .into_inner();
    let body: String = sqlx::query_scalar("SELECT body FROM outbox WHERE recipient = $1 AND kind = 'invitation'")
        .bind(email)
        .fetch_one(&mut *identity_db)
        .await
        .expect("the invitation e-mail");
    let code = body.lines().find_map(|l| l.strip_prefix("Invitation code: ")).expect("a code").to_owned();
    let accepted = users
        .accept_invitation(authed(
            pb::AcceptInvitationRequest { request_id: format!("e2e-accept-{email}"), code },
            &token_of(&invitation.user_id),
        ))
        .await
        .expect("accept")
        .into_inner();
    assert!(accepted.done && accepted.error.is_none(), "{accepted:?}");
    invitation.user_id
}

/// Keys for every kind of principal, written under `dir/keys` for the processes, and tokens
/// minted with them for the test's calls (valid for ten minutes).
pub struct TestKeys {
    pub dir: KeyDir,
    signer: roster_platform::auth::SignerSet,
}

impl TestKeys {
    pub fn generate(dir: &Path) -> Self {
        let (keys, signer) =
            roster_platform::auth::SignerSet::generate(&dir.join("keys"), &KeyScope::all(), "roster", "roster")
                .expect("keys");
        Self { dir: keys, signer }
    }

    pub fn token(&self, principal: &roster_platform::auth::Principal) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
        self.signer.mint(principal, now, 600)
    }

    pub fn user(&self, user_id: &str) -> String {
        self.token(&roster_platform::auth::Principal::User { user_id: user_id.to_owned() })
    }

    pub fn operator(&self) -> String {
        self.token(&roster_platform::auth::Principal::Operator { name: "e2e".into() })
    }
}

/// The SQLite URL of identity's database in `data_dir`, which is created.
pub fn identity_sqlite(data_dir: &Path) -> String {
    std::fs::create_dir_all(data_dir).expect("identity's data directory");
    roster_platform::db::Database::sqlite_url(data_dir, "identity")
}
