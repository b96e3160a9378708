//! Service tests over loopback sockets with real tonic clients, on SQLite and PostgreSQL:
//! invitations, activation, roles, ownership transfer (also under concurrency), the user
//! lifecycle and the audit trail.

mod support;

use std::time::Duration;

use prost_types::value::Kind;
use roster_identity::domain::values::{AccountId, Email};
use roster_identity::store;
use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use support::{Backend, TestApp, authed, invitation_code, product_code, reason, rid};
use tonic::Code;

on_both_backends!(
    r1_r2_r3_r5_r6_r13_invite_accept_promote_transfer,
    r3_concurrent_transfers_leave_exactly_one_owner,
    r27_r29_accepting_needs_an_otherwise_empty_account,
    r15_r17_r18_r19_deactivate_and_reactivate,
    r26_invitations_are_listed_resent_and_revoked,
    r26_invitations_to_one_account_run_side_by_side_and_an_address_is_invited_once,
    r26_expired_invitations_are_not_found,
    r34_an_invitation_waiting_on_a_role_change_is_decided_by_the_new_role,
    r34_a_change_waiting_on_a_role_change_is_decided_by_the_new_role,
    r12_an_invitation_waiting_on_a_verification_of_its_address_is_refused,
    r16_custom_roles_grant_only_what_the_granter_holds,
    r7_lists_show_the_owner_and_paginate,
    r33_changes_and_refusals_are_audited,
    r31_services_look_up_members_in_any_status,
);

async fn access(app: &TestApp, account: &str, user: &str) -> pb::Access {
    app.accounts()
        .get_my_access(authed(pb::GetMyAccessRequest { account_id: account.into() }, &app.user_token(user)))
        .await
        .expect("access")
        .into_inner()
}

async fn r1_r2_r3_r5_r6_r13_invite_accept_promote_transfer(app: &TestApp) {
    let (account, alice) = app.create_account("Acme", "alice@acme.example").await;
    app.accounts()
        .authorize_integration(authed(
            pb::AuthorizeIntegrationRequest { request_id: rid(), account_id: account.clone(), name: "Calendar".into() },
            &app.user_token(&alice),
        ))
        .await
        .expect("integration");

    // R26: the invitee shows as pending until they accept.
    let invitation = app.invite(&account, &alice, "bob@acme.example").await;
    let bob = invitation.user_id.clone();
    assert_eq!(app.get_user(&account, &alice, &bob).await.status, pb::UserStatus::Pending as i32);
    // R2: a pending user cannot become an admin.
    let refused = app.assign_role(&account, &alice, &bob, "admin").await.expect_err("pending");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "USER_PENDING"));
    // R2: nor the owner, even by transfer.
    let refused = app.transfer(&account, &alice, &bob).await.expect_err("pending");
    assert_eq!(reason(&refused), "USER_PENDING");

    // R29: accepting makes them an active member.
    let accepted = app.accept(&bob, &invitation_code(app, "bob@acme.example").await).await.expect("accept");
    assert_eq!(result_str(&accepted, "user_id"), bob);
    let user = app.get_user(&account, &alice, &bob).await;
    assert_eq!((user.status, user.role), (pb::UserStatus::Active as i32, pb::RoleKind::Member as i32));

    // R2: an active member is still not an admin.
    let refused = app.transfer(&account, &alice, &bob).await.expect_err("member");
    assert_eq!(reason(&refused), "NEW_OWNER_NOT_ACTIVE_ADMIN");
    app.assign_role(&account, &alice, &bob, "admin").await.expect("promote");
    // R1: an admin cannot transfer ownership, not even to themselves.
    let refused = app.transfer(&account, &bob, &bob).await.expect_err("admin");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::PermissionDenied, "NOT_ACCOUNT_OWNER"));
    assert!(access(app, &account, &alice).await.privileges.contains(&(pb::Privilege::ViewBilling as i32)));

    let done = app.transfer(&account, &alice, &bob).await.expect("transfer");
    // R3: the new owner owns; the previous owner is an admin; exactly one owner.
    assert_eq!(result_str(&done, "new_owner_user_id"), bob);
    assert_eq!(account_owner(app, &account, &bob).await, bob);
    assert_eq!(app.get_user(&account, &bob, &alice).await.role, pb::RoleKind::Admin as i32);
    assert_eq!(app.owner_count(&account).await, 1);
    // R5: billing follows ownership at once.
    assert!(!access(app, &account, &alice).await.privileges.contains(&(pb::Privilege::ViewBilling as i32)));
    assert!(access(app, &account, &bob).await.privileges.contains(&(pb::Privilege::ViewBilling as i32)));
    // R6: integrations the previous owner authorised need the new owner's re-authorisation.
    let flagged = &done.result.as_ref().expect("result").fields["integrations_needing_reauthorization"];
    assert!(matches!(&flagged.kind, Some(Kind::ListValue(list)) if list.values.len() == 1), "{flagged:?}");
    let listed = app
        .accounts()
        .list_integrations(authed(pb::ListIntegrationsRequest { account_id: account.clone() }, &app.user_token(&bob)))
        .await
        .expect("integrations")
        .into_inner();
    assert!(listed.integrations.iter().all(|i| i.needs_reauthorization));
    // R35: both sides are told, through the outbox.
    for email in ["alice@acme.example", "bob@acme.example"] {
        let mails = roster_identity::store::outbox::for_recipient(app.db.pool(), email).await.expect("outbox");
        assert!(mails.iter().any(|(kind, _, _)| kind == "ownership_transferred"), "{email} was told");
    }
    // R13: the new owner may now remove the previous owner (demote, then deactivate).
    app.assign_role(&account, &bob, &alice, "member").await.expect("demote");
    app.users()
        .deactivate_user(authed(
            pb::DeactivateUserRequest {
                request_id: rid(),
                account_id: account.clone(),
                user_id: alice.clone(),
                validate_only: false,
            },
            &app.user_token(&bob),
        ))
        .await
        .expect("previous owner removed");
}

