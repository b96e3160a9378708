//! Durable timers of ownership requests (SPEC R9) in the real binary on PostgreSQL, moved by
//! the dev clock (`roster up --manual-clock`): `kill -9` in the middle of the window and a
//! restart send each reminder once and decide once; two identity replicas on one database
//! send one reminder a day, not two.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use roster_e2e::{Process, authed, demo_env, free_port, wait_serving};
use roster_proto::dev::v1 as dev;
use roster_proto::identity::v1 as pb;
use roster_testkit::FreshDatabase;
use sqlx::Connection;
use tonic::transport::Channel;

const START: Duration = Duration::from_secs(60);
const HOUR: &str = "h";

fn up(data_dir: &Path, identity_url: &str, licensing_url: &str) -> Process {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let env = [("ROSTER_IDENTITY_DATABASE_URL", identity_url), ("ROSTER_LICENSING_DATABASE_URL", licensing_url)];
    Process::start(data_dir, addr, &["up", "--demo", "--manual-clock"], &env)
}

async fn advance(channel: &Channel, env: &HashMap<String, String>, hours: u32) {
    dev::clock_service_client::ClockServiceClient::new(channel.clone())
        .advance_time(authed(dev::AdvanceTimeRequest { by: format!("{hours}{HOUR}") }, &env["OPERATOR_TOKEN"]))
        .await
        .expect("advance the clock");
}

async fn request(channel: &Channel, env: &HashMap<String, String>, id: &str) -> pb::OwnershipRequest {
    pb::account_service_client::AccountServiceClient::new(channel.clone())
        .get_ownership_request(authed(
            pb::GetOwnershipRequestRequest { account_id: env["ACCOUNT"].clone(), ownership_request_id: id.into() },
            &env["ADMIN_TOKEN"],
        ))
        .await
        .expect("get the request")
        .into_inner()
}

