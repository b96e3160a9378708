//! SPEC R14, R21-R25 across both services, on SQLite and PostgreSQL: bulk unlink rows end as
//! the single-user unlink of the same user ends (1107, 1117, 1001, pending, 300), and a bulk
//! deactivation cancelled mid-way starts no new rows while the started ones finish.

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
    app.content()
        .register_content(authed(
            pb::RegisterContentRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                owner_user_id: leaving[1].clone(),
                kind: pb::ContentKind::Webinar as i32,
                title: "Launch".into(),
                uses_pmi: false,
            },
            &app.user_token(&leaving[1]),
        ))
        .await
        .expect("a webinar");
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
