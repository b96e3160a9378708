//! The real binary as separate processes: `roster up --demo` serves what it prints (identity
//! and licensing, talking to each other), survives a restart with its data, stops cleanly on
//! SIGTERM (a watch stream ends with a status, not a cut connection); two `roster serve identity` replicas on
//! one PostgreSQL keep exactly one owner and deliver each e-mail once.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use roster_e2e::{Process, authed, demo_env, free_port, list_services, wait_serving};
use roster_platform::auth::{KeyDir, KeyScope, Principal, SignerSet};
use roster_proto::identity::v1 as pb;
use roster_proto::licensing::v1 as lpb;
use roster_testkit::FreshDatabase;
use sqlx::Connection;
use tonic::Code;
use tonic_types::StatusExt;

const START: Duration = Duration::from_secs(60);

fn reason(status: &tonic::Status) -> String {
    status.get_details_error_info().map(|info| info.reason).unwrap_or_default()
}

/// What health answers on a fresh connection to `addr`; `None` when nothing accepts there.
async fn health_on_a_new_connection(addr: SocketAddr) -> Option<i32> {
    let channel = roster_e2e::channel(addr).await.ok()?;
    let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
    let response = tonic_health::pb::health_client::HealthClient::new(channel).check(request).await.ok()?;
    Some(response.into_inner().status)
}

/// With a shutdown delay, SIGTERM first turns health NOT_SERVING while the port still takes
/// new connections and calls, so balancers can stop routing before the listener closes.
#[tokio::test]
async fn sigterm_reports_not_serving_through_the_delay_before_the_port_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut roster = Process::start(dir.path(), addr, &["up", "--demo"], &[("ROSTER_SHUTDOWN_DELAY_MS", "5000")]);
    let channel = wait_serving(addr, START).await.expect("serving");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    std::process::Command::new("kill").arg("-TERM").arg(roster.child.id().to_string()).status().expect("kill");
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    let mut seen = None;
    for _ in 0..100 {
        seen = health_on_a_new_connection(addr).await;
        if seen == Some(not_serving) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, Some(not_serving), "a new connection is still taken and hears NOT_SERVING");
    // Well inside the 5 s delay, and long after a drain with no delay would have ended.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(health_on_a_new_connection(addr).await, Some(not_serving), "still taking connections");
    pb::account_service_client::AccountServiceClient::new(channel)
        .get_account(authed(pb::GetAccountRequest { account_id: env["ACCOUNT"].clone() }, &env["MEMBER_TOKEN"]))
        .await
        .expect("calls are still served during the delay");
    assert!(roster.terminate(Duration::from_secs(15)).expect("stops").success());
    assert_eq!(health_on_a_new_connection(addr).await, None, "the port is closed once it stopped");
}

/// A `WatchOperation` stream open at SIGTERM ends with a clean `UNAVAILABLE` status telling
/// the client to watch again, instead of a connection cut under it; the process still exits 0.
#[tokio::test]
async fn sigterm_ends_watch_streams_with_a_status_instead_of_cutting_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut roster = Process::start(dir.path(), addr, &["up", "--demo"], &[]);
    let channel = wait_serving(addr, START).await.expect("serving");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    // An ownership request's operation waits for a week: a stream that stays open.
    let request = pb::account_service_client::AccountServiceClient::new(channel.clone())
        .request_ownership(authed(
            pb::RequestOwnershipRequest { request_id: "watch-me".into(), account_id: env["ACCOUNT"].clone() },
            &env["ADMIN_TOKEN"],
        ))
        .await
        .expect("bob asks for ownership")
        .into_inner();
    let mut stream = roster_proto::operations::v1::operations_client::OperationsClient::new(channel)
        .watch_operation(authed(
            roster_proto::operations::v1::WatchOperationRequest { operation_id: request.operation_id.clone() },
            &env["OWNER_TOKEN"],
        ))
        .await
        .expect("watch")
        .into_inner();
    let first = stream.message().await.expect("the first update").expect("an operation");
    assert!(!first.done, "{first:?}");
    std::process::Command::new("kill").arg("-TERM").arg(roster.child.id().to_string()).status().expect("kill");
    // Updates already on their way may come first; the stream must then end with a status.
    let status = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.message().await {
                Ok(Some(update)) => assert!(!update.done, "{update:?}"),
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream ends within the drain");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("call WatchOperation again"), "{status:?}");
    assert!(roster.terminate(Duration::from_secs(15)).expect("stops").success());
}

