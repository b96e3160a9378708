//! Identity's sagas across both real services (SPEC R17, R18, R21-R24): the unlink saga's
//! refusals, its happy path, a licensing refusal mid-saga, a failure injected at every step,
//! and a licensing outage. Effects are read back from both services, never from logs.
//! (The harness lives here because it boots identity and licensing together.)

mod support;

use std::sync::{Arc, Mutex};

use roster_proto::identity::v1 as idpb;
use roster_proto::licensing::v1 as pb;
use roster_proto::operations::v1 as ops;
use roster_workflow::{Direction, Faults, StepError};
use support::{Backend, TestApp, World, authed, product_code, reason, rid};

/// Arms one failure at one step of the unlink saga.
#[derive(Default)]
struct Inject {
    armed: Mutex<Option<(usize, Fault)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Refuse,
    Outage,
}

impl Faults for Inject {
    fn before_step(&self, kind: &str, step: usize, direction: Direction) -> Option<StepError> {
        let mut armed = self.armed.lock().expect("lock");
        match *armed {
            Some((at, fault)) if kind == "user.unlink" && at == step && direction == Direction::Forward => {
                *armed = None;
                Some(match fault {
                    Fault::Refuse => StepError::Refused(roster_workflow::Failure {
                        reason: "INJECTED".into(),
                        code: None,
                        message: format!("refused at step {step}"),
                    }),
                    Fault::Outage => StepError::Transient("injected outage".into()),
                })
            }
            _ => None,
        }
    }

    fn crash_after_step(&self, _: &str, _: usize, _: Direction) -> bool {
        false
    }
}

