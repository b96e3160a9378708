//! SPEC R23, R34 over gRPC on SQLite and PostgreSQL: whatever a caller names that is not in
//! their account is answered exactly as if it did not exist. For every call that names a user,
//! invitation, role, ownership request or operation (by id or by e-mail, as the subject, as a
//! transfer target, in a bulk row or a dry run), naming another account's object and naming a
//! made-up one give the same status, reason, product code and message, so no answer tells
//! whether an address or id belongs to anyone in Roster.

mod support;

use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use support::{TestApp, World, authed, product_code, reason, rid};

on_both_backends!(
    r34_objects_elsewhere_read_as_objects_nowhere,
    r34_a_page_token_opens_only_the_next_page_of_its_listing
);

/// What a call names.
#[derive(Debug, Clone, Copy)]
enum Named {
    UserId,
    UserEmail,
    InvitationId,
    RoleId,
    OwnershipRequestId,
    OperationId,
}

/// The calls that name something, each with what it names.
const CASES: &[(&str, Named)] = &[
    ("GetUser", Named::UserId),
    ("DeactivateUser", Named::UserId),
    ("DeactivateUser validate_only", Named::UserId),
    ("ReactivateUser", Named::UserId),
    ("UnlinkUser", Named::UserId),
    ("DeleteUser", Named::UserId),
    ("UnlinkUser validate_only", Named::UserId),
    ("UnlinkUser to", Named::UserId),
    ("DeleteUser to", Named::UserId),
    ("UnlinkUser validate_only to", Named::UserId),
    ("AssignRole", Named::UserId),
    ("TransferOwnership", Named::UserId),
    ("ResendInvitation", Named::InvitationId),
    ("RevokeInvitation", Named::InvitationId),
    ("UpdateRole", Named::RoleId),
    ("DeleteRole", Named::RoleId),
    ("AssignRole role", Named::RoleId),
    ("InviteUser role", Named::RoleId),
    ("GetOwnershipRequest", Named::OwnershipRequestId),
    ("GetOperation", Named::OperationId),
    ("CancelOperation", Named::OperationId),
    ("bulk deactivate", Named::UserId),
    ("bulk deactivate", Named::UserEmail),
    ("bulk unlink to", Named::UserId),
    ("bulk unlink to", Named::UserEmail),
    ("bulk csv unlink to", Named::UserEmail),
    ("bulk dry run unlink to", Named::UserEmail),
    ("bulk dry run delete to", Named::UserId),
];

/// How a call was answered: its status code, reason, product code and message, or a bulk
/// row's state, reason, code and message; the named value itself is blanked out.
type Answer = (String, String, String, String);

fn answer_of(result: Result<(), tonic::Status>, named: &str) -> Answer {
    match result {
        Ok(()) => ("OK".into(), String::new(), String::new(), String::new()),
        Err(status) => (
            format!("{:?}", status.code()),
            reason(&status),
            product_code(&status).unwrap_or_default(),
            status.message().replace(named, "<named>"),
        ),
    }
}

fn made_up(named: Named) -> String {
    match named {
        Named::UserEmail => format!("nobody-{}@nowhere.example", rid()),
        _ => uuid::Uuid::now_v7().to_string(),
    }
}

async fn theirs(app: &TestApp, w: &World, named: Named) -> String {
    match named {
        Named::UserId => w.member.clone(),
        Named::UserEmail => w.email_of("member"),
        Named::InvitationId => w.invitation_id.clone(),
        Named::RoleId => w.custom_role.clone(),
        Named::OwnershipRequestId => {
            let open: Option<String> =
                sqlx::query_scalar("SELECT id FROM ownership_requests WHERE account_id = $1 AND state = 'open'")
                    .bind(&w.account)
                    .fetch_optional(app.db.pool())
                    .await
                    .expect("requests");
            match open {
                Some(id) => id,
                None => app.request_ownership(&w.account, &w.admin).await.expect("their admin asks").id,
            }
        }
        Named::OperationId => {
            sqlx::query_scalar::<_, Option<String>>("SELECT MIN(id) FROM workflows WHERE account_id = $1")
                .bind(&w.account)
                .fetch_one(app.db.pool())
                .await
                .expect("operations")
                .expect("seeding ran sagas")
        }
    }
}