/// Both services take gzip-compressed requests, and answer uncompressed even a client that
/// accepts gzip (`grpc-accept-encoding`), as Python's and Java's gRPC clients do by default.
#[tokio::test]
async fn gzip_requests_are_accepted_and_answers_are_not_compressed() {
    use tonic::codec::CompressionEncoding::Gzip;
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut roster = Process::start(dir.path(), addr, &["up", "--demo"], &[]);
    let identity = wait_serving(addr, START).await.expect("identity serving");
    let licensing = wait_serving(roster.licensing.expect("licensing address"), START).await.expect("licensing serving");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    let account = pb::account_service_client::AccountServiceClient::new(identity)
        .send_compressed(Gzip)
        .accept_compressed(Gzip)
        .get_account(authed(pb::GetAccountRequest { account_id: env["ACCOUNT"].clone() }, &env["MEMBER_TOKEN"]))
        .await
        .expect("a gzip request to identity");
    assert_eq!(account.metadata().get("grpc-encoding"), None, "{:?}", account.metadata());
    assert_eq!(account.into_inner().id, env["ACCOUNT"]);
    let seats = lpb::license_service_client::LicenseServiceClient::new(licensing)
        .send_compressed(Gzip)
        .accept_compressed(Gzip)
        .list_seats(authed(lpb::ListSeatsRequest { account_id: env["ACCOUNT"].clone() }, &env["ADMIN_TOKEN"]))
        .await
        .expect("a gzip request to licensing");
    assert_eq!(seats.metadata().get("grpc-encoding"), None, "{:?}", seats.metadata());
    assert!(!seats.into_inner().seats.is_empty());
    assert!(roster.terminate(Duration::from_secs(15)).expect("stops").success());
}