/// Waits until the request satisfies `done`, then a little longer so a duplicate would show.
async fn until(
    channel: &Channel,
    env: &HashMap<String, String>,
    id: &str,
    done: impl Fn(&pb::OwnershipRequest) -> bool,
) -> pb::OwnershipRequest {
    for _ in 0..300 {
        if done(&request(channel, env, id).await) {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            return request(channel, env, id).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ownership request {id} did not get there in 15 s");
}

async fn count(url: &str, sql: &str) -> i64 {
    let mut db = sqlx::AnyConnection::connect(url).await.expect("connect");
    let count = sqlx::query_scalar(sql).fetch_one(&mut db).await.expect("count");
    db.close().await.ok();
    count
}

async fn open_request(channel: &Channel, env: &HashMap<String, String>) -> pb::OwnershipRequest {
    pb::account_service_client::AccountServiceClient::new(channel.clone())
        .request_ownership(authed(
            pb::RequestOwnershipRequest { request_id: "timers-ask".into(), account_id: env["ACCOUNT"].clone() },
            &env["ADMIN_TOKEN"],
        ))
        .await
        .expect("bob asks for ownership")
        .into_inner()
}

const REMINDERS: &str = "SELECT COUNT(*) FROM outbox WHERE kind = 'ownership_request_reminder'";
const OUTCOMES: &str = "SELECT COUNT(*) FROM outbox WHERE kind = 'ownership_request_outcome'";

#[tokio::test]
async fn r9_reminders_and_the_decision_happen_once_across_kill_9_and_a_restart() {
    sqlx::any::install_default_drivers();
    let Some(identity_db) = FreshDatabase::create().await else { return };
    let Some(licensing_db) = FreshDatabase::create().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = up(dir.path(), &identity_db.url, &licensing_db.url);
    let channel = wait_serving(first.addr, START).await.expect("serving");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    let open = open_request(&channel, &env).await;

    advance(&channel, &env, 30).await;
    let now = until(&channel, &env, &open.id, |r| r.reminders_sent >= 1).await;
    assert_eq!(now.reminders_sent, 1);
    first.child.kill().expect("kill -9 in the middle of the window");
    first.child.wait().expect("reaped");

    let mut second = up(dir.path(), &identity_db.url, &licensing_db.url);
    let channel = wait_serving(second.addr, START).await.expect("serving after the crash");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(request(&channel, &env, &open.id).await.reminders_sent, 1, "the restart sends nothing by itself");
    advance(&channel, &env, 24).await;
    let now = until(&channel, &env, &open.id, |r| r.reminders_sent >= 2).await;
    assert_eq!(now.reminders_sent, 2, "the next day's reminder, once");
    advance(&channel, &env, 200).await;
    let decided = until(&channel, &env, &open.id, |r| r.state != pb::OwnershipRequestState::Open as i32).await;
    assert_eq!(decided.state, pb::OwnershipRequestState::AutoApproved as i32, "{decided:?}");
    assert_eq!(decided.reminders_sent, 2, "the deadline decides; no reminder on the way");
    assert!(second.terminate(Duration::from_secs(15)).expect("stops").success());

    assert_eq!(count(&identity_db.url, REMINDERS).await, 2, "each reminder e-mailed once");
    assert_eq!(count(&identity_db.url, OUTCOMES).await, 1, "decided once");
    let owners = "SELECT COUNT(*) FROM users u JOIN ownership_requests r ON r.account_id = u.account_id \
                  AND r.requester_user_id = u.id WHERE u.role = 'owner'";
    assert_eq!(count(&identity_db.url, owners).await, 1, "the requester owns the account");
    identity_db.drop_database().await;
    licensing_db.drop_database().await;
}

#[tokio::test]
async fn r9_two_identity_replicas_send_one_reminder_a_day() {
    sqlx::any::install_default_drivers();
    let Some(identity_db) = FreshDatabase::create().await else { return };
    let Some(licensing_db) = FreshDatabase::create().await else { return };
    // One data directory: the replicas share the dev keys (and so the demo's tokens).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = up(dir.path(), &identity_db.url, &licensing_db.url);
    let channel_a = wait_serving(a.addr, START).await.expect("a serving");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    let mut b = up(dir.path(), &identity_db.url, &licensing_db.url);
    let channel_b = wait_serving(b.addr, START).await.expect("b serving");
    let open = open_request(&channel_a, &env).await;

    for day in 1..=3 {
        // Both clocks move by the same step, as one clock would.
        advance(&channel_a, &env, 24).await;
        advance(&channel_b, &env, 24).await;
        let now = until(&channel_b, &env, &open.id, |r| r.reminders_sent >= day).await;
        assert_eq!(now.reminders_sent, day, "day {day}: one reminder, not one per replica");
        assert_eq!(count(&identity_db.url, REMINDERS).await, i64::from(day));
    }
    assert!(a.terminate(Duration::from_secs(15)).expect("a stops").success());
    assert!(b.terminate(Duration::from_secs(15)).expect("b stops").success());
    identity_db.drop_database().await;
    licensing_db.drop_database().await;
}

/// The dev clock's own authorisation and bad input: operators only, and a step it cannot
/// read or would not take is refused by field.
#[tokio::test]
async fn the_dev_clock_is_for_operators_and_refuses_a_bad_step_by_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut roster = Process::start(dir.path(), addr, &["up", "--demo", "--manual-clock"], &[]);
    let channel = wait_serving(addr, START).await.expect("serving");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    let clock = || dev::clock_service_client::ClockServiceClient::new(channel.clone());
    let before = clock().get_time(authed(dev::GetTimeRequest {}, &env["OPERATOR_TOKEN"])).await.expect("time");
    for (token, code) in
        [("OWNER_TOKEN", tonic::Code::PermissionDenied), ("MEMBER_TOKEN", tonic::Code::PermissionDenied)]
    {
        let refused = clock()
            .advance_time(authed(dev::AdvanceTimeRequest { by: "1h".into() }, &env[token]))
            .await
            .expect_err(token);
        assert_eq!(refused.code(), code, "{token}: {refused:?}");
    }
    let anonymous = clock().get_time(dev::GetTimeRequest {}).await.expect_err("no token");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    for by in ["", "soon", "0s", "400days"] {
        let refused = clock()
            .advance_time(authed(dev::AdvanceTimeRequest { by: by.into() }, &env["OPERATOR_TOKEN"]))
            .await
            .expect_err(by);
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{by:?}: {refused:?}");
        assert_eq!(roster_testkit::grpc::bad_field(&refused).as_deref(), Some("by"), "{by:?}");
    }
    let after = clock()
        .advance_time(authed(dev::AdvanceTimeRequest { by: "2days".into() }, &env["OPERATOR_TOKEN"]))
        .await
        .expect("advance")
        .into_inner();
    let moved = after.now_ms - before.into_inner().now_ms;
    assert!((2 * 86_400_000..2 * 86_400_000 + 60_000).contains(&moved), "moved {moved} ms");
    assert!(roster.terminate(Duration::from_secs(15)).expect("stops").success());
}
