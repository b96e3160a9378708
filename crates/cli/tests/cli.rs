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

    let bad_log_filter = roster(&["--data-dir", data_dir, "migrate", "--log", "info,=["]);
    assert_eq!(bad_log_filter.status.code(), Some(64));
    assert!(stderr(&bad_log_filter).contains("ROSTER_LOG"), "{}", stderr(&bad_log_filter));

    let no_private_key = roster(&["--data-dir", data_dir, "token", "--operator", "support"]);
    assert_eq!(no_private_key.status.code(), Some(64));
    assert!(stderr(&no_private_key).contains("ROSTER_KEYS_DIR"), "{}", stderr(&no_private_key));

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
    assert_eq!(output.status.code(), Some(69), "EX_UNAVAILABLE");
    let text = stderr(&output);
    assert!(text.contains("ROSTER_IDENTITY_DATABASE_URL (--identity-database-url)"), "{text}");
    assert_eq!(text.lines().count(), 1, "said once: {text}");
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
            "up",
            "--log-format",
            "json",
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

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_port_in_use_exits_64_naming_the_variable_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let output = roster(&["--data-dir", dir.path().to_str().expect("utf-8"), "up", "--identity-listen", &addr]);
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    let text = stderr(&output);
    let said = text.lines().filter(|line| line.contains("cannot listen")).count();
    assert_eq!(said, 1, "once: {text}");
    assert!(text.contains("ROSTER_IDENTITY_LISTEN (--identity-listen)") && text.contains(&addr), "{text}");
}

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [&["migrate"][..], &["keys", "generate"][..], &["completions", "bash"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
            .args([&["--data-dir", dir.path().to_str().expect("utf-8")][..], args].concat())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("roster starts");
        // The reader goes away before the first line, as `| head -0` would.
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("roster ends");
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {text}");
        assert!(!text.contains("panicked") && !text.contains("Broken pipe"), "{args:?}: {text}");
    }
}

#[test]
fn the_keys_directory_is_one_setting_for_generate_and_token() {
    use roster_platform::auth::{Principal, Verifier};
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let keys = dir.path().join("deployment-keys");
    let data = data_dir.to_str().expect("utf-8");
    let generated =
        roster(&["--data-dir", data, "keys", "generate", "--keys-dir", keys.to_str().expect("utf-8"), "--json"]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let written: serde_json::Value = serde_json::from_str(&stdout(&generated)).expect("one JSON document");
    let jwks = keys.join("jwks.json");
    assert_eq!(written["jwks"], jwks.to_str().expect("utf-8"));
    assert_eq!(written["page_token_keys"], keys.join("page-token.keys").to_str().expect("utf-8"));
    assert!(!data_dir.join("keys").exists(), "nothing written to the data directory");

    let verifier = Verifier::from_jwks_file(&jwks, "roster", "roster").expect("verifier");
    let with_keys = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_roster"))
            .args([&["--data-dir", data], args].concat())
            .env("ROSTER_KEYS_DIR", &keys)
            .output()
            .expect("roster runs")
    };
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    for (args, principal, lifetime) in [
        (["token", "--operator", "sam", "--json"], Principal::Operator { name: "sam".into() }, 24 * 3_600),
        (["token", "--service", "licensing", "--json"], Principal::Service { name: "licensing".into() }, 3_600),
    ] {
        let minted = with_keys(&args);
        assert!(minted.status.success(), "{}", stderr(&minted));
        let minted: serde_json::Value = serde_json::from_str(&stdout(&minted)).expect("one JSON document");
        assert_eq!(verifier.verify(minted["token"].as_str().expect("token")), Ok(principal.clone()));
        assert_eq!(minted["principal"], principal.audit_name());
        // By default a token lives as long as the services accept for its kind.
        let expires = minted["expires_at_s"].as_u64().expect("expiry");
        assert!((before + lifetime..=before + lifetime + 60).contains(&expires), "{expires} for {principal:?}");
    }
}