#[tokio::test]
async fn up_demo_serves_its_walkthrough_restarts_with_its_data_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut roster = Process::up_demo(dir.path());
    let channel = wait_serving(roster.addr, START).await.expect("serving");
    let services = list_services(channel.clone()).await.expect("reflection");
    for service in
        ["roster.identity.v1.AccountService", "roster.identity.v1.UserService", "roster.identity.v1.RoleService"]
    {
        assert!(services.iter().any(|s| s == service), "{service} listed in {services:?}");
    }
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    let mut accounts = pb::account_service_client::AccountServiceClient::new(channel.clone());
    let account = accounts
        .get_account(authed(pb::GetAccountRequest { account_id: env["ACCOUNT"].clone() }, &env["MEMBER_TOKEN"]))
        .await
        .expect("a member reads the account")
        .into_inner();
    assert_eq!(account.owner.expect("owner").email, "alice@acme.example");

    let transfer = |token: &str| {
        let mut accounts = accounts.clone();
        let request = authed(
            pb::TransferOwnershipRequest {
                request_id: format!("e2e-{token:.12}"),
                account_id: env["ACCOUNT"].clone(),
                new_owner_user_id: env["ADMIN_ID"].clone(),
                confirm_phone_transfer: true,
            },
            token,
        );
        async move { accounts.transfer_ownership(request).await }
    };
    let refused = transfer(&env["MEMBER_TOKEN"]).await.expect_err("members cannot transfer");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::PermissionDenied, "NOT_ACCOUNT_OWNER"));
    transfer(&env["OWNER_TOKEN"]).await.expect("the owner transfers to the admin");

    // Licensing asks identity over gRPC: the new owner sees billing, the previous one does not.
    let licensing = wait_serving(roster.licensing.expect("up runs licensing"), START).await.expect("licensing");
    let mut billing = lpb::billing_service_client::BillingServiceClient::new(licensing);
    let overview = |token: &str| {
        let mut billing = billing.clone();
        let request = authed(lpb::GetBillingOverviewRequest { account_id: env["ACCOUNT"].clone() }, token);
        async move { billing.get_billing_overview(request).await }
    };
    overview(&env["ADMIN_TOKEN"]).await.expect("the new owner reads billing");
    let previous = overview(&env["OWNER_TOKEN"]).await.expect_err("the previous owner does not");
    assert_eq!(reason(&previous), "NOT_ACCOUNT_OWNER");
    let solo = billing
        .quote_refund(authed(
            lpb::QuoteRefundRequest {
                account_id: env["SOLO_ACCOUNT"].clone(),
                subscription_id: env["SUBSCRIPTION_ID"].clone(),
            },
            &env["SOLO_OWNER_TOKEN"],
        ))
        .await
        .expect("the solo owner quotes a refund")
        .into_inner();
    assert!(solo.amount_minor > 0 && solo.amount_minor < 1_499, "a partial refund of EUR 14.99: {solo:?}");

    let status = roster.terminate(Duration::from_secs(15)).expect("stops");
    assert!(status.success(), "SIGTERM exits 0, got {status:?}");

    // Same data directory: the demo is not seeded twice and the transfer is still there.
    let mut again = Process::up_demo(dir.path());
    let channel = wait_serving(again.addr, START).await.expect("serving again");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    let account = pb::account_service_client::AccountServiceClient::new(channel)
        .get_account(authed(pb::GetAccountRequest { account_id: env["ACCOUNT"].clone() }, &env["MEMBER_TOKEN"]))
        .await
        .expect("account after restart")
        .into_inner();
    assert_eq!(account.owner.expect("owner").email, "bob@acme.example");
    assert!(again.terminate(Duration::from_secs(15)).expect("stops").success());

    // Started again, the banner prints the people as they are now: Bob owns Acme, Alice is an
    // admin; not the seed's cast.
    let banner = banner_of(dir.path(), &["up", "--demo"], &[]);
    assert!(banner.lines().any(|l| l.starts_with("  owner") && l.contains("bob@acme.example")), "{banner}");
    assert!(banner.lines().any(|l| l.starts_with("  admin") && l.contains("alice@acme.example")), "{banner}");
    assert!(banner.contains("iris@freelance.example"), "the contractor is listed: {banner}");

    // Same data directory, but PostgreSQL now: the saved demo's account is not there, so the
    // demo is seeded into PostgreSQL and the printed tokens work against it.
    let (Some(identity_pg), Some(licensing_pg)) = (FreshDatabase::create().await, FreshDatabase::create().await) else {
        return;
    };
    std::fs::remove_file(dir.path().join("demo.env")).expect("remove demo.env");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let env_vars = [
        ("ROSTER_IDENTITY_DATABASE_URL", identity_pg.url.as_str()),
        ("ROSTER_LICENSING_DATABASE_URL", licensing_pg.url.as_str()),
    ];
    let mut on_postgres = Process::start(dir.path(), addr, &["up", "--demo"], &env_vars);
    let channel = wait_serving(addr, START).await.expect("serving on PostgreSQL");
    let pg_env = demo_env(dir.path(), START).await.expect("demo.env");
    assert_ne!(pg_env["ACCOUNT"], env["ACCOUNT"], "a new demo account was seeded");
    let account = pb::account_service_client::AccountServiceClient::new(channel)
        .get_account(authed(pb::GetAccountRequest { account_id: pg_env["ACCOUNT"].clone() }, &pg_env["MEMBER_TOKEN"]))
        .await
        .expect("the printed tokens work against PostgreSQL")
        .into_inner();
    assert_eq!(account.owner.expect("owner").email, "alice@acme.example");
    assert!(on_postgres.terminate(Duration::from_secs(15)).expect("stops").success());

    // `rm -rf .roster` resets only SQLite: on PostgreSQL the demo's users are still there, and
    // `up --demo` says how to start over. `--reset` empties both databases and seeds afresh.
    let fresh_dir = tempfile::tempdir().expect("tempdir");
    let (code, stderr) = exit_of(fresh_dir.path(), &["up", "--demo"], &env_vars);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("up --demo --reset"), "{stderr}");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut reset = Process::start(fresh_dir.path(), addr, &["up", "--demo", "--reset"], &env_vars);
    let channel = wait_serving(addr, START).await.expect("serving after the reset");
    let reset_env = demo_env(fresh_dir.path(), START).await.expect("demo.env");
    assert_ne!(reset_env["ACCOUNT"], pg_env["ACCOUNT"], "seeded afresh");
    let mut accounts = pb::account_service_client::AccountServiceClient::new(channel);
    let old = accounts
        .get_account(authed(
            pb::GetAccountRequest { account_id: pg_env["ACCOUNT"].clone() },
            &reset_env["OPERATOR_TOKEN"],
        ))
        .await
        .expect_err("the previous demo account is gone");
    assert_eq!(old.code(), Code::NotFound);
    accounts
        .get_account(authed(
            pb::GetAccountRequest { account_id: reset_env["ACCOUNT"].clone() },
            &reset_env["MEMBER_TOKEN"],
        ))
        .await
        .expect("the new demo answers");
    assert!(reset.terminate(Duration::from_secs(15)).expect("stops").success());
    identity_pg.drop_database().await;
    licensing_pg.drop_database().await;
}

