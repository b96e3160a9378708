//! Bad input gets a precise `INVALID_ARGUMENT` naming the field and changes nothing; request
//! ids make retries safe (same id + same input = the first result, one effect; same id +
//! other input = refused), also when the retries race each other.

mod support;

use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use support::{TestApp, World, authed, bad_field, reason, rid};
use tonic::Code;

on_both_backends!(
    malformed_fields_are_refused_by_name_and_change_nothing,
    every_other_rpc_names_its_malformed_field,
    request_id_replays_return_the_first_result_once,
    request_id_repeats_of_a_change_that_would_succeed_again_replay_the_first,
    concurrent_replays_have_exactly_one_effect,
    oversized_messages_and_tokens_are_refused,
    hostile_bytes_in_any_field_of_any_rpc_are_refused_by_field,
);

/// Row counts of every table a change could touch.
async fn snapshot(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "accounts",
        "users",
        "invitations",
        "custom_roles",
        "integrations",
        "outbox",
        "idempotency_keys",
        "ownership_requests",
        "step_up_challenges",
        "step_up_proofs",
        "step_up_locks",
        "user_emails",
        "email_code_sends",
        "bulk_operations",
        "bulk_rows",
        "events",
    ] {
        let count: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(app.db.pool()).await.expect("count");
        counts.push(count);
    }
    let changes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE outcome = 'ok'")
        .fetch_one(app.db.pool())
        .await
        .expect("count");
    counts.push(changes);
    counts
}

fn expect_field(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str, case: &str) {
    let status = result.expect_err(case);
    assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
    assert_eq!(bad_field(&status).as_deref(), Some(field), "{case}: {status:?}");
}

async fn invite(app: &TestApp, w: &World, request: pb::InviteUserRequest) -> Result<pb::Invitation, tonic::Status> {
    app.users().invite_user(authed(request, &app.user_token(&w.owner))).await.map(tonic::Response::into_inner)
}

fn invite_request(w: &World, email: &str) -> pb::InviteUserRequest {
    pb::InviteUserRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        email: email.into(),
        ..Default::default()
    }
}

