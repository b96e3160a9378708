//! Crash safety of identity: `kill -9` in the middle of a burst of invitations, restart on
//! the same database, retry every request with its request id. Each invitation must exist
//! exactly once with its pending user, its e-mail and its audit record (nothing
//! half-applied), and a retry of a call that committed before the crash returns the first
//! answer. Runs on SQLite and, when reachable, PostgreSQL.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use roster_e2e::{Process, authed, demo_env, free_port, wait_serving};
use roster_proto::identity::v1 as pb;
use roster_testkit::FreshDatabase;
use sqlx::Connection;

const INVITES: usize = 400;
const START: Duration = Duration::from_secs(60);

fn request(i: usize, account: &str) -> pb::InviteUserRequest {
    pb::InviteUserRequest {
        request_id: format!("crash-invite-{i}"),
        account_id: account.to_owned(),
        email: format!("user{i}@crash.example"),
        ..Default::default()
    }
}

fn start(data_dir: &Path, addr: SocketAddr, database_url: Option<&str>) -> Process {
    let env: Vec<(&str, &str)> = database_url.map(|url| ("ROSTER_IDENTITY_DATABASE_URL", url)).into_iter().collect();
    Process::start(data_dir, addr, &["up", "--demo"], &env)
}

/// Invites everyone at once; returns the answers that arrived. `done` counts them as they do.
async fn invite_all(
    addr: SocketAddr,
    account: &str,
    token: &str,
    done: Arc<AtomicUsize>,
) -> HashMap<usize, pb::Invitation> {
    let Ok(channel) = roster_e2e::channel(addr).await else { return HashMap::new() };
    let client = pb::user_service_client::UserServiceClient::new(channel);
    let calls = futures_util::future::join_all((0..INVITES).map(|i| {
        let mut client = client.clone();
        let request = authed(request(i, account), token);
        let done = done.clone();
        async move {
            let result = client.invite_user(request).await;
            if result.is_ok() {
                done.fetch_add(1, Ordering::SeqCst);
            }
            (i, result)
        }
    }));
    calls.await.into_iter().filter_map(|(i, result)| result.ok().map(|r| (i, r.into_inner()))).collect()
}

async fn crash_and_retry(database_url: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut first = start(dir.path(), addr, database_url);
    wait_serving(addr, START).await.expect("serving");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    let (account, owner) = (env["ACCOUNT"].clone(), env["OWNER_TOKEN"].clone());

    // Kill -9 once some invitations have committed and the rest are in flight.
    let done = Arc::new(AtomicUsize::new(0));
    let burst = tokio::spawn({
        let (account, owner, done) = (account.clone(), owner.clone(), done.clone());
        async move { invite_all(addr, &account, &owner, done).await }
    });
    while done.load(Ordering::SeqCst) < 10 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reaped");
    let before_crash = burst.await.expect("burst");
    assert!(
        before_crash.len() < INVITES,
        "the crash interrupted the burst ({} of {INVITES} answered)",
        before_crash.len()
    );

    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut second = start(dir.path(), addr, database_url);
    wait_serving(addr, START).await.expect("serving after the crash");
    let after = invite_all(addr, &account, &owner, Arc::new(AtomicUsize::new(0))).await;
    assert_eq!(after.len(), INVITES, "every retry succeeds after the restart");
    for (i, answer) in &before_crash {
        assert_eq!(&after[i], answer, "invite {i}: the retry returns the answer given before the crash");
    }

    let channel = wait_serving(addr, START).await.expect("serving");
    let listed = pb::user_service_client::UserServiceClient::new(channel)
        .list_invitations(authed(
            pb::ListInvitationsRequest { account_id: account.clone(), page_size: 500, ..Default::default() },
            &owner,
        ))
        .await
        .expect("list")
        .into_inner()
        .invitations;
    let crash_invites: Vec<_> = listed.iter().filter(|i| i.email.ends_with("@crash.example")).collect();
    assert_eq!(crash_invites.len(), INVITES, "each invitation exists exactly once");
    assert!(second.terminate(Duration::from_secs(15)).expect("stops").success());

    // Nothing half-applied: each invitation has its pending user, its e-mail, its audit record.
    sqlx::any::install_default_drivers();
    let url =
        database_url.map_or_else(|| format!("sqlite://{}", dir.path().join("identity.db").display()), str::to_owned);
    let mut db = sqlx::AnyConnection::connect(&url).await.expect("open the database");
    for (what, sql) in [
        ("pending users", "SELECT COUNT(*) FROM users WHERE email LIKE '%@crash.example' AND status = 'pending'"),
        (
            "invitation e-mails",
            "SELECT COUNT(*) FROM outbox WHERE recipient LIKE '%@crash.example' AND kind = 'invitation'",
        ),
        (
            "audit records",
            "SELECT COUNT(*) FROM audit_events WHERE action = 'user.invited' AND request_id LIKE 'crash-invite-%'",
        ),
        ("idempotency records", "SELECT COUNT(*) FROM idempotency_keys WHERE request_id LIKE 'crash-invite-%'"),
    ] {
        let count: i64 = sqlx::query_scalar(sql).fetch_one(&mut db).await.expect("count");
        assert_eq!(count, INVITES as i64, "{what}: one per invitation");
    }
    db.close().await.ok();
}

#[tokio::test]
async fn kill_9_mid_burst_then_retries_have_exactly_one_effect_sqlite() {
    crash_and_retry(None).await;
}

#[tokio::test]
async fn kill_9_mid_burst_then_retries_have_exactly_one_effect_postgres() {
    let Some(database) = FreshDatabase::create().await else { return };
    crash_and_retry(Some(&database.url)).await;
    database.drop_database().await;
}
