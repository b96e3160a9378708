//! The event logs end to end (issue 27): identity replicas and licensing write concurrently
//! while `roster events tail` follows both logs; one identity replica is killed with SIGKILL
//! mid-stream and started again. Each consumer resumes from its last cursor by itself and
//! must see every event exactly once, in the log's order, which the databases are read for
//! afterwards. Two identity replicas on PostgreSQL; one (SQLite has a single writer) on SQLite.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roster_e2e::{Process, TestKeys, authed, free_port, identity_sqlite, roster_binary, wait_serving};
use roster_proto::identity::v1 as pb;
use roster_proto::licensing::v1 as lpb;
use roster_testkit::FreshDatabase;
use sqlx::Connection;

const START: Duration = Duration::from_secs(60);
/// Settings changes written through identity, by four writers.
const WRITES: usize = 240;
/// Licenses assigned and unassigned in turn through licensing.
const TOGGLES: usize = 60;

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_see_every_event_once_in_order_across_a_killed_replica_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let identity_db = identity_sqlite(&dir.path().join("identity"));
    scenario(dir.path(), &identity_db, None, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_see_every_event_once_in_order_across_a_killed_replica_postgres() {
    let Some(identity_db) = FreshDatabase::create().await else { return };
    let Some(licensing_db) = FreshDatabase::create().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    scenario(dir.path(), &identity_db.url, Some(&licensing_db.url), 2).await;
    identity_db.drop_database().await;
    licensing_db.drop_database().await;
}

/// A consumer: `roster events tail --json` with its output in files.
struct Tail {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Tail {
    fn start(dir: &Path, name: &str, token: &str, args: &[&str]) -> Self {
        let (out, err) = (dir.join(format!("{name}.out")), dir.join(format!("{name}.err")));
        let child = Command::new(roster_binary())
            .args(["events", "tail", "--json", "--from-start", "--heartbeat-seconds", "1"])
            .args(args)
            .env("ROSTER_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::fs::File::create(&err).expect("err"))
            .spawn()
            .expect("roster events tail");
        Self { child, out, err }
    }

    /// The request ids of the events printed so far, in order.
    fn request_ids(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|item| item["event"]["requestId"].as_str().map(str::to_owned))
            .collect()
    }

    fn finish(mut self, within: Duration) -> (Vec<String>, String) {
        let deadline = Instant::now() + within;
        while self.child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the consumer did not get all its events: {} so far; stderr:\n{}",
                    self.request_ids().len(),
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = self.child.wait().expect("exit");
        let stderr = std::fs::read_to_string(&self.err).unwrap_or_default();
        assert!(status.success(), "the consumer failed: {stderr}");
        (self.request_ids(), stderr)
    }
}

async fn scenario(dir: &Path, identity_db: &str, licensing_db: Option<&str>, replicas: usize) {
    let keys = TestKeys::generate(dir);
    let operator = keys.operator();
    let identity: Vec<SocketAddr> = (0..replicas).map(|_| local()).collect();
    let licensing = local();
    let serve_identity = |n: usize| {
        Process::serve_identity(&dir.join(format!("identity-{n}")), identity[n], identity_db, &keys.dir, licensing, &[])
    };
    let mut identities: Vec<Process> = (0..replicas).map(serve_identity).collect();
    let identity_urls = identity.iter().map(|addr| format!("http://{addr}")).collect::<Vec<_>>().join(",");
    let _licensing = Process::serve_licensing(
        &dir.join("licensing"),
        licensing,
        licensing_db,
        &keys.dir,
        identity[0],
        &[("ROSTER_IDENTITY_URL", &identity_urls)],
    );
    let channel = wait_serving(identity[0], START).await.expect("identity serving");
    for addr in identity.iter().skip(1).chain([&licensing]) {
        wait_serving(*addr, START).await.expect("serving");
    }
    let (account, owner) = roster_e2e::create_account(&channel, &operator, "Watched", "owner@watched.example").await;
    let licenses = roster_e2e::channel(licensing).await.expect("licensing");
    lpb::license_service_client::LicenseServiceClient::new(licenses.clone())
        .set_seats(authed(
            lpb::SetSeatsRequest {
                request_id: "seats".into(),
                account_id: account.clone(),
                license_type: lpb::LicenseType::Licensed as i32,
                capacity: 5,
            },
            &operator,
        ))
        .await
        .expect("seats");

    let identity_tail = Tail::start(
        dir,
        "identity",
        &operator,
        &[
            "--identity-url",
            &format!("http://{}", identity[0]),
            "--account",
            &account,
            "--type",
            "user.settings_changed",
            "--count",
            &WRITES.to_string(),
        ],
    );
    let licensing_tail = Tail::start(
        dir,
        "licensing",
        &operator,
        &[
            "--service",
            "licensing",
            "--licensing-url",
            &format!("http://{licensing}"),
            "--account",
            &account,
            "--type",
            "license.assigned",
            "--type",
            "license.reclaimed",
            "--count",
            &TOGGLES.to_string(),
        ],
    );

    let owner_token = keys.user(&owner);
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (identity, account, owner, token) =
                (identity.clone(), account.clone(), owner.clone(), owner_token.clone());
            tokio::spawn(async move {
                for n in 0..WRITES / 4 {
                    let request = pb::UpdateUserSettingsRequest {
                        request_id: format!("settings-{writer}-{n}"),
                        account_id: account.clone(),
                        user_id: owner.clone(),
                        settings: vec![pb::Setting { key: format!("writer.{writer}"), value: n.to_string() }],
                        ..Default::default()
                    };
                    // Spread over the replicas; a call the killed one cannot answer goes to
                    // another (or the restarted one) with the same request id.
                    retried(|attempt| {
                        let addr = identity[(writer + n + attempt) % identity.len()];
                        let (request, token) = (request.clone(), token.clone());
                        async move {
                            let channel = roster_e2e::channel(addr).await.map_err(|e| e.to_string())?;
                            pb::user_service_client::UserServiceClient::new(channel)
                                .update_user_settings(authed(request, &token))
                                .await
                                .map(drop)
                                .map_err(|status| status.to_string())
                        }
                    })
                    .await;
                }
            })
        })
        .collect();
    let toggles = {
        let (account, owner, token, licenses) = (account.clone(), owner.clone(), owner_token.clone(), licenses.clone());
        tokio::spawn(async move {
            let client = lpb::license_service_client::LicenseServiceClient::new(licenses);
            for n in 0..TOGGLES {
                let (account_id, user_id, license_type) =
                    (account.clone(), owner.clone(), lpb::LicenseType::Licensed as i32);
                let request_id = format!("toggle-{n}");
                retried(|_| {
                    let (mut client, token) = (client.clone(), token.clone());
                    let (account_id, user_id, request_id) = (account_id.clone(), user_id.clone(), request_id.clone());
                    async move {
                        if n % 2 == 0 {
                            let request = lpb::AssignLicenseRequest { request_id, account_id, user_id, license_type };
                            client.assign_license(authed(request, &token)).await.map(drop)
                        } else {
                            let request = lpb::UnassignLicenseRequest { request_id, account_id, user_id, license_type };
                            client.unassign_license(authed(request, &token)).await.map(drop)
                        }
                        .map_err(|status| status.to_string())
                    }
                })
                .await;
            }
        })
    };

    // Kill the replica the identity consumer follows once it is well into the stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while identity_tail.request_ids().len() < WRITES / 4 {
        assert!(Instant::now() < deadline, "the consumer saw no events");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen_at_kill = identity_tail.request_ids().len();
    identities[0].child.kill().expect("SIGKILL");
    identities[0].child.wait().expect("reaped");
    tokio::time::sleep(Duration::from_secs(1)).await;
    identities[0] = serve_identity(0);
    wait_serving(identity[0], START).await.expect("identity restarted");

    for writer in writers {
        writer.await.expect("writer");
    }
    toggles.await.expect("toggles");
    let (seen, stderr) = identity_tail.finish(Duration::from_secs(90));
    let (licensing_seen, _) = licensing_tail.finish(Duration::from_secs(90));
    assert!(seen_at_kill < WRITES, "the replica was killed mid-stream");
    assert!(stderr.contains("resuming after the last cursor"), "the consumer resumed: {stderr}");

    let mut db = sqlx::AnyConnection::connect(identity_db).await.expect("identity database");
    let logged: Vec<String> = sqlx::query_scalar(
        "SELECT request_id FROM events WHERE account_id = $1 AND type = 'user.settings_changed' ORDER BY tx, seq",
    )
    .bind(&account)
    .fetch_all(&mut db)
    .await
    .expect("identity's log");
    assert_eq!(logged.len(), WRITES, "one event per change, retries included");
    assert_eq!(seen, logged, "the consumer saw every event once, in the log's order");

    let licensing_url = licensing_db
        .map(str::to_owned)
        .unwrap_or_else(|| roster_platform::db::Database::sqlite_url(&dir.join("licensing"), "licensing"));
    let mut db = sqlx::AnyConnection::connect(&licensing_url).await.expect("licensing database");
    let logged: Vec<String> = sqlx::query_scalar(
        "SELECT request_id FROM events WHERE account_id = $1 \
         AND type IN ('license.assigned', 'license.reclaimed') ORDER BY tx, seq",
    )
    .bind(&account)
    .fetch_all(&mut db)
    .await
    .expect("licensing's log");
    assert_eq!(logged.len(), TOGGLES);
    assert_eq!(licensing_seen, logged, "licensing's consumer saw every event once, in order");
    for mut process in identities {
        let _ = process.terminate(Duration::from_secs(15));
    }
}

/// Runs `call` until it succeeds, `attempt` counting the tries; the request id it carries
/// makes a repeat of a call that did take effect harmless.
async fn retried<F, Fut>(mut call: F)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut last = String::new();
    for attempt in 0..200 {
        match call(attempt).await {
            Ok(()) => return,
            Err(error) => last = error,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("a write kept failing: {last}");
}