async fn malformed_fields_are_refused_by_name_and_change_nothing(app: &TestApp) {
    let w = app.seed_world("bad").await;
    let before = snapshot(app).await;
    let owner = app.user_token(&w.owner);

    for email in [
        "",
        "plain",
        "a@b",
        "two@@example.com",
        "spaces in@example.com",
        "x@-bad-.example",
        &format!("{}@x.example", "l".repeat(70)),
    ] {
        expect_field(invite(app, &w, invite_request(&w, email)).await, "email", email);
    }
    expect_field(
        invite(
            app,
            &w,
            pb::InviteUserRequest { display_name: "n".repeat(101), ..invite_request(&w, "ok@bad.example") },
        )
        .await,
        "display_name",
        "oversized display name",
    );
    expect_field(
        invite(
            app,
            &w,
            pb::InviteUserRequest { display_name: "bell\u{7}".into(), ..invite_request(&w, "ok@bad.example") },
        )
        .await,
        "display_name",
        "control characters",
    );
    expect_field(
        invite(app, &w, pb::InviteUserRequest { role: 17, ..invite_request(&w, "ok@bad.example") }).await,
        "role",
        "unknown role kind",
    );
    expect_field(
        invite(
            app,
            &w,
            pb::InviteUserRequest { role: pb::RoleKind::Custom as i32, ..invite_request(&w, "ok@bad.example") },
        )
        .await,
        "custom_role_id",
        "custom role without id",
    );
    expect_field(
        invite(app, &w, pb::InviteUserRequest { account_id: "nope".into(), ..invite_request(&w, "ok@bad.example") })
            .await,
        "account_id",
        "bad account id",
    );
    expect_field(
        invite(app, &w, pb::InviteUserRequest { request_id: String::new(), ..invite_request(&w, "ok@bad.example") })
            .await,
        "request_id",
        "missing request id",
    );
    expect_field(
        invite(app, &w, pb::InviteUserRequest { request_id: "r".repeat(129), ..invite_request(&w, "ok@bad.example") })
            .await,
        "request_id",
        "oversized request id",
    );

    let operator = app.operator_token();
    let create = |request: pb::CreateAccountRequest| {
        let mut client = app.accounts();
        let request = authed(request, &operator);
        async move { client.create_account(request).await }
    };
    let account = |name: &str, plan: i32, email: &str| pb::CreateAccountRequest {
        request_id: rid(),
        name: name.into(),
        plan,
        owner_email: email.into(),
        ..Default::default()
    };
    expect_field(create(account("", 1, "o@new.example")).await, "name", "empty name");
    expect_field(create(account(&"n".repeat(101), 1, "o@new.example")).await, "name", "oversized name");
    expect_field(create(account("New", 99, "o@new.example")).await, "plan", "unknown plan");
    expect_field(create(account("New", 0, "o@new.example")).await, "plan", "missing plan");
    expect_field(create(account("New", 1, "not-an-email")).await, "owner_email", "bad owner e-mail");
    expect_field(
        create(pb::CreateAccountRequest {
            managed_domains: vec!["no spaces allowed.com".into()],
            ..account("New", 1, "o@new.example")
        })
        .await,
        "managed_domains",
        "bad domain",
    );

    let list = |page_size: i32, page_token: &str, status: i32| {
        let mut client = app.users();
        let request = authed(
            pb::ListUsersRequest {
                account_id: w.account.clone(),
                page_size,
                page_token: page_token.into(),
                status,
                ..Default::default()
            },
            &owner,
        );
        async move { client.list_users(request).await }
    };
    expect_field(list(-1, "", 0).await, "page_size", "negative page size");
    expect_field(list(501, "", 0).await, "page_size", "page size over the cap");
    expect_field(list(i32::MAX, "", 0).await, "page_size", "huge page size");
    expect_field(list(10, "forged-token", 0).await, "page_token", "forged token");
    // A genuine token works; the same token with one character changed, or the old readable
    // form naming a user id, does not.
    let first = list(1, "", 0).await.expect("first page").into_inner();
    assert!(!first.next_page_token.is_empty(), "the world has more than one user");
    let second = list(1, &first.next_page_token, 0).await.expect("a genuine token opens").into_inner();
    assert_ne!(first.users[0].id, second.users[0].id);
    let mut tampered = first.next_page_token.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    expect_field(list(1, &String::from_utf8(tampered).expect("ascii"), 0).await, "page_token", "tampered token");
    let readable = format!("p1.{}", hex::encode(&first.users[0].id));
    expect_field(list(1, &readable, 0).await, "page_token", "a hand-made token");
    expect_field(list(10, "", 42).await, "status", "unknown status");

    let role = |name: &str, privileges: Vec<i32>| {
        let mut client = app.roles();
        let request = authed(
            pb::CreateRoleRequest { request_id: rid(), account_id: w.account.clone(), name: name.into(), privileges },
            &owner,
        );
        async move { client.create_role(request).await }
    };
    expect_field(role("", vec![1]).await, "name", "empty role name");
    expect_field(role(&"r".repeat(65), vec![1]).await, "name", "oversized role name");
    expect_field(role("Ops", vec![99]).await, "privileges", "unknown privilege");
    expect_field(role("Ops", vec![1; 17]).await, "privileges", "too many privileges");
    expect_field(app.assign_role(&w.account, &w.owner, &w.member, "superuser").await, "role_id", "unknown role id");
    expect_field(
        app.users()
            .get_user(authed(pb::GetUserRequest { account_id: w.account.clone(), user_id: "1 OR 1=1".into() }, &owner))
            .await,
        "user_id",
        "injection-shaped id",
    );
    expect_field(
        app.users()
            .accept_invitation(authed(pb::AcceptInvitationRequest { request_id: rid(), code: String::new() }, &owner))
            .await,
        "code",
        "missing code",
    );

    assert_eq!(snapshot(app).await, before, "refused requests changed nothing");
}

