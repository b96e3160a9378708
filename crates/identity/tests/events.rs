//! The event log (issue 27): every change other services act on is in identity's log, in
//! commit order, each once; a consumer resumes after its cursor; cursors are tamper-evident
//! and expire with the retention; slow consumers and shutdowns end streams with where to
//! resume; and users' settings (SPEC R18, R21, R22).

mod support;

use std::time::Duration;

use futures_util::StreamExt as _;
use roster_platform::auth::Principal;
use roster_platform::clock::Clock;
use roster_platform::config::LimitArgs;
use roster_platform::event_log::{NewEvent, store};
use roster_proto::events::v1 as ev;
use roster_proto::identity::v1 as pb;
use support::{Backend, TestApp, authed, bad_field, reason, rid};
use tonic::Code;

on_both_backends!(
    changes_are_in_the_log_in_commit_order_with_their_cause,
    a_consumer_resumes_after_its_cursor_and_sees_each_event_once,
    an_admin_reads_their_own_account_only,
    forged_and_foreign_cursors_are_invalid_and_expired_ones_out_of_range,
    bad_filters_name_their_field,
    r18_r21_r22_settings_are_kept_move_with_the_user_and_go_with_them,
    concurrent_settings_editors_do_not_overwrite_each_other_unseen,
    a_demoted_admins_stream_ends_at_the_next_heartbeat,
    a_stream_ends_when_its_token_expires,
    a_caller_holds_a_bounded_number_of_streams,
    events_a_change_holds_for_its_last_statement_keep_their_order,
);

fn filter(account: &str) -> Option<ev::EventFilter> {
    Some(ev::EventFilter { account_ids: vec![account.to_owned()], types: Vec::new() })
}

/// Every event of `account` from the oldest kept, read by an operator.
async fn all_events(app: &TestApp, account: &str) -> Vec<ev::Event> {
    events_after(app, account, String::new()).await
}

/// Every event of `account` after `after` that committed before the call, page by page.
async fn events_after(app: &TestApp, account: &str, mut after: String) -> Vec<ev::Event> {
    roster_testkit::events_settled(&app.db).await;
    let mut events = Vec::new();
    loop {
        let page = app
            .events()
            .list_events(authed(
                ev::ListEventsRequest { after: after.clone(), filter: filter(account), page_size: 7 },
                &app.operator_token(),
            ))
            .await
            .expect("list events")
            .into_inner();
        events.extend(page.events);
        after = page.cursor;
        if !page.more {
            return events;
        }
    }
}

