//! Round trips per write (issue 25): the statements each change RPC sends to PostgreSQL,
//! counted from sqlx's own statement events inside the RPC's span. sqlx reports every
//! statement and the COMMIT; the BEGIN is one round trip more. An `InviteUser` must stay at
//! four: BEGIN, the locks and reads, every write in one statement, COMMIT.
//!
//! Its own test binary: it installs the process's one global tracing subscriber.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use roster_proto::identity::v1 as pb;
use support::{Backend, TestApp, authed, rid};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// One RPC call: its method, and the statements sent inside its span.
type Sent = (String, Vec<String>);

/// The calls, in the order they began.
#[derive(Clone, Default)]
struct Statements(Arc<Mutex<Vec<Sent>>>);

impl Statements {
    fn take(&self) -> Vec<Sent> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Which call an `rpc` span is: its place in [`Statements`].
struct Call(usize);

/// Reads one named field of a span or event as text.
struct FieldText {
    name: &'static str,
    text: Option<String>,
}

impl Visit for FieldText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == self.name {
            self.text = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == self.name && self.text.is_none() {
            self.text = Some(format!("{value:?}"));
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Statements {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "rpc" {
            return;
        }
        let mut method = FieldText { name: "method", text: None };
        attrs.record(&mut method);
        if let (Some(method), Some(span)) = (method.text, ctx.span(id)) {
            let mut calls = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            calls.push((method, Vec::new()));
            span.extensions_mut().insert(Call(calls.len() - 1));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else { return };
        for span in scope {
            if let Some(Call(call)) = span.extensions().get::<Call>() {
                let mut statement = FieldText { name: "db.statement", text: None };
                event.record(&mut statement);
                let mut summary = FieldText { name: "summary", text: None };
                event.record(&mut summary);
                let text = statement.text.filter(|s| !s.is_empty()).or(summary.text).unwrap_or_default();
                let text = text.trim().to_owned();
                let mut calls = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                // A `take` since the span began leaves it nowhere to go.
                if let Some((_, sent)) = calls.get_mut(*call) {
                    sent.push(text);
                }
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invitation_is_four_round_trips_and_a_read_of_its_account_one_on_postgres() {
    let statements = Statements::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(statements.clone()))
        .expect("the only subscriber of this test binary");
    let Some(app) = TestApp::spawn(Backend::Postgres).await else { return };
    let w = app.seed_world("trips").await;
    let invite = |n: usize| {
        let mut users = app.users();
        let request = pb::InviteUserRequest {
            request_id: rid(),
            account_id: w.account.clone(),
            email: format!("guest{n}@trips.example"),
            ..Default::default()
        };
        let token = app.user_token(&w.admin);
        async move { users.invite_user(authed(request, &token)).await.expect("invited") }
    };
    // The first call on a connection also prepares its statements.
    let mut sent = Vec::new();
    for n in 0..3 {
        sent.push(invite(n).await.into_inner());
    }
    // A few more kinds of write, for the list of statements per write.
    let token = app.user_token(&w.admin);
    let (account, resent, revoked) = (w.account.clone(), sent[0].id.clone(), sent[1].id.clone());
    let resend = pb::ResendInvitationRequest { request_id: rid(), account_id: account.clone(), invitation_id: resent };
    app.users().resend_invitation(authed(resend, &token)).await.expect("resent");
    let revoke = pb::RevokeInvitationRequest { request_id: rid(), account_id: account.clone(), invitation_id: revoked };
    app.users().revoke_invitation(authed(revoke, &token)).await.expect("revoked");
    let settings = pb::UpdateUserSettingsRequest {
        request_id: rid(),
        account_id: account,
        user_id: w.member.clone(),
        time_zone: "Europe/Amsterdam".into(),
        ..Default::default()
    };
    app.users().update_user_settings(authed(settings, &app.user_token(&w.member))).await.expect("settings");
    // What every write the set-up made sent, for the README's list of statements per write.
    let mut per_method = BTreeMap::<String, Vec<Vec<String>>>::new();
    for (method, sent) in statements.take() {
        per_method.entry(method).or_default().push(sent);
    }
    for (method, calls) in per_method {
        let counts = calls.iter().map(Vec::len);
        let (least, most) = (counts.clone().min().unwrap_or(0), counts.max().unwrap_or(0));
        eprintln!("{method}: {least} to {most} statements a call, COMMIT included, BEGIN not; the last call's:");
        for statement in calls.last().into_iter().flatten() {
            eprintln!("    {}", statement.chars().take(100).collect::<String>());
        }
    }
    invite(9).await;
    let calls = statements.take();
    let sent = calls.iter().find(|(method, _)| method.ends_with("InviteUser")).map(|(_, s)| s).expect("seen");
    assert_eq!(sent.len(), 3, "the locks and reads, the writes, COMMIT (BEGIN makes four): {sent:#?}");
    assert!(sent[1].starts_with("WITH"), "the writes go as one statement: {sent:#?}");
    assert_eq!(sent[2], "COMMIT");
    // A read of the account: the account, its owner and the caller, in one query.
    let get = pb::GetAccountRequest { account_id: w.account.clone() };
    app.accounts().get_account(authed(get, &app.user_token(&w.member))).await.expect("read");
    let calls = statements.take();
    let sent = calls.iter().find(|(method, _)| method.ends_with("GetAccount")).map(|(_, s)| s).expect("seen");
    assert_eq!(sent.len(), 1, "one query: {sent:#?}");
    app.stop().await;
}