async fn request_id_replays_return_the_first_result_once(app: &TestApp) {
    let w = app.seed_world("replay").await;
    let request = invite_request(&w, "once@replay.example");
    let first = invite(app, &w, request.clone()).await.expect("first");
    let after_first = snapshot(app).await;
    let again = invite(app, &w, request.clone()).await.expect("replay");
    assert_eq!(again, first, "a retry gets the first result");
    assert_eq!(snapshot(app).await, after_first, "and has no second effect");

    let refused = invite(app, &w, pb::InviteUserRequest { email: "other@replay.example".into(), ..request.clone() })
        .await
        .expect_err("reuse");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::InvalidArgument, "REQUEST_ID_REUSED"));
    assert_eq!(snapshot(app).await, after_first, "a reused id with other input changes nothing");

    // Request ids are per caller: another admin's identical id is a separate request.
    let other = app
        .users()
        .invite_user(authed(
            pb::InviteUserRequest { email: "second@replay.example".into(), ..request },
            &app.user_token(&w.admin),
        ))
        .await
        .expect("another caller's request")
        .into_inner();
    assert_ne!(other.id, first.id);
}

/// Changes do not look their request id up before they run: a repeat of one that would
/// succeed again (the same settings) collides with its first record, rolls back and replays
/// the first answer; other input under the same id is refused and changes nothing.
async fn request_id_repeats_of_a_change_that_would_succeed_again_replay_the_first(app: &TestApp) {
    let w = app.seed_world("repeat").await;
    let request = pb::UpdateUserSettingsRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        user_id: w.member.clone(),
        time_zone: "Europe/Amsterdam".into(),
        ..Default::default()
    };
    let update = |request: pb::UpdateUserSettingsRequest| async {
        let token = app.user_token(&w.member);
        app.users().update_user_settings(authed(request, &token)).await.map(tonic::Response::into_inner)
    };
    let first = update(request.clone()).await.expect("first");
    let after_first = snapshot(app).await;
    assert_eq!(update(request.clone()).await.expect("repeat"), first, "a repeat gets the first answer");
    assert_eq!(snapshot(app).await, after_first, "and makes no second audit record, event or record");
    let refused =
        update(pb::UpdateUserSettingsRequest { time_zone: "Asia/Tokyo".into(), ..request }).await.expect_err("reuse");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::InvalidArgument, "REQUEST_ID_REUSED"));
    assert_eq!(snapshot(app).await, after_first, "a reused id with other input changes nothing");
    let zone: String = sqlx::query_scalar("SELECT time_zone FROM user_settings WHERE user_id = $1")
        .bind(&w.member)
        .fetch_one(app.db.pool())
        .await
        .expect("settings");
    assert_eq!(zone, "Europe/Amsterdam");
}

async fn concurrent_replays_have_exactly_one_effect(app: &TestApp) {
    let w = app.seed_world("race").await;
    let request = invite_request(&w, "raced@race.example");
    let calls = (0..10).map(|_| invite(app, &w, request.clone()));
    let results = futures_util::future::join_all(calls).await;
    let ids: Vec<String> = results.into_iter().map(|r| r.expect("every retry succeeds").id).collect();
    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]), "every retry sees the same invitation: {ids:?}");
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email = 'raced@race.example'")
        .fetch_one(app.db.pool())
        .await
        .expect("count");
    assert_eq!(users, 1, "exactly one pending user was created");
}

