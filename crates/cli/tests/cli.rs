//! The `roster` binary's contract with operators: bad configuration exits 64 naming the key
//! to fix; tokens and migrations work from a data directory.

use std::process::{Command, Output};

fn roster(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(args)
        .env_remove("ROSTER_JWKS")
        .env_remove("ROSTER_IDENTITY_DATABASE_URL")
        .output()
        .expect("roster runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_configuration_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8 path");

    let missing_keys = roster(&["--data-dir", data_dir, "serve", "identity"]);
    assert_eq!(missing_keys.status.code(), Some(64));
    assert!(stderr(&missing_keys).contains("ROSTER_JWKS"), "{}", stderr(&missing_keys));

    let unreadable_key = roster(&["--data-dir", data_dir, "serve", "identity", "--jwks", "/nonexistent/jwks.json"]);
    assert_eq!(unreadable_key.status.code(), Some(64));
    assert!(stderr(&unreadable_key).contains("ROSTER_JWKS"));

    // A PEM public key where the JWKS belongs: refused, not half-read.
    let pem = dir.path().join("public.pem");
    std::fs::write(&pem, "-----BEGIN PUBLIC KEY-----\n").expect("write");
    let not_jwks = roster(&["--data-dir", data_dir, "serve", "identity", "--jwks", pem.to_str().expect("utf-8")]);
    assert_eq!(not_jwks.status.code(), Some(64));
    assert!(stderr(&not_jwks).contains("not a usable JWKS file"), "{}", stderr(&not_jwks));

    let bad_url = roster(&["--data-dir", data_dir, "migrate", "--identity-database-url", "mysql://db/roster"]);
    assert_eq!(bad_url.status.code(), Some(64));
    assert!(stderr(&bad_url).contains("ROSTER_IDENTITY_DATABASE_URL"), "{}", stderr(&bad_url));

    let out_of_range = roster(&["--data-dir", data_dir, "up", "--concurrency-limit", "0"]);
    assert_eq!(out_of_range.status.code(), Some(64));
    assert!(stderr(&out_of_range).contains("--concurrency-limit"), "{}", stderr(&out_of_range));

    let bad_log_filter = roster(&["--data-dir", data_dir, "--log", "info,=[", "migrate"]);
    assert_eq!(bad_log_filter.status.code(), Some(64));
    assert!(stderr(&bad_log_filter).contains("ROSTER_LOG"), "{}", stderr(&bad_log_filter));

    let no_private_key = roster(&["--data-dir", data_dir, "token", "--operator", "support"]);
    assert_eq!(no_private_key.status.code(), Some(64));
    assert!(stderr(&no_private_key).contains("ROSTER_JWT_PRIVATE_KEY"));

    let nobody = roster(&["--data-dir", data_dir, "token"]);
    assert_eq!(nobody.status.code(), Some(64), "token needs --user, --operator or --service");
}

fn roster_with_env(args: &[&str], env: (&str, &str)) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(args)
        .env_remove("ROSTER_JWKS")
        .env_remove("ROSTER_IDENTITY_DATABASE_URL")
        .env(env.0, env.1)
        .output()
        .expect("roster runs")
}

#[test]
fn bad_values_name_the_variable_as_well_as_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    for (variable, value, flag, command) in [
        ("ROSTER_IDENTITY_LISTEN", "garbage", "--identity-listen", "up"),
        ("ROSTER_REQUEST_TIMEOUT_MS", "0", "--request-timeout-ms", "up"),
        ("ROSTER_LOG_FORMAT", "xml", "--log-format", "migrate"),
        ("ROSTER_SHUTDOWN_GRACE_MS", "-5", "--shutdown-grace-ms", "up"),
        ("ROSTER_MAX_CONCURRENT_STREAMS", "0", "--max-concurrent-streams", "up"),
    ] {
        let output = roster_with_env(&["--data-dir", data_dir, command], (variable, value));
        assert_eq!(output.status.code(), Some(64), "{variable}={value}");
        let text = stderr(&output);
        assert!(text.contains(variable) && text.contains(flag), "{variable}={value}: {text}");
    }
    // A configuration error found after parsing names both too.
    let missing = roster(&["--data-dir", data_dir, "serve", "identity"]);
    assert!(stderr(&missing).contains("ROSTER_JWKS (--jwks)"), "{}", stderr(&missing));
}