#[test]
fn a_service_signing_with_the_other_services_key_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    assert!(roster(&["--data-dir", data, "keys", "generate"]).status.success());
    let key = |name: &str| dir.path().join("keys").join(name).to_str().expect("utf-8").to_owned();
    let output = roster(&[
        "--data-dir",
        data,
        "serve",
        "identity",
        "--identity-listen",
        "127.0.0.1:0",
        "--jwks",
        &key("jwks.json"),
        "--page-token-keys",
        &key("page-token.keys"),
        "--service-signing-key",
        &key("service-licensing.pem"),
    ]);
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("ROSTER_SERVICE_SIGNING_KEY") && text.contains("service:identity"), "{text}");
}

#[test]
fn a_variable_the_command_does_not_read_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    // `up` makes its own keys: an audience meant for `serve` would be ignored. (The taken port
    // ends it at once; the warning comes first.)
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let up = roster_with_env(&["--data-dir", data, "up", "--identity-listen", &addr], ("ROSTER_JWT_AUDIENCE", "foo"));
    let text = stderr(&up);
    assert!(text.contains("warning: ROSTER_JWT_AUDIENCE is set, but `roster up` does not read it"), "{text}");
    // A misspelt variable is named under `migrate` too.
    let typo = roster_with_env(&["--data-dir", data, "migrate"], ("ROSTER_JWT_AUDIANCE", "foo"));
    assert!(typo.status.success(), "{}", stderr(&typo));
    assert!(stderr(&typo).contains("ROSTER_JWT_AUDIANCE is set, but `roster migrate` does not read it"));
    // One the deployment's other commands read (the services' shared environment) is not.
    for (variable, value) in [("ROSTER_LOG", "warn"), ("ROSTER_LICENSING_URL", "http://127.0.0.1:1")] {
        let read = roster_with_env(&["--data-dir", data, "migrate"], (variable, value));
        assert!(!stderr(&read).contains("is set, but"), "{variable}: {}", stderr(&read));
    }
}

#[test]
fn help_shows_each_command_what_it_takes() {
    let help = |args: &[&str]| {
        let output = roster(&[args, &["--help"]].concat());
        assert!(output.status.success(), "{args:?}");
        stdout(&output)
    };
    assert!(help(&["keys", "generate"]).contains("page-token.keys"));
    let template = help(&["bulk", "template"]);
    assert!(!template.contains("--identity-url") && !template.contains("--token"), "{template}");
    let list = help(&["ops", "list"]);
    let described = |text: &str, item: &str, words: &str| {
        let line =
            text.lines().find(|line| line.trim_start().starts_with(item)).unwrap_or_else(|| panic!("{item}: {text}"));
        assert!(line.contains(words), "{item} is not described: {line}");
    };
    described(&list, "--account <ACCOUNT>", "The account");
    described(&list, "--state <STATE>", "Only operations in this state");
    described(&help(&["ops", "get"]), "<OPERATION_ID>", "The operation's id");
    assert!(!help(&["ops", "resolve"]).contains("--watch"), "resolve is final at once");
    for client in [&["token"][..], &["keys", "generate"][..], &["ops", "list"][..], &["bulk", "run"][..]] {
        let text = help(client);
        assert!(!text.contains("--metrics-listen") && !text.contains("--log"), "{client:?}: {text}");
    }
    assert!(help(&["serve", "identity"]).contains("--metrics-listen"));
    assert!(help(&["migrate"]).contains("--log-format"));
}

