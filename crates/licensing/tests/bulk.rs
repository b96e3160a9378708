//! SPEC R14, R21-R25 across both services, on SQLite and PostgreSQL: bulk unlink rows end as
//! the single-user unlink of the same user ends (1107, 1117, 1001, pending, 300), and a bulk
//! deactivation cancelled mid-way starts no new rows while the started ones finish. Dry runs
//! (`validate_only`), single and bulk, answer what the real call then does, and change nothing.

mod support;

use roster_proto::identity::v1 as idpb;
use roster_proto::licensing::v1 as pb;
use roster_proto::operations::v1 as ops;
use support::{Backend, TestApp, World, authed, product_code, reason, rid};

fn listed(user: &str, transfer_to: &str, webinars: bool) -> idpb::BulkUser {
    idpb::BulkUser {
        user: user.into(),
        transfer_to: transfer_to.into(),
        transfer_webinars: webinars,
        ..Default::default()
    }
}

/// `user` registers a webinar of their own.
async fn webinar_of(app: &TestApp, w: &World, user: &str) {
    let webinar = pb::RegisterContentRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        owner_user_id: user.into(),
        kind: pb::ContentKind::Webinar as i32,
        title: "Launch".into(),
        uses_pmi: false,
    };
    app.content().register_content(authed(webinar, &app.user_token(user))).await.expect("a webinar");
}