#[test]
fn logging_flags_work_after_the_subcommand_and_up_refuses_what_it_ignores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let json = roster(&["--data-dir", data_dir, "migrate", "--log-format", "json", "--log", "warn"]);
    assert!(json.status.success(), "{}", stderr(&json));
    // `roster up` wires the services itself; settings only `serve` uses are refused, not ignored.
    for flag in ["--service-signing-key", "--licensing-url"] {
        let refused = roster(&["--data-dir", data_dir, "up", flag, "x"]);
        assert_eq!(refused.status.code(), Some(64), "{flag}");
        assert!(stderr(&refused).contains(flag), "{}", stderr(&refused));
    }
}

#[test]
fn an_unreachable_database_is_named_with_its_cause_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    // Nothing listens on port 1 of the loopback address.
    let url = "postgres://roster:secret@127.0.0.1:1/roster";
    let started = std::time::Instant::now();
    let output = roster(&["--data-dir", data_dir, "migrate", "--identity-database-url", url]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("cannot reach postgres://roster:***@127.0.0.1:1/roster"), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(!text.contains("secret"), "the password stays out of the message");
    // The cause comes from the first attempt, not after the pool's 10 s timeout.
    assert!(started.elapsed() < std::time::Duration::from_secs(9), "took {:?}", started.elapsed());
}

#[test]
fn migrate_is_repeatable_and_help_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    for _ in 0..2 {
        let migrated = roster(&["--data-dir", data_dir, "migrate"]);
        assert!(migrated.status.success(), "{}", stderr(&migrated));
    }
    assert!(dir.path().join("identity.db").exists());
    assert_eq!(roster(&["--help"]).status.code(), Some(0));
}

#[test]
fn generated_keys_mint_tokens_each_for_its_own_kind_of_principal() {
    use roster_platform::auth::{AuthError, Principal, Verifier};
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let generated = roster(&["--data-dir", data_dir, "keys", "generate"]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let jwks = dir.path().join("keys/jwks.json");
    assert!(String::from_utf8_lossy(&generated.stdout).contains(jwks.to_str().expect("utf-8")));
    let verifier = Verifier::from_jwks_file(&jwks, "roster", "roster").expect("verifier");

    let token = |args: &[&str]| {
        let output = roster(&[&["--data-dir", data_dir, "token", "--ttl-seconds", "60"], args].concat());
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
    };
    assert_eq!(verifier.verify(&token(&["--user", "u-1"])), Ok(Principal::User { user_id: "u-1".into() }));
    assert_eq!(verifier.verify(&token(&["--operator", "support"])), Ok(Principal::Operator { name: "support".into() }));
    assert_eq!(verifier.verify(&token(&["--service", "identity"])), Ok(Principal::Service { name: "identity".into() }));
    // The users' key, passed explicitly, cannot make an operator.
    let users_key = dir.path().join("keys/users.pem");
    let forged = token(&["--operator", "support", "--private-key", users_key.to_str().expect("utf-8")]);
    assert_eq!(verifier.verify(&forged), Err(AuthError::KeyNotForPrincipal));
}

#[test]
fn json_logs_on_request() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
        .args([
            "--data-dir",
            dir.path().to_str().expect("utf-8"),
            "--log-format",
            "json",
            "up",
            "--identity-listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("roster starts");
    let stderr = child.stderr.take().expect("stderr");
    // Every line is JSON; the saga worker may log before the server does.
    let mut serving = None;
    for text in BufReader::new(stderr).lines().take(20) {
        let text = text.expect("utf-8");
        let line: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        if line["message"] == "identity serving" {
            serving = Some(line);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(serving.expect("identity logs that it serves")["level"], "INFO");
}