async fn r3_concurrent_transfers_leave_exactly_one_owner(app: &TestApp) {
    let (account, owner) = app.create_account("Race", "owner@race.example").await;
    let mut admins = Vec::new();
    for i in 0..8 {
        let admin = app.join(&account, &owner, &format!("admin{i}@race.example")).await;
        app.assign_role(&account, &owner, &admin, "admin").await.expect("promote");
        admins.push(admin);
    }
    // The owner races eight transfers; meanwhile every admin tries to hand ownership on too.
    let mut calls = Vec::new();
    for admin in &admins {
        calls.push(app.transfer(&account, &owner, admin));
    }
    for (i, admin) in admins.iter().enumerate() {
        calls.push(app.transfer(&account, admin, &admins[(i + 1) % admins.len()]));
    }
    let results = futures_util::future::join_all(calls).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert!(winners >= 1, "someone must win");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(
                reason(refused).as_str(),
                "NOT_ACCOUNT_OWNER" | "NEW_OWNER_NOT_ACTIVE_ADMIN" | "INVALID_ARGUMENT" | "OPERATION_IN_PROGRESS"
            ),
            "unexpected refusal {refused:?}"
        );
    }
    assert_eq!(app.owner_count(&account).await, 1, "exactly one owner after the race");
    // Every transfer demoted the previous owner to admin: the other eight are all admins.
    let admins_now: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE account_id = $1 AND role = 'admin'")
        .bind(&account)
        .fetch_one(app.db.pool())
        .await
        .expect("count admins");
    assert_eq!(admins_now, admins.len() as i64, "everyone but the one owner is an admin");
}

