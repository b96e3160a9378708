//! Issue 23: PostgreSQL restarted under load, as a switchover or a crash would. The test starts a
//! throwaway cluster of its own (`initdb`, `pg_ctl`, on a port of its own), runs both services on
//! it (`roster serve`, e-mail over SMTP to a real server), drives a bounded mixed load (reads,
//! invitations, deactivate and reactivate sagas), and restarts PostgreSQL twice: in `fast` mode,
//! then in `immediate` mode (no shutdown checkpoint, as after a crash). It checks that:
//! - no call is ever answered `INTERNAL` (or `UNKNOWN`): during an outage `UNAVAILABLE`, or
//!   `DEADLINE_EXCEEDED` for calls already waiting;
//! - a few seconds after PostgreSQL accepts connections again, every call succeeds, without
//!   restarting Roster;
//! - every operation started reaches a final state, with each of its steps applied once in
//!   licensing (one reclaim or restore record per step);
//! - every e-mail the outbox holds is delivered, and none twice.
//!
//! Without PostgreSQL's server programs (or a Python with aiosmtpd) it says SKIPPED, unless
//! `CI=true`, where it fails.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use roster_e2e::{Process, TestKeys, authed, free_port, wait_serving};
use roster_proto::identity::v1 as pb;
use roster_proto::licensing::v1 as lpb;
use roster_proto::operations::v1 as ops;
use roster_testkit::smtp::{self, SmtpSink};
use sqlx::Connection;
use tonic::Code;
use tonic::transport::Channel;

const START: Duration = Duration::from_secs(60);
/// Every call of the load gives up after this (DEADLINE_EXCEEDED), as a client would.
const CALL_DEADLINE: Duration = Duration::from_secs(3);
/// How soon after PostgreSQL is back every call must succeed.
const RECOVERY: Duration = Duration::from_secs(5);

/// A PostgreSQL cluster of the test's own: a data directory, a port, and the server programs.
struct Cluster {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    /// PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user.
    as_postgres: bool,
}

fn required(what: &str) {
    assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "required when CI=true: {what}");
    roster_testkit::skipped(&format!("the PostgreSQL restart test ({what})"));
}