/// `roster <args>` on free ports of its own, logging at `warn`, its output where asked.
fn spawn(
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdout: std::process::Stdio,
    stderr: std::process::Stdio,
) -> std::process::Child {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let licensing = SocketAddr::from(([127, 0, 0, 1], free_port()));
    std::process::Command::new(roster_e2e::roster_binary())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .args(["--identity-listen", &addr.to_string(), "--licensing-listen", &licensing.to_string()])
        .envs(env.iter().copied())
        .env("ROSTER_LOG", "warn")
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("roster starts")
}

/// The banner `roster <args>` prints on stdout once it is up (read until its last line); the
/// process is then stopped.
fn banner_of(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    use std::io::{BufRead, BufReader};
    let mut child = spawn(data_dir, args, env, std::process::Stdio::piped(), std::process::Stdio::inherit());
    let mut banner = String::new();
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let line = line.expect("utf-8");
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("The README walks") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    banner
}

/// How `roster <args>` ends (it must end by itself within a minute) and what it said on stderr.
fn exit_of(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = spawn(data_dir, args, env, std::process::Stdio::null(), std::process::Stdio::piped());
    let deadline = std::time::Instant::now() + START;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("roster {args:?} did not end by itself");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs()
}

fn replica(data_dir: &Path, database_url: &str, keys: &KeyDir, licensing: SocketAddr) -> Process {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    Process::serve_identity(data_dir, addr, database_url, keys, licensing, &[("ROSTER_OUTBOX_POLL_MS", "50")])
}