async fn oversized_messages_and_tokens_are_refused(app: &TestApp) {
    let w = app.seed_world("big").await;
    let before = snapshot(app).await;
    let huge =
        pb::InviteUserRequest { display_name: "x".repeat(5 * 1024 * 1024), ..invite_request(&w, "big@big.example") };
    let refused = invite(app, &w, huge).await.expect_err("over the message limit");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let token = "a".repeat(9 * 1024);
    let refused = app
        .accounts()
        .get_account(authed(pb::GetAccountRequest { account_id: w.account.clone() }, &token))
        .await
        .expect_err("oversized token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(snapshot(app).await, before);
}

/// NUL bytes, escape sequences, a byte over each field's limit and invalid UTF-8 in every string
/// field of every identity and operations RPC, plus undecodable and oversize messages: each is
/// refused precisely and nothing changes. On PostgreSQL a NUL would otherwise reach the
/// database as an encoding error.
async fn hostile_bytes_in_any_field_of_any_rpc_are_refused_by_field(app: &TestApp) {
    let w = app.seed_world("hostile").await;
    let before = snapshot(app).await;
    let packages = ["roster.identity.v1", "roster.operations.v1", "roster.events.v1"];
    let max = roster_platform::config::LimitArgs::default().max_message_bytes();
    let wrong =
        roster_testkit::hostile::refusals_that_went_wrong(&app.channel, &packages, &app.user_token(&w.owner), max)
            .await;
    assert!(wrong.is_empty(), "hostile input not refused precisely:\n{}", wrong.join("\n"));
    assert_eq!(snapshot(app).await, before, "refused requests changed nothing");
}

/// One malformed field for each RPC the test above does not cover.
async fn every_other_rpc_names_its_malformed_field(app: &TestApp) {
    let w = app.seed_world("each").await;
    let before = snapshot(app).await;
    let owner = app.user_token(&w.owner);
    let t = || owner.clone();
    let (accounts, users, roles) = (app.accounts(), app.users(), app.roles());
    let bad = "not-an-id".to_owned();
    let account = || w.account.clone();

    let mut a = accounts.clone();
    expect_field(
        a.get_account(authed(pb::GetAccountRequest { account_id: bad.clone() }, &t())).await,
        "account_id",
        "GetAccount",
    );
    expect_field(
        a.update_account(authed(
            pb::UpdateAccountRequest {
                request_id: rid(),
                account_id: account(),
                settings: Some(pb::AccountSettings {
                    auto_delete_deactivated_after_days: 100_000,
                    ..Default::default()
                }),
                ..Default::default()
            },
            &t(),
        ))
        .await,
        "settings.auto_delete_deactivated_after_days",
        "UpdateAccount",
    );
    expect_field(
        a.update_account(authed(
            pb::UpdateAccountRequest {
                request_id: rid(),
                account_id: account(),
                update_managed_domains: true,
                managed_domains: vec!["-bad-.example".into()],
                ..Default::default()
            },
            &t(),
        ))
        .await,
        "managed_domains",
        "UpdateAccount domains",
    );
    expect_field(
        a.transfer_ownership(authed(
            pb::TransferOwnershipRequest {
                request_id: rid(),
                account_id: account(),
                new_owner_user_id: bad.clone(),
                confirm_phone_transfer: false,
            },
            &t(),
        ))
        .await,
        "new_owner_user_id",
        "TransferOwnership",
    );
    expect_field(
        a.get_my_access(authed(pb::GetMyAccessRequest { account_id: bad.clone() }, &t())).await,
        "account_id",
        "GetMyAccess",
    );
    expect_field(
        a.authorize_integration(authed(
            pb::AuthorizeIntegrationRequest { request_id: rid(), account_id: account(), name: " ".into() },
            &t(),
        ))
        .await,
        "name",
        "AuthorizeIntegration",
    );
    expect_field(
        a.list_integrations(authed(pb::ListIntegrationsRequest { account_id: bad.clone() }, &t())).await,
        "account_id",
        "ListIntegrations",
    );
    expect_field(
        a.list_audit_events(authed(
            pb::ListAuditEventsRequest { account_id: account(), page_size: 501, ..Default::default() },
            &t(),
        ))
        .await,
        "page_size",
        "ListAuditEvents",
    );
    expect_field(
        a.list_undeliverable_emails(authed(
            pb::ListUndeliverableEmailsRequest { account_id: account(), page_size: 501, ..Default::default() },
            &app.operator_token(),
        ))
        .await,
        "page_size",
        "ListUndeliverableEmails",
    );
    expect_field(
        a.reassign_ownership(authed(
            pb::ReassignOwnershipRequest {
                request_id: rid(),
                account_id: account(),
                new_owner_user_id: bad.clone(),
                verification: None,
            },
            &app.operator_token(),
        ))
        .await,
        "new_owner_user_id",
        "ReassignOwnership",
    );
    expect_field(
        a.request_ownership(authed(pb::RequestOwnershipRequest { request_id: rid(), account_id: bad.clone() }, &t()))
            .await,
        "account_id",
        "RequestOwnership",
    );
    let answer = |ownership_request_id: &str, step_up_proof: String| pb::AnswerOwnershipRequestRequest {
        request_id: rid(),
        account_id: account(),
        ownership_request_id: ownership_request_id.into(),
        step_up_proof,
    };
    expect_field(
        a.approve_ownership_request(authed(answer(&bad, String::new()), &t())).await,
        "ownership_request_id",
        "ApproveOwnershipRequest",
    );
    let some_id = uuid::Uuid::now_v7().to_string();
    expect_field(
        a.deny_ownership_request(authed(answer(&some_id, "f".repeat(500)), &t())).await,
        "step_up_proof",
        "DenyOwnershipRequest",
    );
    expect_field(
        a.cancel_ownership_request(authed(
            pb::CancelOwnershipRequestRequest {
                request_id: rid(),
                account_id: account(),
                ownership_request_id: bad.clone(),
            },
            &t(),
        ))
        .await,
        "ownership_request_id",
        "CancelOwnershipRequest",
    );
    expect_field(
        a.get_ownership_request(authed(
            pb::GetOwnershipRequestRequest { account_id: account(), ownership_request_id: String::new() },
            &t(),
        ))
        .await,
        "ownership_request_id",
        "GetOwnershipRequest",
    );
    expect_field(
        a.list_ownership_requests(authed(
            pb::ListOwnershipRequestsRequest { account_id: account(), page_size: -1, ..Default::default() },
            &t(),
        ))
        .await,
        "page_size",
        "ListOwnershipRequests",
    );
    for purpose in [0, 99] {
        expect_field(
            a.start_step_up(authed(pb::StartStepUpRequest { request_id: rid(), account_id: account(), purpose }, &t()))
                .await,
            "purpose",
            "StartStepUp",
        );
    }
    for (challenge, code, field) in [
        (bad.as_str(), "123456", "challenge_id"),
        (some_id.as_str(), "12345", "code"),
        (some_id.as_str(), "abcdef", "code"),
    ] {
        expect_field(
            a.verify_step_up(authed(
                pb::VerifyStepUpRequest { account_id: account(), challenge_id: challenge.into(), code: code.into() },
                &t(),
            ))
            .await,
            field,
            "VerifyStepUp",
        );
    }

    let mut u = users.clone();
    expect_field(
        u.add_email_address(authed(
            pb::AddEmailAddressRequest { request_id: rid(), account_id: account(), email: "not an address".into() },
            &t(),
        ))
        .await,
        "email",
        "AddEmailAddress",
    );
    expect_field(
        u.verify_email_address(authed(
            pb::VerifyEmailAddressRequest {
                request_id: rid(),
                account_id: account(),
                email: "ok@each.example".into(),
                code: String::new(),
            },
            &t(),
        ))
        .await,
        "code",
        "VerifyEmailAddress",
    );
    let make_primary = |email: &str, step_up_proof: String| pb::MakeEmailPrimaryRequest {
        request_id: rid(),
        account_id: account(),
        email: email.into(),
        step_up_proof,
    };
    expect_field(
        u.make_email_primary(authed(make_primary("", String::new()), &t())).await,
        "email",
        "MakeEmailPrimary",
    );
    expect_field(
        u.make_email_primary(authed(make_primary("ok@each.example", "f".repeat(500)), &t())).await,
        "step_up_proof",
        "MakeEmailPrimary proof",
    );
    let remove = |account_id: String, step_up_proof: String| pb::RemoveEmailAddressRequest {
        request_id: rid(),
        account_id,
        email: "a@b.example".into(),
        step_up_proof,
    };
    expect_field(
        u.remove_email_address(authed(remove(bad.clone(), String::new()), &t())).await,
        "account_id",
        "RemoveEmailAddress",
    );
    expect_field(
        u.remove_email_address(authed(remove(account(), "f".repeat(500)), &t())).await,
        "step_up_proof",
        "RemoveEmailAddress proof",
    );
    expect_field(
        u.list_email_addresses(authed(pb::ListEmailAddressesRequest { account_id: bad.clone() }, &t())).await,
        "account_id",
        "ListEmailAddresses",
    );
    expect_field(
        u.list_invitations(authed(
            pb::ListInvitationsRequest { account_id: account(), page_token: "p1.zz".into(), ..Default::default() },
            &t(),
        ))
        .await,
        "page_token",
        "ListInvitations",
    );
    expect_field(
        u.resend_invitation(authed(
            pb::ResendInvitationRequest { request_id: rid(), account_id: account(), invitation_id: bad.clone() },
            &t(),
        ))
        .await,
        "invitation_id",
        "ResendInvitation",
    );
    expect_field(
        u.revoke_invitation(authed(
            pb::RevokeInvitationRequest { request_id: rid(), account_id: account(), invitation_id: bad.clone() },
            &t(),
        ))
        .await,
        "invitation_id",
        "RevokeInvitation",
    );
    // A dry run (validate_only) checks its input as the call does.
    for validate_only in [false, true] {
        for (transfer, field) in [
            (None, "user_id"),
            (
                Some(pb::ContentTransfer { target_user_id: "nope".into(), recordings: true, ..Default::default() }),
                "transfer.target_user_id",
            ),
            (
                Some(pb::ContentTransfer { target_user_id: uuid::Uuid::now_v7().to_string(), ..Default::default() }),
                "transfer",
            ),
        ] {
            let user_id = if field == "user_id" { bad.clone() } else { uuid::Uuid::now_v7().to_string() };
            let unlink = pb::UnlinkUserRequest {
                request_id: rid(),
                account_id: account(),
                user_id: user_id.clone(),
                transfer: transfer.clone(),
                validate_only,
            };
            expect_field(u.unlink_user(authed(unlink, &t())).await, field, "UnlinkUser");
            let delete =
                pb::DeleteUserRequest { request_id: rid(), account_id: account(), user_id, transfer, validate_only };
            expect_field(u.delete_user(authed(delete, &t())).await, field, "DeleteUser");
        }
        for (account_id, user_id, field) in
            [(account(), bad.clone(), "user_id"), (bad.clone(), w.member.clone(), "account_id")]
        {
            let deactivate = pb::DeactivateUserRequest { request_id: rid(), account_id, user_id, validate_only };
            expect_field(u.deactivate_user(authed(deactivate, &t())).await, field, "DeactivateUser");
        }
    }
    expect_field(
        u.reactivate_user(authed(
            pb::ReactivateUserRequest {
                request_id: rid(),
                account_id: account(),
                user_id: bad.clone(),
                restore_licenses: false,
            },
            &t(),
        ))
        .await,
        "user_id",
        "ReactivateUser",
    );
    expect_field(
        u.check_sign_in(authed(pb::CheckSignInRequest { email: "nobody".into() }, &app.service_token())).await,
        "email",
        "CheckSignIn",
    );

    let mut r = roles.clone();
    expect_field(
        r.list_roles(authed(pb::ListRolesRequest { account_id: bad.clone() }, &t())).await,
        "account_id",
        "ListRoles",
    );
    expect_field(
        r.update_role(authed(
            pb::UpdateRoleRequest {
                request_id: rid(),
                account_id: account(),
                role_id: "admin".into(),
                name: "X".into(),
                privileges: vec![],
            },
            &t(),
        ))
        .await,
        "role_id",
        "UpdateRole of a built-in role",
    );
    expect_field(
        r.delete_role(authed(
            pb::DeleteRoleRequest { request_id: rid(), account_id: account(), role_id: bad.clone() },
            &t(),
        ))
        .await,
        "role_id",
        "DeleteRole",
    );

    let service = app.service_token();
    let mut directory = app.directory();
    expect_field(
        directory
            .get_member(authed(pb::GetMemberRequest { account_id: account(), user_id: bad.clone() }, &service))
            .await,
        "user_id",
        "GetMember",
    );
    expect_field(
        directory
            .get_member(authed(pb::GetMemberRequest { account_id: bad.clone(), user_id: w.member.clone() }, &service))
            .await,
        "account_id",
        "GetMember",
    );
    expect_field(
        directory
            .lookup_account(authed(
                pb::LookupAccountRequest { account_id: String::new(), ..Default::default() },
                &service,
            ))
            .await,
        "account_id",
        "LookupAccount",
    );

    let mut operations = app.operations();
    expect_field(
        operations.get_operation(authed(ops::GetOperationRequest { operation_id: bad.clone() }, &t())).await,
        "operation_id",
        "GetOperation",
    );
    expect_field(
        operations.watch_operation(authed(ops::WatchOperationRequest { operation_id: bad.clone() }, &t())).await,
        "operation_id",
        "WatchOperation",
    );
    for (request, field) in [
        (ops::ListOperationsRequest { account_id: bad.clone(), ..Default::default() }, "account_id"),
        (ops::ListOperationsRequest { account_id: account(), state: 99, ..Default::default() }, "state"),
        (ops::ListOperationsRequest { account_id: account(), page_size: 501, ..Default::default() }, "page_size"),
        (
            ops::ListOperationsRequest { account_id: account(), page_token: "x".into(), ..Default::default() },
            "page_token",
        ),
    ] {
        expect_field(operations.list_operations(authed(request, &t())).await, field, "ListOperations");
    }
    let operator = app.operator_token();
    let existing: String = sqlx::query_scalar("SELECT MIN(id) FROM workflows WHERE account_id = $1")
        .bind(&w.account)
        .fetch_one(app.db.pool())
        .await
        .expect("seeding ran sagas");
    let retry = |operation_id: &str, request_id: &str| ops::RetryOperationRequest {
        operation_id: operation_id.into(),
        request_id: request_id.into(),
    };
    for (request, field) in [(retry(&bad, &rid()), "operation_id"), (retry(&existing, ""), "request_id")] {
        expect_field(operations.retry_operation(authed(request, &operator)).await, field, "RetryOperation");
    }
    let resolve = |operation_id: &str, note: &str| ops::ResolveOperationRequest {
        operation_id: operation_id.into(),
        request_id: rid(),
        note: note.into(),
    };
    for (request, field) in [
        (resolve(&bad, "fixed"), "operation_id"),
        (resolve(&existing, ""), "note"),
        (resolve(&existing, "   "), "note"),
        (resolve(&existing, &"n".repeat(1_001)), "note"),
    ] {
        expect_field(operations.resolve_operation(authed(request, &operator)).await, field, "ResolveOperation");
    }
    for (request, field) in [
        (ops::CancelOperationRequest { operation_id: bad.clone(), request_id: rid() }, "operation_id"),
        (ops::CancelOperationRequest { operation_id: existing.clone(), request_id: String::new() }, "request_id"),
    ] {
        expect_field(operations.cancel_operation(authed(request, &t())).await, field, "CancelOperation");
    }

    let mut bulk = app.bulk();
    for action in [0, 9] {
        let request = pb::GetBulkTemplateRequest { action };
        expect_field(bulk.get_bulk_template(authed(request, &t())).await, "action", "GetBulkTemplate");
    }
    let start = |account_id: &str, action: pb::BulkAction, users: &[&str], csv: &str| pb::StartBulkOperationRequest {
        request_id: rid(),
        account_id: account_id.into(),
        action: action as i32,
        users: users.iter().map(|user| pb::BulkUser { user: (*user).into(), ..Default::default() }).collect(),
        csv: csv.as_bytes().to_vec(),
        validate_only: false,
    };
    let deactivate = pb::BulkAction::Deactivate;
    for (request, field) in [
        (start(&bad, deactivate, &[&w.member], ""), "account_id"),
        (start(&w.account, pb::BulkAction::Unspecified, &[&w.member], ""), "action"),
        (start(&w.account, deactivate, &[], ""), "users"),
        (start(&w.account, deactivate, &[&w.member], "email\na@b.example\n"), "csv"),
        (start(&w.account, deactivate, &[], "email\n"), "csv"),
        (start(&w.account, deactivate, &[], "email,extra\na@b.example,1\n"), "csv"),
        (
            pb::StartBulkOperationRequest {
                request_id: String::new(),
                ..start(&w.account, deactivate, &[&w.member], "")
            },
            "request_id",
        ),
        (pb::StartBulkOperationRequest { validate_only: true, ..start(&w.account, deactivate, &[], "") }, "users"),
        (
            pb::StartBulkOperationRequest {
                validate_only: true,
                ..start(&w.account, deactivate, &[], "email,transfer_to\na@b.example,\n")
            },
            "csv",
        ),
    ] {
        expect_field(bulk.start_bulk_operation(authed(request, &t())).await, field, "StartBulkOperation");
    }
    let part = |request_id: &str, action: pb::BulkAction, data: &str| pb::UploadBulkCsvRequest {
        request_id: request_id.into(),
        account_id: if request_id.is_empty() { String::new() } else { w.account.clone() },
        action: if request_id.is_empty() { 0 } else { action as i32 },
        data: data.as_bytes().to_vec(),
        validate_only: false,
    };
    for (parts, field) in [
        (vec![], "data"),
        (vec![part(&rid(), pb::BulkAction::Unspecified, "email\n")], "action"),
        (vec![part(&rid(), deactivate, "email\n"), part(&rid(), deactivate, "a@b.example\n")], "request_id"),
        (vec![part(&rid(), deactivate, "email\n"), part("", deactivate, "\n\n")], "csv"),
        // Only the first message says whether it is a dry run.
        (
            vec![
                part(&rid(), deactivate, "email\n"),
                pb::UploadBulkCsvRequest { validate_only: true, ..part("", deactivate, "a@b.example\n") },
            ],
            "request_id",
        ),
    ] {
        let upload = bulk.upload_bulk_csv(authed(futures_util::stream::iter(parts), &t())).await;
        expect_field(upload, field, "UploadBulkCsv");
    }
    let rows = |operation_id: &str, page_size: i32, state: i32| pb::ListBulkRowsRequest {
        operation_id: operation_id.into(),
        page_size,
        state,
        ..Default::default()
    };
    for (request, field) in
        [(rows(&bad, 0, 0), "operation_id"), (rows(&existing, -1, 0), "page_size"), (rows(&existing, 0, 42), "state")]
    {
        expect_field(bulk.list_bulk_rows(authed(request, &t())).await, field, "ListBulkRows");
    }
    let download = pb::DownloadBulkResultsRequest { operation_id: bad.clone() };
    expect_field(
        bulk.download_bulk_results(authed(download, &t())).await.map(drop),
        "operation_id",
        "DownloadBulkResults",
    );
    let not_bulk = rows(&existing, 0, 0);
    let status = bulk.list_bulk_rows(authed(not_bulk, &t())).await.expect_err("not a bulk operation");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    assert_eq!(snapshot(app).await, before, "refused requests changed nothing");
}