impl Cluster {
    /// `initdb` and start; `None` (after saying so) without the server programs.
    fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
            .find(|bin| bin.join("pg_ctl").exists() && bin.join("initdb").exists());
        let Some(bin) = bin else {
            required("no initdb and pg_ctl under /usr/lib/postgresql/*/bin");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let as_postgres = Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0\n"));
        if as_postgres {
            let dir_path = dir.path().to_str().expect("utf-8 path");
            run(Command::new("chown").args(["postgres:postgres", dir_path]));
        }
        let cluster = Self { data, bin, port: free_port(), as_postgres, _dir: dir };
        cluster.run("initdb", &["-D", cluster.data(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        cluster.pg_ctl(&["start", "-w", "-t", "60"]);
        Some(cluster)
    }

    fn data(&self) -> &str {
        self.data.to_str().expect("utf-8 path")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        run(self.command(program).args(args));
    }

    /// `pg_ctl` on this cluster: its port, its socket directory, no fsync (a test's data).
    fn pg_ctl(&self, args: &[&str]) {
        let options = format!("-p {} -k {} -c fsync=off -c listen_addresses=127.0.0.1", self.port, self.data());
        let log = self.data.join("server.log");
        let mut command = self.command("pg_ctl");
        command.args(["-D", self.data(), "-o", &options, "-l", log.to_str().expect("utf-8 path")]).args(args);
        run(&mut command);
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops in `mode` (`fast`, `immediate`), keeps PostgreSQL down for `down`, starts again.
    fn restart(&self, mode: &str, down: Duration) {
        self.pg_ctl(&["stop", "-m", mode, "-w"]);
        std::thread::sleep(down);
        self.pg_ctl(&["start", "-w", "-t", "60"]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").args(["-D", self.data(), "stop", "-m", "immediate"]).output();
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("the command runs");
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// One call of the load: which, when it started (since the load began), how it ended.
#[derive(Debug, Clone)]
struct Answer {
    rpc: &'static str,
    at: Duration,
    code: Code,
    message: String,
}

/// What the load needs: the clients, an account, its owner's token, and users to act on.
#[derive(Clone)]
struct World {
    identity: Channel,
    licensing: Channel,
    account: String,
    owner: String,
    owner_token: String,
    /// One user per saga caller, deactivated and reactivated in turn.
    members: Vec<String>,
}

/// The call's deadline, sent to the server (`grpc-timeout`), which answers `DEADLINE_EXCEEDED`
/// just before it passes. tonic's client enforces the header too: when the server's answer
/// comes later than that (a loaded machine), the client's own timer ends the call first, and
/// tonic reports that as `CANCELLED` "Timeout expired" (see `note`).
fn deadline<T>(request: tonic::Request<T>) -> tonic::Request<T> {
    let mut request = request;
    let timeout = format!("{}m", CALL_DEADLINE.as_millis()).parse().expect("a header value");
    request.metadata_mut().insert("grpc-timeout", timeout);
    request
}

/// Runs the callers until `stop`, noting every answer and every operation started.
async fn load(world: World, began: Instant, stop: Arc<AtomicBool>) -> (Vec<Answer>, Vec<String>) {
    let mut tasks = Vec::new();
    let note = |rpc: &'static str, at: Duration, result: Result<(), tonic::Status>| match result {
        Ok(()) => Answer { rpc, at, code: Code::Ok, message: String::new() },
        // The caller's own deadline, passed on the client side: gRPC calls that
        // DEADLINE_EXCEEDED; tonic's client says CANCELLED "Timeout expired".
        Err(status) if status.code() == Code::Cancelled && status.message() == "Timeout expired" => {
            Answer { rpc, at, code: Code::DeadlineExceeded, message: "the client's deadline passed".to_owned() }
        }
        Err(status) => Answer { rpc, at, code: status.code(), message: status.message().to_owned() },
    };
    // Two readers: identity's users, licensing's seats.
    for reader in 0..2 {
        let (world, stop) = (world.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut answers, operations) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let at = began.elapsed();
                let result = if reader == 0 {
                    let request =
                        pb::GetUserRequest { account_id: world.account.clone(), user_id: world.owner.clone() };
                    pb::user_service_client::UserServiceClient::new(world.identity.clone())
                        .get_user(deadline(authed(request, &world.owner_token)))
                        .await
                        .map(drop)
                } else {
                    let request = lpb::ListSeatsRequest { account_id: world.account.clone() };
                    lpb::license_service_client::LicenseServiceClient::new(world.licensing.clone())
                        .list_seats(deadline(authed(request, &world.owner_token)))
                        .await
                        .map(drop)
                };
                answers.push(note(if reader == 0 { "GetUser" } else { "ListSeats" }, at, result));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (answers, operations)
        }));
    }
    // An inviter: every invitation puts an e-mail in the outbox.
    {
        let (world, stop) = (world.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut answers, operations) = (Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let at = began.elapsed();
                let request = pb::InviteUserRequest {
                    request_id: format!("failover-invite-{n}"),
                    account_id: world.account.clone(),
                    email: format!("invitee-{n}@failover.example"),
                    ..Default::default()
                };
                let mut users = pb::user_service_client::UserServiceClient::new(world.identity.clone());
                let result = users.invite_user(deadline(authed(request, &world.owner_token))).await.map(drop);
                // A failed invitation is retried with the same request id, as a client would.
                if result.is_ok() {
                    n += 1;
                }
                answers.push(note("InviteUser", at, result));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (answers, operations)
        }));
    }
    // Saga callers: each deactivates and reactivates its own member in turn.
    for member in world.members.clone() {
        let (world, stop) = (world.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut answers, mut operations) = (Vec::new(), Vec::new());
            let (mut n, mut active) = (0, true);
            while !stop.load(Ordering::Relaxed) {
                let at = began.elapsed();
                let mut users = pb::user_service_client::UserServiceClient::new(world.identity.clone());
                let request_id = format!("failover-{member}-{n}");
                let (rpc, answer) = if active {
                    let request = pb::DeactivateUserRequest {
                        request_id,
                        account_id: world.account.clone(),
                        user_id: member.clone(),
                        validate_only: false,
                    };
                    ("DeactivateUser", users.deactivate_user(deadline(authed(request, &world.owner_token))).await)
                } else {
                    let request = pb::ReactivateUserRequest {
                        request_id,
                        account_id: world.account.clone(),
                        user_id: member.clone(),
                        restore_licenses: true,
                    };
                    ("ReactivateUser", users.reactivate_user(deadline(authed(request, &world.owner_token))).await)
                };
                match answer {
                    Ok(operation) => {
                        let operation = operation.into_inner();
                        operations.push(operation.id.clone());
                        answers.push(note(rpc, at, Ok(())));
                        // The next change waits for this one (one operation per user at a time).
                        wait_done(&world, &operation.id, &stop).await;
                        n += 1;
                        active = !active;
                    }
                    Err(status) => answers.push(note(rpc, at, Err(status))),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (answers, operations)
        }));
    }
    let mut answers = Vec::new();
    let mut operations = Vec::new();
    for task in tasks {
        let (some, started) = task.await.expect("a caller");
        answers.extend(some);
        operations.extend(started);
    }
    (answers, operations)
}

