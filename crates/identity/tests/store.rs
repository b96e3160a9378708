//! Store tests, run against SQLite and PostgreSQL alike: the database's own guarantees (one
//! owner per account, unique e-mails per account), idempotency records, the outbox's
//! exclusive claims, lease take-over and retries, and audit ordering.

mod support;

use std::sync::Arc;
use std::time::Duration;

use roster_identity::domain::model::{Account, AccountSettings, AuditEvent, Plan, Role, User, UserStatus};
use roster_identity::domain::values::{AccountId, Email, UserId};
use roster_identity::notify::{Dispatcher, Mailer};
use roster_identity::store::{self, outbox};
use roster_platform::clock::{Clock, ManualClock};
use roster_platform::db::is_unique_violation;
use roster_platform::idempotency::{self, Idempotent, Key};
use support::{START_MS, TestDb};

on_both_databases!(
    r3_the_database_refuses_a_second_owner,
    emails_are_unique_within_an_account,
    idempotency_records_replay_and_refuse_reuse,
    r34_the_gate_decides_replays_and_fresh_requests_rely_on_the_change,
    r35_outbox_claims_are_exclusive_and_leases_expire,
    r35_failed_sends_are_retried_never_lost,
    r35_a_burst_drains_batch_after_batch_without_waiting_for_the_poll,
    r33_audit_reads_newest_first_per_account,
);

async fn account(db: &TestDb) -> AccountId {
    let account = Account {
        id: AccountId::generate(),
        name: "Store".into(),
        plan: Plan::Business,
        csm_eligible: true,
        managed_domains: vec![],
        settings: AccountSettings::default(),
        created_at_ms: START_MS,
    };
    let mut tx = db.db.begin().await.expect("begin");
    store::accounts::insert(&mut tx, &account).await.expect("insert account");
    tx.commit().await.expect("commit");
    account.id
}

fn user(account: &AccountId, email: &str, role: Role) -> User {
    User {
        id: UserId::generate(),
        account_id: account.clone(),
        email: Email::parse(email).expect("email"),
        display_name: email.into(),
        status: UserStatus::Active,
        role,
        external: false,
        created_at_ms: START_MS,
        deactivated_at_ms: None,
        custom_role_name: None,
    }
}

async fn insert(db: &TestDb, user: &User) -> Result<(), sqlx::Error> {
    let mut tx = db.db.begin().await?;
    store::users::insert(&mut tx, user).await?;
    tx.commit().await
}

async fn r3_the_database_refuses_a_second_owner(db: &TestDb) {
    let account = account(db).await;
    insert(db, &user(&account, "one@store.example", Role::Owner)).await.expect("first owner");
    let second = insert(db, &user(&account, "two@store.example", Role::Owner)).await.expect_err("second owner");
    assert!(is_unique_violation(&second), "{second:?}");
    // Another account has its own owner.
    let other = self::account(db).await;
    insert(db, &user(&other, "one@store.example", Role::Owner)).await.expect("owner elsewhere");
}

async fn emails_are_unique_within_an_account(db: &TestDb) {
    let account = account(db).await;
    insert(db, &user(&account, "same@store.example", Role::Member)).await.expect("first");
    let again = insert(db, &user(&account, "same@store.example", Role::Member)).await.expect_err("duplicate");
    assert!(is_unique_violation(&again));
}

async fn idempotency_records_replay_and_refuse_reuse(db: &TestDb) {
    let key = || Key::new("user:u1", "/m", "r-1", &String::from("input")).expect("key");
    let Idempotent::Fresh(fresh) = idempotency::begin::<String>(&db.db, key()).await.expect("begin") else {
        panic!("first call must be fresh");
    };
    assert_eq!(fresh.finish(String::from("result"), START_MS).await.expect("finish"), "result");
    match idempotency::begin::<String>(&db.db, key()).await.expect("replay") {
        Idempotent::Replay(earlier) => assert_eq!(earlier, "result"),
        Idempotent::Fresh(_) => panic!("a committed key must replay"),
    }
    let other_input = Key::new("user:u1", "/m", "r-1", &String::from("different")).expect("key");
    let refused = idempotency::begin::<String>(&db.db, other_input).await.expect_err("reuse");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    // Another principal may use the same request id.
    let other_caller = Key::new("user:u2", "/m", "r-1", &String::from("input")).expect("key");
    assert!(matches!(idempotency::begin::<String>(&db.db, other_caller).await.expect("begin"), Idempotent::Fresh(_)));
}