async fn r27_r29_accepting_needs_an_otherwise_empty_account(app: &TestApp) {
    let (target, target_owner) = app.create_account("Target", "boss@target.example").await;
    let (home, xavier) = app.create_account("Xavier's own", "xavier@home.example").await;
    let helper = app.invite(&home, &xavier, "helper@home.example").await;

    app.invite(&target, &target_owner, "xavier@home.example").await;
    let code = invitation_code(app, "xavier@home.example").await;
    let refused = app.accept(&xavier, &code).await.expect_err("home account has a user");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        (reason(&refused).as_str(), product_code(&refused).as_deref()),
        ("ACCOUNT_HAS_OTHER_USERS", Some("1009"))
    );
    assert!(refused.message().contains("Remove or unlink"), "the error says what to do: {}", refused.message());
    // Nothing changed: Xavier still owns his account, the invitation is still open.
    assert_eq!(app.get_user(&home, &xavier, &xavier).await.role, pb::RoleKind::Owner as i32);

    // Once the home account is otherwise empty, accepting moves Xavier over, same user id.
    app.users()
        .revoke_invitation(authed(
            pb::RevokeInvitationRequest { request_id: rid(), account_id: home.clone(), invitation_id: helper.id },
            &app.user_token(&xavier),
        ))
        .await
        .expect("revoke");
    let accepted = app.accept(&xavier, &code).await.expect("accept");
    assert_eq!(result_str(&accepted, "account_id"), target);
    let user = app.get_user(&target, &xavier, &xavier).await;
    assert_eq!((user.id.as_str(), user.account_id.as_str()), (xavier.as_str(), target.as_str()));
    assert_eq!(user.role, pb::RoleKind::Member as i32);
    // The placeholder pending user is gone; the old account is closed.
    let members = app
        .users()
        .list_users(authed(
            pb::ListUsersRequest { account_id: target.clone(), ..Default::default() },
            &app.user_token(&xavier),
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(members.users.iter().filter(|u| u.email == "xavier@home.example").count(), 1);
    let gone = app
        .accounts()
        .get_account(authed(pb::GetAccountRequest { account_id: home.clone() }, &app.operator_token()))
        .await
        .expect_err("closed");
    assert_eq!(gone.code(), Code::NotFound);
    // Other services find it closed only when they ask for closed accounts too (its billing
    // records, a refund, outlive it).
    let mut directory = app.directory();
    let lookup = |include_closed| {
        authed(pb::LookupAccountRequest { account_id: home.clone(), include_closed }, &app.service_token())
    };
    assert_eq!(reason(&directory.lookup_account(lookup(false)).await.expect_err("closed")), "ACCOUNT_NOT_FOUND");
    let closed = directory.lookup_account(lookup(true)).await.expect("known, closed").into_inner();
    assert!(closed.closed && closed.owner_user_id.is_empty(), "{closed:?}");
}

/// A text field of a finished operation's result.
fn result_str(operation: &ops::Operation, field: &str) -> String {
    match operation.result.as_ref().and_then(|r| r.fields.get(field)).and_then(|v| v.kind.clone()) {
        Some(Kind::StringValue(text)) => text,
        other => panic!("{field} is not text in {operation:?}: {other:?}"),
    }
}

async fn account_owner(app: &TestApp, account: &str, by: &str) -> String {
    app.accounts()
        .get_account(authed(pb::GetAccountRequest { account_id: account.into() }, &app.user_token(by)))
        .await
        .expect("account")
        .into_inner()
        .owner
        .expect("owner")
        .user_id
}

async fn sign_in(app: &TestApp, email: &str) -> pb::CheckSignInResponse {
    app.users()
        .check_sign_in(authed(pb::CheckSignInRequest { email: email.into() }, &app.service_token()))
        .await
        .expect("sign-in check")
        .into_inner()
}

async fn r15_r17_r18_r19_deactivate_and_reactivate(app: &TestApp) {
    let w = app.seed_world("life").await;
    let refused = app.deactivate(&w.account, &w.owner, &w.pending_user).await.expect_err("pending");
    assert_eq!(reason(&refused), "USER_PENDING");
    let refused = app.deactivate(&w.account, &w.owner, &w.admin).await.expect_err("admin");
    assert_eq!((reason(&refused).as_str(), product_code(&refused).as_deref()), ("ADMIN_MUST_BE_DEMOTED", Some("1117")));
    let refused = app.deactivate(&w.account, &w.admin, &w.owner).await.expect_err("owner");
    assert_eq!(reason(&refused), "OWNER_PROTECTED");
    let refused = app.deactivate(&w.account, &w.member, &w.admin).await.expect_err("member acting");
    assert_eq!(refused.code(), Code::PermissionDenied);

    assert_eq!(sign_in(app, "member@life.example").await.decision, pb::SignInDecision::Allowed as i32);
    let operation = app.deactivate(&w.account, &w.admin, &w.member).await.expect("deactivate");
    assert!(operation.done && operation.error.is_none(), "{operation:?}");
    let user = app.get_user(&w.account, &w.owner, &w.member).await;
    assert_eq!(user.status, pb::UserStatus::Deactivated as i32);
    assert!(user.deactivated_at_ms > 0);
    // R18: sign-in is refused with a clear reason; settings (the user record) are kept.
    let check = sign_in(app, "member@life.example").await;
    assert_eq!(check.decision, pb::SignInDecision::AccountDisabled as i32);
    assert!(check.reason.contains("disabled"));
    assert_eq!(app.get_user(&w.account, &w.owner, &w.member).await.email, "member@life.example");
    // A deactivated user's still-valid token can no longer act, nor can a pending user's
    // (GetAccount reads the caller with the account, in one query).
    for (caller, expected) in [(&w.member, "CALLER_DEACTIVATED"), (&w.pending_user, "CALLER_PENDING")] {
        let read = pb::GetAccountRequest { account_id: w.account.clone() };
        let refused = app.accounts().get_account(authed(read, &app.user_token(caller))).await.expect_err(expected);
        assert_eq!(reason(&refused), expected);
    }
    let refused = app.deactivate(&w.account, &w.owner, &w.member).await.expect_err("twice");
    assert_eq!(reason(&refused), "USER_DEACTIVATED");

    // R19: reactivation makes them active again.
    let reactivate = |user: String| {
        let mut client = app.users();
        let request = authed(
            pb::ReactivateUserRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: user,
                restore_licenses: false,
            },
            &app.user_token(&w.owner),
        );
        async move { client.reactivate_user(request).await }
    };
    let operation = reactivate(w.member.clone()).await.expect("reactivate").into_inner();
    assert_eq!(operation.kind, "user.reactivate");
    let user = app.get_user(&w.account, &w.owner, &w.member).await;
    assert_eq!((user.status, user.deactivated_at_ms), (pb::UserStatus::Active as i32, 0));
    assert_eq!(sign_in(app, "member@life.example").await.decision, pb::SignInDecision::Allowed as i32);
    let refused = reactivate(w.member.clone()).await.expect_err("already active");
    assert_eq!(reason(&refused), "USER_NOT_DEACTIVATED");
    assert_eq!(sign_in(app, "pending@life.example").await.decision, pb::SignInDecision::PendingActivation as i32);
    assert_eq!(sign_in(app, "nobody@life.example").await.decision, pb::SignInDecision::UnknownUser as i32);
}