/// Polls the operation until it is done (or the load stops), ignoring failed polls.
async fn wait_done(world: &World, id: &str, stop: &AtomicBool) -> Option<ops::Operation> {
    let mut client = ops::operations_client::OperationsClient::new(world.identity.clone());
    while !stop.load(Ordering::Relaxed) {
        let request = ops::GetOperationRequest { operation_id: id.to_owned() };
        if let Ok(operation) = client.get_operation(deadline(authed(request, &world.owner_token))).await {
            let operation = operation.into_inner();
            if operation.done {
                return Some(operation);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn setup(identity: Channel, licensing: Channel, keys: Arc<TestKeys>, identity_url: &str, savers: usize) -> World {
    let operator = keys.operator();
    sqlx::any::install_default_drivers();
    let mut identity_db = sqlx::AnyConnection::connect(identity_url).await.expect("identity's database");
    let (account, owner) = roster_e2e::create_account(&identity, &operator, "Failover", "owner@failover.example").await;
    let owner_token = keys.user(&owner);
    let seats = lpb::SetSeatsRequest {
        request_id: "failover-seats".into(),
        account_id: account.clone(),
        license_type: lpb::LicenseType::Licensed as i32,
        capacity: 100,
    };
    let mut licenses = lpb::license_service_client::LicenseServiceClient::new(licensing.clone());
    licenses.set_seats(authed(seats, &operator)).await.expect("seats");
    let mut members = Vec::new();
    for n in 0..savers {
        let email = format!("member-{n}@failover.example");
        let member =
            roster_e2e::join(&identity, &mut identity_db, &account, &email, &owner_token, |user| keys.user(user)).await;
        let assign = lpb::AssignLicenseRequest {
            request_id: format!("failover-license-{n}"),
            account_id: account.clone(),
            user_id: member.clone(),
            license_type: lpb::LicenseType::Licensed as i32,
        };
        licenses.assign_license(authed(assign, &owner_token)).await.expect("a license");
        members.push(member);
    }
    World { identity, licensing, account, owner, owner_token, members }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_postgresql_is_ridden_out_without_losing_anything() {
    if !smtp::available() {
        return;
    }
    let Some(cluster) = tokio::task::spawn_blocking(Cluster::start).await.expect("join") else { return };
    let cluster = Arc::new(cluster);
    let mut admin = sqlx::PgConnection::connect(&cluster.url("postgres")).await.expect("the cluster answers");
    for database in ["identity", "licensing"] {
        sqlx::query(&format!("CREATE DATABASE {database}")).execute(&mut admin).await.expect("create");
    }
    admin.close().await.ok();
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = Arc::new(TestKeys::generate(dir.path()));
    let sink = SmtpSink::start(free_port());
    let smtp_url = format!("smtp://127.0.0.1:{}", sink.port);
    let (identity_addr, licensing_addr) =
        (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())));
    let service_env = [
        ("ROSTER_SMTP_URL", smtp_url.as_str()),
        ("ROSTER_OUTBOX_POLL_MS", "200"),
        ("ROSTER_WORKFLOW_POLL_MS", "200"),
        ("ROSTER_DB_MAX_CONNECTIONS", "8"),
    ];
    let identity_url = cluster.url("identity");
    let licensing_url = cluster.url("licensing");
    let _identity = Process::serve_identity(
        &dir.path().join("identity"),
        identity_addr,
        &identity_url,
        &keys.dir,
        licensing_addr,
        &service_env,
    );
    let _licensing = Process::serve_licensing(
        &dir.path().join("licensing"),
        licensing_addr,
        Some(&licensing_url),
        &keys.dir,
        identity_addr,
        &service_env,
    );
    let identity = wait_serving(identity_addr, START).await.expect("identity");
    let licensing = wait_serving(licensing_addr, START).await.expect("licensing");
    let world = setup(identity, licensing, keys, &identity_url, 3).await;

    let began = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(world.clone(), began, stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut outages = Vec::new();
    // A short outage, which waiting for a connection rides out; then one longer than a call's
    // deadline, which calls waiting for it see as DEADLINE_EXCEEDED.
    for (mode, down) in [("fast", Duration::from_secs(2)), ("immediate", CALL_DEADLINE + Duration::from_secs(2))] {
        let down_from = began.elapsed();
        let restart = tokio::task::spawn_blocking({
            let cluster = cluster.clone();
            move || cluster.restart(mode, down)
        });
        restart.await.expect("restarted");
        let back_at = began.elapsed();
        outages.push((mode, down_from, back_at));
        tokio::time::sleep(RECOVERY + Duration::from_secs(3)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (answers, operations) = running.await.expect("the load");

    // 1. Never INTERNAL; only UNAVAILABLE or DEADLINE_EXCEEDED while PostgreSQL was away.
    let wrong: Vec<&Answer> =
        answers.iter().filter(|a| !matches!(a.code, Code::Ok | Code::Unavailable | Code::DeadlineExceeded)).collect();
    assert!(wrong.is_empty(), "answers other than OK, UNAVAILABLE or DEADLINE_EXCEEDED: {wrong:#?}");
    // 2. A few seconds after it is back, everything succeeds.
    let in_recovery =
        |at: Duration| outages.iter().any(|(_, down, back)| at + CALL_DEADLINE >= *down && at < *back + RECOVERY);
    let late: Vec<&Answer> = answers.iter().filter(|a| a.code != Code::Ok && !in_recovery(a.at)).collect();
    assert!(late.is_empty(), "failed calls outside the outages and {RECOVERY:?} after: {late:#?}; outages {outages:?}");
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.code != Code::Ok).collect();
    eprintln!(
        "failover: {} calls, {} refused during the outages {outages:?} (first: {:?}), {} operations started",
        answers.len(),
        refused.len(),
        refused.first().map(|a| (a.rpc, a.code, &a.message)),
        operations.len()
    );
    assert!(answers.iter().filter(|a| a.code == Code::Ok && a.rpc == "DeactivateUser").count() >= 3);

    // 3. Every operation reaches a final state, each step applied once in licensing.
    let ended = {
        let stop = AtomicBool::new(false);
        let mut ended = HashMap::new();
        for id in &operations {
            let done = tokio::time::timeout(Duration::from_secs(60), wait_done(&world, id, &stop)).await;
            let done = done.ok().flatten().unwrap_or_else(|| panic!("operation {id} never ended"));
            assert_eq!(done.state, ops::OperationState::Succeeded as i32, "{done:?}");
            ended.insert(id.clone(), done);
        }
        ended
    };
    let mut licensing_db = sqlx::PgConnection::connect(&licensing_url).await.expect("licensing's database");
    for id in ended.keys() {
        let applied: Vec<(String, String)> = sqlx::query_as(
            "SELECT action, request_id FROM audit_events WHERE request_id LIKE $1 AND outcome = 'ok' \
             AND action IN ('licenses.reclaimed', 'licenses.restored')",
        )
        .bind(format!("wf:{id}:%"))
        .fetch_all(&mut licensing_db)
        .await
        .expect("audit");
        assert_eq!(applied.len(), 1, "operation {id}: its licensing step, once: {applied:?}");
    }

    // 4. Every e-mail in the outbox goes out, none twice.
    let mut identity_db = sqlx::PgConnection::connect(&identity_url).await.expect("identity's database");
    let drained = Instant::now();
    let outbox: Vec<String> = loop {
        let unsent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at_ms IS NULL")
            .fetch_one(&mut identity_db)
            .await
            .expect("outbox");
        if unsent == 0 || drained.elapsed() > Duration::from_secs(60) {
            break sqlx::query_scalar("SELECT id FROM outbox").fetch_all(&mut identity_db).await.expect("outbox");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for message in sink.messages() {
        let text = String::from_utf8_lossy(&message);
        let id = text
            .lines()
            .find_map(|line| line.strip_prefix("Message-ID: <").or_else(|| line.strip_prefix("Message-Id: <")))
            .and_then(|rest| rest.split('@').next())
            .expect("a Message-ID")
            .to_owned();
        *delivered.entry(id).or_default() += 1;
    }
    let lost: Vec<&String> = outbox.iter().filter(|id| !delivered.contains_key(*id)).collect();
    let twice: Vec<(&String, &usize)> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(lost.is_empty(), "e-mails never delivered: {lost:?}");
    assert!(twice.is_empty(), "e-mails delivered more than once: {twice:?}");
    assert!(outbox.len() > 5, "the load queued e-mails: {}", outbox.len());
}
