//! Crash safety of bulk removal (SPEC R25) with the real binary on PostgreSQL: `kill -9` while
//! a bulk deactivation of 2,000 users is part-way, restart on the same databases. Every row ends
//! exactly once, the counts add up, and no user is half-processed: each is deactivated by
//! exactly one completed deactivation saga, with one audit record of each of its two changes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use roster_e2e::{Process, authed, demo_env, free_port, wait_serving};
use roster_identity::domain::values::{AccountId, UserId};
use roster_platform::clock::{SharedClock, SystemClock};
use roster_platform::db::Database;
use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use roster_testkit::FreshDatabase;

const USERS: usize = 2_000;
const START: Duration = Duration::from_secs(60);

fn start(data_dir: &Path, addr: SocketAddr, database_url: &str) -> Process {
    // A short lease, so the restarted process takes over the dead one's sagas quickly.
    let env = [("ROSTER_IDENTITY_DATABASE_URL", database_url), ("ROSTER_WORKFLOW_LEASE_MS", "2000")];
    Process::start(data_dir, addr, &["up", "--demo"], &env)
}

async fn operation(addr: SocketAddr, id: &str, token: &str) -> Option<ops::Operation> {
    let channel = roster_e2e::channel(addr).await.ok()?;
    let request = authed(ops::GetOperationRequest { operation_id: id.to_owned() }, token);
    let answer = ops::operations_client::OperationsClient::new(channel).get_operation(request).await.ok()?;
    Some(answer.into_inner())
}

fn rows_done(operation: &ops::Operation) -> u32 {
    operation.progress.as_ref().and_then(|p| p.rows).map_or(0, |rows| rows.done)
}

#[tokio::test]
async fn kill_9_mid_bulk_then_every_row_ends_exactly_once_postgres() {
    let Some(database) = FreshDatabase::create().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut first = start(dir.path(), addr, &database.url);
    let channel = wait_serving(addr, START).await.expect("serving");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    let (account, owner_token) = (env["ACCOUNT"].clone(), env["OWNER_TOKEN"].clone());

    let db = Database::connect(&database.url, 4).await.expect("identity's database");
    let clock: SharedClock = Arc::new(SystemClock);
    let (account_id, owner) = (AccountId::parse(&account).expect("id"), UserId::parse(&env["OWNER_ID"]).expect("id"));
    let mut users = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let email = format!("leaver{i}@acme.example");
        users.push(
            roster_identity::demo::join(&db, &clock, &account_id, &owner, &email).await.expect("join").to_string(),
        );
    }
    let request = pb::StartBulkOperationRequest {
        request_id: "crash-bulk".into(),
        account_id: account.clone(),
        action: pb::BulkAction::Deactivate as i32,
        users: users.iter().map(|user| pb::BulkUser { user: user.clone(), ..Default::default() }).collect(),
        ..Default::default()
    };
    let started = pb::bulk_service_client::BulkServiceClient::new(channel)
        .start_bulk_operation(authed(request, &owner_token))
        .await
        .expect("started")
        .into_inner();

    // Kill -9 part-way: some rows done, most not.
    loop {
        let now = operation(addr, &started.id, &owner_token).await.expect("readable");
        assert!(!now.done, "the bulk operation finished before the crash: {now:?}");
        if rows_done(&now) >= 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reaped");

    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut second = start(dir.path(), addr, &database.url);
    wait_serving(addr, START).await.expect("serving after the crash");
    let mut ended = None;
    for _ in 0..1_200 {
        if let Some(now) = operation(addr, &started.id, &owner_token).await.filter(|o| o.done) {
            ended = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ended = ended.expect("the bulk operation finished within 2 minutes of the restart");
    let rows = ended.progress.as_ref().and_then(|p| p.rows).expect("row counts");
    let all = u32::try_from(USERS).expect("small");
    assert_eq!((rows.total, rows.done, rows.succeeded, rows.failed, rows.skipped), (all, all, all, 0, 0), "{ended:?}");
    assert!(second.terminate(Duration::from_secs(20)).expect("stops").success());

    let count = |sql: &'static str| {
        let db = db.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(db.pool()).await.expect(sql) }
    };
    let all = i64::try_from(USERS).expect("small");
    for (what, sql) in [
        ("deactivated users", "SELECT COUNT(*) FROM users WHERE email LIKE 'leaver%' AND status = 'deactivated'"),
        (
            "rows that succeeded, each naming a saga of its own",
            "SELECT COUNT(DISTINCT child_id) FROM bulk_rows WHERE state = 'succeeded'",
        ),
        (
            "completed deactivation sagas, one per user",
            "SELECT COUNT(DISTINCT w.subject) FROM workflows w JOIN users u ON u.id = w.subject \
             WHERE w.kind = 'user.deactivate' AND w.state = 'completed' AND u.email LIKE 'leaver%'",
        ),
        (
            "deactivation sagas in all",
            "SELECT COUNT(*) FROM workflows w JOIN users u ON u.id = w.subject \
             WHERE w.kind = 'user.deactivate' AND u.email LIKE 'leaver%'",
        ),
        (
            "deactivation audit records",
            "SELECT COUNT(*) FROM audit_events a JOIN users u ON a.target = 'user:' || u.id \
             WHERE a.action = 'user.deactivated' AND a.outcome = 'ok' AND u.email LIKE 'leaver%'",
        ),
        (
            "reclaim audit records",
            "SELECT COUNT(*) FROM audit_events a JOIN users u ON a.target = 'user:' || u.id \
             WHERE a.action = 'user.licenses_reclaimed' AND u.email LIKE 'leaver%'",
        ),
    ] {
        assert_eq!(count(sql).await, all, "{what}");
    }
    db.close().await;
    database.drop_database().await;
}