async fn r26_invitations_are_listed_resent_and_revoked(app: &TestApp) {
    let w = app.seed_world("inv").await;
    let list = app
        .users()
        .list_invitations(authed(
            pb::ListInvitationsRequest { account_id: w.account.clone(), ..Default::default() },
            &app.user_token(&w.admin),
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.invitations.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), vec![w.invitation_id.as_str()]);

    // Inviting an address that is already a user of the account: 1005.
    let refused = app
        .users()
        .invite_user(authed(
            pb::InviteUserRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                email: "MEMBER@inv.example".into(),
                ..Default::default()
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect_err("in use");
    assert_eq!((reason(&refused).as_str(), product_code(&refused).as_deref()), ("EMAIL_IN_USE", Some("1005")));

    let resent = app
        .users()
        .resend_invitation(authed(
            pb::ResendInvitationRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                invitation_id: w.invitation_id.clone(),
            },
            &app.user_token(&w.admin),
        ))
        .await
        .expect("resend")
        .into_inner();
    assert_eq!(resent.send_count, 2);
    let new_code = invitation_code(app, &w.pending_email).await;
    assert_ne!(new_code, w.invitation_code);
    let refused = app.accept(&w.pending_user, &w.invitation_code).await.expect_err("old code");
    assert_eq!((reason(&refused).as_str(), product_code(&refused).as_deref()), ("INVITATION_NOT_FOUND", Some("1120")));
    // Someone else holding the code cannot use it: it is addressed to the invitee.
    let refused = app.accept(&w.member, &new_code).await.expect_err("not the invitee");
    assert_eq!(reason(&refused), "INVITATION_NOT_FOUND");

    app.users()
        .revoke_invitation(authed(
            pb::RevokeInvitationRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                invitation_id: w.invitation_id.clone(),
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("revoke");
    let refused = app.accept(&w.pending_user, &new_code).await.expect_err("revoked");
    assert_eq!(reason(&refused), "INVITATION_NOT_FOUND");
    let refused = app
        .users()
        .get_user(authed(
            pb::GetUserRequest { account_id: w.account.clone(), user_id: w.pending_user.clone() },
            &app.user_token(&w.owner),
        ))
        .await
        .expect_err("pending user removed");
    assert_eq!((reason(&refused).as_str(), product_code(&refused).as_deref()), ("USER_NOT_FOUND", Some("1010")));
}

async fn r26_invitations_to_one_account_run_side_by_side_and_an_address_is_invited_once(app: &TestApp) {
    let w = app.seed_world("side").await;
    // Eight invitations of one address at once, each its own request: one wins.
    let invite = |n: usize| {
        let mut users = app.users();
        let request = pb::InviteUserRequest {
            request_id: format!("same-address-{n}"),
            account_id: w.account.clone(),
            email: "twin@side.example".into(),
            ..Default::default()
        };
        let token = app.user_token(&w.admin);
        async move { users.invite_user(authed(request, &token)).await }
    };
    let results = futures_util::future::join_all((0..8).map(invite)).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!((reason(refused).as_str(), product_code(refused).as_deref()), ("EMAIL_IN_USE", Some("1005")));
    }
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE account_id = $1 AND email = $2")
        .bind(&w.account)
        .bind("twin@side.example")
        .fetch_one(app.db.pool())
        .await
        .expect("count");
    assert_eq!(pending, 1);

    // On PostgreSQL the shared lock lets invitations pass each other, but not the writers
    // that take the account lock itself (a role change, say).
    if app.backend != Backend::Postgres {
        return;
    }
    let account = AccountId::parse(&w.account).expect("account id");
    let mut inviting = app.db.begin().await.expect("begin");
    assert!(inviting_locks(&mut inviting, &account, "first@side.example").await.expect("shared").is_some());
    let try_lock = |exclusive: bool| {
        let (db, account) = (app.db.clone(), account.clone());
        async move {
            let mut tx = db.begin().await.expect("begin");
            sqlx::query("SET LOCAL lock_timeout = '200ms'").execute(&mut *tx).await.expect("timeout");
            let taken = if exclusive {
                store::accounts::lock(&mut tx, &account).await
            } else {
                inviting_locks(&mut tx, &account, "second@side.example").await.map(|found| found.is_some())
            };
            tx.rollback().await.expect("rollback");
            taken.is_ok()
        }
    };
    assert!(try_lock(false).await, "a second invitation does not wait for the first");
    assert!(!try_lock(true).await, "a role change waits for the invitation");
    inviting.rollback().await.expect("rollback");
    assert!(try_lock(true).await);
}

/// An invitation reads the caller in the same statement that waits for the account's lock;
/// a demotion that commits during that wait must still decide it (R34: current data).
/// An invitation's locks: the account's in shared mode, then the address's.
async fn inviting_locks(
    tx: &mut roster_platform::db::Tx,
    account: &AccountId,
    address: &str,
) -> Result<Option<store::invite_locks::Locked>, sqlx::Error> {
    let email = Email::parse(address).expect("email");
    store::invite_locks::lock_and_read(tx, account, None, &email, None).await
}

/// Runs `change` while another transaction holds `account`'s lock and demotes `admin` to a
/// member, then commits the demotion: the change, which waited, must be refused as a member's.
async fn refused_after_a_demotion<T: std::fmt::Debug + Send + 'static>(
    app: &TestApp,
    account: &str,
    admin: &str,
    change: impl std::future::Future<Output = Result<T, tonic::Status>> + Send + 'static,
) {
    let account = AccountId::parse(account).expect("account id");
    let mut demoting = app.db.begin().await.expect("begin");
    assert!(store::accounts::lock(&mut demoting, &account).await.expect("lock"));
    sqlx::query("UPDATE users SET role = 'member' WHERE id = $1")
        .bind(admin)
        .execute(&mut *demoting)
        .await
        .expect("demote");
    let change = tokio::spawn(change);
    // Long enough for the change to be waiting on the lock (on SQLite: on the writer).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!change.is_finished(), "the change waits for the role change");
    demoting.commit().await.expect("commit");
    let refused = change.await.expect("join").expect_err("a member may not");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
}

/// How many rows `sql` (a `SELECT COUNT(*)` with one parameter) counts.
async fn count(app: &TestApp, sql: &str, value: &str) -> i64 {
    sqlx::query_scalar(sql).bind(value.to_owned()).fetch_one(app.db.pool()).await.expect("count")
}

async fn r34_an_invitation_waiting_on_a_role_change_is_decided_by_the_new_role(app: &TestApp) {
    let w = app.seed_world("waiting").await;
    let mut users = app.users();
    let request = pb::InviteUserRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        email: "late@waiting.example".into(),
        ..Default::default()
    };
    let token = app.user_token(&w.admin);
    let invite = async move { users.invite_user(authed(request, &token)).await };
    refused_after_a_demotion(app, &w.account, &w.admin, invite).await;
    assert_eq!(count(app, "SELECT COUNT(*) FROM users WHERE email = $1", "late@waiting.example").await, 0);
}

