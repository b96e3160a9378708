//! Ownership requests (SPEC R8-R10) over gRPC on SQLite and PostgreSQL, with the manual
//! clock: the owner's first e-mail and daily reminders, the 168-hour deadline, approval and
//! denial with step-up, void requests, approve, deny and the deadline racing, and support's
//! reassignment (R11).

mod support;

use std::time::Duration;

use roster_proto::identity::v1 as pb;
use support::{TestApp, World, authed, reason, rid};
use tonic::Code;

on_both_backends!(
    r9_the_owner_is_emailed_at_once_and_reminded_once_a_day,
    r9_the_requester_becomes_owner_after_168_hours,
    r10_approval_at_167_hours_59_minutes_moves_ownership_and_denial_does_not,
    r10_step_up_proofs_are_fresh_single_use_and_bound,
    r10_five_wrong_codes_lock_step_up_for_fifteen_minutes,
    r10_approve_deny_and_the_deadline_racing_give_one_outcome,
    r10_a_demoted_requester_or_a_direct_transfer_voids_the_request,
    r8_who_may_request_and_one_open_request_per_account,
    r11_support_reassigns_ownership_only_with_a_recorded_verification,
);

const HOUR_MS: i64 = 3_600_000;

fn state(request: &pb::OwnershipRequest) -> pb::OwnershipRequestState {
    pb::OwnershipRequestState::try_from(request.state).expect("known state")
}

