//! Sagas across real processes on PostgreSQL: two `roster serve identity` replicas and one
//! `roster serve licensing`. A burst of unlink-with-transfer sagas runs on both replicas;
//! mid-burst one replica is killed with SIGKILL (and restarted on the same database) and the
//! other is frozen with SIGSTOP until its leases have expired and the restarted replica has
//! taken its sagas over, then thawed: whatever the frozen worker tries to write then is
//! fenced. Afterwards every saga must have completed, and the effects in both databases must
//! show each step exactly once, with the invariants holding: one owner per account, seats
//! within capacity, each refund at most once, content owned only by existing users, and no
//! operation left unfinished.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use roster_e2e::{Process, authed, free_port, wait_serving};
use roster_platform::auth::{KeyDir, KeyScope, Principal, SignerSet};
use roster_proto::identity::v1 as pb;
use roster_proto::licensing::v1 as lpb;
use roster_proto::operations::v1 as ops;
use roster_testkit::FreshDatabase;
use sqlx::{Connection, Row};
use tonic::transport::Channel;

const MEMBERS: usize = 40;
const START: Duration = Duration::from_secs(60);
/// Short leases, so a dead or frozen replica's sagas are taken over within seconds.
const LEASE_MS: u64 = 2_000;

struct Cluster {
    dir: tempfile::TempDir,
    keys: KeyDir,
    signer: SignerSet,
    identity_db: String,
    licensing_db: String,
    replica_addrs: [SocketAddr; 2],
    licensing_addr: SocketAddr,
}

impl Cluster {
    fn replica(&self, i: usize) -> Process {
        let lease = LEASE_MS.to_string();
        Process::serve_identity(
            &self.dir.path().join(format!("identity-{i}")),
            self.replica_addrs[i],
            &self.identity_db,
            &self.keys,
            self.licensing_addr,
            &[("ROSTER_WORKFLOW_LEASE_MS", &lease), ("ROSTER_WORKFLOW_POLL_MS", "100")],
        )
    }

    fn licensing(&self) -> Process {
        // Licensing asks the second replica who callers are (the first one is the one killed).
        Process::serve_licensing(
            &self.dir.path().join("licensing"),
            self.licensing_addr,
            Some(&self.licensing_db),
            &self.keys,
            self.replica_addrs[1],
            &[],
        )
    }

    fn token(&self, principal: Principal) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
        self.signer.mint(&principal, now, 3_600)
    }

    fn user(&self, id: &str) -> String {
        self.token(Principal::User { user_id: id.to_owned() })
    }
}

fn signal(process: &Process, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(process.child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name}");
}

/// The account, its owner, the transfer target (a licensed member) and the members to unlink,
/// each with a licensed seat, a recording and a meeting on their personal meeting id.
struct Seeded {
    account: String,
    owner: String,
    target: String,
    members: Vec<String>,
}

async fn seed(cluster: &Cluster, identity: Channel, licensing: Channel, db: &mut sqlx::AnyConnection) -> Seeded {
    let operator = cluster.token(Principal::Operator { name: "e2e".into() });
    let mut accounts = pb::account_service_client::AccountServiceClient::new(identity.clone());
    let mut users = pb::user_service_client::UserServiceClient::new(identity);
    let mut licenses = lpb::license_service_client::LicenseServiceClient::new(licensing.clone());
    let mut content = lpb::content_service_client::ContentServiceClient::new(licensing);
    let created = accounts
        .create_account(authed(
            pb::CreateAccountRequest {
                request_id: "e2e-saga-account".into(),
                name: "Saga Co".into(),
                plan: pb::Plan::Pro as i32,
                owner_email: "owner@saga.example".into(),
                ..Default::default()
            },
            &operator,
        ))
        .await
        .expect("account")
        .into_inner();
    let account = created.id.clone();
    let owner = created.owner.expect("owner").user_id;
    licenses
        .set_seats(authed(
            lpb::SetSeatsRequest {
                request_id: "e2e-seats".into(),
                account_id: account.clone(),
                license_type: lpb::LicenseType::Licensed as i32,
                capacity: u32::try_from(MEMBERS + 1).expect("small"),
            },
            &operator,
        ))
        .await
        .expect("seats");
    let mut people = Vec::new();
    for i in 0..=MEMBERS {
        let email = format!("user{i}@saga.example");
        let invitation = users
            .invite_user(authed(
                pb::InviteUserRequest {
                    request_id: format!("e2e-invite-{i}"),
                    account_id: account.clone(),
                    email: email.clone(),
                    ..Default::default()
                },
                &cluster.user(&owner),
            ))
            .await
            .expect("invite")
            .into_inner();
        let body: String = sqlx::query_scalar("SELECT body FROM outbox WHERE recipient = $1 AND kind = 'invitation'")
            .bind(&email)
            .fetch_one(&mut *db)
            .await
            .expect("invitation e-mail");
        let code = body.lines().find_map(|l| l.strip_prefix("Invitation code: ")).expect("code").to_owned();
        let accepted = users
            .accept_invitation(authed(
                pb::AcceptInvitationRequest { request_id: format!("e2e-accept-{i}"), code },
                &cluster.user(&invitation.user_id),
            ))
            .await
            .expect("accept")
            .into_inner();
        assert!(accepted.done && accepted.error.is_none(), "{accepted:?}");
        licenses
            .assign_license(authed(
                lpb::AssignLicenseRequest {
                    request_id: format!("e2e-assign-{i}"),
                    account_id: account.clone(),
                    user_id: invitation.user_id.clone(),
                    license_type: lpb::LicenseType::Licensed as i32,
                },
                &cluster.user(&owner),
            ))
            .await
            .expect("assign");
        for (kind, uses_pmi) in [(lpb::ContentKind::Recording, false), (lpb::ContentKind::Meeting, true)] {
            content
                .register_content(authed(
                    lpb::RegisterContentRequest {
                        request_id: format!("e2e-content-{i}-{uses_pmi}"),
                        account_id: account.clone(),
                        owner_user_id: invitation.user_id.clone(),
                        kind: kind as i32,
                        title: format!("{kind:?} of user {i}"),
                        uses_pmi,
                    },
                    &cluster.user(&invitation.user_id),
                ))
                .await
                .expect("content");
        }
        people.push(invitation.user_id);
    }
    let target = people.remove(0);
    Seeded { account, owner, target, members: people }
}