/// `case` in my account, as my owner, naming `named`.
async fn ask(app: &TestApp, case: &str, mine: &World, named: &str) -> Result<(), tonic::Status> {
    let owner = app.user_token(&mine.owner);
    let account = mine.account.clone();
    let transfer =
        |to: &str| Some(pb::ContentTransfer { target_user_id: to.into(), recordings: true, ..Default::default() });
    let validate_only = case.contains("validate_only");
    match case {
        "GetUser" => app
            .users()
            .get_user(authed(pb::GetUserRequest { account_id: account, user_id: named.into() }, &owner))
            .await
            .map(drop),
        "DeactivateUser" | "DeactivateUser validate_only" => app
            .users()
            .deactivate_user(authed(
                pb::DeactivateUserRequest {
                    request_id: rid(),
                    account_id: account,
                    user_id: named.into(),
                    validate_only,
                },
                &owner,
            ))
            .await
            .map(drop),
        "ReactivateUser" => app
            .users()
            .reactivate_user(authed(
                pb::ReactivateUserRequest {
                    request_id: rid(),
                    account_id: account,
                    user_id: named.into(),
                    restore_licenses: false,
                },
                &owner,
            ))
            .await
            .map(drop),
        "UnlinkUser" | "UnlinkUser validate_only" | "UnlinkUser to" | "UnlinkUser validate_only to" => {
            let (user_id, transfer) =
                if case.ends_with(" to") { (mine.member.clone(), transfer(named)) } else { (named.to_owned(), None) };
            app.users()
                .unlink_user(authed(
                    pb::UnlinkUserRequest { request_id: rid(), account_id: account, user_id, transfer, validate_only },
                    &owner,
                ))
                .await
                .map(drop)
        }
        "DeleteUser" | "DeleteUser to" => {
            let (user_id, transfer) =
                if case.ends_with(" to") { (mine.member.clone(), transfer(named)) } else { (named.to_owned(), None) };
            app.users()
                .delete_user(authed(
                    pb::DeleteUserRequest { request_id: rid(), account_id: account, user_id, transfer, validate_only },
                    &owner,
                ))
                .await
                .map(drop)
        }
        "AssignRole" | "AssignRole role" => {
            let (user_id, role_id) = if case == "AssignRole" {
                (named.to_owned(), "member".to_owned())
            } else {
                (mine.member.clone(), named.to_owned())
            };
            app.roles()
                .assign_role(authed(
                    pb::AssignRoleRequest { request_id: rid(), account_id: account, user_id, role_id },
                    &owner,
                ))
                .await
                .map(drop)
        }
        "TransferOwnership" => app
            .accounts()
            .transfer_ownership(authed(
                pb::TransferOwnershipRequest {
                    request_id: rid(),
                    account_id: account,
                    new_owner_user_id: named.into(),
                    confirm_phone_transfer: true,
                },
                &owner,
            ))
            .await
            .map(drop),
        "ResendInvitation" => app
            .users()
            .resend_invitation(authed(
                pb::ResendInvitationRequest { request_id: rid(), account_id: account, invitation_id: named.into() },
                &owner,
            ))
            .await
            .map(drop),
        "RevokeInvitation" => app
            .users()
            .revoke_invitation(authed(
                pb::RevokeInvitationRequest { request_id: rid(), account_id: account, invitation_id: named.into() },
                &owner,
            ))
            .await
            .map(drop),
        "UpdateRole" => app
            .roles()
            .update_role(authed(
                pb::UpdateRoleRequest {
                    request_id: rid(),
                    account_id: account,
                    role_id: named.into(),
                    name: "Renamed".into(),
                    privileges: vec![pb::Privilege::ManageUsers as i32],
                },
                &owner,
            ))
            .await
            .map(drop),
        "DeleteRole" => app
            .roles()
            .delete_role(authed(
                pb::DeleteRoleRequest { request_id: rid(), account_id: account, role_id: named.into() },
                &owner,
            ))
            .await
            .map(drop),
        "InviteUser role" => app
            .users()
            .invite_user(authed(
                pb::InviteUserRequest {
                    request_id: rid(),
                    account_id: account,
                    email: format!("{}@invitee.example", rid()),
                    role: pb::RoleKind::Custom as i32,
                    custom_role_id: named.into(),
                    ..Default::default()
                },
                &owner,
            ))
            .await
            .map(drop),
        "GetOwnershipRequest" => app
            .accounts()
            .get_ownership_request(authed(
                pb::GetOwnershipRequestRequest { account_id: account, ownership_request_id: named.into() },
                &owner,
            ))
            .await
            .map(drop),
        "GetOperation" => app
            .operations()
            .get_operation(authed(ops::GetOperationRequest { operation_id: named.into() }, &owner))
            .await
            .map(drop),
        "CancelOperation" => app
            .operations()
            .cancel_operation(authed(
                ops::CancelOperationRequest { operation_id: named.into(), request_id: rid() },
                &owner,
            ))
            .await
            .map(drop),
        bulk => bulk_row(app, bulk, mine, named).await,
    }
}