/// The gate runs only before handing back an earlier answer; a fresh request goes straight to
/// the change, whose own rules include the gate's.
async fn r34_the_gate_decides_replays_and_fresh_requests_rely_on_the_change(db: &TestDb) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let gate_runs = AtomicUsize::new(0);
    let call = |allowed: bool| {
        let key = Key::new("user:u1", "/gated", "r-1", &String::from("input")).expect("key");
        let gate_runs = &gate_runs;
        idempotency::gated_once::<String, &'static str, (), _, _>(
            &db.db,
            key,
            START_MS,
            &(),
            move |_, _| {
                gate_runs.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move { if allowed { Ok(()) } else { Err("no longer allowed") } })
            },
            |_, _| Box::pin(async { Ok(String::from("made")) }),
        )
    };
    assert_eq!(call(false).await.expect("first"), Ok(String::from("made")), "a fresh request is the change's to judge");
    assert_eq!(gate_runs.load(Ordering::SeqCst), 0);
    assert_eq!(call(true).await.expect("replay"), Ok(String::from("made")));
    assert_eq!(call(false).await.expect("replay refused"), Err("no longer allowed"), "no replay past the gate");
    assert_eq!(gate_runs.load(Ordering::SeqCst), 2);
}

async fn enqueue(db: &TestDb, count: usize) {
    let mut tx = db.db.begin().await.expect("begin");
    for i in 0..count {
        let email = outbox::Email {
            account_id: None,
            kind: "test",
            recipient: format!("r{i}@store.example"),
            subject: format!("subject {i}"),
            body: "body".into(),
        };
        outbox::enqueue(&mut tx, &email, START_MS).await.expect("enqueue");
    }
    tx.commit().await.expect("commit");
}

/// Three batches' worth of e-mails, an hour between polls: all go out in the first pass of
/// the loop, since a full batch is followed by the next at once.
async fn r35_a_burst_drains_batch_after_batch_without_waiting_for_the_poll(db: &TestDb) {
    enqueue(db, 120).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dispatcher = Dispatcher {
        db: db.db.clone(),
        mailer: Mailer::Files(dir.path().to_owned()),
        clock: Arc::new(ManualClock::starting_at(START_MS)),
        poll_interval: Duration::from_secs(3_600),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(dispatcher.run(stopped));
    let unsent = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox WHERE sent_at_ms IS NULL")
            .fetch_one(db.db.pool())
            .await
            .expect("count")
    };
    // Bounded only so that a dispatcher stuck in its hour-long sleep fails the test.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while unsent().await > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(unsent().await, 0, "every e-mail of the burst went out before the next poll");
    assert_eq!(std::fs::read_dir(dir.path()).expect("inbox").count(), 120);
    stop.send(true).expect("stop");
    running.await.expect("the dispatcher stops");
}

async fn r35_outbox_claims_are_exclusive_and_leases_expire(db: &TestDb) {
    enqueue(db, 30).await;
    let (pool, backend) = (db.db.pool(), db.db.backend());
    let (a, b) = tokio::join!(
        outbox::claim_due(pool, backend, START_MS, 60_000, 20),
        outbox::claim_due(pool, backend, START_MS, 60_000, 20)
    );
    let (a, b) = (a.expect("claim a"), b.expect("claim b"));
    let mut ids: Vec<_> = a.iter().chain(&b).map(|c| c.id.clone()).collect();
    let claimed = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), claimed, "no e-mail claimed twice");
    let rest = outbox::claim_due(pool, backend, START_MS, 60_000, 100).await.expect("claim rest");
    assert_eq!(claimed + rest.len(), 30, "every e-mail claimed once");
    assert!(
        outbox::claim_due(pool, backend, START_MS + 1, 60_000, 100).await.expect("claim").is_empty(),
        "leases hold"
    );
    let sent: Vec<&str> = a.iter().map(|c| c.id.as_str()).collect();
    outbox::mark_sent(pool, &sent, START_MS).await.expect("sent");
    // A crashed sender's lease expires and another sender takes the unsent e-mails over.
    let taken_over = outbox::claim_due(pool, backend, START_MS + 60_001, 60_000, 100).await.expect("take over");
    assert_eq!(taken_over.len(), 30 - a.len());
    assert!(taken_over.iter().all(|c| c.attempts == 2), "a take-over counts as another attempt");
}