#[test]
fn completions_and_man_pages_come_from_the_command_tree() {
    let bash = roster(&["completions", "bash"]);
    assert!(bash.status.success(), "{}", stderr(&bash));
    assert!(stdout(&bash).contains("roster") && stdout(&bash).contains("--keys-dir"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("man");
    let written = roster(&["man", "--out", out.to_str().expect("utf-8")]);
    assert!(written.status.success(), "{}", stderr(&written));
    for page in ["roster.1", "roster-up.1", "roster-ops-list.1", "roster-bulk-run.1"] {
        let text = std::fs::read_to_string(out.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page} is a man page");
    }
}

#[test]
fn private_keys_stay_out_of_git_and_the_image() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ignores = |file: &str| std::fs::read_to_string(root.join(file)).expect(file);
    let (git, docker) = (ignores(".gitignore"), ignores(".dockerignore"));
    for pattern in ["*.pem", "page-token.keys"] {
        assert!(git.lines().any(|l| l == pattern), ".gitignore lacks {pattern}");
        assert!(docker.lines().any(|l| l == pattern), ".dockerignore lacks {pattern}");
    }
    assert!(git.lines().any(|l| l == "/keys/") && docker.lines().any(|l| l == "keys/"), "keys/ at the root");
    assert!(docker.lines().any(|l| l == ".ci/k8s-venv/"), ".dockerignore lacks .ci/k8s-venv/");
}

#[test]
fn the_deploy_files_agree_with_their_docs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let read = |file: &str| std::fs::read_to_string(root.join(file)).expect(file);
    let dev_secrets = read("k8s/overlays/dev/secrets.example.yaml");
    // Dev leaves TLS off: no certificate check against a database that has none to show.
    assert!(!dev_secrets.contains("verify-full"), "dev URLs must not verify a certificate no CA is mounted for");
    // Every example secret is one the dev overlay's manifests read.
    let manifests =
        [read("k8s/base/identity.yaml"), read("k8s/base/licensing.yaml"), read("k8s/base/migrate-job.yaml")].concat();
    for line in dev_secrets.lines() {
        if let Some(name) = line.trim().strip_prefix("name: ") {
            assert!(manifests.contains(&format!(": {name}")), "{name} is in the example secrets but nothing reads it");
        }
    }
    assert!(!read("Dockerfile").contains("ROSTER_LOG_FORMAT"), "the log format is the overlay's choice");
    let docs = read("README.md");
    assert!(!docs.contains("kustomize edit"), "kubectl alone must do");
    assert!(docs.contains("sslmode=disable"), "the deploy README says what dev does about database TLS");
}

/// The commands whose settings the README's configuration table accounts for, as its "Read by"
/// column names them.
const LEAVES: [(&[&str], &str); 10] = [
    (&["up"], "up"),
    (&["serve", "identity"], "serve identity"),
    (&["serve", "licensing"], "serve licensing"),
    (&["migrate"], "migrate"),
    (&["token"], "token"),
    (&["keys", "generate"], "keys generate"),
    (&["ops", "list"], "ops"),
    (&["bulk", "run"], "bulk run"),
    (&["bulk", "template"], "bulk template"),
    (&["events", "tail"], "events tail"),
];

#[test]
fn the_configuration_table_says_which_commands_read_each_variable() {
    use std::collections::{BTreeMap, BTreeSet};
    let mut read: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (path, label) in LEAVES {
        let help = stdout(&roster(&[path, &["--help"]].concat()));
        for variable in help.split("[env: ").skip(1).filter_map(|rest| rest.split(['=', ']']).next()) {
            read.entry(variable.to_owned()).or_default().insert(label);
        }
    }
    let in_words = |labels: &BTreeSet<&str>| -> BTreeSet<String> {
        if labels.len() == LEAVES.len() {
            return BTreeSet::from(["all".to_owned()]);
        }
        let both_services = labels.contains("serve identity") && labels.contains("serve licensing");
        labels
            .iter()
            .map(|label| if both_services && label.starts_with("serve ") { "serve" } else { label })
            .map(str::to_owned)
            .collect()
    };
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
        .expect("README");
    let table = readme.split("| Variable | Flag | Read by |").nth(1).expect("the configuration table");
    let mut documented = BTreeSet::new();
    for row in table.lines().skip(2).take_while(|line| line.starts_with('|')) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let said: BTreeSet<String> = cells[2].split(", ").map(str::to_owned).collect();
        for variable in cells[0].split('`').filter(|part| part.starts_with("ROSTER_")) {
            let actual =
                read.get(variable).unwrap_or_else(|| panic!("{variable} is in the table but no command reads it"));
            assert_eq!(said, in_words(actual), "{variable}: the table says {said:?}");
            documented.insert(variable.to_owned());
        }
    }
    let missing: Vec<&String> = read.keys().filter(|variable| !documented.contains(*variable)).collect();
    assert!(missing.is_empty(), "not in the configuration table: {missing:?}");
}