fn types(events: &[ev::Event]) -> Vec<&str> {
    events.iter().map(|event| event.r#type.as_str()).collect()
}

async fn set_time_zone(app: &TestApp, account: &str, by: &str, user: &str, zone: &str) -> pb::UserSettings {
    app.users()
        .update_user_settings(authed(
            pb::UpdateUserSettingsRequest {
                request_id: rid(),
                account_id: account.into(),
                user_id: user.into(),
                time_zone: zone.into(),
                ..Default::default()
            },
            &app.user_token(by),
        ))
        .await
        .expect("update settings")
        .into_inner()
}

/// Seeding an account invites, joins, promotes and deactivates: each is an event, in the order
/// the changes committed, naming the request and the operation that made it.
async fn changes_are_in_the_log_in_commit_order_with_their_cause(app: &TestApp) {
    let w = app.seed_world("log").await;
    let events = all_events(app, &w.account).await;
    let seen = types(&events);
    for expected in ["user.activated", "user.invited", "user.joined", "user.role_changed", "user.deactivated"] {
        assert!(seen.contains(&expected), "{expected} in {seen:?}");
    }
    let first_invite = seen.iter().position(|t| *t == "user.invited").expect("invited");
    let first_join = seen.iter().position(|t| *t == "user.joined").expect("joined");
    assert!(first_invite < first_join, "an invitation comes before its acceptance: {seen:?}");
    let deactivated = events.iter().find(|e| e.r#type == "user.deactivated").expect("deactivated");
    assert_eq!(deactivated.subject, format!("user:{}", w.deactivated));
    assert_eq!(deactivated.principal, format!("user:{}", w.owner));
    assert!(!deactivated.request_id.is_empty(), "the request that caused it");
    assert!(!deactivated.operation_id.is_empty(), "the saga it started");
    assert!(matches!(
        &deactivated.payload,
        Some(ev::event::Payload::UserDeactivated(ev::UserDeactivated { user_id })) if *user_id == w.deactivated
    ));
    let role = events.iter().find(|e| e.r#type == "user.role_changed").expect("role changed");
    assert!(matches!(
        &role.payload,
        Some(ev::event::Payload::RoleChanged(ev::RoleChanged { user_id, role, .. }))
            if *user_id == w.admin && *role == pb::RoleKind::Admin as i32
    ));
    // Nothing twice.
    let mut cursors: Vec<&str> = events.iter().map(|e| e.cursor.as_str()).collect();
    cursors.dedup();
    assert_eq!(cursors.len(), events.len());
}

/// A watcher that stops and comes back with its last cursor gets exactly what it missed.
async fn a_consumer_resumes_after_its_cursor_and_sees_each_event_once(app: &TestApp) {
    let w = app.seed_world("resume").await;
    // "From now" is from what the log hands out now: on PostgreSQL, seeding's last events may
    // still be held back behind other tests' transactions.
    roster_testkit::events_settled(&app.db).await;
    let token = app.operator_token();
    let mut stream = app
        .events()
        .watch_events(authed(
            ev::WatchEventsRequest { filter: filter(&w.account), heartbeat_seconds: 1, ..Default::default() },
            &token,
        ))
        .await
        .expect("watch")
        .into_inner();
    set_time_zone(app, &w.account, &w.member, &w.member, "Europe/Amsterdam").await;
    let first = next_event(&mut stream).await;
    assert_eq!(first.r#type, "user.settings_changed", "a watch from now starts after what was there");
    drop(stream);
    for zone in ["Europe/Paris", "Europe/Brussels", "Europe/Berlin"] {
        set_time_zone(app, &w.account, &w.member, &w.member, zone).await;
    }
    let resumed = app
        .events()
        .watch_events(authed(
            ev::WatchEventsRequest { after: first.cursor.clone(), filter: filter(&w.account), ..Default::default() },
            &token,
        ))
        .await
        .expect("resume")
        .into_inner();
    let mut resumed = Box::pin(resumed);
    let mut missed = Vec::new();
    for _ in 0..3 {
        missed.push(next_event(&mut resumed).await);
    }
    assert!(missed.iter().all(|e| e.r#type == "user.settings_changed"));
    assert!(missed.iter().all(|e| e.cursor != first.cursor), "nothing twice");
    // And nothing more: the next item is a heartbeat or a later change.
    app.deactivate(&w.account, &w.owner, &w.member).await.expect("deactivate");
    assert_eq!(next_event(&mut resumed).await.r#type, "user.deactivated");
}

/// The next event on a stream, skipping heartbeats.
async fn next_event<S>(stream: &mut S) -> ev::Event
where
    S: futures_util::Stream<Item = Result<ev::WatchEventsResponse, tonic::Status>> + Unpin,
{
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an item within 10 s")
            .expect("the stream goes on")
            .expect("no error");
        if let Some(ev::watch_events_response::Item::Event(event)) = item.item {
            return event;
        }
    }
}

/// An admin reads their own account's events, also with no account named, and never
/// another's; naming another account is refused like any other reader it does not admit.
async fn an_admin_reads_their_own_account_only(app: &TestApp) {
    let mine = app.seed_world("mine").await;
    let theirs = app.seed_world("theirs").await;
    let page = app
        .events()
        .list_events(authed(ev::ListEventsRequest::default(), &app.user_token(&mine.admin)))
        .await
        .expect("an admin lists their account's events")
        .into_inner();
    assert!(!page.events.is_empty());
    assert!(page.events.iter().all(|e| e.account_id == mine.account), "only their own account");
    for (who, account) in [(&mine.admin, &theirs.account), (&mine.member, &mine.account)] {
        let refused = app
            .events()
            .list_events(authed(
                ev::ListEventsRequest { filter: filter(account), ..Default::default() },
                &app.user_token(who),
            ))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert_eq!(reason(&refused), "OWNER_OR_ADMIN_ONLY");
    }
}

/// A cursor altered by one character, one sealed under another key, and one older than what
/// is kept.
async fn forged_and_foreign_cursors_are_invalid_and_expired_ones_out_of_range(app: &TestApp) {
    let w = app.seed_world("cursors").await;
    let events = all_events(app, &w.account).await;
    let cursor = events[0].cursor.clone();
    let mut forged = cursor.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let foreign = roster_platform::pagination::PageTokens::random().seal_position("identity", "0.1");
    for bad in [String::from_utf8(forged).expect("ascii"), foreign, "p3.x".into()] {
        let refused = app
            .events()
            .list_events(authed(ev::ListEventsRequest { after: bad, ..Default::default() }, &app.operator_token()))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(bad_field(&refused).as_deref(), Some("after"));
    }
    // Retention passes for everything but the newest event, which is never pruned.
    let later = app.clock.now_ms() + 1;
    app.clock.advance_ms(8 * 86_400_000);
    app.deactivate(&w.account, &w.owner, &w.member).await.expect("deactivate");
    let pruned = store::prune(&app.db, later).await.expect("prune");
    assert!(pruned >= events.len() as u64, "pruned {pruned}");
    let expired = app
        .events()
        .list_events(authed(ev::ListEventsRequest { after: cursor, ..Default::default() }, &app.operator_token()))
        .await
        .expect_err("expired");
    assert_eq!(expired.code(), Code::OutOfRange);
    assert_eq!(reason(&expired), "EVENT_CURSOR_EXPIRED");
    let watch = app
        .events()
        .watch_events(authed(
            ev::WatchEventsRequest { after: events[0].cursor.clone(), ..Default::default() },
            &app.operator_token(),
        ))
        .await;
    assert_eq!(watch.err().map(|status| status.code()), Some(Code::OutOfRange));
    let kept = all_events(app, &w.account).await;
    assert_eq!(types(&kept), ["user.deactivated"], "what came after the retention is kept");
}

async fn bad_filters_name_their_field(app: &TestApp) {
    let token = app.operator_token();
    let cases = [
        (
            ev::WatchEventsRequest {
                filter: Some(ev::EventFilter { types: vec!["user.exploded".into()], ..Default::default() }),
                ..Default::default()
            },
            "filter.types[0]",
        ),
        (
            ev::WatchEventsRequest {
                filter: Some(ev::EventFilter { account_ids: vec![String::new()], ..Default::default() }),
                ..Default::default()
            },
            "filter.account_ids[0]",
        ),
        (
            ev::WatchEventsRequest {
                filter: Some(ev::EventFilter { account_ids: vec!["a".into(); 101], ..Default::default() }),
                ..Default::default()
            },
            "filter.account_ids",
        ),
        (ev::WatchEventsRequest { heartbeat_seconds: 301, ..Default::default() }, "heartbeat_seconds"),
        (ev::WatchEventsRequest { after: "x".into(), from_start: true, ..Default::default() }, "from_start"),
    ];
    for (request, field) in cases {
        let refused = app.events().watch_events(authed(request, &token)).await.expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{field}");
        assert_eq!(bad_field(&refused).as_deref(), Some(field));
    }
    let refused = app
        .events()
        .list_events(authed(ev::ListEventsRequest { page_size: 501, ..Default::default() }, &token))
        .await
        .expect_err("refused");
    assert_eq!(bad_field(&refused).as_deref(), Some("page_size"));
    // A user must be able to say which account: licensing asks; identity knows it.
    let refused = app
        .events()
        .list_events(authed(
            ev::ListEventsRequest {
                filter: Some(ev::EventFilter { account_ids: vec![rid()], ..Default::default() }),
                ..Default::default()
            },
            &app.token(&Principal::User { user_id: rid() }),
        ))
        .await
        .expect_err("an unknown user");
    assert_eq!(refused.code(), Code::PermissionDenied);
}

/// SPEC R18: kept while deactivated and after reactivation; R21: moved with the user to their
/// own account on unlink; R22: gone with the user.
async fn r18_r21_r22_settings_are_kept_move_with_the_user_and_go_with_them(app: &TestApp) {
    let w = app.seed_world("settings").await;
    let get = |account: String, by: String, user: String| async move {
        app.users()
            .get_user_settings(authed(
                pb::GetUserSettingsRequest { account_id: account, user_id: user },
                &app.user_token(&by),
            ))
            .await
    };
    let empty = get(w.account.clone(), w.member.clone(), w.member.clone()).await.expect("read").into_inner();
    assert_eq!((empty.version, empty.time_zone.as_str()), (0, ""), "never set reads as empty");
    let written = app
        .users()
        .update_user_settings(authed(
            pb::UpdateUserSettingsRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: w.member.clone(),
                time_zone: "Europe/Amsterdam".into(),
                language: "nl".into(),
                settings: vec![pb::Setting { key: "theme".into(), value: "dark".into() }],
                expected_version: 0,
            },
            &app.user_token(&w.member),
        ))
        .await
        .expect("the user sets their own")
        .into_inner();
    assert_eq!(written.version, 1);
    app.deactivate(&w.account, &w.owner, &w.member).await.expect("deactivate");
    let kept = get(w.account.clone(), w.owner.clone(), w.member.clone()).await.expect("read").into_inner();
    assert_eq!(kept, written, "R18: a deactivated user's settings are kept");
    app.users()
        .reactivate_user(authed(
            pb::ReactivateUserRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: w.member.clone(),
                restore_licenses: false,
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("reactivate");
    let unlinked = app
        .users()
        .unlink_user(authed(
            pb::UnlinkUserRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: w.member.clone(),
                ..Default::default()
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("unlink")
        .into_inner();
    let unlinked = app.operation_when_done(&w.owner, &unlinked.id).await;
    assert!(unlinked.error.is_none(), "{unlinked:?}");
    let own_account: String = sqlx::query_scalar("SELECT account_id FROM users WHERE id = $1")
        .bind(&w.member)
        .fetch_one(app.db.pool())
        .await
        .expect("the user's account");
    assert_ne!(own_account, w.account);
    let moved = get(own_account.clone(), w.member.clone(), w.member.clone()).await.expect("read").into_inner();
    assert_eq!(
        (moved.time_zone.as_str(), moved.language.as_str(), moved.settings.len(), moved.version),
        ("Europe/Amsterdam", "nl", 1, 1),
        "R21: the settings went with the user"
    );
    let gone = get(w.account.clone(), w.owner.clone(), w.member.clone()).await.expect_err("not in the old account");
    assert_eq!(gone.code(), Code::NotFound);
    // R22: deleting the deactivated user of the world removes their settings too.
    set_time_zone(app, &w.account, &w.owner, &w.deactivated, "Asia/Tokyo").await;
    let deleted = app
        .users()
        .delete_user(authed(
            pb::DeleteUserRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: w.deactivated.clone(),
                ..Default::default()
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("delete")
        .into_inner();
    let deleted = app.operation_when_done(&w.owner, &deleted.id).await;
    assert!(deleted.error.is_none(), "{deleted:?}");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM user_settings WHERE user_id = $1")
        .bind(&w.deactivated)
        .fetch_one(app.db.pool())
        .await
        .expect("count");
    assert_eq!(left, 0, "R22: the settings went with the user");
    let events = all_events(app, &w.account).await;
    let seen = types(&events);
    for expected in ["user.settings_changed", "user.reactivated", "user.unlinked", "user.deleted"] {
        assert!(seen.contains(&expected), "{expected} in {seen:?}");
    }
}

/// Two editors read version 1; the first write wins, the second is refused with the version
/// it missed and changes nothing. Bad settings name their field.
async fn concurrent_settings_editors_do_not_overwrite_each_other_unseen(app: &TestApp) {
    let w = app.seed_world("editors").await;
    set_time_zone(app, &w.account, &w.admin, &w.member, "Europe/Amsterdam").await;
    let update = |by: &str, zone: &str, expected_version: u64| {
        let mut users = app.users();
        let request = authed(
            pb::UpdateUserSettingsRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: w.member.clone(),
                time_zone: zone.into(),
                expected_version,
                ..Default::default()
            },
            &app.user_token(by),
        );
        async move { users.update_user_settings(request).await }
    };
    update(&w.admin, "Europe/Paris", 1).await.expect("the first editor");
    let refused = update(&w.member, "Europe/Lisbon", 1).await.expect_err("the second editor");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "SETTINGS_VERSION_MISMATCH");
    let bad = update(&w.member, "Not A Zone", 0).await.expect_err("bad zone");
    assert_eq!(bad_field(&bad).as_deref(), Some("time_zone"));
    let now = app
        .users()
        .get_user_settings(authed(
            pb::GetUserSettingsRequest { account_id: w.account.clone(), user_id: w.member.clone() },
            &app.user_token(&w.member),
        ))
        .await
        .expect("read")
        .into_inner();
    assert_eq!((now.time_zone.as_str(), now.version), ("Europe/Paris", 2));
}

/// Authorisation is decided from current data while the stream lasts, not once: an admin
/// demoted to member loses their stream at the next heartbeat.
async fn a_demoted_admins_stream_ends_at_the_next_heartbeat(app: &TestApp) {
    let w = app.seed_world("demoted").await;
    let mut stream = app
        .events()
        .watch_events(authed(
            ev::WatchEventsRequest { heartbeat_seconds: 1, ..Default::default() },
            &app.user_token(&w.admin),
        ))
        .await
        .expect("an admin watches")
        .into_inner();
    app.assign_role(&w.account, &w.owner, &w.admin, "member").await.expect("demote");
    let ended = ending(&mut stream).await;
    assert_eq!(ended.code(), Code::PermissionDenied);
}

/// The status `stream` ends with, within a few heartbeats.
async fn ending(stream: &mut tonic::Streaming<ev::WatchEventsResponse>) -> tonic::Status {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return status,
                None => panic!("the stream ended without a status"),
            }
        }
    })
    .await
    .expect("the stream ends within a few heartbeats")
}

/// A stream lasts no longer than the token that opened it, so a stolen token reads until its
/// `exp`, not for as long as its connection stays up. The stream ends saying where to resume,
/// and a fresh token resumes there.
async fn a_stream_ends_when_its_token_expires(app: &TestApp) {
    let w = app.seed_world("expiring").await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
    let short_lived = app.signers.mint(&Principal::User { user_id: w.admin.clone() }, now, 2);
    let mut stream = app
        .events()
        .watch_events(authed(ev::WatchEventsRequest { heartbeat_seconds: 1, ..Default::default() }, &short_lived))
        .await
        .expect("an admin watches")
        .into_inner();
    let ended = ending(&mut stream).await;
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert_eq!(reason(&ended), "TOKEN_EXPIRED");
    let resume_after = tonic_types::StatusExt::get_details_error_info(&ended)
        .and_then(|info| info.metadata.get("resume_after").cloned())
        .expect("where to resume");
    let resumed = ev::WatchEventsRequest { after: resume_after, ..Default::default() };
    app.events().watch_events(authed(resumed, &app.user_token(&w.admin))).await.expect("a fresh token resumes there");
}

/// Streams are memory and a task each: one caller may hold 16 open on a server; the 17th is
/// refused with when to retry, and a closed stream frees its slot at once.
async fn a_caller_holds_a_bounded_number_of_streams(app: &TestApp) {
    let w = app.seed_world("streams").await;
    let token = app.user_token(&w.admin);
    let open = || async {
        app.events()
            .watch_events(authed(ev::WatchEventsRequest::default(), &token))
            .await
            .map(tonic::Response::into_inner)
    };
    let mut streams = Vec::new();
    for _ in 0..roster_platform::event_log::stream::MAX_STREAMS_PER_CALLER {
        streams.push(open().await.expect("within the limit"));
    }
    let refused = open().await.expect_err("one too many");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(&refused), "EVENT_STREAMS_LIMIT");
    assert!(
        app.events().watch_events(authed(ev::WatchEventsRequest::default(), &app.user_token(&w.owner))).await.is_ok(),
        "another caller is not held back"
    );
    drop(streams.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while open().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "a closed stream gives its slot back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// PostgreSQL numbers transactions as they start, not as they commit: a transaction that
/// started first and commits last must still reach a consumer that has already moved past the
/// later one's event. Events are held back until every older transaction has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_that_commits_after_a_later_numbered_one_is_not_skipped() {
    let Some(owned) = TestApp::spawn(Backend::Postgres).await else { return };
    out_of_order(&owned).await;
    owned.stop().await;
}

/// An operator's "user activated" event of `account`, about the user `subject`, now.
fn activated(app: &TestApp, account: &str, subject: &str) -> NewEvent {
    NewEvent {
        at_ms: app.clock.now_ms(),
        account_id: account.into(),
        subject: subject.into(),
        kind: "user.activated",
        request_id: rid(),
        operation_id: String::new(),
        principal: "operator:test".into(),
        payload: format!(r#"{{"type":"user_activated","user_id":"{subject}"}}"#),
    }
}

async fn out_of_order(app: &TestApp) {
    let event = |subject: &str| activated(app, "out-of-order", subject);
    let list = |after: String| async move {
        app.events()
            .list_events(authed(
                ev::ListEventsRequest { after, filter: filter("out-of-order"), page_size: 0 },
                &app.operator_token(),
            ))
            .await
            .expect("list")
            .into_inner()
    };
    let start = list(String::new()).await.cursor;
    let mut first = app.db.begin().await.expect("begin");
    store::append(&mut first, &event("first")).await.expect("first appends");
    let mut second = app.db.begin().await.expect("begin");
    store::append(&mut second, &event("second")).await.expect("second appends");
    second.commit().await.expect("the later one commits first");
    let meanwhile = list(start.clone()).await;
    assert!(meanwhile.events.is_empty(), "held back while an older transaction runs: {:?}", meanwhile.events);
    first.commit().await.expect("the older one commits");
    roster_testkit::events_settled(&app.db).await;
    let after = list(meanwhile.cursor).await;
    assert_eq!(
        after.events.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(),
        ["first", "second"],
        "neither is skipped, and the consumer that checkpointed in between sees both"
    );
}

/// A change's events go out with its last statement (`folded::write_last`), where on
/// PostgreSQL they cannot see each other; each still takes its own place, after those the
/// transaction wrote before, in the order the change made them.
async fn events_a_change_holds_for_its_last_statement_keep_their_order(app: &TestApp) {
    let account = format!("held-{}", rid());
    let event = |subject: &str| activated(app, &account, subject);
    let mut tx = app.db.begin().await.expect("begin");
    store::append(&mut tx, &event("sent-at-once")).await.expect("appends");
    let ((), held) = roster_platform::folded::holding_tail(async {
        for subject in ["held-1", "held-2", "held-3"] {
            let event = event(subject);
            roster_platform::folded::write_last(&mut tx, |write| store::append_into(write, &event))
                .await
                .expect("held");
        }
    })
    .await;
    held.expect("three held writes").run(&mut tx).await.expect("the last statement");
    tx.commit().await.expect("commit");
    roster_testkit::events_settled(&app.db).await;
    let subjects: Vec<String> = all_events(app, &account).await.into_iter().map(|e| e.subject).collect();
    assert_eq!(subjects, ["sent-at-once", "held-1", "held-2", "held-3"]);
}

/// A consumer that stops reading is ended once the stall limit passes, with the cursor to
/// resume after; resuming there it gets every event exactly once. The server holds at most its
/// buffer and HTTP/2's windows for it meanwhile, however much the log grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_consumer_is_ended_and_resumes_without_loss() {
    let limits = LimitArgs { shutdown_grace_ms: 2_000, event_stall_ms: 300, ..LimitArgs::default() };
    let app = TestApp::spawn_configured(Backend::Sqlite, None, limits).await.expect("sqlite");
    let account = format!("stall-{}", rid());
    let mut stalled = app
        .events()
        .watch_events(authed(
            ev::WatchEventsRequest { filter: filter(&account), ..Default::default() },
            &app.operator_token(),
        ))
        .await
        .expect("watch")
        .into_inner();
    // 6 MB of events: more than the server's buffer, HTTP/2's windows and send buffers.
    let count = 1_500;
    append_padded_events(&app, &account, count).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut received = Vec::new();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.next()).await.expect("items") {
            Some(Ok(ev::WatchEventsResponse { item: Some(ev::watch_events_response::Item::Event(event)) })) => {
                received.push(event.subject)
            }
            Some(Ok(_)) => {}
            Some(Err(status)) => break status,
            None => panic!("the stream ended without a status after {} events", received.len()),
        }
    };
    assert_eq!(ended.code(), Code::ResourceExhausted, "{ended:?}");
    assert!(received.len() < count, "it was ended before it had everything");
    let resume_after = tonic_types::StatusExt::get_details_error_info(&ended)
        .and_then(|info| info.metadata.get("resume_after").cloned())
        .expect("where to resume");
    let rest: Vec<String> = events_after(&app, &account, resume_after).await.into_iter().map(|e| e.subject).collect();
    let all: Vec<String> = received.into_iter().chain(rest).collect();
    let expected: Vec<String> = (0..count).map(|n| format!("user:u{n}")).collect();
    assert_eq!(all, expected, "every event once, in order");
    app.stop().await;
}

/// A server that shuts down ends each stream with UNAVAILABLE and the cursor to resume after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutting_down_ends_streams_with_where_to_resume() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let w = app.seed_world("shutdown").await;
    let mut stream = app
        .events()
        .watch_events(authed(
            ev::WatchEventsRequest { filter: filter(&w.account), ..Default::default() },
            &app.operator_token(),
        ))
        .await
        .expect("watch")
        .into_inner();
    set_time_zone(&app, &w.account, &w.member, &w.member, "Europe/Amsterdam").await;
    let seen = next_event(&mut stream).await;
    let stopping = tokio::spawn(app.stop());
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return status,
                None => panic!("the stream ended without saying where to resume"),
            }
        }
    })
    .await
    .expect("the stream ends as the server drains");
    assert_eq!(ended.code(), Code::Unavailable);
    let info = tonic_types::StatusExt::get_details_error_info(&ended).expect("error info");
    assert_eq!(info.reason, "SERVER_SHUTTING_DOWN");
    assert!(info.metadata.contains_key("resume_after"), "{info:?}");
    let _ = seen;
    stopping.await.expect("stopped");
}

