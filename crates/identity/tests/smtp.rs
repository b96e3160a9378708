//! SPEC R35 over a real SMTP server (aiosmtpd, started by `roster_testkit::smtp`) on SQLite and
//! PostgreSQL: a server that is down and then up gets the e-mail exactly once, as a proper
//! RFC 5322 / MIME message; a 4xx answer is retried after a backoff; a 5xx refusal marks it undeliverable once, with the reason, for
//! operators to see, and it is not retried.

mod support;

use std::time::Duration;

use mail_parser::MessageParser;
use roster_identity::notify::{Mailer, Smtp};
use roster_testkit::smtp::{self, SmtpSink};
use support::{Backend, TestApp, authed, reason};
use tonic::Code;

const FROM: &str = "Roster <noreply@roster.test>";

async fn sending_to(backend: Backend, port: u16) -> Option<TestApp> {
    let smtp = Smtp::new(&format!("smtp://127.0.0.1:{port}"), FROM).expect("smtp settings");
    TestApp::spawn_mailing(backend, Some(Mailer::Smtp(Box::new(smtp)))).await
}

/// (attempts, sent, failed, last error) of the outbox row for `recipient`.
async fn row(app: &TestApp, recipient: &str) -> (i64, bool, bool, Option<String>) {
    let (attempts, sent, failed, error): (i64, Option<i64>, Option<i64>, Option<String>) =
        sqlx::query_as("SELECT attempts, sent_at_ms, failed_at_ms, last_error FROM outbox WHERE recipient = $1")
            .bind(recipient)
            .fetch_one(app.db.pool())
            .await
            .expect("the e-mail is in the outbox");
    (attempts, sent.is_some(), failed.is_some(), error)
}

async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(done) = check().await {
            return done;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen in 10 s");
}

async fn down_then_up_delivers_exactly_once_as_a_proper_message(backend: Backend) {
    if !smtp::available() {
        return;
    }
    let port = roster_testkit::unused_port();
    let Some(app) = sending_to(backend, port).await else { return };
    let (account, owner) = app.create_account("Café Zoë", "owner@zoe.example").await;
    let invitee = "bob@zoe.example";
    app.invite(&account, &owner, invitee).await;
    let error = until("a failed attempt while the server is down", async || {
        let (attempts, sent, failed, error) = row(&app, invitee).await;
        (attempts >= 1 && !sent && !failed).then_some(error).flatten()
    })
    .await;
    assert!(!error.is_empty(), "the reason is kept");

    let sink = SmtpSink::start(port);
    app.clock.advance_ms(2 * 3_600_000);
    until("delivery once the server is up", async || row(&app, invitee).await.1.then_some(())).await;
    app.clock.advance_ms(24 * 3_600_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "delivered exactly once");

    let raw = String::from_utf8_lossy(&messages[0]).into_owned();
    assert!(raw.contains("MIME-Version: 1.0"), "{raw}");
    let message = MessageParser::default().parse(&messages[0]).expect("a message a mail client can read");
    let address =
        |list: Option<&mail_parser::Address>| list.and_then(|l| l.first()).and_then(|a| a.address()).map(str::to_owned);
    assert_eq!(address(message.from()).as_deref(), Some("noreply@roster.test"));
    assert_eq!(address(message.to()).as_deref(), Some(invitee));
    assert_eq!(message.subject(), Some("You are invited to join Café Zoë on Roster"), "UTF-8 subject");
    let date = message.date().expect("a Date header");
    assert!(date.year >= 2026, "a real date: {date:?}");
    let outbox_id: String = sqlx::query_scalar("SELECT id FROM outbox WHERE recipient = $1")
        .bind(invitee)
        .fetch_one(app.db.pool())
        .await
        .expect("id");
    assert_eq!(message.message_id(), Some(format!("{outbox_id}@roster.outbox").as_str()));
    let body = message.body_text(0).expect("a text body");
    assert!(body.contains("Café Zoë") && body.contains("Invitation code: "), "{body}");
    drop(sink);
    app.stop().await;
}

async fn a_permanent_refusal_is_kept_with_its_reason_and_not_retried(backend: Backend) {
    if !smtp::available() {
        return;
    }
    let sink = SmtpSink::start(roster_testkit::unused_port());
    let Some(app) = sending_to(backend, sink.port).await else { return };
    let (account, owner) = app.create_account("Refusals", "owner@refusals.example").await;
    // 451 once: kept for a retry, and delivered once the backoff has passed.
    let busy = "busy@refusals.example";
    app.invite(&account, &owner, busy).await;
    until("the first, put-off attempt", async || {
        let (attempts, sent, failed, error) = row(&app, busy).await;
        (attempts == 1 && !sent && !failed).then_some(error).flatten()
    })
    .await;
    app.clock.advance_ms(3_600_000);
    until("delivery on the retry", async || row(&app, busy).await.1.then_some(())).await;
    assert_eq!((row(&app, busy).await.0, sink.messages().len()), (2, 1), "sent on the second attempt, once");
    let refused = "reject-me@refusals.example";
    app.invite(&account, &owner, refused).await;
    let reason_given = until("the refusal", async || {
        let (_, _, failed, error) = row(&app, refused).await;
        failed.then_some(error).flatten()
    })
    .await;
    assert!(reason_given.contains("550"), "{reason_given}");
    app.clock.advance_ms(48 * 3_600_000);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (attempts, sent, failed, _) = row(&app, refused).await;
    assert_eq!((attempts, sent, failed), (1, false, true), "refused once, never retried");
    assert_eq!(sink.messages().len(), 1, "only the put-off e-mail arrived");

    let list = |token: String| {
        let mut accounts = app.accounts();
        let account = account.clone();
        async move {
            accounts
                .list_undeliverable_emails(authed(
                    roster_proto::identity::v1::ListUndeliverableEmailsRequest {
                        account_id: account,
                        ..Default::default()
                    },
                    &token,
                ))
                .await
        }
    };
    let seen = list(app.operator_token()).await.expect("operators see it").into_inner().emails;
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].recipient.as_str(), seen[0].kind.as_str(), seen[0].attempts), (refused, "invitation", 1));
    assert!(seen[0].reason.contains("550"), "{:?}", seen[0]);
    let denied = list(app.user_token(&owner)).await.expect_err("operators only");
    assert_eq!((denied.code(), reason(&denied).as_str()), (Code::PermissionDenied, "PRINCIPAL_NOT_ALLOWED"));
    drop(sink);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r35_down_then_up_delivers_exactly_once_sqlite() {
    down_then_up_delivers_exactly_once_as_a_proper_message(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r35_down_then_up_delivers_exactly_once_postgres() {
    down_then_up_delivers_exactly_once_as_a_proper_message(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r35_a_permanent_refusal_is_kept_and_not_retried_sqlite() {
    a_permanent_refusal_is_kept_with_its_reason_and_not_retried(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r35_a_permanent_refusal_is_kept_and_not_retried_postgres() {
    a_permanent_refusal_is_kept_with_its_reason_and_not_retried(Backend::Postgres).await;
}
