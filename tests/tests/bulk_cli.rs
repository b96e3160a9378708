//! `roster bulk` as an account owner runs it against `roster up --demo` (SPEC R14, R16, R25):
//! the template, a dry run of a file (exit 1 when a row would be refused, the previews in
//! `<file>.dry-run.results.csv`, nothing changed), a run whose rows partly fail (exit 1, progress as plain lines off a
//! terminal, a summary, the results file beside the input), a run that fully succeeds (exit 0),
//! and the refusals: an admin without the bulk privilege (exit 1, the reason on stderr) and no
//! token (exit 64).

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use roster_e2e::{Process, demo_env, roster_binary, wait_serving};

const START: Duration = Duration::from_secs(60);

fn bulk(url: &str, token: &str, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(roster_binary());
    command.arg("bulk").args(args).env("ROSTER_IDENTITY_URL", url).env_remove("ROSTER_TOKEN");
    if !token.is_empty() {
        command.env("ROSTER_TOKEN", token);
    }
    command.output().expect("roster bulk runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(url: &str, token: &str, account: &str, csv: &Path) -> Output {
    bulk(url, token, &["run", "deactivate", "--csv", csv.to_str().expect("utf-8 path"), "--account", account])
}

#[tokio::test]
async fn an_owner_deactivates_users_from_a_csv_file_with_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let roster = Process::up_demo(dir.path());
    wait_serving(roster.addr, START).await.expect("serving");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    let url = format!("http://{}", roster.addr);
    let (owner, admin, account) = (env["OWNER_TOKEN"].as_str(), env["ADMIN_TOKEN"].as_str(), env["ACCOUNT"].as_str());

    let template = bulk(&url, "", &["template", "unlink"]);
    assert!(template.status.success(), "no server or token needed: {template:?}");
    assert!(text(&template.stdout).starts_with("email,transfer_to,transfer_meetings,"), "{template:?}");

    let csv = dir.path().join("leavers.csv");
    std::fs::write(
        &csv,
        "email\r\ndave@acme.example\r\nbob@acme.example\r\nerin@acme.example\r\nnobody@acme.example\r\n",
    )
    .expect("write the file");
    let path = csv.to_str().expect("utf-8 path");
    let dry = bulk(&url, owner, &["run", "deactivate", "--csv", path, "--account", account, "--dry-run"]);
    assert_eq!(dry.status.code(), Some(1), "rows would be refused: {dry:?}");
    let out = text(&dry.stdout);
    assert!(
        out.contains("dry run of bulk.deactivate: nothing was changed; 1 of 4 rows would go ahead, 3 would be refused"),
        "{out}"
    );
    assert!(!out.contains("SUCCEEDED"), "a dry run's summary says what would happen, not that it succeeded: {out}");
    assert!(text(&dry.stderr).contains("3 of 4 rows would be refused"), "{dry:?}");
    let previews = std::fs::read_to_string(dir.path().join("leavers.dry-run.results.csv")).expect("the dry run's file");
    let lines: Vec<&str> = previews.lines().collect();
    assert_eq!(lines[0], "email,outcome,reason,code,message,column,would_reclaim");
    assert!(lines[1].starts_with("dave@acme.example,succeeded,,,,,"), "{previews}");
    assert!(lines[2].starts_with("bob@acme.example,failed,ADMIN_MUST_BE_DEMOTED,1117,"), "{previews}");
    // The real run below finds dave still active: the dry run changed nothing.
    let mixed = run(&url, owner, account, &csv);
    assert_eq!(mixed.status.code(), Some(1), "rows failed: {mixed:?}");
    let out = text(&mixed.stdout);
    assert!(out.lines().next().is_some_and(|l| l.starts_with("SUCCEEDED rows 4/4")), "a plain line per change: {out}");
    assert!(out.contains("bulk.deactivate SUCCEEDED rows 4/4: 1 succeeded, 3 failed, 0 skipped"), "{out}");
    assert!(text(&mixed.stderr).contains("3 of 4 rows did not succeed"), "{mixed:?}");
    let results = std::fs::read_to_string(dir.path().join("leavers.results.csv")).expect("the results file");
    let lines: Vec<&str> = results.lines().collect();
    assert_eq!(lines[0], "email,outcome,reason,code,message,column");
    assert_eq!(lines[1], "dave@acme.example,succeeded,,,,");
    assert!(lines[2].starts_with("bob@acme.example,failed,ADMIN_MUST_BE_DEMOTED,1117,"), "{results}");
    assert!(lines[3].starts_with("erin@acme.example,failed,USER_PENDING,,"), "{results}");
    assert!(lines[4].starts_with("nobody@acme.example,failed,USER_NOT_FOUND,1010,"), "{results}");

    let carol = dir.path().join("carol.csv");
    std::fs::write(&carol, "email\ncarol@acme.example\n").expect("write the file");
    // With --json, stdout is JSON lines only; the summary goes to stderr.
    let carol_path = carol.to_str().expect("utf-8 path");
    let clean = bulk(&url, owner, &["run", "deactivate", "--csv", carol_path, "--account", account, "--json"]);
    assert!(clean.status.success(), "every row succeeded: {clean:?}");
    let out = text(&clean.stdout);
    assert!(out.lines().count() > 0, "{clean:?}");
    for line in out.lines() {
        let operation: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(operation["kind"], "bulk.deactivate");
    }
    assert!(text(&clean.stderr).contains("bulk.deactivate SUCCEEDED rows 1/1"), "{clean:?}");
    assert!(dir.path().join("carol.results.csv").exists());

    let refused = run(&url, admin, account, &carol);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(text(&refused.stderr).contains("MISSING_PRIVILEGE"), "{refused:?}");
    let no_token = run(&url, "", account, &carol);
    assert_eq!(no_token.status.code(), Some(64), "{no_token:?}");
    assert!(text(&no_token.stderr).contains("ROSTER_TOKEN"), "{no_token:?}");
}
