//! Calls between the services are spread over every replica of the peer
//! (`roster_platform::peer`): identity, given two licensing processes on one PostgreSQL,
//! sends each of them a share of its calls, as it does with the addresses of a headless
//! Service.

use std::net::SocketAddr;
use std::time::Duration;

use roster_e2e::{Process, TestKeys, authed, free_port, wait_serving};
use roster_proto::identity::v1 as pb;
use roster_testkit::FreshDatabase;
use scrape::{scrape, value};
use sqlx::Connection;

use roster_e2e::scrape;

const START: Duration = Duration::from_secs(60);
const DRY_RUNS: usize = 24;

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

#[tokio::test]
async fn identity_spreads_its_calls_over_every_licensing_replica() {
    let Some(identity_db) = FreshDatabase::create().await else { return };
    let Some(licensing_db) = FreshDatabase::create().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = TestKeys::generate(dir.path());
    let user = |id: &str| keys.user(id);

    let identity_addr = local();
    let (licensing, metrics) = ([local(), local()], [local(), local()]);
    let both = format!("http://{},http://{}", licensing[0], licensing[1]);
    let identity = Process::serve_identity(
        &dir.path().join("identity"),
        identity_addr,
        &identity_db.url,
        &keys.dir,
        licensing[0],
        &[("ROSTER_LICENSING_URL", &both)],
    );
    let replicas: Vec<Process> = (0..2)
        .map(|i| {
            Process::serve_licensing(
                &dir.path().join(format!("licensing-{i}")),
                licensing[i],
                Some(&licensing_db.url),
                &keys.dir,
                identity_addr,
                &[("ROSTER_METRICS_LISTEN", &metrics[i].to_string())],
            )
        })
        .collect();
    let channel = wait_serving(identity_addr, START).await.expect("identity serving");
    for addr in licensing {
        wait_serving(addr, START).await.expect("licensing serving");
    }

    let (account, owner) =
        roster_e2e::create_account(&channel, &keys.operator(), "Balanced", "owner@balanced.example").await;
    let mut db = sqlx::AnyConnection::connect(&identity_db.url).await.expect("connect");
    let member = roster_e2e::join(&channel, &mut db, &account, "member@balanced.example", &user(&owner), user).await;
    let mut users = pb::user_service_client::UserServiceClient::new(channel);

    // Each dry run asks licensing what the deactivation would reclaim, within the RPC.
    for _ in 0..DRY_RUNS {
        let dry_run = pb::DeactivateUserRequest {
            request_id: String::new(),
            account_id: account.clone(),
            user_id: member.clone(),
            validate_only: true,
        };
        let preview = users.deactivate_user(authed(dry_run, &user(&owner))).await.expect("dry run").into_inner();
        assert!(preview.done, "{preview:?}");
    }

    let previews =
        [("service", "roster.licensing.v1.ContentService"), ("method", "PreviewUserRemoval"), ("code", "OK")];
    let mut answered = Vec::new();
    for addr in metrics {
        answered.push(value(&scrape(addr).await, "roster_rpc_requests_total", &previews).unwrap_or(0.0));
    }
    assert_eq!(answered.iter().sum::<f64>(), DRY_RUNS as f64, "every preview answered once: {answered:?}");
    // Each call goes to either replica at random when both are idle: all 24 on one would
    // happen once in 8 million runs.
    assert!(answered.iter().all(|n| *n >= 1.0), "both licensing replicas got calls: {answered:?}");

    for mut process in replicas.into_iter().chain([identity]) {
        assert!(process.terminate(Duration::from_secs(15)).expect("stops").success());
    }
    identity_db.drop_database().await;
    licensing_db.drop_database().await;
}
