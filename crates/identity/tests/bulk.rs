//! SPEC R14, R16, R25 over gRPC on SQLite and PostgreSQL: bulk deactivation from a CSV file and
//! from a list, each row ending as the single-user call for that user ends; who may start one;
//! the rows and the results file; files refused as a whole. (Cancelling, and unlink rows, are
//! in licensing's tests, which can stop licensing mid-way.)

mod support;

use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use support::{TestApp, World, authed, bad_field, product_code, reason, rid};
use tonic::Code;

fn csv_request(account: &str, action: pb::BulkAction, csv: &str) -> pb::StartBulkOperationRequest {
    pb::StartBulkOperationRequest {
        request_id: rid(),
        account_id: account.into(),
        action: action as i32,
        csv: csv.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// Sends `csv` through UploadBulkCsv in parts of `part` bytes.
async fn upload(
    app: &TestApp,
    by: &str,
    account: &str,
    csv: &[u8],
    part: usize,
) -> Result<ops::Operation, tonic::Status> {
    let parts: Vec<pb::UploadBulkCsvRequest> = csv
        .chunks(part)
        .enumerate()
        .map(|(n, data)| {
            let first = n == 0;
            pb::UploadBulkCsvRequest {
                request_id: if first { rid() } else { String::new() },
                account_id: if first { account.to_owned() } else { String::new() },
                action: if first { pb::BulkAction::Deactivate as i32 } else { 0 },
                data: data.to_vec(),
                validate_only: false,
            }
        })
        .collect();
    app.bulk()
        .upload_bulk_csv(authed(futures_util::stream::iter(parts), &app.user_token(by)))
        .await
        .map(tonic::Response::into_inner)
}

async fn start(
    app: &TestApp,
    by: &str,
    request: pb::StartBulkOperationRequest,
) -> Result<ops::Operation, tonic::Status> {
    app.bulk().start_bulk_operation(authed(request, &app.user_token(by))).await.map(tonic::Response::into_inner)
}

async fn rows(app: &TestApp, by: &str, id: &str) -> Vec<pb::BulkRow> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .bulk()
            .list_bulk_rows(authed(
                pb::ListBulkRowsRequest { operation_id: id.into(), page_size: 3, page_token, ..Default::default() },
                &app.user_token(by),
            ))
            .await
            .expect("rows")
            .into_inner();
        all.extend(page.rows);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// The results file of bulk operation `id`, as `by` downloads it.
async fn results_file(app: &TestApp, by: &str, id: &str) -> String {
    let mut download = app
        .bulk()
        .download_bulk_results(authed(pb::DownloadBulkResultsRequest { operation_id: id.into() }, &app.user_token(by)))
        .await
        .expect("the results file")
        .into_inner();
    let mut file = Vec::new();
    while let Some(chunk) = download.message().await.expect("a chunk") {
        file.extend(chunk.data);
    }
    String::from_utf8(file).expect("UTF-8")
}

fn counts(operation: &ops::Operation) -> (u32, u32, u32, u32, u32) {
    let rows = operation.progress.as_ref().and_then(|p| p.rows).expect("row counts");
    (rows.total, rows.done, rows.succeeded, rows.failed, rows.skipped)
}

/// The single-user call's answer for `user`, as (reason, code); ("", "") when it succeeds.
async fn single(app: &TestApp, w: &World, user: &str) -> (String, String) {
    let answer = app
        .users()
        .deactivate_user(authed(
            pb::DeactivateUserRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: user.into(),
                validate_only: false,
            },
            &app.user_token(&w.owner),
        ))
        .await;
    match answer {
        Ok(_) => (String::new(), String::new()),
        Err(status) => (reason(&status), product_code(&status).unwrap_or_default()),
    }
}

async fn r25_each_row_ends_as_the_single_user_call_would(app: &TestApp) {
    let w = app.seed_world("bulkcsv").await;
    let first = app.join(&w.account, &w.owner, "first@bulkcsv.example").await;
    let second = app.join(&w.account, &w.owner, "second@bulkcsv.example").await;
    let csv = "\u{feff}Email\r\n\
               first@bulkcsv.example\r\n\
               admin@bulkcsv.example\r\n\
               pending@bulkcsv.example\r\n\
               \"owner@bulkcsv.example\"\r\n\
               nobody@bulkcsv.example\r\n\
               owner@other.example\r\n\
               not an address\r\n\
               FIRST@bulkcsv.example\r\n\
               gone@bulkcsv.example\r\n\
               second@bulkcsv.example\r\n\r\n";
    let started =
        start(app, &w.owner, csv_request(&w.account, pb::BulkAction::Deactivate, csv)).await.expect("started");
    assert_eq!(started.kind, "bulk.deactivate");
    let done = app.operation_when_done(&w.owner, &started.id).await;
    assert_eq!(done.state, ops::OperationState::Succeeded as i32, "{done:?}");
    assert_eq!(counts(&done), (10, 10, 2, 8, 0));
    let result = done.result.expect("a result");
    assert_eq!(result.fields["succeeded"].kind, Some(prost_types::value::Kind::NumberValue(2.0)));

    let listed = rows(app, &w.owner, &started.id).await;
    let outcome = |row: &pb::BulkRow| (row.line, row.state, row.reason.clone(), row.code.clone());
    let ok = pb::BulkRowState::Succeeded as i32;
    let failed = pb::BulkRowState::Failed as i32;
    let expected = [
        (2, ok, "", ""),
        (3, failed, "ADMIN_MUST_BE_DEMOTED", "1117"),
        (4, failed, "USER_PENDING", ""),
        (5, failed, "OWNER_PROTECTED", ""),
        (6, failed, "USER_NOT_FOUND", "1010"),
        (7, failed, "USER_NOT_FOUND", "1010"),
        (8, failed, "INVALID_ROW", ""),
        (9, failed, "INVALID_ROW", ""),
        (10, failed, "USER_DEACTIVATED", ""),
        (11, ok, "", ""),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(line, state, reason, code)| (*line, *state, (*reason).to_owned(), (*code).to_owned()))
        .collect();
    assert_eq!(listed.iter().map(outcome).collect::<Vec<_>>(), expected);
    assert_eq!((listed[6].column.as_str(), listed[7].column.as_str()), ("email", "email"));
    assert!(listed[7].message.contains("line 2"), "{:?}", listed[7]);
    assert_eq!(listed[0].user_id, first);
    assert!(!listed[0].operation_id.is_empty(), "the row names the saga that ran it");

    // The same users through the single-user call: the same refusals (the two that the bulk
    // deactivated are now refused as already deactivated, as the bulk's repeat row was).
    assert_eq!(single(app, &w, &w.admin).await, ("ADMIN_MUST_BE_DEMOTED".into(), "1117".into()));
    assert_eq!(single(app, &w, &w.pending_user).await, ("USER_PENDING".into(), String::new()));
    assert_eq!(single(app, &w, &w.owner).await, ("OWNER_PROTECTED".into(), String::new()));
    assert_eq!(single(app, &w, &w.deactivated).await, ("USER_DEACTIVATED".into(), String::new()));
    assert_eq!(single(app, &w, &second).await, ("USER_DEACTIVATED".into(), String::new()));
    let status = app.get_user(&w.account, &w.owner, &first).await.status;
    assert_eq!(status, pb::UserStatus::Deactivated as i32);

    // The results file: the header and each row as given, then how it ended.
    let file = results_file(app, &w.admin, &started.id).await;
    let lines: Vec<&str> = file.lines().collect();
    assert_eq!(lines[0], "Email,outcome,reason,code,message,column");
    assert_eq!(lines[1], "first@bulkcsv.example,succeeded,,,,");
    assert!(lines[2].starts_with("admin@bulkcsv.example,failed,ADMIN_MUST_BE_DEMOTED,1117,"), "{}", lines[2]);
    assert!(lines[7].starts_with("not an address,failed,INVALID_ROW,,"), "{}", lines[7]);
    assert_eq!(lines.len(), 11);
}

async fn r16_only_the_owner_or_a_bulk_role_may_and_admins_are_told_what_is_missing(app: &TestApp) {
    let w = app.seed_world("bulkwho").await;
    let list = |user: &str| pb::StartBulkOperationRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        action: pb::BulkAction::Deactivate as i32,
        users: vec![pb::BulkUser { user: user.into(), ..Default::default() }],
        ..Default::default()
    };
    let refused = start(app, &w.admin, list(&w.member)).await.expect_err("an admin lacks the privilege");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "MISSING_PRIVILEGE");
    assert!(refused.message().contains("bulk_remove_users"), "{}", refused.message());
    let bulk_only = app
        .roles()
        .create_role(authed(
            pb::CreateRoleRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                name: "Bulk only".into(),
                privileges: vec![pb::Privilege::BulkRemoveUsers as i32],
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("role")
        .into_inner();
    let helper = app.join(&w.account, &w.owner, "helper@bulkwho.example").await;
    app.assign_role(&w.account, &w.owner, &helper, &bulk_only.id).await.expect("assigned");
    let refused = start(app, &helper, list(&w.member)).await.expect_err("bulk alone does not manage users");
    assert!(refused.message().contains("manage_users"), "{}", refused.message());
    let nothing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bulk_operations WHERE account_id = $1")
        .bind(&w.account)
        .fetch_one(app.db.pool())
        .await
        .expect("count");
    assert_eq!(nothing, 0, "refused before anything was stored");

    let both = app
        .roles()
        .create_role(authed(
            pb::CreateRoleRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                name: "Bulk remover".into(),
                privileges: vec![pb::Privilege::BulkRemoveUsers as i32, pb::Privilege::ManageUsers as i32],
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("role")
        .into_inner();
    app.assign_role(&w.account, &w.owner, &helper, &both.id).await.expect("assigned");
    let started = start(app, &helper, list(&w.member)).await.expect("the custom role may");
    let done = app.operation_when_done(&helper, &started.id).await;
    assert_eq!(counts(&done), (1, 1, 1, 0, 0));
    assert_eq!(started.started_by, format!("user:{helper}"));
}

async fn r25_files_that_cannot_be_read_are_refused_whole_with_the_reason(app: &TestApp) {
    let w = app.seed_world("bulkfile").await;
    for (csv, says) in [
        ("\r\n\r\n", "the file is empty"),
        ("email,transfer_to,transfer_meetings,transfer_webinars,transfer_events,transfer_recordings\r\n", "no rows"),
        ("email\r\nsomeone@bulkfile.example\r\n", "column \"transfer_to\" is missing"),
        ("someone@bulkfile.example\r\n", "unknown column"),
    ] {
        let request = csv_request(&w.account, pb::BulkAction::Unlink, csv);
        let status = start(app, &w.owner, request).await.expect_err("refused");
        assert_eq!(bad_field(&status).as_deref(), Some("csv"), "{status:?}");
        assert!(status.message().contains(says), "{csv:?}: {}", status.message());
    }
    let empty = start(app, &w.owner, csv_request(&w.account, pb::BulkAction::Deactivate, "")).await.expect_err("empty");
    assert_eq!(bad_field(&empty).as_deref(), Some("users"), "neither a list nor a file: {empty:?}");
    let both = pb::StartBulkOperationRequest {
        users: vec![pb::BulkUser { user: w.member.clone(), ..Default::default() }],
        ..csv_request(&w.account, pb::BulkAction::Deactivate, "email\r\na@b.example\r\n")
    };
    assert_eq!(bad_field(&start(app, &w.owner, both).await.expect_err("both")).as_deref(), Some("csv"));
    let mut big = String::from("email\n");
    for n in 0..=roster_identity::domain::bulk::MAX_ROWS {
        big.push_str(&format!("u{n}@bulkfile.example\n"));
    }
    let status = upload(app, &w.owner, &w.account, big.as_bytes(), 64 * 1024).await.expect_err("too many rows");
    assert_eq!(bad_field(&status).as_deref(), Some("csv"));
    assert!(status.message().contains("more than 20000 rows"), "{}", status.message());

    let template = app
        .bulk()
        .get_bulk_template(authed(
            pb::GetBulkTemplateRequest { action: pb::BulkAction::Delete as i32 },
            &app.user_token(&w.member),
        ))
        .await
        .expect("anyone signed in may read the template")
        .into_inner();
    assert_eq!(template.filename, "roster-bulk-delete.csv");
    assert!(template.csv.starts_with("email,transfer_to,transfer_meetings,"), "{}", template.csv);
}

async fn r25_a_file_sent_in_chunks_runs_as_one(app: &TestApp) {
    let w = app.seed_world("bulkupload").await;
    let mut csv = String::from("email\n");
    let mut users = Vec::new();
    for n in 0..5 {
        let email = format!("u{n}@bulkupload.example");
        users.push(app.join(&w.account, &w.owner, &email).await);
        csv.push_str(&format!("{email}\n"));
    }
    let started = upload(app, &w.owner, &w.account, csv.as_bytes(), 7).await.expect("uploaded");
    let done = app.operation_when_done(&w.owner, &started.id).await;
    assert_eq!(counts(&done), (5, 5, 5, 0, 0));
}

/// One account of the equivalence test: who each CSV line names, in order, with their id
/// (none for an address nobody has).
async fn mixed_account(app: &TestApp, tag: &str) -> (String, String, Vec<(String, Option<String>)>) {
    let domain = format!("{tag}.example");
    let (account, owner) = app.create_account(&format!("Mixed {tag}"), &format!("owner@{domain}")).await;
    let clock: roster_platform::clock::SharedClock = app.clock.clone();
    let (account_id, owner_id) = (
        roster_identity::domain::values::AccountId::parse(&account).expect("id"),
        roster_identity::domain::values::UserId::parse(&owner).expect("id"),
    );
    let join = |email: String| {
        let (clock, account_id, owner_id) = (clock.clone(), account_id.clone(), owner_id.clone());
        async move {
            let id = roster_identity::demo::join(&app.db, &clock, &account_id, &owner_id, &email).await.expect("join");
            (email, Some(id.to_string()))
        }
    };
    let mut named = Vec::with_capacity(1_000);
    for i in 0..1_000 {
        let entry = match i % 50 {
            _ if i == 0 => (format!("owner@{domain}"), Some(owner.clone())),
            1 | 2 => {
                let (email, id) = join(format!("admin{i}@{domain}")).await;
                app.assign_role(&account, &owner, id.as_deref().expect("id"), "admin").await.expect("promote");
                (email, id)
            }
            3 | 4 => {
                let email = format!("pending{i}@{domain}");
                let invitation = app.invite(&account, &owner, &email).await;
                (email, Some(invitation.user_id))
            }
            5 => {
                let (email, id) = join(format!("gone{i}@{domain}")).await;
                let request = pb::DeactivateUserRequest {
                    request_id: rid(),
                    account_id: account.clone(),
                    user_id: id.clone().expect("id"),
                    validate_only: false,
                };
                app.users().deactivate_user(authed(request, &app.user_token(&owner))).await.expect("deactivate");
                (email, id)
            }
            6 => (format!("nobody{i}@{domain}"), None),
            _ => join(format!("member{i}@{domain}")).await,
        };
        named.push(entry);
    }
    (account, owner, named)
}

/// SPEC R25: a file of 1,000 rows of every kind (members, admins, pending and deactivated
/// users, unknown addresses, the owner) ends row for row as the single-user call ends for the
/// same kind of user in an account built the same way.
async fn r25_a_thousand_mixed_rows_end_as_single_calls_do(app: &TestApp) {
    let (bulk_account, bulk_owner, in_file) = mixed_account(app, "mixedbulk").await;
    let (single_account, single_owner, one_by_one) = mixed_account(app, "mixedsingle").await;
    let csv: String = std::iter::once("email".to_owned())
        .chain(in_file.iter().map(|(email, _)| email.clone()))
        .collect::<Vec<_>>()
        .join("\n");
    let started =
        start(app, &bulk_owner, csv_request(&bulk_account, pb::BulkAction::Deactivate, &csv)).await.expect("started");
    let done = app.operation_when_done(&bulk_owner, &started.id).await;
    let listed = rows(app, &bulk_owner, &started.id).await;
    assert_eq!(listed.len(), 1_000, "{done:?}");
    let mut users = app.users();
    for ((row, (_, id)), line) in listed.iter().zip(&one_by_one).zip(2..) {
        assert_eq!(row.line, line);
        let user_id = id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let request = pb::DeactivateUserRequest {
            request_id: rid(),
            account_id: single_account.clone(),
            user_id,
            validate_only: false,
        };
        let single = match users.deactivate_user(authed(request, &app.user_token(&single_owner))).await {
            Ok(operation) => {
                let operation = operation.into_inner();
                assert!(operation.done, "{operation:?}");
                operation.error.map(|e| (e.reason, e.code)).unwrap_or_default()
            }
            Err(status) => (reason(&status), product_code(&status).unwrap_or_default()),
        };
        assert_eq!((row.reason.clone(), row.code.clone()), single, "line {line}: {row:?}");
    }
    let counts = counts(&done);
    assert_eq!((counts.0, counts.1, counts.2 + counts.3), (1_000, 1_000, 1_000));
    assert_eq!(counts.2, 879, "the members succeeded");
}

/// Rows start many to a transaction, with the users they name read up front: a user named
/// twice (by id, then by e-mail) is acted on once, and the second row ends as a second
/// single-user call on that user would.
async fn r14_a_user_named_twice_in_one_batch_is_acted_on_once(app: &TestApp) {
    let w = app.seed_world("bulktwice").await;
    let first = app.join(&w.account, &w.owner, "first@bulktwice.example").await;
    let named = |user: &str| pb::BulkUser { user: user.into(), ..Default::default() };
    let request = pb::StartBulkOperationRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        action: pb::BulkAction::Deactivate as i32,
        users: vec![named(&first), named("first@bulktwice.example")],
        ..Default::default()
    };
    let started = start(app, &w.owner, request).await.expect("started");
    let done = app.operation_when_done(&w.owner, &started.id).await;
    assert_eq!(counts(&done), (2, 2, 1, 1, 0), "{done:?}");
    let listed = rows(app, &w.owner, &started.id).await;
    assert_eq!(listed[0].state, pb::BulkRowState::Succeeded as i32);
    let (reason, code) = single(app, &w, &first).await;
    assert!(!reason.is_empty(), "a second deactivation is refused");
    assert_eq!((listed[1].reason.clone(), listed[1].code.clone()), (reason, code), "as the single call is");
}

on_both_backends!(
    r25_cells_a_spreadsheet_would_run_come_back_as_text,
    r14_a_user_named_twice_in_one_batch_is_acted_on_once,
    r25_a_thousand_mixed_rows_end_as_single_calls_do,
    r25_each_row_ends_as_the_single_user_call_would,
    r16_only_the_owner_or_a_bulk_role_may_and_admins_are_told_what_is_missing,
    r25_files_that_cannot_be_read_are_refused_whole_with_the_reason,
    r25_a_file_sent_in_chunks_runs_as_one,
);

/// CSV injection: an uploaded cell that a spreadsheet would evaluate (`=`, `+`, `-`, `@`, a tab
/// or a carriage return first) comes back in the results file with a leading `'`, in every
/// column, Roster's own included (the header must name known columns, so it holds none).
async fn r25_cells_a_spreadsheet_would_run_come_back_as_text(app: &TestApp) {
    let w = app.seed_world("bulkformula").await;
    let csv = "email\n=cmd|' /C calc'!A0\n\
               \"=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",a\n\
               +1,b\n-2+3,c\n@SUM(A1),d\n\"\tx@y.example\",e\n\"\rx@y.example\",f\n";
    let started = start(app, &w.owner, csv_request(&w.account, pb::BulkAction::Deactivate, csv))
        .await
        .expect("the file is read; its rows fail");
    app.operation_when_done(&w.owner, &started.id).await;
    let file = results_file(app, &w.owner, &started.id).await;
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(file.as_bytes());
    let cells: Vec<String> =
        reader.records().flat_map(|r| r.expect("a record").iter().map(str::to_owned).collect::<Vec<_>>()).collect();
    let runnable: Vec<&String> = cells.iter().filter(|c| c.starts_with(['=', '+', '-', '@', '\t', '\r'])).collect();
    assert!(runnable.is_empty(), "cells a spreadsheet would run: {runnable:?}");
    for neutralised in [
        "'=cmd|' /C calc'!A0",
        "'=HYPERLINK(\"http://evil.example\",\"x\")",
        "'+1",
        "'-2+3",
        "'@SUM(A1)",
        "'\tx@y.example",
        "'\rx@y.example",
    ] {
        assert!(cells.iter().any(|c| c == neutralised), "{neutralised:?} in {cells:?}");
    }
}