/// A bulk operation of one row naming `named` (as the user, or with `to` as the transfer
/// target), run to its end; its row's outcome is the answer.
async fn bulk_row(app: &TestApp, case: &str, mine: &World, named: &str) -> Result<(), tonic::Status> {
    let owner = app.user_token(&mine.owner);
    let action = if case.contains("delete") {
        pb::BulkAction::Delete
    } else if case.contains("unlink") {
        pb::BulkAction::Unlink
    } else {
        pb::BulkAction::Deactivate
    };
    let validate_only = case.contains("dry run");
    let mut request = pb::StartBulkOperationRequest {
        request_id: rid(),
        account_id: mine.account.clone(),
        action: action as i32,
        validate_only,
        ..Default::default()
    };
    if case.contains("csv") {
        let to = named;
        request.csv = format!(
            "email,transfer_to,transfer_meetings,transfer_webinars,transfer_events,transfer_recordings\n{},{to},No,No,No,Yes\n",
            mine.email_of("member")
        )
        .into_bytes();
    } else if case.ends_with(" to") {
        request.users = vec![pb::BulkUser {
            user: mine.member.clone(),
            transfer_to: named.into(),
            transfer_recordings: true,
            ..Default::default()
        }];
    } else {
        request.users = vec![pb::BulkUser { user: named.into(), ..Default::default() }];
    }
    let started = app.bulk().start_bulk_operation(authed(request, &owner)).await?.into_inner();
    app.operation_when_done(&mine.owner, &started.id).await;
    let rows = app
        .bulk()
        .list_bulk_rows(authed(pb::ListBulkRowsRequest { operation_id: started.id, ..Default::default() }, &owner))
        .await
        .expect("rows")
        .into_inner()
        .rows;
    let row = rows.first().expect("one row");
    if row.state == pb::BulkRowState::Succeeded as i32 {
        return Ok(());
    }
    let mut details = tonic_types::ErrorDetails::new();
    details.set_error_info(
        row.reason.clone(),
        "roster",
        std::collections::HashMap::from([("code".to_owned(), row.code.clone())]),
    );
    Err(<tonic::Status as tonic_types::StatusExt>::with_error_details(
        tonic::Code::FailedPrecondition,
        format!("row {:?}: {}", row.state, row.message),
        details,
    ))
}

async fn r34_objects_elsewhere_read_as_objects_nowhere(app: &TestApp) {
    let mine = app.seed_world("leakmine").await;
    let other = app.seed_world("leaktheirs").await;
    let mut differences = Vec::new();
    for (case, named) in CASES {
        let theirs = theirs(app, &other, *named).await;
        let nowhere = made_up(*named);
        let elsewhere = answer_of(ask(app, case, &mine, &theirs).await, &theirs);
        let nowhere = answer_of(ask(app, case, &mine, &nowhere).await, &nowhere);
        if elsewhere.0 == "OK" {
            differences.push(format!("{case} ({named:?}): another account's object was accepted"));
        } else if elsewhere != nowhere {
            differences.push(format!("{case} ({named:?}): elsewhere {elsewhere:?}, nowhere {nowhere:?}"));
        }
    }
    assert!(differences.is_empty(), "answers that tell another account's objects apart:\n{}", differences.join("\n"));
}

async fn list_users(
    app: &TestApp,
    token: &str,
    request: pb::ListUsersRequest,
) -> Result<pb::ListUsersResponse, tonic::Status> {
    app.users().list_users(authed(request, token)).await.map(tonic::Response::into_inner)
}

fn page_token_refused(result: Result<impl std::fmt::Debug, tonic::Status>, case: &str) -> String {
    let status = result.expect_err(case);
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{case}: {status:?}");
    assert_eq!(support::bad_field(&status).as_deref(), Some("page_token"), "{case}: {status:?}");
    status.message().to_owned()
}

/// A page token is bound to its list RPC, its caller and its filter (the account among it), and
/// lasts 24 hours: Acme's `ListUsers` token opens nothing in another account, another list, with
/// another filter or for another caller.
async fn r34_a_page_token_opens_only_the_next_page_of_its_listing(app: &TestApp) {
    let acme = app.seed_world("pagesacme").await;
    let globex = app.seed_world("pagesglobex").await;
    let operator = app.operator_token();
    let first = |account: &str| pb::ListUsersRequest { account_id: account.into(), page_size: 2, ..Default::default() };
    let page = list_users(app, &operator, first(&acme.account)).await.expect("a first page");
    let token = page.next_page_token;
    assert!(!token.is_empty(), "Acme has more than two users");
    let next = |account: &str| pb::ListUsersRequest { page_token: token.clone(), ..first(account) };
    list_users(app, &operator, next(&acme.account)).await.expect("the next page of the same listing");

    page_token_refused(list_users(app, &operator, next(&globex.account)).await, "another account");
    let filtered = pb::ListUsersRequest { status: pb::UserStatus::Active as i32, ..next(&acme.account) };
    page_token_refused(list_users(app, &operator, filtered).await, "another filter");
    page_token_refused(list_users(app, &app.user_token(&acme.owner), next(&acme.account)).await, "another caller");
    let invitations = app
        .users()
        .list_invitations(authed(
            pb::ListInvitationsRequest {
                account_id: acme.account.clone(),
                page_token: token.clone(),
                ..Default::default()
            },
            &operator,
        ))
        .await;
    page_token_refused(invitations, "another list");
    let audit = app
        .accounts()
        .list_audit_events(authed(
            pb::ListAuditEventsRequest {
                account_id: acme.account.clone(),
                page_token: token.clone(),
                ..Default::default()
            },
            &operator,
        ))
        .await;
    page_token_refused(audit, "another service's list");
    app.clock.advance_ms(24 * 3_600_000);
    let expired = page_token_refused(list_users(app, &operator, next(&acme.account)).await, "a day later");
    assert!(expired.contains("expired"), "{expired}");
}