async fn start_bulk(app: &TestApp, w: &World, action: idpb::BulkAction, users: Vec<idpb::BulkUser>) -> ops::Operation {
    app.identity_bulk()
        .start_bulk_operation(authed(
            idpb::StartBulkOperationRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                action: action as i32,
                users,
                ..Default::default()
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("started")
        .into_inner()
}

/// The operation once done, read every 50 ms for up to 30 s, moving the manual clock on by
/// `advance_ms` between reads (past backoffs; 0 leaves it).
async fn settled(app: &TestApp, w: &World, id: &str, advance_ms: i64) -> ops::Operation {
    let mut last = None;
    for _ in 0..600 {
        let operation = app
            .operations()
            .get_operation(authed(ops::GetOperationRequest { operation_id: id.into() }, &app.user_token(&w.owner)))
            .await
            .expect("get")
            .into_inner();
        if operation.done {
            return operation;
        }
        last = Some(operation);
        app.clock.advance_ms(advance_ms);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{id} did not finish: {last:?}");
}

async fn rows(app: &TestApp, w: &World, id: &str) -> Vec<idpb::BulkRow> {
    app.identity_bulk()
        .list_bulk_rows(authed(
            idpb::ListBulkRowsRequest { operation_id: id.into(), page_size: 500, ..Default::default() },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("rows")
        .into_inner()
        .rows
}

/// The single-user unlink's outcome: (reason, code), empty when it succeeded.
async fn single_unlink(app: &TestApp, w: &World, user: &str, to: &str, webinars: bool) -> (String, String) {
    let transfer =
        (!to.is_empty()).then(|| idpb::ContentTransfer { target_user_id: to.into(), webinars, ..Default::default() });
    let answer = app.unlink(w, user, transfer).await;
    match answer {
        Err(status) => (reason(&status), product_code(&status).unwrap_or_default()),
        Ok(operation) => {
            let operation = settled(app, w, &operation.id, 60_000).await;
            operation.error.map(|e| (e.reason, e.code)).unwrap_or_default()
        }
    }
}

async fn r25_bulk_unlink_rows_end_as_single_unlinks(app: &TestApp) {
    let w = app.seed_world().await;
    let leaving = app.add_members(&w, 2).await;
    // A webinar to move: the member it would go to has no webinar license (300).
    webinar_of(app, &w, &leaving[1]).await;
    let users = vec![
        listed(&w.member, "", false),
        listed(&w.admin, "", false),
        listed(&leaving[0], &w.solo_owner, true),
        listed(&w.pending, "", false),
        listed(&leaving[0], "", false),
        listed(&leaving[1], &w.member, true),
    ];
    let started = start_bulk(app, &w, idpb::BulkAction::Unlink, users).await;
    let done = settled(app, &w, &started.id, 60_000).await;
    let outcomes: Vec<(String, String)> =
        rows(app, &w, &started.id).await.into_iter().map(|r| (r.reason, r.code)).collect();
    let pair = |reason: &str, code: &str| (reason.to_owned(), code.to_owned());
    assert_eq!(
        outcomes,
        [
            pair("MANAGED_DOMAIN_USER", "1107"),
            pair("ADMIN_MUST_BE_DEMOTED", "1117"),
            pair("TARGET_NOT_IN_ACCOUNT", "1001"),
            pair("USER_PENDING", ""),
            pair("INVALID_ROW", ""),
            pair("TARGET_LACKS_LICENSE", "300"),
        ],
        "{done:?}"
    );
    // The same requests one by one give the same answers, so nothing was half-done.
    assert_eq!(single_unlink(app, &w, &w.member, "", false).await, pair("MANAGED_DOMAIN_USER", "1107"));
    assert_eq!(single_unlink(app, &w, &w.admin, "", false).await, pair("ADMIN_MUST_BE_DEMOTED", "1117"));
    assert_eq!(single_unlink(app, &w, &leaving[0], &w.solo_owner, true).await, pair("TARGET_NOT_IN_ACCOUNT", "1001"));
    assert_eq!(single_unlink(app, &w, &w.pending, "", false).await, pair("USER_PENDING", ""));
    assert_eq!(single_unlink(app, &w, &leaving[1], &w.member, true).await, pair("TARGET_LACKS_LICENSE", "300"));
    assert_eq!(single_unlink(app, &w, &leaving[1], "", false).await, pair("", ""), "the user was left whole");
}

async fn cancel_mid_way(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else { return };
    let w = app.seed_world().await;
    // More rows than a bulk operation keeps in flight, so some are still pending at the cancel.
    let how_many = usize::try_from(roster_identity::sagas::bulk::ROWS_AT_ONCE).expect("small") + 16;
    let members = app.add_members(&w, how_many).await;
    // With licensing down, the rows' sagas wait out the outage, so the cancel comes mid-way.
    app.stop_licensing().await;
    let users = members.iter().map(|m| listed(m, "", false)).collect();
    let started = start_bulk(&app, &w, idpb::BulkAction::Deactivate, users).await;
    assert!(!started.done);
    let cancelled = app
        .operations()
        .cancel_operation(authed(
            ops::CancelOperationRequest { operation_id: started.id.clone(), request_id: rid() },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("a bulk operation can be cancelled while it runs")
        .into_inner();
    assert_eq!(cancelled.cancel_requested_by, format!("user:{}", w.owner));
    app.start_licensing().await;
    // Past the rows' retry backoff once; then in real time, since a bulk operation works in
    // passes of real seconds and a clock racing ahead would expire its lease mid-pass.
    app.clock.advance_ms(600_000);
    let done = settled(&app, &w, &started.id, 0).await;
    let counts = done.progress.as_ref().and_then(|p| p.rows).expect("counts");
    let total = u32::try_from(how_many).expect("small");
    assert_eq!((counts.total, counts.done, counts.failed), (total, total, 0), "{done:?}");
    assert!(counts.skipped > 0 && counts.succeeded > 0, "some started, the rest were skipped: {counts:?}");
    assert_eq!(counts.succeeded + counts.skipped, total);
    for row in rows(&app, &w, &started.id).await {
        let user = &members[usize::try_from(row.line).expect("line") - 1];
        let status: String = sqlx::query_scalar("SELECT status FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(app.identity_db.pool())
            .await
            .expect("user");
        if row.state == idpb::BulkRowState::Skipped as i32 {
            assert_eq!((status.as_str(), row.reason.as_str()), ("active", "OPERATION_CANCELLED"), "{row:?}");
        } else {
            assert_eq!(row.state, idpb::BulkRowState::Succeeded as i32, "{row:?}");
            assert_eq!(status, "deactivated", "a started row finished: {row:?}");
        }
    }
    app.stop().await;
}

mod cancel {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn r25_a_cancel_starts_no_new_rows_sqlite() {
        super::cancel_mid_way(super::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn r25_a_cancel_starts_no_new_rows_postgres() {
        super::cancel_mid_way(super::Backend::Postgres).await;
    }
}

on_both_backends!(r25_bulk_unlink_rows_end_as_single_unlinks);

/// A single-user removal: which call, on whom, with what transfer.
#[derive(Debug, Clone)]
struct Call {
    action: idpb::BulkAction,
    user: String,
    transfer: Option<idpb::ContentTransfer>,
}

impl Call {
    fn new(action: idpb::BulkAction, user: &str, transfer: Option<idpb::ContentTransfer>) -> Self {
        Self { action, user: user.to_owned(), transfer }
    }

    async fn send(&self, app: &TestApp, w: &World, validate_only: bool) -> Result<ops::Operation, tonic::Status> {
        let (request_id, account_id, user_id) = (rid(), w.account.clone(), self.user.clone());
        let token = app.user_token(&w.owner);
        let transfer = self.transfer.clone();
        let mut users = app.identity_users();
        let answer = match self.action {
            idpb::BulkAction::Deactivate => {
                let request = idpb::DeactivateUserRequest { request_id, account_id, user_id, validate_only };
                users.deactivate_user(authed(request, &token)).await
            }
            idpb::BulkAction::Unlink => {
                let request = idpb::UnlinkUserRequest { request_id, account_id, user_id, transfer, validate_only };
                users.unlink_user(authed(request, &token)).await
            }
            _ => {
                let request = idpb::DeleteUserRequest { request_id, account_id, user_id, transfer, validate_only };
                users.delete_user(authed(request, &token)).await
            }
        };
        answer.map(tonic::Response::into_inner)
    }
}

/// What the account's licensing and identity hold of these users: licenses, numbers and
/// content per user, and each user's status and account.
async fn holdings(app: &TestApp, w: &World, users: &[&str]) -> Vec<String> {
    let mut seen = Vec::new();
    for user in users {
        let assignments = app
            .licenses()
            .list_assignments(authed(
                pb::ListAssignmentsRequest {
                    account_id: w.account.clone(),
                    user_id: (*user).into(),
                    page_size: 100,
                    ..Default::default()
                },
                &app.identity_token(),
            ))
            .await
            .expect("assignments")
            .into_inner();
        let content = app
            .content()
            .list_content(authed(
                pb::ListContentRequest {
                    account_id: w.account.clone(),
                    owner_user_id: (*user).into(),
                    page_size: 100,
                    ..Default::default()
                },
                &app.identity_token(),
            ))
            .await
            .expect("content")
            .into_inner();
        let status: Option<(String, String)> = sqlx::query_as("SELECT status, account_id FROM users WHERE id = $1")
            .bind(*user)
            .fetch_optional(app.identity_db.pool())
            .await
            .expect("user");
        let mut types: Vec<i32> = assignments.assignments.iter().map(|a| a.license_type).collect();
        types.sort_unstable();
        let mut items: Vec<String> = content.items.iter().map(|c| format!("{}:{}", c.kind, c.title)).collect();
        items.sort();
        seen.push(format!("{user}: {status:?} {types:?} {items:?}"));
    }
    let numbers = app
        .licenses()
        .list_phone_numbers(authed(
            pb::ListPhoneNumbersRequest { account_id: w.account.clone() },
            &app.identity_token(),
        ))
        .await
        .expect("numbers")
        .into_inner();
    seen.extend(numbers.phone_numbers.iter().map(|n| format!("{} -> {}", n.number, n.user_id)));
    seen
}

/// (reason, code) of a refusal, whether the call refused or its operation ended refused.
fn refusal_of(answer: &Result<ops::Operation, tonic::Status>) -> Option<(String, String)> {
    match answer {
        Err(status) => Some((reason(status), product_code(status).unwrap_or_default())),
        Ok(operation) => operation.error.as_ref().map(|e| (e.reason.clone(), e.code.clone())),
    }
}

/// The dry run of `call`, then (with nothing changed in between) the call itself: the dry run
/// must have refused exactly as the call then did, or foretold each part of its result.
async fn dry_then_real(
    app: &TestApp,
    w: &World,
    call: &Call,
    watched: &[&str],
) -> Result<ops::Operation, tonic::Status> {
    let before = holdings(app, w, watched).await;
    let dry = call.send(app, w, true).await;
    assert_eq!(holdings(app, w, watched).await, before, "the dry run of {call:?} changed nothing");
    let real = match call.send(app, w, false).await {
        Ok(started) => Ok(settled(app, w, &started.id, 60_000).await),
        Err(status) => Err(status),
    };
    assert_eq!(refusal_of(&dry), refusal_of(&real), "{call:?}: dry {dry:?}, real {real:?}");
    if let (Ok(dry), Ok(real)) = (&dry, &real) {
        assert!(dry.id.is_empty() && dry.done, "a dry run stores no operation: {dry:?}");
        assert_eq!(dry.kind, real.kind);
        let foretold = dry.result.as_ref().expect("a dry run's result");
        let got = real.result.as_ref().expect("the real result");
        assert_eq!(foretold.fields.get("validate_only").and_then(|v| v.kind.clone()), Some(BoolValue(true)));
        for (key, value) in &foretold.fields {
            if key != "validate_only" {
                assert_eq!(Some(value), got.fields.get(key), "{call:?}: {key} foretold {foretold:?}, got {got:?}");
            }
        }
    }
    dry
}

use prost_types::value::Kind::BoolValue;

async fn dry_runs(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else { return };
    let w = app.seed_world().await;
    let extra = app.add_members(&w, 3).await;
    // extra[1] owns a webinar; the member it would go to has no webinar license (300).
    webinar_of(&app, &w, &extra[1]).await;
    let watched = [w.owner.as_str(), &w.admin, &w.member, &extra[0], &extra[1], &extra[2]];
    let to = |target: &str, meetings: bool, webinars: bool, recordings: bool| {
        Some(idpb::ContentTransfer { target_user_id: target.into(), meetings, webinars, recordings, events: false })
    };
    use idpb::BulkAction::{Deactivate, Delete, Unlink};

    // A bulk dry run of the calls below: each row as the single dry run answers.
    let deletes_member = idpb::BulkUser {
        user: w.member.clone(),
        transfer_to: w.owner.clone(),
        transfer_meetings: true,
        transfer_recordings: true,
        ..Default::default()
    };
    let before = holdings(&app, &w, &watched).await;
    let started = app
        .identity_bulk()
        .start_bulk_operation(authed(
            idpb::StartBulkOperationRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                action: Delete as i32,
                users: vec![listed(&w.admin, "", false), deletes_member, listed(&extra[1], &w.member, true)],
                validate_only: true,
                ..Default::default()
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("a bulk dry run starts")
        .into_inner();
    let done = settled(&app, &w, &started.id, 0).await;
    assert_eq!(done.state, ops::OperationState::Succeeded as i32, "{done:?}");
    let result = done.result.as_ref().expect("result");
    assert_eq!(result.fields.get("validate_only").and_then(|v| v.kind.clone()), Some(BoolValue(true)));
    let bulk_rows = rows(&app, &w, &started.id).await;
    assert_eq!(holdings(&app, &w, &watched).await, before, "a bulk dry run changed nothing");
    let outcomes: Vec<(i32, String, String)> =
        bulk_rows.iter().map(|r| (r.state, r.reason.clone(), r.code.clone())).collect();
    let (failed, succeeded) = (idpb::BulkRowState::Failed as i32, idpb::BulkRowState::Succeeded as i32);
    assert_eq!(
        outcomes,
        [
            (failed, "ADMIN_MUST_BE_DEMOTED".into(), "1117".into()),
            (succeeded, String::new(), String::new()),
            (failed, "TARGET_LACKS_LICENSE".into(), "300".into()),
        ]
    );
    assert!(bulk_rows.iter().all(|r| r.operation_id.is_empty()), "no row started an operation: {bulk_rows:?}");
    let results = app
        .identity_bulk()
        .download_bulk_results(authed(
            idpb::DownloadBulkResultsRequest { operation_id: started.id.clone() },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("results")
        .into_inner()
        .message()
        .await
        .expect("a chunk")
        .expect("data");
    let results = String::from_utf8(results.data).expect("utf-8");
    assert!(
        results.lines().next().expect("header").ends_with(",would_reclaim,would_transfer,would_delete"),
        "{results}"
    );
    assert!(results.contains(",licensed,\"1 meeting, 1 recording\",\"1 meeting, 1 event\""), "{results}");

    // Refused by identity, by licensing, and foretold in full; each dry run then the call.
    dry_then_real(&app, &w, &Call::new(Deactivate, &w.admin, None), &watched).await.expect_err("1117");
    dry_then_real(&app, &w, &Call::new(Unlink, &w.member, None), &watched).await.expect_err("1107");
    dry_then_real(&app, &w, &Call::new(Deactivate, &w.owner, None), &watched).await.expect_err("the owner");
    dry_then_real(&app, &w, &Call::new(Unlink, &extra[0], to(&w.solo_owner, true, false, false)), &watched)
        .await
        .expect_err("1001");
    dry_then_real(&app, &w, &Call::new(Unlink, &extra[1], to(&w.member, false, true, false)), &watched)
        .await
        .expect_err("300");
    let single = Call::new(Delete, &w.member, to(&w.owner, true, false, true));
    let foretold = dry_then_real(&app, &w, &single, &watched).await.expect("the member can be deleted");
    assert_eq!(foretold.result, bulk_rows[1].preview, "the bulk row's preview is the single dry run's result");
    dry_then_real(&app, &w, &Call::new(Unlink, &extra[0], None), &watched).await.expect("extra[0] can be unlinked");

    // While a saga works on a user, a dry run is refused as a second call would be; while
    // licensing is down, a dry run that would go ahead cannot say what it would take.
    app.stop_licensing().await;
    let running = Call::new(Deactivate, &extra[2], None).send(&app, &w, false).await.expect("starts");
    assert!(!running.done, "licensing is down, so the deactivation waits");
    let busy = Call::new(Unlink, &extra[2], None);
    let (dry, real) = (busy.send(&app, &w, true).await, busy.send(&app, &w, false).await);
    assert_eq!(refusal_of(&dry), Some(("OPERATION_IN_PROGRESS".into(), String::new())), "{dry:?}");
    assert_eq!(refusal_of(&dry), refusal_of(&real));
    let unreachable = Call::new(Delete, &extra[1], None).send(&app, &w, true).await.expect_err("licensing is down");
    assert_eq!(unreachable.code(), tonic::Code::Unavailable, "{unreachable:?}");
    app.start_licensing().await;
    app.stop().await;
}

mod dry_run {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn r14_r23_dry_runs_foretell_the_real_calls_and_change_nothing_sqlite() {
        super::dry_runs(super::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn r14_r23_dry_runs_foretell_the_real_calls_and_change_nothing_postgres() {
        super::dry_runs(super::Backend::Postgres).await;
    }
}