async fn get(app: &TestApp, account: &str, by: &str, id: &str) -> Result<pb::OwnershipRequest, tonic::Status> {
    app.accounts()
        .get_ownership_request(authed(
            pb::GetOwnershipRequestRequest { account_id: account.into(), ownership_request_id: id.into() },
            &app.user_token(by),
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn answer(
    app: &TestApp,
    approve: bool,
    account: &str,
    by: &str,
    id: &str,
    proof: &str,
) -> Result<pb::OwnershipRequest, tonic::Status> {
    let message = pb::AnswerOwnershipRequestRequest {
        request_id: rid(),
        account_id: account.into(),
        ownership_request_id: id.into(),
        step_up_proof: proof.into(),
    };
    let request = authed(message, &app.user_token(by));
    let answered = if approve {
        app.accounts().approve_ownership_request(request).await
    } else {
        app.accounts().deny_ownership_request(request).await
    };
    answered.map(tonic::Response::into_inner)
}

async fn listed(app: &TestApp, account: &str, by: &str) -> usize {
    app.accounts()
        .list_ownership_requests(authed(
            pb::ListOwnershipRequestsRequest { account_id: account.into(), ..Default::default() },
            &app.user_token(by),
        ))
        .await
        .expect("list")
        .into_inner()
        .ownership_requests
        .len()
}

async fn cancel(app: &TestApp, account: &str, by: &str, id: &str) -> Result<pb::OwnershipRequest, tonic::Status> {
    app.accounts()
        .cancel_ownership_request(authed(
            pb::CancelOwnershipRequestRequest {
                request_id: rid(),
                account_id: account.into(),
                ownership_request_id: id.into(),
            },
            &app.user_token(by),
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Polls until the request satisfies `done` (the workflow runs on the server's own worker).
async fn eventually(
    app: &TestApp,
    w: &World,
    id: &str,
    done: impl Fn(&pb::OwnershipRequest) -> bool,
) -> pb::OwnershipRequest {
    for _ in 0..200 {
        // The first owner keeps seeing it: as owner, or as the admin they become.
        if let Ok(now) = get(app, &w.account, &w.owner, id).await
            && done(&now)
        {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ownership request {id} did not get there in 10 s");
}

/// Lets the worker run any timer that is due, for checks that something did not happen.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

async fn role(app: &TestApp, w: &World, user: &str) -> pb::RoleKind {
    let by = if user == w.member { &w.admin } else { &w.member };
    pb::RoleKind::try_from(app.get_user(&w.account, by, user).await.role).expect("role")
}

async fn r9_the_owner_is_emailed_at_once_and_reminded_once_a_day(app: &TestApp) {
    let w = app.seed_world("remind").await;
    let owner_email = w.email_of("owner");
    let open = app.request_ownership(&w.account, &w.admin).await.expect("request");
    assert_eq!(state(&open), pb::OwnershipRequestState::Open);
    assert_eq!(open.deadline_ms - open.created_at_ms, 168 * HOUR_MS);
    assert_eq!(app.mails(&owner_email, "ownership_requested").await.len(), 1, "e-mailed at once");

    app.clock.advance_ms(24 * HOUR_MS - 60_000);
    settle().await;
    assert_eq!(app.mails(&owner_email, "ownership_request_reminder").await.len(), 0, "not before a day");
    for day in 1..=3 {
        app.clock.advance_ms(if day == 1 { 60_000 } else { 24 * HOUR_MS });
        let now = eventually(app, &w, &open.id, |r| r.reminders_sent == day).await;
        assert_eq!(state(&now), pb::OwnershipRequestState::Open);
        settle().await;
        let reminders = app.mails(&owner_email, "ownership_request_reminder").await;
        assert_eq!(reminders.len(), day as usize, "exactly one reminder on day {day}");
        assert!(reminders[0].contains("GMT"), "dates are readable: {}", reminders[0]);
    }
    app.clock.advance_ms(HOUR_MS);
    settle().await;
    assert_eq!(get(app, &w.account, &w.owner, &open.id).await.expect("get").reminders_sent, 3);
}

async fn r9_the_requester_becomes_owner_after_168_hours(app: &TestApp) {
    let w = app.seed_world("deadline").await;
    let open = app.request_ownership(&w.account, &w.admin).await.expect("request");
    let late_proof =
        app.step_up_proof(&w.account, &w.owner, &w.email_of("owner"), pb::StepUpPurpose::ApproveOwnershipRequest).await;
    app.clock.advance_ms(168 * HOUR_MS);
    let decided = eventually(app, &w, &open.id, |r| r.state != pb::OwnershipRequestState::Open as i32).await;
    assert_eq!(state(&decided), pb::OwnershipRequestState::AutoApproved);
    assert_eq!(app.owner_count(&w.account).await, 1);
    assert_eq!(role(app, &w, &w.admin).await, pb::RoleKind::Owner, "the requester owns the account (R3)");
    assert_eq!(role(app, &w, &w.owner).await, pb::RoleKind::Admin, "the previous owner is an admin (R3)");
    let outcome = app.mails(&w.email_of("admin"), "ownership_request_outcome").await;
    assert_eq!(outcome.len(), 1);
    assert!(outcome[0].contains("automatically"), "{}", outcome[0]);
    // Nothing can be decided any more: the old owner is no longer the owner, and the new one
    // finds the request closed.
    let refused = answer(app, true, &w.account, &w.owner, &open.id, &late_proof).await.expect_err("not owner");
    assert_eq!(reason(&refused), "NOT_ACCOUNT_OWNER");
    let admin_proof =
        app.step_up_proof(&w.account, &w.admin, &w.email_of("admin"), pb::StepUpPurpose::DenyOwnershipRequest).await;
    let refused = answer(app, false, &w.account, &w.admin, &open.id, &admin_proof).await.expect_err("closed");
    assert_eq!(reason(&refused), "OWNERSHIP_REQUEST_CLOSED");
    // The request's operation finishes on its own.
    let operation = app.operation_when_done(&w.owner, &open.operation_id).await;
    assert!(operation.error.is_none(), "{operation:?}");
}

async fn r10_approval_at_167_hours_59_minutes_moves_ownership_and_denial_does_not(app: &TestApp) {
    let w = app.seed_world("approve").await;
    let open = app.request_ownership(&w.account, &w.admin).await.expect("request");
    app.clock.advance_ms(168 * HOUR_MS - 60_000);
    let owner_email = w.email_of("owner");
    let approval =
        app.step_up_proof(&w.account, &w.owner, &owner_email, pb::StepUpPurpose::ApproveOwnershipRequest).await;
    let approved = answer(app, true, &w.account, &w.owner, &open.id, &approval).await.expect("approve");
    assert_eq!(state(&approved), pb::OwnershipRequestState::Approved);
    assert_eq!(role(app, &w, &w.admin).await, pb::RoleKind::Owner);
    assert_eq!(app.owner_count(&w.account).await, 1);
    assert!(app.mails(&w.email_of("admin"), "ownership_request_outcome").await[0].contains("approved by the owner"));

    // The new owner denies the old owner's request.
    let back = app.request_ownership(&w.account, &w.owner).await.expect("the previous owner, now an admin, asks back");
    let admin_email = w.email_of("admin");
    let denial = app.step_up_proof(&w.account, &w.admin, &admin_email, pb::StepUpPurpose::DenyOwnershipRequest).await;
    let denied = answer(app, false, &w.account, &w.admin, &back.id, &denial).await.expect("deny");
    assert_eq!(state(&denied), pb::OwnershipRequestState::Denied);
    assert_eq!(role(app, &w, &w.admin).await, pb::RoleKind::Owner, "a denial changes nothing");
    assert!(app.mails(&owner_email, "ownership_request_outcome").await.last().expect("outcome").contains("denied"));
    app.clock.advance_ms(200 * HOUR_MS);
    settle().await;
    assert_eq!(role(app, &w, &w.admin).await, pb::RoleKind::Owner, "a denied request never decides itself");
}

async fn r10_step_up_proofs_are_fresh_single_use_and_bound(app: &TestApp) {
    let w = app.seed_world("stepup").await;
    let (owner_email, admin_email) = (w.email_of("owner"), w.email_of("admin"));
    let open = app.request_ownership(&w.account, &w.admin).await.expect("request");
    let required = |status: tonic::Status| assert_eq!(reason(&status), "STEP_UP_REQUIRED", "{status:?}");
    required(answer(app, true, &w.account, &w.owner, &open.id, "").await.expect_err("no proof"));
    required(answer(app, true, &w.account, &w.owner, &open.id, &"ab".repeat(32)).await.expect_err("made-up proof"));
    // A proof for denying does not approve.
    let deny_proof =
        app.step_up_proof(&w.account, &w.owner, &owner_email, pb::StepUpPurpose::DenyOwnershipRequest).await;
    required(answer(app, true, &w.account, &w.owner, &open.id, &deny_proof).await.expect_err("other purpose"));
    // Another user's proof.
    let admins =
        app.step_up_proof(&w.account, &w.admin, &admin_email, pb::StepUpPurpose::ApproveOwnershipRequest).await;
    required(answer(app, true, &w.account, &w.owner, &open.id, &admins).await.expect_err("another user's proof"));
    // Expired after 5 minutes.
    let stale = app.step_up_proof(&w.account, &w.owner, &owner_email, pb::StepUpPurpose::ApproveOwnershipRequest).await;
    app.clock.advance_ms(5 * 60_000);
    required(answer(app, true, &w.account, &w.owner, &open.id, &stale).await.expect_err("expired proof"));
    // Used once, then never again.
    let deny_proof =
        app.step_up_proof(&w.account, &w.owner, &owner_email, pb::StepUpPurpose::DenyOwnershipRequest).await;
    let denied = answer(app, false, &w.account, &w.owner, &open.id, &deny_proof).await.expect("deny with its proof");
    assert_eq!(state(&denied), pb::OwnershipRequestState::Denied);
    let again = app.request_ownership(&w.account, &w.admin).await.expect("ask again");
    required(answer(app, false, &w.account, &w.owner, &again.id, &deny_proof).await.expect_err("reused proof"));
    // A proof from another account's step-up is no good here either.
    let (other, other_owner) = app.create_account("Other", "boss@other-stepup.example").await;
    let foreign = app
        .step_up_proof(&other, &other_owner, "boss@other-stepup.example", pb::StepUpPurpose::DenyOwnershipRequest)
        .await;
    let refused = answer(app, false, &w.account, &other_owner, &again.id, &foreign).await.expect_err("foreign");
    assert_eq!(refused.code(), Code::NotFound, "another account's owner learns nothing: {refused:?}");
    assert_eq!(state(&get(app, &w.account, &w.owner, &again.id).await.expect("get")), pb::OwnershipRequestState::Open);
}

async fn r10_five_wrong_codes_lock_step_up_for_fifteen_minutes(app: &TestApp) {
    let w = app.seed_world("lock").await;
    let owner_email = w.email_of("owner");
    let purpose = pb::StepUpPurpose::ApproveOwnershipRequest;
    let challenge = app.start_step_up(&w.account, &w.owner, purpose).await.expect("start");
    let code = app.step_up_code(&owner_email).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for left in (1..=4).rev() {
        let refused =
            app.verify_step_up(&w.account, &w.owner, &challenge.challenge_id, wrong).await.expect_err("wrong");
        assert_eq!(reason(&refused), "STEP_UP_CODE_WRONG");
        assert!(refused.message().contains(&format!("{left} more")), "{}", refused.message());
    }
    let locked = app.verify_step_up(&w.account, &w.owner, &challenge.challenge_id, wrong).await.expect_err("fifth");
    assert_eq!(reason(&locked), "STEP_UP_LOCKED");
    let locked = app.verify_step_up(&w.account, &w.owner, &challenge.challenge_id, &code).await.expect_err("locked");
    assert_eq!(reason(&locked), "STEP_UP_LOCKED", "even the right code waits");
    let locked = app.start_step_up(&w.account, &w.owner, purpose).await.expect_err("no new codes");
    assert_eq!(reason(&locked), "STEP_UP_LOCKED");
    app.clock.advance_ms(15 * 60_000);
    let fresh = app.step_up_proof(&w.account, &w.owner, &owner_email, purpose).await;
    assert_eq!(fresh.len(), 64);
    // A used code does not verify twice.
    let challenge = app.start_step_up(&w.account, &w.owner, purpose).await.expect("start");
    let code = app.step_up_code(&owner_email).await;
    app.verify_step_up(&w.account, &w.owner, &challenge.challenge_id, &code).await.expect("first use");
    let used = app.verify_step_up(&w.account, &w.owner, &challenge.challenge_id, &code).await.expect_err("second use");
    assert_eq!(reason(&used), "STEP_UP_CHALLENGE_NOT_FOUND");
}

async fn r10_approve_deny_and_the_deadline_racing_give_one_outcome(app: &TestApp) {
    let w = app.seed_world("race").await;
    let owner_email = w.email_of("owner");
    let open = app.request_ownership(&w.account, &w.admin).await.expect("request");
    app.clock.advance_ms(168 * HOUR_MS - 1);
    let approval =
        app.step_up_proof(&w.account, &w.owner, &owner_email, pb::StepUpPurpose::ApproveOwnershipRequest).await;
    let denial = app.step_up_proof(&w.account, &w.owner, &owner_email, pb::StepUpPurpose::DenyOwnershipRequest).await;
    let (approved, denied, ()) = tokio::join!(
        answer(app, true, &w.account, &w.owner, &open.id, &approval),
        answer(app, false, &w.account, &w.owner, &open.id, &denial),
        async { app.clock.advance_ms(1) },
    );
    let decided = eventually(app, &w, &open.id, |r| r.state != pb::OwnershipRequestState::Open as i32).await;
    settle().await;
    let successes = [&approved, &denied].iter().filter(|r| r.is_ok()).count();
    assert!(successes <= 1, "at most one answer wins: {approved:?} {denied:?}");
    for refused in [approved.as_ref().err(), denied.as_ref().err()].into_iter().flatten() {
        // The loser finds the request closed, or, if ownership already moved, that the
        // caller is no longer the owner.
        let why = reason(refused);
        assert!(why == "OWNERSHIP_REQUEST_CLOSED" || why == "NOT_ACCOUNT_OWNER", "{refused:?}");
    }
    let expected_owner = match state(&decided) {
        pb::OwnershipRequestState::Approved | pb::OwnershipRequestState::AutoApproved => &w.admin,
        pb::OwnershipRequestState::Denied => &w.owner,
        other => panic!("unexpected outcome {other:?}"),
    };
    assert_eq!(role(app, &w, expected_owner).await, pb::RoleKind::Owner);
    assert_eq!(app.owner_count(&w.account).await, 1);
    assert_eq!(app.mails(&w.email_of("admin"), "ownership_request_outcome").await.len(), 1, "one outcome e-mail");
}

async fn r10_a_demoted_requester_or_a_direct_transfer_voids_the_request(app: &TestApp) {
    let w = app.seed_world("void").await;
    let domain = w.pending_email.split('@').nth(1).expect("domain").to_owned();
    let second = app.join(&w.account, &w.owner, &format!("second@{domain}")).await;
    app.assign_role(&w.account, &w.owner, &second, "admin").await.expect("promote");

    let open = app.request_ownership(&w.account, &w.admin).await.expect("request");
    app.assign_role(&w.account, &w.owner, &w.admin, "member").await.expect("demote the requester");
    app.clock.advance_ms(168 * HOUR_MS);
    let void = eventually(app, &w, &open.id, |r| r.state != pb::OwnershipRequestState::Open as i32).await;
    assert_eq!(state(&void), pb::OwnershipRequestState::Void, "{void:?}");
    assert!(void.outcome_note.contains("admins"), "{}", void.outcome_note);
    assert_eq!(role(app, &w, &w.owner).await, pb::RoleKind::Owner, "nothing moved");
    assert!(app.mails(&w.email_of("admin"), "ownership_request_outcome").await[0].contains("void"));

    // Ownership moved directly while a request was open: the request is void at its deadline.
    let open = app.request_ownership(&w.account, &second).await.expect("second admin requests");
    app.transfer(&w.account, &w.owner, &second).await.expect("a direct transfer mid-window");
    app.clock.advance_ms(168 * HOUR_MS);
    let void = eventually(app, &w, &open.id, |r| r.state != pb::OwnershipRequestState::Open as i32).await;
    assert_eq!(state(&void), pb::OwnershipRequestState::Void, "{void:?}");
    assert!(void.outcome_note.contains("moved another way"), "{}", void.outcome_note);
    assert_eq!(role(app, &w, &second).await, pb::RoleKind::Owner);
    assert_eq!(app.owner_count(&w.account).await, 1);
}

async fn r8_who_may_request_and_one_open_request_per_account(app: &TestApp) {
    let w = app.seed_world("who").await;
    let refused = app.request_ownership(&w.account, &w.member).await.expect_err("a member while there are admins");
    assert_eq!(reason(&refused), "OWNERSHIP_REQUEST_NOT_ALLOWED");
    assert!(refused.message().contains("admins"), "{}", refused.message());
    let refused = app.request_ownership(&w.account, &w.owner).await.expect_err("the owner");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let refused = app
        .accounts()
        .request_ownership(authed(
            pb::RequestOwnershipRequest { request_id: rid(), account_id: w.account.clone() },
            &app.operator_token(),
        ))
        .await
        .expect_err("operators do not request");
    assert_eq!(refused.code(), Code::PermissionDenied);

    let first = app.request_ownership(&w.account, &w.admin).await.expect("request");
    let second = app.request_ownership(&w.account, &w.admin).await.expect_err("one open request");
    assert_eq!(reason(&second), "OWNERSHIP_REQUEST_OPEN");
    assert!(second.message().contains(&first.id), "names the first: {}", second.message());

    // Visibility: the requester, the owner and user managers; not other members.
    let hidden = get(app, &w.account, &w.member, &first.id).await.expect_err("a member");
    assert_eq!(reason(&hidden), "OWNERSHIP_REQUEST_NOT_FOUND");
    assert_eq!(listed(app, &w.account, &w.owner).await, 1);
    assert_eq!(listed(app, &w.account, &w.member).await, 0);

    // Only the requester cancels; a cancelled request can no longer be decided.
    let refused = cancel(app, &w.account, &w.owner, &first.id).await.expect_err("the owner denies instead");
    assert_eq!(reason(&refused), "NOT_REQUESTER");
    let cancelled = cancel(app, &w.account, &w.admin, &first.id).await.expect("cancel");
    assert_eq!(state(&cancelled), pb::OwnershipRequestState::Cancelled);
    let owner_email = w.email_of("owner");
    let approval =
        app.step_up_proof(&w.account, &w.owner, &owner_email, pb::StepUpPurpose::ApproveOwnershipRequest).await;
    let refused = answer(app, true, &w.account, &w.owner, &first.id, &approval).await.expect_err("cancelled");
    assert_eq!(reason(&refused), "OWNERSHIP_REQUEST_CLOSED");
    app.request_ownership(&w.account, &w.admin).await.expect("a new request once the first is closed");

    // Other plans and CSM-eligible accounts go through their account manager (R8).
    for (plan, csm) in [(pb::Plan::Business, false), (pb::Plan::Pro, true)] {
        let email = format!("owner@p{}c{}.plan.example", plan as i32, u8::from(csm));
        let account = app
            .accounts()
            .create_account(authed(
                pb::CreateAccountRequest {
                    request_id: rid(),
                    name: "Big".into(),
                    plan: plan as i32,
                    csm_eligible: csm,
                    owner_email: email,
                    ..Default::default()
                },
                &app.operator_token(),
            ))
            .await
            .expect("create")
            .into_inner();
        let owner = account.owner.expect("owner").user_id;
        let admin_email = format!("admin-{csm}-{}@elsewhere.example", plan as i32);
        let admin = app.join(&account.id, &owner, &admin_email).await;
        app.assign_role(&account.id, &owner, &admin, "admin").await.expect("promote");
        let refused = app.request_ownership(&account.id, &admin).await.expect_err("plan or CSM");
        assert_eq!(reason(&refused), "OWNERSHIP_REQUEST_NOT_ALLOWED", "{plan:?} csm={csm}");
    }
}

fn verification() -> pb::SupportVerification {
    pb::SupportVerification {
        ticket_reference: "SUP-4711".into(),
        identity_check: "video call, passport matched".into(),
        relationship_check: "letter from the CFO on company paper".into(),
        billing_check: "last invoice paid from the company account".into(),
    }
}

async fn reassign(
    app: &TestApp,
    w: &World,
    token: &str,
    to: &str,
    verification: Option<pb::SupportVerification>,
) -> Result<pb::Account, tonic::Status> {
    app.accounts()
        .reassign_ownership(authed(
            pb::ReassignOwnershipRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                new_owner_user_id: to.into(),
                verification,
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn r11_support_reassigns_ownership_only_with_a_recorded_verification(app: &TestApp) {
    let w = app.seed_world("support").await;
    let operator = app.operator_token();
    for (field, broken) in [
        ("verification.ticket_reference", pb::SupportVerification { ticket_reference: " ".into(), ..verification() }),
        ("verification.identity_check", pb::SupportVerification { identity_check: String::new(), ..verification() }),
        (
            "verification.relationship_check",
            pb::SupportVerification { relationship_check: String::new(), ..verification() },
        ),
        ("verification.billing_check", pb::SupportVerification { billing_check: String::new(), ..verification() }),
    ] {
        let refused = reassign(app, &w, &operator, &w.member, Some(broken)).await.expect_err(field);
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(support::bad_field(&refused).as_deref(), Some(field));
    }
    let refused = reassign(app, &w, &operator, &w.member, None).await.expect_err("no verification at all");
    assert_eq!(support::bad_field(&refused).as_deref(), Some("verification.ticket_reference"));
    let refused =
        reassign(app, &w, &app.user_token(&w.owner), &w.member, Some(verification())).await.expect_err("owner");
    assert_eq!(reason(&refused), "PRINCIPAL_NOT_ALLOWED", "account users never reassign: {refused:?}");
    let refused = reassign(app, &w, &operator, &w.pending_user, Some(verification())).await.expect_err("pending");
    assert_eq!(reason(&refused), "USER_PENDING");
    assert_eq!(role(app, &w, &w.owner).await, pb::RoleKind::Owner, "nothing changed yet");

    let account = reassign(app, &w, &operator, &w.member, Some(verification())).await.expect("reassigned");
    assert_eq!(account.owner.expect("owner").user_id, w.member);
    assert_eq!(app.owner_count(&w.account).await, 1);
    assert_eq!(role(app, &w, &w.owner).await, pb::RoleKind::Admin, "the previous owner is an admin");
    for who in ["owner", "member"] {
        assert_eq!(app.mails(&w.email_of(who), "ownership_transferred").await.len(), 1, "{who} is e-mailed");
    }
    let (principal, details): (String, String) = sqlx::query_as(
        "SELECT principal, details FROM audit_events WHERE account_id = $1 \
         AND action = 'account.ownership_reassigned' AND outcome = 'ok'",
    )
    .bind(&w.account)
    .fetch_one(app.db.pool())
    .await
    .expect("audited once, with the verification");
    assert_eq!(principal, "operator:support");
    for part in ["SUP-4711", "passport", "CFO", "invoice", &w.owner, &w.member] {
        assert!(details.contains(part), "{part} in {details}");
    }
}
