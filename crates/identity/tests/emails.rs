//! SPEC R12 over gRPC on SQLite and PostgreSQL: a departing owner hands their profile over by
//! adding the successor's address, verifying it with the code sent there, making it primary
//! and removing the old one. Addresses are unique across the system (1005), sign-in and every
//! e-mail follow the primary address.

mod support;

use roster_proto::identity::v1 as pb;
use support::{TestApp, World, authed, product_code, reason, rid};
use tonic::Code;

on_both_backends!(
    r12_a_departing_owner_hands_their_profile_over_by_changing_the_primary_address,
    r12_addresses_are_unique_and_codes_expire,
);

const SUCCESSOR: &str = "successor@newco.example";

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

async fn make_primary(app: &TestApp, w: &World, by: &str, email: &str) -> Result<pb::User, tonic::Status> {
    app.users()
        .make_email_primary(authed(
            pb::MakeEmailPrimaryRequest { request_id: rid(), account_id: w.account.clone(), email: email.into() },
            &app.user_token(by),
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn remove(app: &TestApp, w: &World, by: &str, email: &str) -> Result<Vec<pb::EmailAddress>, tonic::Status> {
    app.users()
        .remove_email_address(authed(
            pb::RemoveEmailAddressRequest { request_id: rid(), account_id: w.account.clone(), email: email.into() },
            &app.user_token(by),
        ))
        .await
        .map(|r| r.into_inner().addresses)
}

/// The code in the last verification e-mail sent to `email`.
async fn code_sent_to(app: &TestApp, email: &str) -> String {
    app.mails(email, "email_verification")
        .await
        .last()
        .and_then(|body| body.lines().find_map(|l| l.strip_prefix("Verification code: ").map(str::to_owned)))
        .expect("a verification e-mail at the new address")
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

async fn r12_a_departing_owner_hands_their_profile_over_by_changing_the_primary_address(app: &TestApp) {
    let w = app.seed_world("handover").await;
    let old = w.email_of("owner");
    let added = add(app, &w, &w.owner, SUCCESSOR).await.expect("add the successor's address");
    assert!(!added.primary && !added.verified);
    let early = make_primary(app, &w, &w.owner, SUCCESSOR).await.expect_err("not verified yet");
    assert_eq!(reason(&early), "EMAIL_NOT_VERIFIED");
    let wrong = verify(app, &w, &w.owner, SUCCESSOR, "0123456789abcdef").await.expect_err("wrong code");
    assert_eq!(reason(&wrong), "EMAIL_VERIFICATION_FAILED");
    let code = code_sent_to(app, SUCCESSOR).await;
    assert!(verify(app, &w, &w.owner, SUCCESSOR, &code).await.expect("verify").verified);

    let user = make_primary(app, &w, &w.owner, SUCCESSOR).await.expect("make it primary");
    assert_eq!(user.email, SUCCESSOR);
    assert_eq!(app.mails(&old, "primary_email_changed").await.len(), 1, "the former address is told");
    assert_eq!(sign_in(app, SUCCESSOR).await, pb::SignInDecision::Allowed, "sign-in uses the primary address");
    assert_eq!(sign_in(app, &old).await, pb::SignInDecision::UnknownUser);
    // E-mails go to the primary address now: a step-up code, for one.
    app.start_step_up(&w.account, &w.owner, pb::StepUpPurpose::ApproveOwnershipRequest).await.expect("step-up");
    assert_eq!(app.mails(SUCCESSOR, "step_up_code").await.len(), 1);
    assert!(app.mails(&old, "step_up_code").await.is_empty());

    let refused = remove(app, &w, &w.owner, SUCCESSOR).await.expect_err("the primary stays");
    assert_eq!(reason(&refused), "EMAIL_IS_PRIMARY");
    let left = remove(app, &w, &w.owner, &old).await.expect("remove the old address");
    assert_eq!(left.iter().map(|a| (a.email.as_str(), a.primary)).collect::<Vec<_>>(), [(SUCCESSOR, true)]);
    let gone = remove(app, &w, &w.owner, &old).await.expect_err("already removed");
    assert_eq!((gone.code(), reason(&gone).as_str()), (Code::NotFound, "EMAIL_ADDRESS_NOT_FOUND"));
}

async fn r12_addresses_are_unique_and_codes_expire(app: &TestApp) {
    let w = app.seed_world("unique").await;
    let other = app.seed_world("elsewhere").await;
    add(app, &w, &w.owner, SUCCESSOR).await.expect("add");
    for taken in [SUCCESSOR.to_owned(), w.email_of("member"), other.email_of("admin")] {
        let refused = add(app, &w, &w.admin, &taken).await.expect_err("taken");
        assert_eq!(
            (reason(&refused).as_str(), product_code(&refused).as_deref()),
            ("EMAIL_IN_USE", Some("1005")),
            "{taken}"
        );
    }
    // Nor can it be invited, or given to a new account's owner.
    let invited = app
        .users()
        .invite_user(authed(
            pb::InviteUserRequest {
                request_id: rid(),
                account_id: other.account.clone(),
                email: SUCCESSOR.into(),
                ..Default::default()
            },
            &app.user_token(&other.owner),
        ))
        .await
        .expect_err("someone's address");
    assert_eq!(reason(&invited), "EMAIL_IN_USE");
    // Someone else's pending address cannot be verified or made primary by another user.
    let code = code_sent_to(app, SUCCESSOR).await;
    let foreign = verify(app, &w, &w.admin, SUCCESSOR, &code).await.expect_err("not the admin's");
    assert_eq!(reason(&foreign), "EMAIL_ADDRESS_NOT_FOUND");
    // A code works for 24 hours.
    app.clock.advance_ms(24 * 3_600_000 + 1);
    let late = verify(app, &w, &w.owner, SUCCESSOR, &code).await.expect_err("expired");
    assert_eq!(reason(&late), "EMAIL_VERIFICATION_FAILED");
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
