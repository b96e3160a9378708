//! The metrics an operator scrapes (`ROSTER_METRICS_LISTEN`): `roster up` serves both
//! services' on one port, in the Prometheus text format, parsed here as Prometheus would:
//! RPCs by service, method and status code with latency histograms, saga events, sagas not
//! finished and the age of the oldest, the outbox backlog, and the database pools.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use roster_e2e::{authed, demo_env, free_port, roster_binary, wait_serving};
use roster_proto::identity::v1 as pb;
use scrape::{scrape, value};

use roster_e2e::scrape;

const START: Duration = Duration::from_secs(60);

#[tokio::test]
async fn up_serves_rpc_saga_outbox_and_pool_metrics_for_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut child = Command::new(roster_binary())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["up", "--demo", "--identity-listen", &addr.to_string()])
        .args(["--licensing-listen", &format!("127.0.0.1:{}", free_port())])
        .env("ROSTER_LOG", "warn")
        .env("ROSTER_METRICS_LISTEN", metrics.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("roster starts");
    wait_serving(addr, START).await.expect("serving");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    let channel = roster_e2e::channel(addr).await.expect("channel");
    let mut accounts = pb::account_service_client::AccountServiceClient::new(channel);
    for _ in 0..3 {
        let request = authed(pb::GetAccountRequest { account_id: env["ACCOUNT"].clone() }, &env["OWNER_TOKEN"]);
        accounts.get_account(request).await.expect("the owner reads the account");
    }
    // A deactivation runs a saga to its end (two steps).
    let mut users = pb::user_service_client::UserServiceClient::new(roster_e2e::channel(addr).await.expect("channel"));
    let deactivate = pb::DeactivateUserRequest {
        request_id: "metrics-1".into(),
        account_id: env["ACCOUNT"].clone(),
        user_id: env["OTHER_MEMBER_ID"].clone(),
        validate_only: false,
    };
    users.deactivate_user(authed(deactivate, &env["OWNER_TOKEN"])).await.expect("deactivates");
    let refused = accounts
        .get_account(tonic::Request::new(pb::GetAccountRequest { account_id: env["ACCOUNT"].clone() }))
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // Until the deactivation's saga has ended (it usually has by the call's answer).
    let mut samples = scrape(metrics).await;
    for _ in 0..300 {
        if value(&samples, "roster_saga_events_total", &[("event", "completed")]).is_some_and(|n| n >= 1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        samples = scrape(metrics).await;
    }
    let rpc = |code| [("service", "roster.identity.v1.AccountService"), ("method", "GetAccount"), ("code", code)];
    assert_eq!(value(&samples, "roster_rpc_requests_total", &rpc("OK")), Some(3.0), "{samples:#?}");
    assert_eq!(value(&samples, "roster_rpc_requests_total", &rpc("UNAUTHENTICATED")), Some(1.0));
    let latency = samples
        .iter()
        .find(|s| s.metric == "roster_rpc_duration_seconds" && s.labels.get("code") == Some("OK"))
        .expect("a latency histogram");
    assert!(matches!(&latency.value, prometheus_parse::Value::Histogram(b) if b.len() > 5), "{latency:?}");
    for gauge in [
        "roster_saga_oldest_age_seconds",
        "roster_outbox_backlog",
        "roster_outbox_oldest_age_seconds",
        "roster_log_lines_dropped_total",
    ] {
        assert!(value(&samples, gauge, &[]).is_some_and(|v| v >= 0.0), "{gauge} in {samples:#?}");
    }
    for service in ["identity", "licensing"] {
        let idle =
            value(&samples, "roster_db_connections", &[("service", service), ("pool", "writer"), ("state", "idle")]);
        assert!(idle.is_some(), "{service}'s pool in {samples:#?}");
    }
    assert!(
        samples.iter().any(|s| s.metric == "roster_db_acquire_seconds_count"
            || (s.metric == "roster_db_acquire_seconds" && matches!(s.value, prometheus_parse::Value::Histogram(_)))),
        "database waits are measured"
    );
    for event in ["started", "step_completed", "completed"] {
        let count = value(&samples, "roster_saga_events_total", &[("event", event)]);
        assert!(count.is_some_and(|n| n >= 1.0), "saga {event}: {count:?}");
    }

    // Made-up paths, with a token and without, all share one label value: no caller can grow
    // the series set (1,500 such calls once added 24,000 series).
    let series =
        |samples: &[prometheus_parse::Sample]| samples.iter().filter(|s| s.metric.starts_with("roster_rpc")).count();
    let before = series(&scrape(metrics).await);
    let channel = roster_e2e::channel(addr).await.expect("channel");
    for n in 0..1_500 {
        let path = format!("/made.up.v{n}.Service{n}/Method{n}");
        let token = if n % 2 == 0 { env["OWNER_TOKEN"].as_str() } else { "" };
        let refused =
            roster_testkit::hostile::call_raw(&channel, &roster_testkit::hostile::Rpc::unary(path), Vec::new(), token)
                .await
                .expect_err("nothing is served there");
        assert!(matches!(refused.code(), tonic::Code::Unimplemented | tonic::Code::Unauthenticated), "{refused:?}");
    }
    let samples = scrape(metrics).await;
    let unknown = |code| [("service", "unknown"), ("method", "unknown"), ("code", code)];
    assert_eq!(value(&samples, "roster_rpc_requests_total", &unknown("UNIMPLEMENTED")), Some(750.0), "{samples:#?}");
    assert_eq!(value(&samples, "roster_rpc_requests_total", &unknown("UNAUTHENTICATED")), Some(750.0));
    let grown = series(&samples) - before;
    assert!(grown <= 40, "1,500 made-up paths added {grown} series");

    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("exit");
    assert!(exit.success(), "{exit:?}");
}