/// A member outside the managed domain with a licensed seat, a recording, a webinar and a
/// meeting on their personal meeting id.
async fn freelancer(app: &TestApp, w: &World) -> String {
    let user = app.add_members(w, 1).await.remove(0);
    let mut licenses = app.licenses();
    licenses
        .set_seats(authed(
            pb::SetSeatsRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                license_type: pb::LicenseType::Licensed as i32,
                capacity: 10,
            },
            &app.operator_token(),
        ))
        .await
        .expect("seats");
    licenses
        .assign_license(authed(
            pb::AssignLicenseRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: user.clone(),
                license_type: pb::LicenseType::Licensed as i32,
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("assign");
    for (kind, title, uses_pmi) in [
        (pb::ContentKind::Recording, "Design review", false),
        (pb::ContentKind::Webinar, "Launch", false),
        (pb::ContentKind::Meeting, "My room", true),
    ] {
        app.content()
            .register_content(authed(
                pb::RegisterContentRequest {
                    request_id: rid(),
                    account_id: w.account.clone(),
                    owner_user_id: user.clone(),
                    kind: kind as i32,
                    title: title.into(),
                    uses_pmi,
                },
                &app.user_token(&user),
            ))
            .await
            .expect("content");
    }
    user
}

fn recordings_to(target: &str) -> idpb::ContentTransfer {
    idpb::ContentTransfer { target_user_id: target.into(), recordings: true, ..Default::default() }
}

async fn unlink(
    app: &TestApp,
    w: &World,
    user: &str,
    transfer: Option<idpb::ContentTransfer>,
) -> Result<ops::Operation, tonic::Status> {
    app.identity_users()
        .unlink_user(authed(
            idpb::UnlinkUserRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: user.into(),
                transfer,
            },
            &app.user_token(&w.owner),
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Items per owner in an account: (owner, title) pairs, sorted.
async fn content_of(app: &TestApp, account: &str, owner: &str) -> Vec<String> {
    let mut titles: Vec<String> = app
        .content()
        .list_content(authed(
            pb::ListContentRequest { account_id: account.into(), owner_user_id: owner.into(), ..Default::default() },
            &app.identity_token(),
        ))
        .await
        .expect("content")
        .into_inner()
        .items
        .into_iter()
        .map(|item| item.title)
        .collect();
    titles.sort();
    titles
}

async fn licenses_of(app: &TestApp, account: &str, user: &str) -> usize {
    app.licenses()
        .list_assignments(authed(
            pb::ListAssignmentsRequest { account_id: account.into(), user_id: user.into(), ..Default::default() },
            &app.identity_token(),
        ))
        .await
        .expect("assignments")
        .into_inner()
        .assignments
        .len()
}

async fn account_of(app: &TestApp, w: &World, user: &str) -> Option<String> {
    let found: Option<String> = sqlx::query_scalar("SELECT account_id FROM users WHERE id = $1")
        .bind(user)
        .fetch_optional(app.identity_db.pool())
        .await
        .expect("user row");
    let _ = w;
    found
}

/// Nothing changed: the user is still in the account with their seat and all their content.
async fn assert_untouched(app: &TestApp, w: &World, user: &str) {
    assert_eq!(account_of(app, w, user).await.as_deref(), Some(w.account.as_str()));
    assert_eq!(licenses_of(app, &w.account, user).await, 1, "the seat is back");
    assert_eq!(content_of(app, &w.account, user).await, ["Design review", "Launch", "My room"]);
    assert!(content_of(app, &w.account, &w.admin).await.iter().all(|t| t != "Design review"));
}

fn state(operation: &ops::Operation) -> ops::OperationState {
    ops::OperationState::try_from(operation.state).expect("state")
}

async fn r21_r24_unlink_refusals_change_nothing(app: &TestApp) {
    let w = app.seed_world().await;
    let user = freelancer(app, &w).await;
    let refused = unlink(app, &w, &w.member, None).await.expect_err("managed domain");
    assert_eq!((reason(&refused).as_str(), product_code(&refused).as_deref()), ("MANAGED_DOMAIN_USER", Some("1107")));
    let refused = unlink(app, &w, &w.admin, None).await.expect_err("admin");
    assert_eq!((reason(&refused).as_str(), product_code(&refused).as_deref()), ("ADMIN_MUST_BE_DEMOTED", Some("1117")));
    let refused = unlink(app, &w, &user, Some(recordings_to(&w.solo_owner))).await.expect_err("other account");
    assert_eq!((reason(&refused).as_str(), product_code(&refused).as_deref()), ("TARGET_NOT_IN_ACCOUNT", Some("1001")));
    let refused = unlink(app, &w, &w.pending, None).await.expect_err("pending");
    assert_eq!(reason(&refused), "USER_PENDING");

    // R23: webinars need a target with a webinar license; the member has none. Licensing
    // refuses mid-saga and the saga compensates.
    let webinars = idpb::ContentTransfer { target_user_id: w.member.clone(), webinars: true, ..Default::default() };
    let operation = unlink(app, &w, &user, Some(webinars)).await.expect("started");
    assert_eq!(state(&operation), ops::OperationState::Compensated, "{operation:?}");
    let error = operation.error.expect("why");
    assert_eq!((error.reason.as_str(), error.code.as_str()), ("TARGET_LACKS_LICENSE", "300"));
    assert_untouched(app, &w, &user).await;
}

async fn r21_r23_unlink_with_transfer_moves_recordings_and_the_rest_goes_along(app: &TestApp) {
    let w = app.seed_world().await;
    let user = freelancer(app, &w).await;
    let operation = unlink(app, &w, &user, Some(recordings_to(&w.admin))).await.expect("started");
    assert_eq!(state(&operation), ops::OperationState::Succeeded, "{operation:?}");
    assert!(operation.done);
    let result = operation.result.expect("result");
    let Some(prost_types::value::Kind::StringValue(new_account)) =
        result.fields.get("new_account_id").and_then(|v| v.kind.clone())
    else {
        panic!("no new account in {result:?}")
    };
    assert_eq!(content_of(app, &w.account, &w.admin).await.iter().filter(|t| *t == "Design review").count(), 1);
    assert_eq!(account_of(app, &w, &user).await.as_deref(), Some(new_account.as_str()));
    assert_eq!(content_of(app, &new_account, &user).await, ["Launch", "My room"], "R21: the rest went along");
    assert!(content_of(app, &w.account, &user).await.is_empty());
    assert_eq!(licenses_of(app, &w.account, &user).await, 0, "R21: licenses reclaimed");
    let owner: String = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(&user)
        .fetch_one(app.identity_db.pool())
        .await
        .expect("role");
    assert_eq!(owner, "owner", "R21: they own their new account");
}

async fn a_failure_at_any_step_ends_fully_done_or_fully_undone(app: &TestApp, inject: &Inject) {
    for step in 0..4 {
        for fault in [Fault::Refuse, Fault::Outage] {
            let w = app.seed_world().await;
            let user = freelancer(app, &w).await;
            *inject.armed.lock().expect("lock") = Some((step, fault));
            let started = unlink(app, &w, &user, Some(recordings_to(&w.admin))).await.expect("started");
            let mut operation = started.clone();
            if !operation.done {
                // An outage: the retry is due after the backoff on the manual clock.
                app.clock.advance_ms(60_000);
                operation = app
                    .operations()
                    .get_operation(authed(
                        ops::GetOperationRequest { operation_id: started.id.clone() },
                        &app.user_token(&w.owner),
                    ))
                    .await
                    .expect("get")
                    .into_inner();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                while !operation.done && std::time::Instant::now() < deadline {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    app.clock.advance_ms(60_000);
                    operation = app
                        .operations()
                        .get_operation(authed(
                            ops::GetOperationRequest { operation_id: started.id.clone() },
                            &app.user_token(&w.owner),
                        ))
                        .await
                        .expect("get")
                        .into_inner();
                }
            }
            let case = format!("{fault:?} at step {step}: {operation:?}");
            match (fault, step) {
                (Fault::Refuse, 0..=2) => {
                    assert_eq!(state(&operation), ops::OperationState::Compensated, "{case}");
                    assert_untouched(app, &w, &user).await;
                }
                (Fault::Refuse, _) => assert_eq!(state(&operation), ops::OperationState::Failed, "{case}"),
                (Fault::Outage, _) => {
                    assert_eq!(state(&operation), ops::OperationState::Succeeded, "{case}");
                    assert_ne!(account_of(app, &w, &user).await.as_deref(), Some(w.account.as_str()), "{case}");
                    let moved = content_of(app, &w.account, &w.admin).await;
                    assert_eq!(moved.iter().filter(|t| *t == "Design review").count(), 1, "{case}: moved once");
                }
            }
        }
    }
}

mod failure_at_every_step {
    use super::*;

    async fn run(backend: Backend) {
        let inject = Arc::new(Inject::default());
        let Some(app) = TestApp::spawn_with(backend, Some(inject.clone())).await else { return };
        a_failure_at_any_step_ends_fully_done_or_fully_undone(&app, &inject).await;
        app.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        run(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        run(Backend::Postgres).await;
    }
}

on_both_backends!(
    r21_r24_unlink_refusals_change_nothing,
    r21_r23_unlink_with_transfer_moves_recordings_and_the_rest_goes_along
);