fn unlink_request(seeded: &Seeded, i: usize) -> pb::UnlinkUserRequest {
    pb::UnlinkUserRequest {
        request_id: format!("e2e-unlink-{i}"),
        account_id: seeded.account.clone(),
        user_id: seeded.members[i].clone(),
        transfer: Some(pb::ContentTransfer {
            target_user_id: seeded.target.clone(),
            recordings: true,
            ..Default::default()
        }),
        validate_only: false,
    }
}

async fn count(db: &mut sqlx::AnyConnection, sql: &str, bind: &str) -> i64 {
    sqlx::query_scalar(sql).bind(bind).fetch_one(db).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unlink_sagas_survive_a_killed_replica_and_a_frozen_one_without_running_a_step_twice() {
    let Some(identity_pg) = FreshDatabase::create().await else { return };
    let Some(licensing_pg) = FreshDatabase::create().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (keys, signer) =
        SignerSet::generate(&dir.path().join("keys"), &KeyScope::all(), "roster", "roster").expect("keys");
    let cluster = Cluster {
        signer,
        keys,
        identity_db: identity_pg.url.clone(),
        licensing_db: licensing_pg.url.clone(),
        replica_addrs: [0, 1].map(|_| SocketAddr::from(([127, 0, 0, 1], free_port()))),
        licensing_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
        dir,
    };
    let mut replicas = [cluster.replica(0), cluster.replica(1)];
    let licensing = cluster.licensing();
    let mut channels = Vec::new();
    for replica in &replicas {
        channels.push(wait_serving(replica.addr, START).await.expect("replica serving"));
    }
    let licensing_channel = wait_serving(licensing.addr, START).await.expect("licensing serving");
    let mut identity_db = sqlx::AnyConnection::connect(&cluster.identity_db).await.expect("identity db");
    let mut licensing_db = sqlx::AnyConnection::connect(&cluster.licensing_db).await.expect("licensing db");
    let seeded = seed(&cluster, channels[1].clone(), licensing_channel, &mut identity_db).await;

    // The burst, alternating replicas. Mid-burst: SIGKILL the first, SIGSTOP the second.
    let owner_token = cluster.user(&seeded.owner);
    let burst: Vec<_> = (0..MEMBERS)
        .map(|i| {
            let mut client = pb::user_service_client::UserServiceClient::new(channels[i % 2].clone());
            let request = authed(unlink_request(&seeded, i), &owner_token);
            tokio::spawn(async move { client.unlink_user(request).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    replicas[0].child.kill().expect("SIGKILL the first replica");
    let _ = replicas[0].child.wait();
    signal(&replicas[1], "STOP");
    replicas[0] = cluster.replica(0);
    let restarted = wait_serving(replicas[0].addr, START).await.expect("restarted replica serving");
    // Long enough for the frozen replica's leases to expire and be taken over.
    tokio::time::sleep(Duration::from_millis(LEASE_MS * 2)).await;
    signal(&replicas[1], "CONT");
    for call in burst {
        // Answers from the killed replica are lost; the retries below settle them.
        let _ = call.await;
    }

    // Every request retried with its id: each returns its one operation.
    let mut users = pb::user_service_client::UserServiceClient::new(restarted.clone());
    let mut operations = Vec::new();
    for i in 0..MEMBERS {
        let deadline = Instant::now() + Duration::from_secs(30);
        let operation = loop {
            match users.unlink_user(authed(unlink_request(&seeded, i), &owner_token)).await {
                Ok(answer) => break answer.into_inner(),
                Err(status) if Instant::now() < deadline => {
                    assert_ne!(status.code(), tonic::Code::FailedPrecondition, "unlink {i}: {status:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(status) => panic!("unlink {i} never answered: {status:?}"),
            }
        };
        operations.push(operation.id);
    }
    let mut watcher = ops::operations_client::OperationsClient::new(restarted);
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &operations {
        let operation = loop {
            let operation = watcher
                .get_operation(authed(ops::GetOperationRequest { operation_id: id.clone() }, &owner_token))
                .await
                .expect("operation")
                .into_inner();
            if operation.done || Instant::now() > deadline {
                break operation;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(operation.state, ops::OperationState::Succeeded as i32, "{operation:?}");
    }

    // Effects, each exactly once.
    let acme = seeded.account.as_str();
    let mut new_accounts = std::collections::HashSet::new();
    for member in &seeded.members {
        let row = sqlx::query("SELECT account_id, role FROM users WHERE id = $1")
            .bind(member)
            .fetch_one(&mut identity_db)
            .await
            .expect("member still exists");
        let (account, role): (String, String) = (row.get(0), row.get(1));
        assert_ne!(account, acme, "the member left");
        assert_eq!(role, "owner", "and owns their new account");
        new_accounts.insert(account.clone());
        let pmi: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM content_items WHERE owner_user_id = $1 AND account_id = $2 AND uses_pmi = 1",
        )
        .bind(member)
        .bind(&account)
        .fetch_one(&mut licensing_db)
        .await
        .expect("pmi meeting");
        assert_eq!(pmi, 1, "the PMI meeting went along to the new account");
        let transfers = count(
            &mut licensing_db,
            "SELECT COUNT(*) FROM content_transfers WHERE from_user_id = $1 AND undone_at_ms IS NULL",
            member,
        )
        .await;
        assert_eq!(transfers, 1, "one transfer per member");
    }
    assert_eq!(new_accounts.len(), MEMBERS, "one new account per member");
    let created = count(&mut identity_db, "SELECT COUNT(*) FROM accounts WHERE id <> $1", acme).await;
    assert_eq!(created, i64::try_from(MEMBERS).expect("small"), "no account was created twice");
    let recordings =
        count(&mut licensing_db, "SELECT COUNT(*) FROM content_items WHERE owner_user_id = $1", &seeded.target).await;
    // The target's own recording and meeting, and one recording from each member.
    assert_eq!(recordings, i64::try_from(MEMBERS + 2).expect("small"), "each recording moved once");
    let seats = count(&mut licensing_db, "SELECT COUNT(*) FROM assignments WHERE account_id = $1", acme).await;
    assert_eq!(seats, 1, "only the target keeps a seat");
    let holds = count(&mut licensing_db, "SELECT COUNT(*) FROM license_holds WHERE account_id = $1", acme).await;
    assert_eq!(holds, 0, "every reclaim's hold was lifted when the content moved");
    assert_invariants(&mut identity_db, &mut licensing_db).await;
    let taken_over: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workflows WHERE lease_token > 1")
        .fetch_one(&mut identity_db)
        .await
        .expect("claims");
    println!("{taken_over} of {MEMBERS} sagas were claimed more than once (retries, takeovers)");

    for replica in &mut replicas {
        assert!(replica.terminate(Duration::from_secs(15)).expect("stops").success());
    }
    drop(licensing);
    identity_db.close().await.ok();
    licensing_db.close().await.ok();
    identity_pg.drop_database().await;
    licensing_pg.drop_database().await;
}

/// One owner per open account, seats within capacity, each refund at most once, content
/// owned only by users that exist, and no operation left unfinished.
async fn assert_invariants(identity: &mut sqlx::AnyConnection, licensing: &mut sqlx::AnyConnection) {
    let bad_owners: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM accounts a WHERE a.closed_at_ms IS NULL AND \
         (SELECT COUNT(*) FROM users u WHERE u.account_id = a.id AND u.role = 'owner') <> 1",
    )
    .fetch_one(&mut *identity)
    .await
    .expect("owners");
    assert_eq!(bad_owners, 0, "exactly one owner per account");
    let unfinished: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM workflows WHERE state IN ('running', 'compensating')")
            .fetch_one(&mut *identity)
            .await
            .expect("workflows");
    assert_eq!(unfinished, 0, "no operation stuck");
    let over: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM seat_pools p WHERE (SELECT COUNT(*) FROM assignments a \
         WHERE a.account_id = p.account_id AND a.license_type = p.license_type) > p.capacity",
    )
    .fetch_one(&mut *licensing)
    .await
    .expect("seats");
    assert_eq!(over, 0, "seats within capacity");
    let refunds: (i64, i64) = sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT subscription_id) FROM refunds")
        .fetch_one(&mut *licensing)
        .await
        .expect("refunds");
    assert_eq!(refunds.0, refunds.1, "each subscription refunded at most once");
    let owners: Vec<String> = sqlx::query_scalar("SELECT DISTINCT owner_user_id FROM content_items")
        .fetch_all(&mut *licensing)
        .await
        .expect("content owners");
    for owner in owners {
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE id = $1")
            .bind(&owner)
            .fetch_one(&mut *identity)
            .await
            .expect("owner");
        assert_eq!(exists, 1, "content owner {owner} exists");
    }
}
