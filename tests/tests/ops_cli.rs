//! `roster ops` as an operator runs it, against `roster up --demo`: list, get and watch a real
//! operation as tables and as JSON, retry and resolve failed ones, a refused cancel, and the
//! errors (exit status and the reason on stderr) for a member and for a missing token.
//! The operations are made to fail by editing the database, as a refusal past the point of no
//! return leaves them; the repairs themselves are tested on real sagas in licensing's `sagas`.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use roster_e2e::{Process, authed, demo_env, roster_binary, wait_serving};
use roster_proto::identity::v1 as pb;
use sqlx::Connection;

const START: Duration = Duration::from_secs(60);

/// Runs `roster ops <args>` against identity at `url` with `token` (none when empty).
fn ops(url: &str, token: &str, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(roster_binary());
    command.arg("ops").args(args).env("ROSTER_IDENTITY_URL", url).env_remove("ROSTER_TOKEN");
    if !token.is_empty() {
        command.env("ROSTER_TOKEN", token);
    }
    command.output().expect("roster ops runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Marks the operation FAILED, as a refusal after its point of no return would.
async fn fail(data_dir: &Path, id: &str) {
    let url = format!("sqlite://{}?mode=rw", data_dir.join("identity.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.expect("identity.db");
    sqlx::query(roster_testkit::MARK_OPERATION_FAILED).bind(id).execute(&mut db).await.expect("fail it");
}

#[tokio::test]
async fn an_operator_lists_follows_and_repairs_operations_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let roster = Process::up_demo(dir.path());
    let channel = wait_serving(roster.addr, START).await.expect("serving");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    let url = format!("http://{}", roster.addr);
    let (operator, member) = (env["OPERATOR_TOKEN"].as_str(), env["MEMBER_TOKEN"].as_str());

    let users = pb::user_service_client::UserServiceClient::new(channel);
    let deactivate = |user: &str| {
        let request = authed(
            pb::DeactivateUserRequest {
                request_id: format!("ops-cli-{user}"),
                account_id: env["ACCOUNT"].clone(),
                user_id: user.to_owned(),
                validate_only: false,
            },
            &env["OWNER_TOKEN"],
        );
        let mut users = users.clone();
        async move { users.deactivate_user(request).await.expect("deactivate").into_inner().id }
    };
    let first = deactivate(&env["OTHER_MEMBER_ID"]).await;

    let listed = ops(&url, operator, &["list", "--account", &env["ACCOUNT"]]);
    assert!(listed.status.success(), "{listed:?}");
    let table = text(&listed.stdout);
    assert!(table.lines().next().is_some_and(|h| h.contains("KIND") && h.contains("STATE")), "{table}");
    assert!(table.contains(&first) && table.contains("user.deactivate") && table.contains("SUCCEEDED"), "{table}");

    let as_json = ops(&url, operator, &["list", "--account", &env["ACCOUNT"], "--json"]);
    let parsed: serde_json::Value = serde_json::from_slice(&as_json.stdout).expect("JSON");
    assert_eq!(parsed[0]["id"], first.as_str());
    assert_eq!(parsed[0]["state"], "OPERATION_STATE_SUCCEEDED", "proto3 JSON, as grpcurl prints it");

    let got = ops(&url, operator, &["get", &first]);
    let shown = text(&got.stdout);
    assert!(shown.contains("reclaimed"), "the result is shown: {got:?}");
    // A name and its value per line: no row padded out to the width of the longest value.
    for line in shown.lines() {
        assert_eq!(line, line.trim_end(), "no trailing padding: {line:?}");
        assert!(line.starts_with("result") || line.len() < 120, "a short line: {line:?}");
    }
    let watched = ops(&url, operator, &["watch", &first]);
    assert!(watched.status.success(), "a succeeded operation ends the watch with 0: {watched:?}");
    assert!(text(&watched.stdout).starts_with("SUCCEEDED 2/2"), "a line per change off a terminal: {watched:?}");

    let cancel = ops(&url, operator, &["cancel", &first]);
    assert_eq!(cancel.status.code(), Some(1), "{cancel:?}");
    assert!(text(&cancel.stderr).contains("OPERATION_NOT_CANCELLABLE"), "{cancel:?}");

    fail(dir.path(), &first).await;
    let failed = ops(&url, operator, &["list", "--account", &env["ACCOUNT"], "--state", "failed"]);
    assert!(text(&failed.stdout).contains(&first), "{failed:?}");
    let by_member = ops(&url, member, &["retry", &first]);
    assert_eq!(by_member.status.code(), Some(1));
    assert!(text(&by_member.stderr).contains("PRINCIPAL_NOT_ALLOWED"), "{by_member:?}");
    let retried = ops(&url, operator, &["retry", &first, "--watch"]);
    assert!(retried.status.success(), "{retried:?}");
    assert!(text(&retried.stdout).contains("SUCCEEDED"), "{retried:?}");

    let second = deactivate(&env["MEMBER_ID"]).await;
    fail(dir.path(), &second).await;
    let note = "reclaimed the seats by hand, ticket 12";
    let resolved = ops(&url, operator, &["resolve", &second, "--note", note, "--json"]);
    assert!(resolved.status.success(), "{resolved:?}");
    let parsed: serde_json::Value = serde_json::from_slice(&resolved.stdout).expect("JSON");
    assert_eq!(parsed["state"], "OPERATION_STATE_RESOLVED");
    assert_eq!(parsed["resolution"]["note"], note);
    let watched = ops(&url, operator, &["watch", &second]);
    assert!(watched.status.success(), "a resolved operation ends the watch with 0: {watched:?}");

    let no_token = ops(&url, "", &["get", &second]);
    assert_eq!(no_token.status.code(), Some(64), "{no_token:?}");
    assert!(text(&no_token.stderr).contains("ROSTER_TOKEN"), "{no_token:?}");
    let bad_id = ops(&url, operator, &["get", "not-an-id"]);
    assert!(text(&bad_id.stderr).contains("INVALID_ARGUMENT [operation_id]"), "{bad_id:?}");
}