#[tokio::test]
async fn two_replicas_on_one_postgres_keep_one_owner_and_send_each_email_once() {
    let Some(database) = FreshDatabase::create().await else { return };
    let url = database.url.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let (keys, signer) =
        SignerSet::generate(&dir.path().join("keys"), &KeyScope::all(), "roster", "roster").expect("keys");
    let token = |principal: Principal| signer.mint(&principal, now_s(), 600);
    let user = |id: &str| token(Principal::User { user_id: id.to_owned() });
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let licensing_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let replicas = [replica(&dir_a, &url, &keys, licensing_addr), replica(&dir_b, &url, &keys, licensing_addr)];
    let _licensing =
        Process::serve_licensing(&dir.path().join("licensing"), licensing_addr, None, &keys, replicas[0].addr, &[]);
    let mut channels = Vec::new();
    for replica in &replicas {
        channels.push(wait_serving(replica.addr, START).await.expect("replica serving"));
    }
    // The dev clock is `roster up --manual-clock`'s alone: a production server never moves time.
    let clock = roster_proto::dev::v1::clock_service_client::ClockServiceClient::new(channels[0].clone())
        .advance_time(authed(
            roster_proto::dev::v1::AdvanceTimeRequest { by: "24h".into() },
            &token(Principal::Operator { name: "e2e".into() }),
        ))
        .await
        .expect_err("roster serve has no dev clock");
    assert_eq!(clock.code(), tonic::Code::Unimplemented, "{clock:?}");
    let accounts = |i: usize| pb::account_service_client::AccountServiceClient::new(channels[i % 2].clone());
    let users = |i: usize| pb::user_service_client::UserServiceClient::new(channels[i % 2].clone());
    let roles = |i: usize| pb::role_service_client::RoleServiceClient::new(channels[i % 2].clone());

    let created = accounts(0)
        .create_account(authed(
            pb::CreateAccountRequest {
                request_id: "e2e-create".into(),
                name: "Replicated".into(),
                plan: pb::Plan::Business as i32,
                owner_email: "owner@replicas.example".into(),
                ..Default::default()
            },
            &token(Principal::Operator { name: "e2e".into() }),
        ))
        .await
        .expect("create")
        .into_inner();
    let account = created.id.clone();
    let owner = created.owner.expect("owner").user_id;

    let mut db = sqlx::AnyConnection::connect(&url).await.expect("connect");
    let mut admins = Vec::new();
    for i in 0..6 {
        let email = format!("admin{i}@replicas.example");
        let invitation = users(i)
            .invite_user(authed(
                pb::InviteUserRequest {
                    request_id: format!("e2e-invite-{i}"),
                    account_id: account.clone(),
                    email: email.clone(),
                    ..Default::default()
                },
                &user(&owner),
            ))
            .await
            .expect("invite")
            .into_inner();
        let body: String =
            sqlx::query_scalar("SELECT body FROM outbox WHERE recipient = $1 AND kind = 'invitation' ORDER BY id DESC")
                .bind(&email)
                .fetch_one(&mut db)
                .await
                .expect("invitation e-mail");
        let code = body.lines().find_map(|l| l.strip_prefix("Invitation code: ")).expect("code").to_owned();
        users(i + 1)
            .accept_invitation(authed(
                pb::AcceptInvitationRequest { request_id: format!("e2e-accept-{i}"), code },
                &user(&invitation.user_id),
            ))
            .await
            .expect("accept on the other replica");
        roles(i)
            .assign_role(authed(
                pb::AssignRoleRequest {
                    request_id: format!("e2e-promote-{i}"),
                    account_id: account.clone(),
                    user_id: invitation.user_id.clone(),
                    role_id: "admin".into(),
                },
                &user(&owner),
            ))
            .await
            .expect("promote");
        admins.push(invitation.user_id);
    }

    // The owner fires a transfer to every admin, alternating replicas; every admin fires one
    // too. Whatever interleaving happens, one owner must remain.
    let mut calls = Vec::new();
    for (i, admin) in admins.iter().enumerate() {
        for (caller, suffix) in [(owner.clone(), "owner"), (admin.clone(), "admin")] {
            let mut client = accounts(i + usize::from(suffix == "admin"));
            let request = authed(
                pb::TransferOwnershipRequest {
                    request_id: format!("e2e-race-{i}-{suffix}"),
                    account_id: account.clone(),
                    new_owner_user_id: admins[(i + 1) % admins.len()].clone(),
                    confirm_phone_transfer: false,
                },
                &user(&caller),
            );
            calls.push(async move { client.transfer_ownership(request).await });
        }
    }
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().any(Result::is_ok), "someone won the race");
    let owners: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE account_id = $1 AND role = 'owner'")
        .bind(&account)
        .fetch_one(&mut db)
        .await
        .expect("count");
    assert_eq!(owners, 1, "exactly one owner across replicas");

    // Each queued e-mail is delivered by exactly one replica.
    let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox").fetch_one(&mut db).await.expect("count");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let delivered = loop {
        let files =
            [&dir_a, &dir_b].iter().map(|d| std::fs::read_dir(d.join("mail")).map_or(0, |r| r.count())).sum::<usize>();
        if files as i64 >= queued || std::time::Instant::now() > deadline {
            break files;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(delivered as i64, queued, "every e-mail delivered once, by one replica");

    for mut replica in replicas {
        assert!(replica.terminate(Duration::from_secs(15)).expect("stops").success());
    }
    db.close().await.ok();
    database.drop_database().await;
}