/// A consumer far behind when the server shuts down (the server waiting for it to read) still
/// gets the shutdown status after what was sent, naming the last event it got.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_catching_up_at_shutdown_is_told_where_to_resume() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let account = format!("behind-{}", rid());
    // A small HTTP/2 window, so little is in flight and the consumer's pace decides.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .initial_stream_window_size(65_535)
        .connect()
        .await
        .expect("connect");
    let mut behind = ev::events_client::EventsClient::new(channel)
        .watch_events(authed(
            ev::WatchEventsRequest { filter: filter(&account), ..Default::default() },
            &app.operator_token(),
        ))
        .await
        .expect("watch")
        .into_inner();
    append_padded_events(&app, &account, 1_500).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = tokio::spawn(app.stop());
    let mut last_cursor = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match behind.next().await {
                Some(Ok(ev::WatchEventsResponse { item: Some(ev::watch_events_response::Item::Event(event)) })) => {
                    last_cursor = event.cursor;
                    // Slowly: reading all 1,500 would take longer than the grace period.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Some(Ok(_)) => {}
                Some(Err(status)) => return status,
                None => panic!("the stream ended without saying where to resume"),
            }
        }
    })
    .await
    .expect("the stream ends within the grace period");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    let info = tonic_types::StatusExt::get_details_error_info(&ended).expect("error info");
    assert_eq!(info.reason, "SERVER_SHUTTING_DOWN");
    assert_eq!(info.metadata.get("resume_after"), Some(&last_cursor), "after the last event it got");
    stopping.await.expect("stopped");
}

/// `count` invitations of 4 KB each into `account`'s log, committed at once: more than a
/// stream buffers and HTTP/2 holds in flight.
async fn append_padded_events(app: &TestApp, account: &str, count: usize) {
    let padding = "x".repeat(4_000);
    let mut tx = app.db.begin().await.expect("begin");
    for n in 0..count {
        let payload =
            serde_json::json!({"type": "user_invited", "user_id": format!("u{n}"), "email": padding, "role": "member"});
        let event = NewEvent {
            at_ms: app.clock.now_ms(),
            account_id: account.to_owned(),
            subject: format!("user:u{n}"),
            kind: "user.invited",
            request_id: rid(),
            operation_id: String::new(),
            principal: "operator:test".into(),
            payload: payload.to_string(),
        };
        store::append(&mut tx, &event).await.expect("append");
    }
    tx.commit().await.expect("commit");
}