async fn r35_failed_sends_are_retried_never_lost(db: &TestDb) {
    enqueue(db, 3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blocked = dir.path().join("not-a-directory");
    std::fs::write(&blocked, "a file where the mail directory should be").expect("write");
    let clock = Arc::new(ManualClock::starting_at(START_MS));
    let dispatcher = |mailer: Mailer| Dispatcher {
        db: db.db.clone(),
        mailer,
        clock: clock.clone(),
        poll_interval: Duration::from_millis(10),
    };

    assert_eq!(dispatcher(Mailer::Files(blocked.clone())).deliver_due().await.expect("attempt"), 0);
    let failed: Vec<(Option<String>, i64)> = sqlx::query_as::<_, (Option<String>, i64)>(
        "SELECT last_error, next_attempt_at_ms FROM outbox WHERE sent_at_ms IS NULL",
    )
    .fetch_all(db.db.pool())
    .await
    .expect("rows");
    assert_eq!(failed.len(), 3, "nothing lost");
    assert!(
        failed.iter().all(|(error, next)| error.is_some() && *next > clock.now_ms()),
        "errors kept, retries scheduled"
    );

    let inbox = dir.path().join("inbox");
    assert_eq!(
        dispatcher(Mailer::Files(inbox.clone())).deliver_due().await.expect("too early"),
        0,
        "backoff is respected"
    );
    clock.advance_ms(10_000);
    assert_eq!(dispatcher(Mailer::Files(inbox.clone())).deliver_due().await.expect("retry"), 3);
    assert_eq!(std::fs::read_dir(&inbox).expect("inbox").count(), 3);
    assert_eq!(dispatcher(Mailer::Files(inbox)).deliver_due().await.expect("again"), 0, "sent once");
}

async fn r33_audit_reads_newest_first_per_account(db: &TestDb) {
    let account = account(db).await;
    let other = self::account(db).await;
    let mut tx = db.db.begin().await.expect("begin");
    for (i, owner) in [&account, &other, &account, &account].into_iter().enumerate() {
        let event = AuditEvent {
            id: uuid_v7(),
            account_id: Some(owner.clone()),
            principal: "operator:test".into(),
            action: format!("step.{i}"),
            target: String::new(),
            outcome: "ok".into(),
            request_id: format!("r{i}"),
            details_json: "{}".into(),
            at_ms: START_MS + i as i64,
        };
        store::audit::insert(&mut tx, &event).await.expect("insert");
        std::thread::sleep(Duration::from_millis(2));
    }
    tx.commit().await.expect("commit");
    let mut tx = db.db.begin().await.expect("begin");
    let page = store::audit::list(&mut tx, &account, None, 2).await.expect("page");
    assert_eq!(page.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), vec!["step.3", "step.2"]);
    let rest = store::audit::list(&mut tx, &account, Some(&page[1].id), 10).await.expect("rest");
    assert_eq!(rest.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), vec!["step.0"]);
    tx.rollback().await.expect("rollback");
}

fn uuid_v7() -> String {
    // The store relies on ids that sort by time; the API generates them the same way.
    AccountId::generate().to_string()
}

on_both_databases!(housekeeping_prunes_only_what_is_past_retention, housekeeping_clears_a_backlog_slice_by_slice);