/// Routes, reflection and health all come from one list of served services per binary: for
/// identity and for licensing, the Roster services reflection lists are exactly those health
/// reports SERVING and exactly those whose methods are routed (any other service's method is
/// UNIMPLEMENTED). `BulkService` once had a route but was missing from the other two.
#[tokio::test]
async fn routes_reflection_and_health_name_the_same_services() {
    let dir = tempfile::tempdir().expect("tempdir");
    let roster = Process::up_demo(dir.path());
    let identity = wait_serving(roster.addr, START).await.expect("identity");
    let licensing = wait_serving(roster.licensing.expect("licensing"), START).await.expect("licensing");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    let every_roster_service: std::collections::BTreeMap<String, roster_testkit::hostile::Rpc> =
        roster_testkit::hostile::rpcs(&[
            "roster.identity.v1",
            "roster.licensing.v1",
            "roster.operations.v1",
            "roster.events.v1",
            "roster.dev.v1",
        ])
        .into_iter()
        .filter(|rpc| !rpc.server_streaming)
        .map(|rpc| (rpc.path.trim_start_matches('/').split('/').next().expect("service").to_owned(), rpc))
        .collect();
    for (name, channel, expected) in [
        (
            "identity",
            identity,
            &[
                "AccountService",
                "BulkService",
                "DirectoryService",
                "Events",
                "Operations",
                "RoleService",
                "UserService",
            ][..],
        ),
        ("licensing", licensing, &["BillingService", "ContentService", "Events", "LicenseService"][..]),
    ] {
        let reflected: Vec<String> = list_services(channel.clone())
            .await
            .expect("reflection")
            .into_iter()
            .filter(|s| s.starts_with("roster."))
            .collect();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let mut healthy = Vec::new();
        let mut routed = Vec::new();
        for (service, rpc) in &every_roster_service {
            let check = tonic_health::pb::HealthCheckRequest { service: service.clone() };
            match health.check(check).await {
                Ok(answer) if answer.get_ref().status == tonic_health::ServingStatus::Serving as i32 => {
                    healthy.push(service.clone())
                }
                Ok(answer) => panic!("{name}: {service} is {:?}", answer.get_ref().status),
                Err(status) => assert_eq!(status.code(), Code::NotFound, "{name}: health of {service}"),
            }
            let answer = roster_testkit::hostile::call_raw(&channel, rpc, Vec::new(), &env["OPERATOR_TOKEN"]).await;
            if !matches!(&answer, Err(status) if status.code() == Code::Unimplemented) {
                routed.push(service.clone());
            }
        }
        let mut reflected = reflected;
        reflected.sort();
        let mut short: Vec<&str> = reflected.iter().map(|s| s.rsplit('.').next().expect("name")).collect();
        short.sort();
        assert_eq!(short, expected, "{name}: reflection lists every service it answers");
        assert_eq!(healthy, reflected, "{name}: health knows the same services");
        assert_eq!(routed, reflected, "{name}: the same services are routed");
    }
}

/// `roster up` seals both services' page tokens with one key file: a token from identity's
/// `ListUsers` still opens nothing in licensing's lists, since each token is bound to its own
/// list RPC, caller and filter.
#[tokio::test]
async fn a_page_token_of_one_service_opens_nothing_in_the_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let roster = Process::up_demo(dir.path());
    let identity = wait_serving(roster.addr, START).await.expect("identity");
    let licensing = wait_serving(roster.licensing.expect("licensing"), START).await.expect("licensing");
    let env = demo_env(dir.path(), START).await.expect("demo.env");
    let token = pb::user_service_client::UserServiceClient::new(identity)
        .list_users(authed(
            pb::ListUsersRequest { account_id: env["ACCOUNT"].clone(), page_size: 1, ..Default::default() },
            &env["OPERATOR_TOKEN"],
        ))
        .await
        .expect("users")
        .into_inner()
        .next_page_token;
    assert!(!token.is_empty());
    let mut licenses = lpb::license_service_client::LicenseServiceClient::new(licensing);
    let list = |page_token: String| lpb::ListAssignmentsRequest {
        account_id: env["ACCOUNT"].clone(),
        page_size: 1,
        page_token,
        ..Default::default()
    };
    let refused = licenses.list_assignments(authed(list(token), &env["OPERATOR_TOKEN"])).await.expect_err("identity's");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let own = licenses.list_assignments(authed(list(String::new()), &env["OPERATOR_TOKEN"])).await.expect("a page");
    let own = own.into_inner().next_page_token;
    licenses.list_assignments(authed(list(own), &env["OPERATOR_TOKEN"])).await.expect("its own token opens");
}
