//! What operators read: with JSON logs, every RPC leaves one `info` line (`rpc finished`) with
//! its method, status code and latency, and, where known, the caller's kind, the request id and
//! the W3C trace id; a call refused for its token leaves one too. Every line is JSON, none
//! carries terminal colour codes, and saga counters at shutdown are fields, not a Debug dump.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use roster_e2e::{authed, demo_env, free_port, roster_binary, wait_serving};
use roster_proto::identity::v1 as pb;
use serde_json::Value;
use sqlx::Connection;

const START: Duration = Duration::from_secs(60);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn every_rpc_leaves_one_structured_line_whether_answered_or_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("roster.log");
    let (identity, licensing) = (free_port(), free_port());
    let addr = SocketAddr::from(([127, 0, 0, 1], identity));
    let mut child = Command::new(roster_binary())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["up", "--demo", "--identity-listen", &addr.to_string()])
        .args(["--licensing-listen", &format!("127.0.0.1:{licensing}")])
        .env("ROSTER_LOG", "info")
        .env("ROSTER_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("roster starts");
    wait_serving(addr, START).await.expect("serving");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    let channel = roster_e2e::channel(addr).await.expect("channel");
    let mut users = pb::user_service_client::UserServiceClient::new(channel.clone());
    let mut accounts = pb::account_service_client::AccountServiceClient::new(channel);
    let account = env["ACCOUNT"].clone();

    let unauthenticated = accounts
        .get_account(tonic::Request::new(pb::GetAccountRequest { account_id: account.clone() }))
        .await
        .expect_err("no token");
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
    let mut traced = authed(pb::GetAccountRequest { account_id: account.clone() }, &env["OWNER_TOKEN"]);
    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    traced.metadata_mut().insert("traceparent", traceparent.parse().expect("header"));
    accounts.get_account(traced).await.expect("the owner reads the account");
    let refused = users
        .deactivate_user(authed(
            pb::DeactivateUserRequest {
                request_id: "log-line-1".into(),
                account_id: account.clone(),
                user_id: env["OWNER_ID"].clone(),
                validate_only: false,
            },
            &env["OWNER_TOKEN"],
        ))
        .await
        .expect_err("the owner cannot be deactivated");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    // Licensing asks identity who the caller is: identity logs that call as a service's.
    let licensing_channel =
        roster_e2e::channel(SocketAddr::from(([127, 0, 0, 1], licensing))).await.expect("licensing channel");
    // Sent with a traceparent: with traces off, licensing passes it on as it came.
    let mut seats =
        authed(roster_proto::licensing::v1::ListSeatsRequest { account_id: account.clone() }, &env["OWNER_TOKEN"]);
    seats.metadata_mut().insert("traceparent", traceparent.parse().expect("header"));
    roster_proto::licensing::v1::license_service_client::LicenseServiceClient::new(licensing_channel)
        .list_seats(seats)
        .await
        .expect("the owner reads the seats");
    // A saga started by a traced call keeps the caller's traceparent for its steps.
    let mut deactivate = authed(
        pb::DeactivateUserRequest {
            request_id: "log-line-2".into(),
            account_id: account.clone(),
            user_id: env["OTHER_MEMBER_ID"].clone(),
            validate_only: false,
        },
        &env["OWNER_TOKEN"],
    );
    deactivate.metadata_mut().insert("traceparent", traceparent.parse().expect("header"));
    let started = users.deactivate_user(deactivate).await.expect("the owner deactivates a member").into_inner();
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&roster_identity::server::embedded_database_url(dir.path()))
        .await
        .expect("identity's SQLite");
    let kept: Option<String> = sqlx::query_scalar("SELECT trace_parent FROM workflows WHERE id = $1")
        .bind(&started.id)
        .fetch_one(&mut db)
        .await
        .expect("the workflow row");
    assert_eq!(kept.as_deref(), Some(traceparent.as_str()), "the workflow continues the caller's trace");

    std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("exit");
    assert!(exit.success(), "{exit:?}");

    let text = std::fs::read_to_string(&log_path).expect("log");
    assert!(!text.contains('\u{1b}'), "no terminal colour codes off a terminal");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let rpc = |method: &str| -> Vec<&Value> {
        lines.iter().filter(|l| l["message"] == "rpc finished" && l["span"]["method"] == method).collect()
    };
    let get_account = rpc("/roster.identity.v1.AccountService/GetAccount");
    assert_eq!(get_account.len(), 2, "one line per call: {get_account:?}");
    let (no_token, read) = (get_account[0], get_account[1]);
    assert_eq!(no_token["level"], "INFO");
    assert_eq!(no_token["code"], "UNAUTHENTICATED");
    assert!(no_token["span"].get("principal").is_none(), "nobody was authenticated: {no_token}");
    assert_eq!(read["code"], "OK");
    assert_eq!(read["span"]["principal"], "user");
    assert_eq!(read["span"]["trace_id"], TRACE_ID);
    assert!(read["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{read}");
    let deactivate = rpc("/roster.identity.v1.UserService/DeactivateUser");
    assert_eq!(deactivate.len(), 2, "{deactivate:?}");
    assert_eq!(deactivate[0]["code"], "FAILED_PRECONDITION");
    assert_eq!(deactivate[0]["span"]["request_id"], "log-line-1");
    let seats = rpc("/roster.licensing.v1.LicenseService/ListSeats");
    assert_eq!((seats.len(), &seats[0]["code"]), (1, &Value::from("OK")), "licensing logs its calls too");
    let lookups: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["message"] == "rpc finished"
                && l["span"]["method"].as_str().is_some_and(|m| m.starts_with("/roster.identity.v1.DirectoryService/"))
        })
        .collect();
    assert!(
        lookups.iter().any(|l| l["span"]["principal"] == "service"),
        "identity logs licensing's lookup as a service's call: {lookups:?}"
    );
    assert!(
        lookups.iter().any(|l| l["span"]["trace_id"] == TRACE_ID),
        "licensing passed the caller's traceparent on to identity: {lookups:?}"
    );
    // Health checks (the test's own wait for the server) are plumbing: logged at debug only.
    let health = rpc("/grpc.health.v1.Health/Check");
    assert!(health.is_empty(), "no info line per health check: {health:?}");
    let stopped = lines.iter().find(|l| l["message"] == "workflow worker stopped").expect("the worker's last line");
    assert!(stopped["completed"].is_u64(), "counters are fields: {stopped}");
}