/// More than two slices' worth of old records go, every one of them, and the newer stay.
async fn housekeeping_clears_a_backlog_slice_by_slice(db: &TestDb) {
    use roster_identity::housekeeping::{IDEMPOTENCY_RETENTION_MS, prune};
    let old = roster_platform::db::DELETE_SLICE * 2 + 3;
    for n in 0..old + 5 {
        let at = if n < old { START_MS } else { START_MS + IDEMPOTENCY_RETENTION_MS };
        sqlx::query(
            "INSERT INTO idempotency_keys (principal, method, request_id, request_hash, response, created_at_ms) \
             VALUES ('user:u', '/m', $1, 'h', '', $2)",
        )
        .bind(format!("r{n}"))
        .bind(at)
        .execute(db.db.pool())
        .await
        .expect("insert");
    }
    let pruned = prune(&db.db, START_MS + IDEMPOTENCY_RETENTION_MS + 1).await.expect("prune");
    assert_eq!(pruned.idempotency_keys, old.unsigned_abs());
    let left: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys").fetch_one(db.db.pool()).await.expect("count");
    assert_eq!(left, 5);
}

async fn housekeeping_prunes_only_what_is_past_retention(db: &TestDb) {
    use roster_identity::housekeeping::{IDEMPOTENCY_RETENTION_MS, Pruned, SENT_EMAIL_RETENTION_MS, prune};
    for (request_id, at) in [("old", START_MS), ("new", START_MS + IDEMPOTENCY_RETENTION_MS)] {
        let key = Key::new("user:u1", "/m", request_id, &String::from("input")).expect("key");
        let Idempotent::Fresh(fresh) = idempotency::begin::<String>(&db.db, key).await.expect("begin") else {
            panic!("fresh key expected");
        };
        fresh.finish(String::from("done"), at).await.expect("finish");
    }
    enqueue(db, 3).await;
    let claimed = outbox::claim_due(db.db.pool(), db.db.backend(), START_MS, 60_000, 10).await.expect("claim");
    outbox::mark_sent(db.db.pool(), &[claimed[0].id.as_str()], START_MS).await.expect("sent");

    // SPEC R12: one claim whose code expired, one still pending, one verified address; and a
    // code sent outside the rate window and one inside it.
    let account = account(db).await;
    let claimant = user(&account, "claimant@store.example", Role::Member);
    insert(db, &claimant).await.expect("user");
    let now = START_MS + IDEMPOTENCY_RETENTION_MS + 1;
    let claims = [
        ("lapsed@x.example", Some(now - 1), None),
        ("live@x.example", Some(now + 1), None),
        ("kept@x.example", None, Some(START_MS)),
    ];
    for (email, expires, verified) in claims {
        sqlx::query(
            "INSERT INTO user_emails (email, user_id, code_hash, code_expires_at_ms, verified_at_ms, created_at_ms) \
             VALUES ($1, $2, 'h', $3, $4, $5)",
        )
        .bind(email)
        .bind(claimant.id.as_str())
        .bind(expires)
        .bind(verified)
        .bind(START_MS)
        .execute(db.db.pool())
        .await
        .expect("claim");
    }
    for sent_at in [now - 3_600_001, now - 10] {
        sqlx::query("INSERT INTO email_code_sends (email, user_id, sent_at_ms) VALUES ('live@x.example', $1, $2)")
            .bind(claimant.id.as_str())
            .bind(sent_at)
            .execute(db.db.pool())
            .await
            .expect("send");
    }
    assert_eq!(
        prune(&db.db, now).await.expect("prune"),
        Pruned {
            idempotency_keys: 1,
            sent_emails: 0,
            finished_operations: 0,
            address_claims: 1,
            code_sends: 1,
            events: 0
        }
    );
    let left: Vec<String> = sqlx::query_scalar("SELECT email FROM user_emails WHERE user_id = $1 ORDER BY email")
        .bind(claimant.id.as_str())
        .fetch_all(db.db.pool())
        .await
        .expect("addresses");
    assert_eq!(left, ["kept@x.example", "live@x.example"], "verified addresses and live claims stay");
    let now = START_MS + SENT_EMAIL_RETENTION_MS + 1;
    let pruned = prune(&db.db, now).await.expect("prune");
    assert_eq!(pruned.sent_emails, 1, "the delivered e-mail goes");
    let unsent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at_ms IS NULL")
        .fetch_one(db.db.pool())
        .await
        .expect("count");
    assert_eq!(unsent, 2, "undelivered e-mails are never pruned");
}
