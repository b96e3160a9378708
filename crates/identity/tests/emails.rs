//! SPEC R12 with R10 and R34 over gRPC on SQLite and PostgreSQL: a departing owner hands their
//! profile over by adding the successor's address, verifying it with the code sent there,
//! making it primary and removing the old one, the last two each with a step-up code sent to
//! the primary address; a stolen session token alone cannot move the profile to another
//! mailbox, and the primary address hears of every change. An unverified address reserves
//! nothing: claims expire, are few, their codes are rate limited, and uniqueness is decided on
//! verification or invitation.

mod support;

use roster_proto::identity::v1 as pb;
use support::{TestApp, World, authed, product_code, reason, rid};
use tonic::Code;
use tonic_types::StatusExt;

on_both_backends!(
    r12_a_departing_owner_hands_their_profile_over_by_changing_the_primary_address,
    r10_r12_a_stolen_session_cannot_move_the_profile_to_another_mailbox,
    r12_addresses_belong_to_one_user_once_verified_and_codes_expire,
    r12_unverified_claims_reserve_nothing_and_lapse,
    r12_claims_and_codes_are_limited,
);

const SUCCESSOR: &str = "successor@newco.example";
const HOUR_MS: i64 = 3_600_000;

async fn add(app: &TestApp, w: &World, by: &str, email: &str) -> Result<pb::EmailAddress, tonic::Status> {
    app.users()
        .add_email_address(authed(
            pb::AddEmailAddressRequest { request_id: rid(), account_id: w.account.clone(), email: email.into() },
            &app.user_token(by),
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn verify(
    app: &TestApp,
    w: &World,
    by: &str,
    email: &str,
    code: &str,
) -> Result<pb::EmailAddress, tonic::Status> {
    app.users()
        .verify_email_address(authed(
            pb::VerifyEmailAddressRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                email: email.into(),
                code: code.into(),
            },
            &app.user_token(by),
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn make_primary(
    app: &TestApp,
    w: &World,
    by: &str,
    email: &str,
    step_up_proof: &str,
) -> Result<pb::User, tonic::Status> {
    app.users()
        .make_email_primary(authed(
            pb::MakeEmailPrimaryRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                email: email.into(),
                step_up_proof: step_up_proof.into(),
            },
            &app.user_token(by),
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn remove(
    app: &TestApp,
    w: &World,
    by: &str,
    email: &str,
    step_up_proof: &str,
) -> Result<Vec<pb::EmailAddress>, tonic::Status> {
    app.users()
        .remove_email_address(authed(
            pb::RemoveEmailAddressRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                email: email.into(),
                step_up_proof: step_up_proof.into(),
            },
            &app.user_token(by),
        ))
        .await
        .map(|r| r.into_inner().addresses)
}

async fn list(app: &TestApp, w: &World, by: &str) -> Vec<pb::EmailAddress> {
    app.users()
        .list_email_addresses(authed(
            pb::ListEmailAddressesRequest { account_id: w.account.clone() },
            &app.user_token(by),
        ))
        .await
        .expect("list")
        .into_inner()
        .addresses
}

/// The code in the last verification e-mail sent to `email`.
async fn code_sent_to(app: &TestApp, email: &str) -> String {
    app.mails(email, "email_verification")
        .await
        .last()
        .and_then(|body| body.lines().find_map(|l| l.strip_prefix("Verification code: ").map(str::to_owned)))
        .expect("a verification e-mail at the new address")
}

async fn added_and_verified(app: &TestApp, w: &World, by: &str, email: &str) {
    add(app, w, by, email).await.expect("add");
    let code = code_sent_to(app, email).await;
    verify(app, w, by, email, &code).await.expect("verify");
}

async fn sign_in(app: &TestApp, email: &str) -> pb::SignInDecision {
    let answer = app
        .users()
        .check_sign_in(authed(pb::CheckSignInRequest { email: email.into() }, &app.service_token()))
        .await
        .expect("check sign-in")
        .into_inner();
    pb::SignInDecision::try_from(answer.decision).expect("decision")
}

async fn invite(app: &TestApp, w: &World, email: &str) -> Result<pb::Invitation, tonic::Status> {
    app.users()
        .invite_user(authed(
            pb::InviteUserRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                email: email.into(),
                ..Default::default()
            },
            &app.user_token(&w.owner),
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn r12_a_departing_owner_hands_their_profile_over_by_changing_the_primary_address(app: &TestApp) {
    let w = app.seed_world("handover").await;
    let old = w.email_of("owner");
    let added = add(app, &w, &w.owner, SUCCESSOR).await.expect("add the successor's address");
    assert!(!added.primary && !added.verified);
    assert!(added.expires_at_ms > 0, "a claim shows when it lapses");
    let added_at = added.added_at_ms;
    let told = app.mails(&old, "email_address_added").await;
    assert_eq!(told.len(), 1, "the primary address hears of the new one");
    assert!(told[0].contains(SUCCESSOR) && told[0].contains(&format!("Requested by: user:{}", w.owner)), "{}", told[0]);
    let early = make_primary(app, &w, &w.owner, SUCCESSOR, "").await.expect_err("not verified yet");
    assert_eq!(reason(&early), "EMAIL_NOT_VERIFIED");
    let wrong = verify(app, &w, &w.owner, SUCCESSOR, "0123456789abcdef").await.expect_err("wrong code");
    assert_eq!(reason(&wrong), "EMAIL_VERIFICATION_FAILED");
    let code = code_sent_to(app, SUCCESSOR).await;
    assert!(verify(app, &w, &w.owner, SUCCESSOR, &code).await.expect("verify").verified);

    // Making it primary needs a proof for that purpose, whose code went to the old address.
    let refused = make_primary(app, &w, &w.owner, SUCCESSOR, "").await.expect_err("no proof");
    assert_eq!(reason(&refused), "STEP_UP_REQUIRED");
    let other_purpose = app.step_up_proof(&w.account, &w.owner, &old, pb::StepUpPurpose::RemoveEmailAddress).await;
    let refused = make_primary(app, &w, &w.owner, SUCCESSOR, &other_purpose).await.expect_err("wrong purpose");
    assert_eq!(reason(&refused), "STEP_UP_REQUIRED");
    app.clock.advance_ms(60_000);
    let proof = app.step_up_proof(&w.account, &w.owner, &old, pb::StepUpPurpose::ChangePrimaryEmail).await;
    let user = make_primary(app, &w, &w.owner, SUCCESSOR, &proof).await.expect("make it primary");
    assert_eq!(user.email, SUCCESSOR);
    let again = make_primary(app, &w, &w.owner, &old, &proof).await.expect_err("a proof is spent once");
    assert_eq!(reason(&again), "STEP_UP_REQUIRED");
    assert_eq!(app.mails(&old, "primary_email_changed").await.len(), 1, "the former address is told");
    assert_eq!(sign_in(app, SUCCESSOR).await, pb::SignInDecision::Allowed, "sign-in uses the primary address");
    assert_eq!(sign_in(app, &old).await, pb::SignInDecision::UnknownUser);
    // E-mails go to the primary address now: step-up codes, for one.
    let before = app.mails(&old, "step_up_code").await.len();
    app.start_step_up(&w.account, &w.owner, pb::StepUpPurpose::ApproveOwnershipRequest).await.expect("step-up");
    assert_eq!(app.mails(SUCCESSOR, "step_up_code").await.len(), 1);
    assert_eq!(app.mails(&old, "step_up_code").await.len(), before);

    let refused = remove(app, &w, &w.owner, SUCCESSOR, "").await.expect_err("the primary stays");
    assert_eq!(reason(&refused), "EMAIL_IS_PRIMARY");
    let refused = remove(app, &w, &w.owner, &old, "").await.expect_err("a verified address needs a proof");
    assert_eq!(reason(&refused), "STEP_UP_REQUIRED");
    let proof = app.step_up_proof(&w.account, &w.owner, SUCCESSOR, pb::StepUpPurpose::RemoveEmailAddress).await;
    let left = remove(app, &w, &w.owner, &old, &proof).await.expect("remove the old address");
    assert_eq!(left.iter().map(|a| (a.email.as_str(), a.primary)).collect::<Vec<_>>(), [(SUCCESSOR, true)]);
    assert_eq!(left[0].added_at_ms, added_at, "the surviving address keeps the time it was added");
    assert_eq!(app.mails(SUCCESSOR, "email_address_removed").await.len(), 1, "the primary address is told");
    assert_eq!(app.mails(&old, "email_address_removed").await.len(), 1, "and so is the removed one");
    let gone = remove(app, &w, &w.owner, &old, "").await.expect_err("already removed");
    assert_eq!((gone.code(), reason(&gone).as_str()), (Code::NotFound, "EMAIL_ADDRESS_NOT_FOUND"));
}

/// Finding 1 of the security review: with only the owner's access token, an attacker adds and
/// verifies their own address, but cannot make it primary or remove the owner's addresses,
/// every step-up code keeps going to the owner's mailbox, and the owner hears of the address.
async fn r10_r12_a_stolen_session_cannot_move_the_profile_to_another_mailbox(app: &TestApp) {
    let w = app.seed_world("takeover").await;
    let owner_mail = w.email_of("owner");
    let attacker = "attacker@evil.example";
    added_and_verified(app, &w, &w.owner, attacker).await;
    assert_eq!(app.mails(&owner_mail, "email_address_added").await.len(), 1, "the owner is told");
    let refused = make_primary(app, &w, &w.owner, attacker, "").await.expect_err("no proof");
    assert_eq!(reason(&refused), "STEP_UP_REQUIRED");
    // A step-up started with the stolen token mails its code to the owner, never to the attacker.
    app.start_step_up(&w.account, &w.owner, pb::StepUpPurpose::ChangePrimaryEmail).await.expect("start");
    assert_eq!(app.mails(&owner_mail, "step_up_code").await.len(), 1);
    assert!(app.mails(attacker, "step_up_code").await.is_empty());
    let refused = remove(app, &w, &w.owner, &owner_mail, "").await.expect_err("the owner's primary stays");
    assert_eq!(reason(&refused), "EMAIL_IS_PRIMARY");
    let listed = list(app, &w, &w.owner).await;
    assert_eq!(listed[0].email, owner_mail, "still the owner's mailbox");
    assert_eq!(sign_in(app, attacker).await, pb::SignInDecision::UnknownUser);
    let audit: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, outcome FROM audit_events WHERE account_id = $1 AND action = 'user.primary_email_changed'",
    )
    .bind(&w.account)
    .fetch_all(app.db.pool())
    .await
    .expect("audit");
    assert_eq!(audit, [("user.primary_email_changed".to_owned(), "refused:STEP_UP_REQUIRED".to_owned())]);
}

async fn r12_addresses_belong_to_one_user_once_verified_and_codes_expire(app: &TestApp) {
    let w = app.seed_world("unique").await;
    let other = app.seed_world("elsewhere").await;
    added_and_verified(app, &w, &w.owner, SUCCESSOR).await;
    for taken in [SUCCESSOR.to_owned(), w.email_of("member"), other.email_of("admin"), other.pending_email.clone()] {
        let refused = add(app, &w, &w.admin, &taken).await.expect_err("taken");
        assert_eq!(
            (reason(&refused).as_str(), product_code(&refused).as_deref()),
            ("EMAIL_IN_USE", Some("1005")),
            "{taken}"
        );
    }
    // Nor can a verified address be invited, or given to a new account's owner.
    let invited = invite(app, &other, SUCCESSOR).await.expect_err("someone's address");
    assert_eq!(reason(&invited), "EMAIL_IN_USE");
    let created = app
        .accounts()
        .create_account(authed(
            pb::CreateAccountRequest {
                request_id: rid(),
                name: "Squat".into(),
                plan: pb::Plan::Basic as i32,
                owner_email: SUCCESSOR.into(),
                ..Default::default()
            },
            &app.operator_token(),
        ))
        .await
        .expect_err("someone's address");
    assert_eq!(reason(&created), "EMAIL_IN_USE");
    // A code works for 24 hours; then the claim lapses with it.
    add(app, &w, &w.owner, "later@newco.example").await.expect("add");
    let code = code_sent_to(app, "later@newco.example").await;
    let foreign = verify(app, &w, &w.admin, "later@newco.example", &code).await.expect_err("not the admin's");
    assert_eq!(reason(&foreign), "EMAIL_ADDRESS_NOT_FOUND");
    app.clock.advance_ms(24 * HOUR_MS + 1);
    let late = verify(app, &w, &w.owner, "later@newco.example", &code).await.expect_err("expired");
    assert_eq!(reason(&late), "EMAIL_VERIFICATION_FAILED");
    let listed: Vec<String> = list(app, &w, &w.owner).await.into_iter().map(|a| a.email).collect();
    assert_eq!(listed, [w.email_of("owner"), SUCCESSOR.to_owned()], "an expired claim is not listed");
    let operator = app
        .users()
        .list_email_addresses(authed(
            pb::ListEmailAddressesRequest { account_id: w.account.clone() },
            &app.operator_token(),
        ))
        .await
        .expect_err("operators have no addresses");
    assert_eq!(operator.code(), Code::PermissionDenied);
}

/// Finding 2 of the security review: a user claiming an address they do not own blocks
/// nobody. The invitation and the new account go ahead, and the claim lapses; of two users
/// claiming one address, the first to verify it holds it.
async fn r12_unverified_claims_reserve_nothing_and_lapse(app: &TestApp) {
    let squatter = app.seed_world("squatter").await;
    let acme = app.seed_world("acmeclaims").await;
    let newhire = "newhire@acmeclaims.example";
    add(app, &squatter, &squatter.member, newhire).await.expect("anyone may claim");
    let squatted_code = code_sent_to(app, newhire).await;
    invite(app, &acme, newhire).await.expect("the claim blocks no invitation");
    let lapsed = verify(app, &squatter, &squatter.member, newhire, &squatted_code).await.expect_err("lapsed");
    assert_eq!(reason(&lapsed), "EMAIL_ADDRESS_NOT_FOUND");

    let founder = "founder@startup.example";
    add(app, &squatter, &squatter.member, founder).await.expect("claim");
    app.accounts()
        .create_account(authed(
            pb::CreateAccountRequest {
                request_id: rid(),
                name: "Startup".into(),
                plan: pb::Plan::Pro as i32,
                owner_email: founder.into(),
                ..Default::default()
            },
            &app.operator_token(),
        ))
        .await
        .expect("the claim blocks no new account");
    assert!(list(app, &squatter, &squatter.member).await.iter().all(|a| a.email != founder), "the claim lapsed");

    // Two claims of one address: the first verification decides, the other claim lapses.
    let shared = "shared@mailbox.example";
    add(app, &squatter, &squatter.admin, shared).await.expect("one claim");
    let first_code = code_sent_to(app, shared).await;
    add(app, &acme, &acme.admin, shared).await.expect("another user's claim of it");
    let second_code = code_sent_to(app, shared).await;
    verify(app, &acme, &acme.admin, shared, &second_code).await.expect("the second claimant verifies first");
    let lapsed = verify(app, &squatter, &squatter.admin, shared, &first_code).await.expect_err("lapsed");
    assert_eq!(reason(&lapsed), "EMAIL_ADDRESS_NOT_FOUND");
    let taken = add(app, &squatter, &squatter.admin, shared).await.expect_err("now it is taken");
    assert_eq!(reason(&taken), "EMAIL_IN_USE");
}

async fn r12_claims_and_codes_are_limited(app: &TestApp) {
    let w = app.seed_world("limits").await;
    let other = app.seed_world("limitsother").await;
    // At most five pending claims per user; a new code for one of them adds none.
    for n in 0..5 {
        add(app, &w, &w.member, &format!("claim{n}@many.example")).await.expect("within the limit");
    }
    let refused = add(app, &w, &w.member, "claim5@many.example").await.expect_err("a sixth");
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "PENDING_ADDRESSES_LIMIT"));
    add(app, &w, &w.member, "claim0@many.example").await.expect("a new code for a pending claim");
    // Claims expire with their code and then count no more.
    app.clock.advance_ms(24 * HOUR_MS + 1);
    add(app, &w, &w.member, "claim5@many.example").await.expect("the old claims lapsed");

    // Three codes an hour to one address, whoever asks; the fourth says when to come back.
    let target = "victim@mailbox.example";
    add(app, &w, &w.admin, target).await.expect("1");
    add(app, &w, &w.admin, target).await.expect("2");
    add(app, &other, &other.admin, target).await.expect("3, by someone else");
    let limited = add(app, &other, &other.member, target).await.expect_err("a fourth within the hour");
    assert_eq!((limited.code(), reason(&limited).as_str()), (Code::ResourceExhausted, "VERIFICATION_CODES_LIMITED"));
    let retry = limited.get_details_retry_info().and_then(|info| info.retry_delay).expect("RetryInfo");
    assert!(retry.as_secs() > 0 && retry.as_secs() <= 3_600, "{retry:?}");
    assert_eq!(app.mails(target, "email_verification").await.len(), 3, "no fourth code went out");
    app.clock.advance_ms(HOUR_MS);
    add(app, &other, &other.member, target).await.expect("an hour later");

    // Ten codes an hour from one user, to any addresses (each claim withdrawn at once, so the
    // pending limit stays out of the way: withdrawing a claim does not give its code back).
    let sender = &other.owner;
    for n in 0..10 {
        let email = format!("spread{n}@wide.example");
        add(app, &other, sender, &email).await.expect("within ten an hour");
        remove(app, &other, sender, &email, "").await.expect("a claim is withdrawn without a proof");
    }
    let limited = add(app, &other, sender, "eleventh@wide.example").await.expect_err("an eleventh");
    assert_eq!(reason(&limited), "VERIFICATION_CODES_LIMITED");
}
