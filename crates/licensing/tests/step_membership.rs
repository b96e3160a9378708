//! SPEC R31, R34: every saga step checks that the users it names belong to the account in the
//! request, as identity knows them now (or, for a user identity already removed, as licensing's
//! reclaim hold shows). A step naming another account's user is refused and changes nothing,
//! even when identity's own service calls it. And a user deactivated since their first call is
//! refused on a retry instead of being replayed the stored answer.

mod support;

use roster_proto::identity::v1 as idpb;
use roster_proto::licensing::v1 as pb;
use support::{TestApp, World, authed, reason, rid};
use tonic::{Code, Status};

on_both_backends!(
    r34_steps_naming_another_accounts_user_are_refused_and_change_nothing,
    r34_a_deactivated_member_is_not_replayed_an_earlier_answer,
    r34_a_demoted_admin_is_not_replayed_an_earlier_answer,
);

/// Everything a step could change in licensing, in a comparable form.
async fn state(app: &TestApp) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, columns) in [
        ("assignments", "account_id || ':' || user_id || ':' || license_type"),
        ("content_items", "id || ':' || account_id || ':' || owner_user_id"),
        ("phone_numbers", "number || ':' || account_id || ':' || COALESCE(user_id, '-')"),
        ("license_holds", "account_id || ':' || user_id"),
    ] {
        let mut found: Vec<String> =
            sqlx::query_scalar(&format!("SELECT {columns} FROM {table}")).fetch_all(app.db.pool()).await.expect("rows");
        found.sort();
        rows.push(format!("{table}: {}", found.join(",")));
    }
    rows
}

fn expect_unknown_user(result: Result<(), Status>, case: &str) {
    match result {
        Err(status) if status.code() == Code::NotFound && reason(&status) == "USER_NOT_FOUND" => {}
        other => panic!("{case}: want USER_NOT_FOUND, got {other:?}"),
    }
}

async fn r34_steps_naming_another_accounts_user_are_refused_and_change_nothing(app: &TestApp) {
    let acme = app.seed_world().await;
    let other = app.seed_world().await;
    let before = state(app).await;
    let service = app.identity_token();
    let (licenses, content) = (app.licenses(), app.content());
    let a = || acme.account.clone();
    let licensed =
        Some(pb::LicenseSet { license_types: vec![pb::LicenseType::Licensed as i32], phone_numbers: vec![] });

    let cases: Vec<(&str, Result<(), Status>)> = vec![
        (
            "ReclaimLicenses of another account's user",
            licenses
                .clone()
                .reclaim_licenses(authed(
                    pb::ReclaimLicensesRequest { request_id: rid(), account_id: a(), user_id: other.member.clone() },
                    &service,
                ))
                .await
                .map(drop),
        ),
        (
            "RestoreLicenses to another account's user",
            licenses
                .clone()
                .restore_licenses(authed(
                    pb::RestoreLicensesRequest {
                        request_id: rid(),
                        account_id: a(),
                        user_id: other.member.clone(),
                        licenses: licensed.clone(),
                    },
                    &service,
                ))
                .await
                .map(drop),
        ),
        (
            "MovePhoneLicenses from another account's user",
            licenses
                .clone()
                .move_phone_licenses(authed(
                    pb::MovePhoneLicensesRequest {
                        request_id: rid(),
                        account_id: a(),
                        from_user_id: other.owner.clone(),
                        to_user_id: acme.admin.clone(),
                    },
                    &service,
                ))
                .await
                .map(drop),
        ),
        (
            "MovePhoneLicenses to another account's user",
            licenses
                .clone()
                .move_phone_licenses(authed(
                    pb::MovePhoneLicensesRequest {
                        request_id: rid(),
                        account_id: a(),
                        from_user_id: acme.owner.clone(),
                        to_user_id: other.admin.clone(),
                    },
                    &service,
                ))
                .await
                .map(drop),
        ),
        (
            "TransferContent from another account's user",
            content
                .clone()
                .transfer_content(authed(
                    pb::TransferContentRequest {
                        request_id: rid(),
                        account_id: a(),
                        from_user_id: other.member.clone(),
                        to_user_id: acme.admin.clone(),
                        kinds: vec![pb::ContentKind::Meeting as i32],
                    },
                    &service,
                ))
                .await
                .map(drop),
        ),
        (
            "DeleteUserContent of another account's user",
            content
                .clone()
                .delete_user_content(authed(
                    pb::DeleteUserContentRequest { request_id: rid(), account_id: a(), user_id: other.member.clone() },
                    &service,
                ))
                .await
                .map(drop),
        ),
        (
            "DeleteUserContent of a member no removal reclaimed",
            content
                .clone()
                .delete_user_content(authed(
                    pb::DeleteUserContentRequest { request_id: rid(), account_id: a(), user_id: acme.member.clone() },
                    &service,
                ))
                .await
                .map(drop),
        ),
        (
            "RehomeUserContent into an account the user is not in",
            content
                .clone()
                .rehome_user_content(authed(
                    pb::RehomeUserContentRequest {
                        request_id: rid(),
                        account_id: a(),
                        user_id: acme.member.clone(),
                        new_account_id: other.account.clone(),
                    },
                    &service,
                ))
                .await
                .map(drop),
        ),
    ];
    for (case, result) in cases {
        expect_unknown_user(result, case);
    }
    assert_eq!(state(app).await, before, "refused steps changed nothing");
}

async fn r34_a_deactivated_member_is_not_replayed_an_earlier_answer(app: &TestApp) {
    let w: World = app.seed_world().await;
    let register = pb::RegisterContentRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        owner_user_id: String::new(),
        kind: pb::ContentKind::Meeting as i32,
        title: "Stand-up".into(),
        uses_pmi: false,
    };
    let as_member = || {
        let request = authed(register.clone(), &app.user_token(&w.member));
        let mut content = app.content();
        async move { content.register_content(request).await.map(drop) }
    };
    as_member().await.expect("an active member registers content");
    as_member().await.expect("a retry replays the first answer");

    app.identity_users()
        .deactivate_user(authed(
            idpb::DeactivateUserRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: w.member.clone(),
                validate_only: false,
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("deactivated");
    let refused = as_member().await.expect_err("no replay for a deactivated member");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::PermissionDenied, "CALLER_NOT_ACTIVE"));
}

async fn r34_a_demoted_admin_is_not_replayed_an_earlier_answer(app: &TestApp) {
    let w: World = app.seed_world().await;
    app.set_seats(&w, pb::LicenseType::LargeMeeting, 2).await;
    let assign = pb::AssignLicenseRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        user_id: w.member.clone(),
        license_type: pb::LicenseType::LargeMeeting as i32,
    };
    let as_admin = || {
        let request = authed(assign.clone(), &app.user_token(&w.admin));
        let mut licenses = app.licenses();
        async move { licenses.assign_license(request).await.map(drop) }
    };
    as_admin().await.expect("the admin assigns a seat");
    as_admin().await.expect("a retry replays the first answer");

    app.identity_roles()
        .assign_role(authed(
            idpb::AssignRoleRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: w.admin.clone(),
                role_id: "member".into(),
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("demoted");
    let refused = as_admin().await.expect_err("no replay for a demoted admin");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::PermissionDenied, "MISSING_PRIVILEGE"));
}