/// Every other change takes the account's lock and reads its caller in one statement, whose
/// snapshot PostgreSQL takes before the lock is granted: a demotion committed during the
/// wait must still decide it.
async fn r34_a_change_waiting_on_a_role_change_is_decided_by_the_new_role(app: &TestApp) {
    let w = app.seed_world("demoted").await;
    let mut roles = app.roles();
    let request = pb::CreateRoleRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        name: "Late".into(),
        privileges: vec![pb::Privilege::ManageUsers as i32],
    };
    let token = app.user_token(&w.admin);
    let create = async move { roles.create_role(authed(request, &token)).await };
    refused_after_a_demotion(app, &w.account, &w.admin, create).await;
    let late = "SELECT COUNT(*) FROM custom_roles WHERE name = 'Late' AND account_id = $1";
    assert_eq!(count(app, late, &w.account).await, 0);
}

/// An invitation checks that nobody holds its address in the statement after the one that
/// takes the address's lock; a verification that commits while it waits must refuse it.
async fn r12_an_invitation_waiting_on_a_verification_of_its_address_is_refused(app: &TestApp) {
    let w = app.seed_world("verifying").await;
    let holder = app.seed_world("holding").await;
    let address = "shared@verifying.example";
    let mut verifying = app.db.begin().await.expect("begin");
    let holder_account = AccountId::parse(&holder.account).expect("account id");
    assert!(store::accounts::lock(&mut verifying, &holder_account).await.expect("lock"));
    store::user_emails::lock_address(&mut verifying, &Email::parse(address).expect("email")).await.expect("lock");
    sqlx::query("INSERT INTO user_emails (email, user_id, verified_at_ms, created_at_ms) VALUES ($1, $2, 1, 1)")
        .bind(address)
        .bind(&holder.member)
        .execute(&mut *verifying)
        .await
        .expect("verified");
    let mut users = app.users();
    let request = pb::InviteUserRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        email: address.into(),
        ..Default::default()
    };
    let token = app.user_token(&w.admin);
    let invited = tokio::spawn(async move { users.invite_user(authed(request, &token)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!invited.is_finished(), "the invitation waits for the verification");
    verifying.commit().await.expect("commit");
    let refused = invited.await.expect("join").expect_err("the address is taken");
    assert_eq!((reason(&refused).as_str(), product_code(&refused).as_deref()), ("EMAIL_IN_USE", Some("1005")));
    let invited: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email = $1")
        .bind(address)
        .fetch_one(app.db.pool())
        .await
        .expect("count");
    assert_eq!(invited, 0);
}

async fn r26_expired_invitations_are_not_found(app: &TestApp) {
    let w = app.seed_world("late").await;
    app.clock.advance_ms(31 * 24 * 3_600_000);
    let refused = app.accept(&w.pending_user, &w.invitation_code).await.expect_err("expired");
    assert_eq!(reason(&refused), "INVITATION_NOT_FOUND");
}

async fn create_role(
    app: &TestApp,
    account: &str,
    by: &str,
    privileges: Vec<pb::Privilege>,
) -> Result<pb::Role, tonic::Status> {
    app.roles()
        .create_role(authed(
            pb::CreateRoleRequest {
                request_id: rid(),
                account_id: account.into(),
                name: format!("Role {}", rid()),
                privileges: privileges.into_iter().map(|p| p as i32).collect(),
            },
            &app.user_token(by),
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn r16_custom_roles_grant_only_what_the_granter_holds(app: &TestApp) {
    let w = app.seed_world("roles").await;
    let refused =
        create_role(app, &w.account, &w.admin, vec![pb::Privilege::BulkRemoveUsers]).await.expect_err("admin lacks it");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::PermissionDenied, "MISSING_PRIVILEGE"));
    let refused = create_role(app, &w.account, &w.owner, vec![pb::Privilege::ViewBilling]).await.expect_err("billing");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let bulk =
        create_role(app, &w.account, &w.owner, vec![pb::Privilege::BulkRemoveUsers]).await.expect("owner grants bulk");
    // An admin cannot hand out a role carrying more than they hold.
    let refused = app.assign_role(&w.account, &w.admin, &w.member, &bulk.id).await.expect_err("escalation");
    assert_eq!(reason(&refused), "MISSING_PRIVILEGE");
    let assigned = app.assign_role(&w.account, &w.owner, &w.member, &bulk.id).await.expect("owner assigns");
    // Lists label a custom role by its name.
    assert_eq!(assigned.role_label, bulk.name);
    assert_eq!(app.get_user(&w.account, &w.admin, &w.member).await.role_label, bulk.name);
    let held = access(app, &w.account, &w.member).await;
    assert_eq!(held.privileges, vec![pb::Privilege::BulkRemoveUsers as i32]);
    // A role in use cannot be deleted.
    let delete = |role: String, by: String| {
        let mut client = app.roles();
        let request = authed(
            pb::DeleteRoleRequest { request_id: rid(), account_id: w.account.clone(), role_id: role },
            &app.user_token(&by),
        );
        async move { client.delete_role(request).await }
    };
    let refused = delete(bulk.id.clone(), w.owner.clone()).await.expect_err("in use");
    assert_eq!(reason(&refused), "ROLE_IN_USE");
    delete(w.custom_role.clone(), w.admin.clone()).await.expect("unused role deleted");
    // R17: only the owner changes an admin's role.
    let refused = app.assign_role(&w.account, &w.admin, &w.admin, "member").await.expect_err("admin demoting");
    assert_eq!(reason(&refused), "NOT_ACCOUNT_OWNER");
}

async fn r7_lists_show_the_owner_and_paginate(app: &TestApp) {
    let w = app.seed_world("list").await;
    for i in 0..5 {
        app.join(&w.account, &w.owner, &format!("extra{i}@list.example")).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .users()
            .list_users(authed(
                pb::ListUsersRequest {
                    account_id: w.account.clone(),
                    page_size: 3,
                    page_token: token.clone(),
                    ..Default::default()
                },
                &app.user_token(&w.member),
            ))
            .await
            .expect("page")
            .into_inner();
        assert!(page.users.len() <= 3);
        seen.extend(page.users);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5 + 5, "every user exactly once");
    let mut ids: Vec<_> = seen.iter().map(|u| u.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), seen.len());
    // R7: the owner is shown as "admin (owner)", and admin filters include them.
    let owner = seen.iter().find(|u| u.id == w.owner).expect("owner listed");
    assert_eq!(owner.role_label, "admin (owner)");
    let admins = app
        .users()
        .list_users(authed(
            pb::ListUsersRequest {
                account_id: w.account.clone(),
                role: pb::RoleKind::Admin as i32,
                ..Default::default()
            },
            &app.user_token(&w.member),
        ))
        .await
        .expect("admins")
        .into_inner();
    let mut admin_ids: Vec<_> = admins.users.iter().map(|u| u.id.clone()).collect();
    admin_ids.sort();
    let mut expected = vec![w.owner.clone(), w.admin.clone()];
    expected.sort();
    assert_eq!(admin_ids, expected);
    let pending = app
        .users()
        .list_users(authed(
            pb::ListUsersRequest {
                account_id: w.account.clone(),
                status: pb::UserStatus::Pending as i32,
                ..Default::default()
            },
            &app.user_token(&w.member),
        ))
        .await
        .expect("pending")
        .into_inner();
    assert_eq!(pending.users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), vec![w.pending_user.as_str()]);
}

async fn r33_changes_and_refusals_are_audited(app: &TestApp) {
    let w = app.seed_world("audit").await;
    let request_id = rid();
    let refused = app
        .accounts()
        .transfer_ownership(authed(
            pb::TransferOwnershipRequest {
                request_id: request_id.clone(),
                account_id: w.account.clone(),
                new_owner_user_id: w.admin.clone(),
                confirm_phone_transfer: false,
            },
            &app.user_token(&w.member),
        ))
        .await
        .expect_err("member");
    assert_eq!(reason(&refused), "NOT_ACCOUNT_OWNER");
    let events = app
        .accounts()
        .list_audit_events(authed(
            pb::ListAuditEventsRequest { account_id: w.account.clone(), page_size: 100, ..Default::default() },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("audit")
        .into_inner()
        .events;
    let refusal = events.iter().find(|e| e.request_id == request_id).expect("refusal audited");
    assert_eq!(refusal.outcome, "refused:NOT_ACCOUNT_OWNER");
    assert_eq!(refusal.principal, format!("user:{}", w.member));
    for action in [
        "account.created",
        "user.invited",
        "invitation.accepted",
        "user.role_changed",
        "user.deactivated",
        "role.created",
    ] {
        assert!(events.iter().any(|e| e.action == action && e.outcome == "ok"), "{action} audited");
    }
    assert!(events.windows(2).all(|pair| pair[0].id > pair[1].id), "newest first");
    // Members cannot read the audit trail; admins can.
    let refused = app
        .accounts()
        .list_audit_events(authed(
            pb::ListAuditEventsRequest { account_id: w.account.clone(), ..Default::default() },
            &app.user_token(&w.member),
        ))
        .await
        .expect_err("member");
    assert_eq!(refused.code(), Code::PermissionDenied);
}

/// Licensing's view of a user (R31): any status, current privileges, other accounts not found.
async fn r31_services_look_up_members_in_any_status(app: &TestApp) {
    let world = app.seed_world("directory").await;
    let other = app.seed_world("elsewhere").await;
    let service = app.service_token();
    let lookup = |account: &str, user: &str| {
        let mut directory = app.directory();
        let request = authed(pb::GetMemberRequest { account_id: account.into(), user_id: user.into() }, &service);
        async move { directory.get_member(request).await }
    };
    let admin = lookup(&world.account, &world.admin).await.expect("admin").into_inner();
    assert_eq!((admin.status(), admin.role(), admin.is_owner), (pb::UserStatus::Active, pb::RoleKind::Admin, false));
    assert!(admin.privileges().any(|p| p == pb::Privilege::ManageLicenses));
    let owner = lookup(&world.account, &world.owner).await.expect("owner").into_inner();
    assert!(owner.is_owner && owner.privileges().any(|p| p == pb::Privilege::ViewBilling));
    let deactivated = lookup(&world.account, &world.deactivated).await.expect("deactivated").into_inner();
    assert_eq!(deactivated.status(), pb::UserStatus::Deactivated);
    let pending = lookup(&world.account, &world.pending_user).await.expect("pending").into_inner();
    assert_eq!(pending.status(), pb::UserStatus::Pending);
    let foreign = lookup(&world.account, &other.member).await.expect_err("user of another account");
    assert_eq!(reason(&foreign), "USER_NOT_FOUND");
    let unknown = lookup(&uuid_like(), &world.member).await.expect_err("unknown account");
    assert_eq!(reason(&unknown), "ACCOUNT_NOT_FOUND");
    // Several at once, as each alone: another account's user is left out, not refused.
    let members = |account: &str, users: Vec<String>| {
        let mut directory = app.directory();
        let request = authed(pb::GetMembersRequest { account_id: account.into(), user_ids: users }, &service);
        async move { directory.get_members(request).await }
    };
    let asked = vec![world.admin.clone(), other.member.clone(), world.deactivated.clone()];
    let found = members(&world.account, asked).await.expect("members").into_inner().members;
    let mut ids: Vec<&str> = found.iter().map(|m| m.user_id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![world.admin.as_str(), world.deactivated.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let alone = lookup(&world.account, &world.admin).await.expect("admin").into_inner();
    assert_eq!(found.iter().find(|m| m.user_id == world.admin), Some(&alone), "the same answer as GetMember");
    let unknown = members(&uuid_like(), vec![world.member.clone()]).await.expect_err("unknown account");
    assert_eq!(reason(&unknown), "ACCOUNT_NOT_FOUND");
    for (users, field) in
        [(Vec::new(), "user_ids"), (vec![world.admin.clone(); 17], "user_ids"), (vec!["x".into()], "user_ids[0]")]
    {
        let refused = members(&world.account, users).await.expect_err("bad list");
        assert_eq!(support::bad_field(&refused).as_deref(), Some(field));
    }
    let account = app
        .directory()
        .lookup_account(authed(
            pb::LookupAccountRequest { account_id: world.account.clone(), ..Default::default() },
            &service,
        ))
        .await
        .expect("lookup")
        .into_inner();
    assert_eq!(account.owner_user_id, world.owner);
    let missing = app
        .directory()
        .lookup_account(authed(pb::LookupAccountRequest { account_id: uuid_like(), include_closed: true }, &service))
        .await
        .expect_err("unknown account");
    assert_eq!(reason(&missing), "ACCOUNT_NOT_FOUND");
}

fn uuid_like() -> String {
    "01890000-0000-7000-8000-000000000000".to_owned()
}
