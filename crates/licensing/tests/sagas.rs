//! Identity's sagas across both real services (SPEC R17, R18, R21-R24): the unlink saga's
//! refusals, its happy path, a licensing refusal mid-saga, a failure injected at every step,
//! and a licensing outage. Effects are read back from both services, never from logs.
//! (The harness lives here because it boots identity and licensing together.)

mod support;

use std::sync::{Arc, Mutex};

use roster_platform::clock::Clock;
use roster_proto::identity::v1 as idpb;
use roster_proto::licensing::v1 as pb;
use roster_proto::operations::v1 as ops;
use roster_workflow::{Direction, Faults, StepError};
use support::{Backend, TestApp, World, authed, product_code, reason, rid};

/// Arms one failure at one forward step of one saga kind.
#[derive(Default)]
struct Inject {
    armed: Mutex<Option<(&'static str, usize, Fault)>>,
    /// A forward step that waits, before it runs, until the test releases it, so something
    /// else can happen in between ([`Inject::hold_at`]).
    held_step: Mutex<Option<(&'static str, usize)>>,
    /// Where the held step and the test meet: (reached, released).
    hold: (Mutex<(bool, bool)>, std::sync::Condvar),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// A business refusal of the step.
    Refuse,
    /// The other side is unreachable once; retried with backoff.
    Outage,
    /// The worker dies after the step took effect, before recording it; another claim
    /// resumes once the lease expires and replays the step with the same request id.
    Crash,
}

impl Inject {
    fn arm(&self, kind: &'static str, step: usize, fault: Fault) {
        *self.armed.lock().expect("lock") = Some((kind, step, fault));
    }

    fn hold_at(&self, kind: &'static str, step: usize) {
        *self.held_step.lock().expect("lock") = Some((kind, step));
    }

    /// Whether the held step has been reached (and waits for its release).
    fn is_held(&self) -> bool {
        self.hold.0.lock().expect("lock").0
    }

    fn release(&self) {
        let (state, signal) = &self.hold;
        state.lock().expect("lock").1 = true;
        signal.notify_all();
    }

    /// Run by the engine at the held step: says it is there and waits for the release. The
    /// wait leaves the runtime's worker thread (`block_in_place`), so the tasks queued on it
    /// (one may hold SQLite's only connection) run elsewhere meanwhile.
    fn hold_here(&self) {
        tokio::task::block_in_place(|| self.wait_for_release());
    }

    fn wait_for_release(&self) {
        let (state, signal) = &self.hold;
        let mut guard = state.lock().expect("lock");
        guard.0 = true;
        signal.notify_all();
        let (mut guard, _) = signal
            .wait_timeout_while(guard, std::time::Duration::from_secs(30), |(_, released)| !*released)
            .expect("lock");
        *guard = (false, false);
    }

    fn take(&self, kind: &str, step: usize, direction: Direction, wanted: &[Fault]) -> Option<Fault> {
        let mut armed = self.armed.lock().expect("lock");
        match *armed {
            Some((k, at, fault))
                if k == kind && at == step && direction == Direction::Forward && wanted.contains(&fault) =>
            {
                *armed = None;
                Some(fault)
            }
            _ => None,
        }
    }
}

impl Faults for Inject {
    fn before_step(&self, kind: &str, step: usize, direction: Direction) -> Option<StepError> {
        let mut held = self.held_step.lock().expect("lock");
        if direction == Direction::Forward && matches!(*held, Some((k, s)) if k == kind && s == step) {
            *held = None;
            drop(held);
            self.hold_here();
            return None;
        }
        drop(held);
        self.take(kind, step, direction, &[Fault::Refuse, Fault::Outage]).map(|fault| match fault {
            Fault::Refuse => StepError::Refused(roster_workflow::Failure {
                reason: "INJECTED".into(),
                code: None,
                message: format!("refused at step {step}"),
            }),
            _ => StepError::Transient("injected outage".into()),
        })
    }

    fn crash_after_step(&self, kind: &str, step: usize, direction: Direction) -> bool {
        self.take(kind, step, direction, &[Fault::Crash]).is_some()
    }
}

async fn get_operation(app: &TestApp, id: &str, token: &str) -> ops::Operation {
    app.operations()
        .get_operation(authed(ops::GetOperationRequest { operation_id: id.into() }, token))
        .await
        .expect("get")
        .into_inner()
}

/// The operation once it is final: the manual clock is moved past every backoff and lease.
async fn settle(app: &TestApp, started: ops::Operation, token: &str) -> ops::Operation {
    let mut operation = started;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !operation.done && std::time::Instant::now() < deadline {
        app.clock.advance_ms(60_000);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        operation = get_operation(app, &operation.id, token).await;
    }
    operation
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

async fn account_of(app: &TestApp, user: &str) -> Option<String> {
    sqlx::query_scalar("SELECT account_id FROM users WHERE id = $1")
        .bind(user)
        .fetch_optional(app.identity_db.pool())
        .await
        .expect("user row")
}

/// Nothing changed: the user is still in the account with their seat and all their content.
async fn assert_untouched(app: &TestApp, w: &World, user: &str) {
    assert_eq!(account_of(app, user).await.as_deref(), Some(w.account.as_str()));
    assert_eq!(licenses_of(app, &w.account, user).await, 1, "the seat is back");
    assert_eq!(content_of(app, &w.account, user).await, ["Design review", "Launch", "My room"]);
    assert!(content_of(app, &w.account, &w.admin).await.iter().all(|t| t != "Design review"));
}

fn state(operation: &ops::Operation) -> ops::OperationState {
    ops::OperationState::try_from(operation.state).expect("state")
}

#[derive(Debug, Clone, Copy)]
enum Lifecycle {
    Deactivate,
    Reactivate,
    ReactivateRestoring,
}

async fn lifecycle(app: &TestApp, w: &World, user: &str, change: Lifecycle) -> ops::Operation {
    let mut users = app.identity_users();
    let token = app.user_token(&w.owner);
    let (account, user_id) = (w.account.clone(), user.to_owned());
    let answer = match change {
        Lifecycle::Deactivate => {
            users
                .deactivate_user(authed(
                    idpb::DeactivateUserRequest {
                        request_id: rid(),
                        account_id: account,
                        user_id,
                        validate_only: false,
                    },
                    &token,
                ))
                .await
        }
        Lifecycle::Reactivate | Lifecycle::ReactivateRestoring => {
            let restore_licenses = matches!(change, Lifecycle::ReactivateRestoring);
            let request =
                idpb::ReactivateUserRequest { request_id: rid(), account_id: account, user_id, restore_licenses };
            users.reactivate_user(authed(request, &token)).await
        }
    };
    answer.expect("started").into_inner()
}

async fn accept_as_sam(app: &TestApp, w: &World, request_id: &str) -> Result<ops::Operation, tonic::Status> {
    app.identity_users()
        .accept_invitation(authed(
            idpb::AcceptInvitationRequest { request_id: request_id.into(), code: w.demo.solo.invitation_code.clone() },
            &app.user_token(&w.solo_owner),
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn refunds_of(app: &TestApp, subscription: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM refunds WHERE subscription_id = $1")
        .bind(subscription)
        .fetch_one(app.db.pool())
        .await
        .expect("refunds")
}

async fn transfer_ownership(app: &TestApp, w: &World, confirm: bool) -> Result<ops::Operation, tonic::Status> {
    app.identity_accounts()
        .transfer_ownership(authed(
            idpb::TransferOwnershipRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                new_owner_user_id: w.admin.clone(),
                confirm_phone_transfer: confirm,
            },
            &app.user_token(&w.owner),
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn owner_of(app: &TestApp, w: &World) -> String {
    sqlx::query_scalar("SELECT id FROM users WHERE account_id = $1 AND role = 'owner'")
        .bind(&w.account)
        .fetch_one(app.identity_db.pool())
        .await
        .expect("owner")
}

async fn phone_holder(app: &TestApp, w: &World) -> String {
    sqlx::query_scalar::<_, Option<String>>("SELECT user_id FROM phone_numbers WHERE number = $1")
        .bind(&w.phone)
        .fetch_one(app.db.pool())
        .await
        .expect("number")
        .unwrap_or_default()
}

fn result_field(operation: &ops::Operation, field: &str) -> prost_types::Value {
    operation
        .result
        .as_ref()
        .and_then(|r| r.fields.get(field))
        .cloned()
        .unwrap_or_else(|| panic!("{field} in {operation:?}"))
}

fn texts(value: &prost_types::Value) -> Vec<String> {
    match &value.kind {
        Some(prost_types::value::Kind::ListValue(list)) => list
            .values
            .iter()
            .filter_map(|v| match &v.kind {
                Some(prost_types::value::Kind::StringValue(text)) => Some(text.clone()),
                _ => None,
            })
            .collect(),
        other => panic!("not a list: {other:?}"),
    }
}

fn field(value: &prost_types::Value, name: &str) -> prost_types::Value {
    match &value.kind {
        Some(prost_types::value::Kind::StructValue(object)) => object.fields.get(name).cloned().expect("field"),
        other => panic!("not an object: {other:?}"),
    }
}

async fn r18_r19_deactivation_reclaims_and_reactivation_restores_exactly_that(app: &TestApp) {
    let w = app.seed_world().await;
    let user = freelancer(app, &w).await;
    let done = lifecycle(app, &w, &user, Lifecycle::Deactivate).await;
    assert_eq!(state(&done), ops::OperationState::Succeeded, "{done:?}");
    assert_eq!(texts(&field(&result_field(&done, "reclaimed"), "license_types")), ["licensed"]);
    assert_eq!(licenses_of(app, &w.account, &user).await, 0, "R18: every license reclaimed");
    // While deactivated, nobody can hand the user a seat.
    let refused = app
        .licenses()
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
        .expect_err("deactivated");
    assert_eq!(reason(&refused), "USER_NOT_ACTIVE");

    // R19: asked to restore, exactly the reclaimed set comes back.
    let back = lifecycle(app, &w, &user, Lifecycle::ReactivateRestoring).await;
    assert_eq!(state(&back), ops::OperationState::Succeeded, "{back:?}");
    assert_eq!(texts(&field(&result_field(&back, "restored"), "license_types")), ["licensed"]);
    assert!(texts(&field(&result_field(&back, "not_restored"), "license_types")).is_empty());
    assert_eq!(licenses_of(app, &w.account, &user).await, 1);

    // Not asked: nothing comes back, but admins may assign again.
    lifecycle(app, &w, &user, Lifecycle::Deactivate).await;
    let plain = lifecycle(app, &w, &user, Lifecycle::Reactivate).await;
    assert_eq!(state(&plain), ops::OperationState::Succeeded, "{plain:?}");
    assert_eq!(licenses_of(app, &w.account, &user).await, 0, "R19: no licenses back automatically");

    // Restoring when the seat went to someone else meanwhile: reported, not forced.
    app.licenses()
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
        .expect("assignable again");
    lifecycle(app, &w, &user, Lifecycle::Deactivate).await;
    let assigned: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM assignments WHERE account_id = $1 AND license_type = 'licensed'")
            .bind(&w.account)
            .fetch_one(app.db.pool())
            .await
            .expect("assigned");
    app.licenses()
        .set_seats(authed(
            pb::SetSeatsRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                license_type: pb::LicenseType::Licensed as i32,
                capacity: u32::try_from(assigned).expect("small"),
            },
            &app.operator_token(),
        ))
        .await
        .expect("no free seat left");
    let partial = lifecycle(app, &w, &user, Lifecycle::ReactivateRestoring).await;
    assert_eq!(state(&partial), ops::OperationState::Succeeded, "{partial:?}");
    assert_eq!(texts(&field(&result_field(&partial, "not_restored"), "license_types")), ["licensed"]);
}

async fn r22_r23_delete_with_transfer_removes_the_user_and_the_rest_and_frees_the_email(app: &TestApp) {
    let w = app.seed_world().await;
    let user = freelancer(app, &w).await;
    let delete = |user_id: &str, transfer: Option<idpb::ContentTransfer>| {
        let mut users = app.identity_users();
        let request = idpb::DeleteUserRequest {
            request_id: rid(),
            account_id: w.account.clone(),
            user_id: user_id.into(),
            transfer,
            validate_only: false,
        };
        let token = app.user_token(&w.owner);
        async move { users.delete_user(authed(request, &token)).await.map(tonic::Response::into_inner) }
    };
    let refused = delete(&w.admin, None).await.expect_err("admin");
    assert_eq!((reason(&refused).as_str(), product_code(&refused).as_deref()), ("ADMIN_MUST_BE_DEMOTED", Some("1117")));
    assert_eq!(reason(&delete(&w.owner, None).await.expect_err("owner")), "OWNER_PROTECTED");
    assert_eq!(reason(&delete(&w.pending, None).await.expect_err("pending")), "USER_PENDING");
    let refused = delete(&user, Some(recordings_to(&w.solo_owner))).await.expect_err("other account");
    assert_eq!((reason(&refused).as_str(), product_code(&refused).as_deref()), ("TARGET_NOT_IN_ACCOUNT", Some("1001")));
    let webinars = idpb::ContentTransfer { target_user_id: w.member.clone(), webinars: true, ..Default::default() };
    let compensated = delete(&user, Some(webinars)).await.expect("started");
    assert_eq!(state(&compensated), ops::OperationState::Compensated, "{compensated:?}");
    assert_eq!(compensated.error.expect("why").code, "300");
    assert_untouched(app, &w, &user).await;
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(&user)
        .fetch_one(app.identity_db.pool())
        .await
        .expect("email");
    let done = app
        .identity_users()
        .delete_user(authed(
            idpb::DeleteUserRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: user.clone(),
                transfer: Some(recordings_to(&w.admin)),
                validate_only: false,
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("started")
        .into_inner();
    assert_eq!(state(&done), ops::OperationState::Succeeded, "{done:?}");
    assert_eq!(account_of(app, &user).await, None, "R22: the user is gone");
    assert!(content_of(app, &w.account, &user).await.is_empty(), "R22: what was not transferred is gone");
    assert_eq!(content_of(app, &w.account, &w.admin).await.iter().filter(|t| *t == "Design review").count(), 1);
    assert_eq!(licenses_of(app, &w.account, &user).await, 0);
    // R33: the deletion is audited, and the record keeps who the user was (the tombstone).
    assert_eq!(audited(app, "user.deleted", &user).await, [format!("user:{}", w.owner)]);
    let tombstone: String =
        sqlx::query_scalar("SELECT details FROM audit_events WHERE action = 'user.deleted' AND target = $1")
            .bind(format!("user:{user}"))
            .fetch_one(app.identity_db.pool())
            .await
            .expect("tombstone");
    assert!(tombstone.contains(&email), "{tombstone}");
    // R22: the same e-mail may sign up again.
    app.identity_users()
        .invite_user(authed(
            idpb::InviteUserRequest { request_id: rid(), account_id: w.account.clone(), email, ..Default::default() },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("the address is free again");
}

async fn r27_r28_accepting_refunds_once_or_refuses_with_1009(app: &TestApp) {
    // Another user in Sam's account: refused at once, nothing changes.
    let w = app.seed_world().await;
    let clock: roster_platform::clock::SharedClock = app.clock.clone();
    let solo = roster_identity::domain::values::AccountId::parse(&w.solo_account).expect("id");
    let sam = roster_identity::domain::values::UserId::parse(&w.solo_owner).expect("id");
    roster_identity::demo::join(&app.identity_db, &clock, &solo, &sam, &format!("friend-{}@solo.example", rid()))
        .await
        .expect("a second user");
    let refused = accept_as_sam(app, &w, &rid()).await.expect_err("other users");
    assert_eq!(
        (reason(&refused).as_str(), product_code(&refused).as_deref()),
        ("ACCOUNT_HAS_OTHER_USERS", Some("1009"))
    );
    assert_eq!(refunds_of(app, &w.subscription).await, 0);

    // Rooms in Sam's account: the saga refuses with the same code and changes nothing.
    let w = app.seed_world().await;
    let rooms = |capacity| pb::SetSeatsRequest {
        request_id: rid(),
        account_id: w.solo_account.clone(),
        license_type: pb::LicenseType::Rooms as i32,
        capacity,
    };
    app.licenses().set_seats(authed(rooms(1), &app.operator_token())).await.expect("a room");
    let refused = accept_as_sam(app, &w, &rid()).await.expect("started");
    assert_eq!(state(&refused), ops::OperationState::Compensated, "{refused:?}");
    let error = refused.error.expect("error");
    assert_eq!((error.reason.as_str(), error.code.as_str()), ("ACCOUNT_HAS_OTHER_USERS", "1009"));
    assert_eq!(account_of(app, &w.solo_owner).await.as_deref(), Some(w.solo_account.as_str()));
    assert_eq!(refunds_of(app, &w.subscription).await, 0);

    // Rooms deleted: Sam joins, and the unused part of his month is refunded, once.
    app.licenses().set_seats(authed(rooms(0), &app.operator_token())).await.expect("no rooms");
    let quote = app
        .billing()
        .quote_refund(authed(
            pb::QuoteRefundRequest { account_id: w.solo_account.clone(), subscription_id: w.subscription.clone() },
            &app.user_token(&w.solo_owner),
        ))
        .await
        .expect("quote")
        .into_inner();
    let request_id = rid();
    let joined = accept_as_sam(app, &w, &request_id).await.expect("accepted");
    assert_eq!(state(&joined), ops::OperationState::Succeeded, "{joined:?}");
    let refund = match &result_field(&joined, "refunds").kind {
        Some(prost_types::value::Kind::ListValue(list)) => list.values[0].clone(),
        other => panic!("no refunds: {other:?}"),
    };
    let amount = field(&refund, "amount_minor");
    assert_eq!(
        amount.kind,
        Some(prost_types::value::Kind::NumberValue(quote.amount_minor as f64)),
        "R28: the quoted amount"
    );
    assert_eq!(account_of(app, &w.solo_owner).await.as_deref(), Some(w.account.as_str()), "R29: a member of Acme");
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(&w.solo_owner)
        .fetch_one(app.identity_db.pool())
        .await
        .expect("role");
    assert_eq!(role, "member", "R29");
    let again = accept_as_sam(app, &w, &request_id).await.expect("replayed");
    assert_eq!(again.id, joined.id, "a retry returns the same operation");
    assert_eq!(refunds_of(app, &w.subscription).await, 1, "R28: refunded once");

    // Sam's old account has closed, yet the refund stays his to see, and support's to look up.
    let mine = app
        .billing()
        .list_my_refunds(authed(pb::ListMyRefundsRequest::default(), &app.user_token(&w.solo_owner)))
        .await
        .expect("Sam's own refunds")
        .into_inner()
        .refunds;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!((mine[0].amount_minor, mine[0].refunded_user_id.as_str()), (quote.amount_minor, w.solo_owner.as_str()));
    let closed = || pb::ListRefundsRequest { account_id: w.solo_account.clone(), ..Default::default() };
    let by_support =
        app.billing().list_refunds(authed(closed(), &app.operator_token())).await.expect("support looks it up");
    assert_eq!(by_support.into_inner().refunds, mine);
    app.billing()
        .get_billing_overview(authed(
            pb::GetBillingOverviewRequest { account_id: w.solo_account.clone() },
            &app.operator_token(),
        ))
        .await
        .expect("support sees the closed account's ended subscription");
    let stranger = app.billing().list_refunds(authed(closed(), &app.user_token(&w.owner))).await.expect_err("not his");
    assert_eq!(reason(&stranger), "ACCOUNT_NOT_FOUND");
    let others = app
        .billing()
        .list_my_refunds(authed(pb::ListMyRefundsRequest::default(), &app.user_token(&w.owner)))
        .await
        .expect("the owner's own refunds")
        .into_inner()
        .refunds;
    assert!(others.is_empty(), "another user sees none of Sam's refunds");

    // Both trails record it (R33): licensing's for the closed account, identity's beside the
    // acceptance, naming the invitation.
    let trail = app
        .licenses()
        .list_audit_events(authed(
            pb::ListAuditEventsRequest { account_id: w.solo_account.clone(), ..Default::default() },
            &app.operator_token(),
        ))
        .await
        .expect("licensing's audit trail")
        .into_inner()
        .events;
    assert!(trail.iter().any(|e| e.action == "subscription.refunded" && e.outcome == "ok"), "{trail:?}");
    let recorded: String = sqlx::query_scalar(
        "SELECT details FROM audit_events WHERE action = 'invitation.refunded' AND account_id = $1 AND target = $2",
    )
    .bind(&w.account)
    .bind(format!("user:{}", w.solo_owner))
    .fetch_one(app.identity_db.pool())
    .await
    .expect("identity audits the refund beside the acceptance");
    assert!(recorded.contains(&mine[0].id) && recorded.contains("\"invitation\""), "{recorded}");
}

async fn r4_phone_licenses_move_with_ownership_only_when_confirmed(app: &TestApp) {
    let w = app.seed_world().await;
    let refused = transfer_ownership(app, &w, false).await.expect_err("unconfirmed");
    assert_eq!(reason(&refused), "PHONE_TRANSFER_UNCONFIRMED");
    let listed: Vec<String> = tonic_types::StatusExt::get_details_precondition_failure(&refused)
        .expect("what would move")
        .violations
        .into_iter()
        .map(|v| v.subject)
        .collect();
    assert_eq!(listed, ["license:phone".to_owned(), format!("number:{}", w.phone)]);
    assert_eq!(owner_of(app, &w).await, w.owner, "nothing changed");
    assert_eq!(phone_holder(app, &w).await, w.owner);

    let done = transfer_ownership(app, &w, true).await.expect("confirmed");
    assert_eq!(state(&done), ops::OperationState::Succeeded, "{done:?}");
    assert_eq!(owner_of(app, &w).await, w.admin, "R3");
    assert_eq!(phone_holder(app, &w).await, w.admin, "R4: the number moved with ownership");
    assert_eq!(licenses_of(app, &w.account, &w.owner).await, 1, "the previous owner keeps only the licensed seat");
}

/// SPEC R9 with R4: nobody answers an admin's ownership request, so after 168 hours the admin
/// owns the account and the owner's phone license and number follow, as a confirmed transfer
/// moves them; both are told by e-mail.
async fn r4_r9_an_automatic_approval_moves_phone_licenses_as_if_confirmed(app: &TestApp) {
    let w = app.seed_world().await;
    let request = app
        .identity_accounts()
        .request_ownership(authed(
            idpb::RequestOwnershipRequest { request_id: rid(), account_id: w.account.clone() },
            &app.user_token(&w.admin),
        ))
        .await
        .expect("the admin requests ownership")
        .into_inner();
    app.clock.advance_ms(168 * 3_600_000);
    let done = settle(
        app,
        get_operation(app, &request.operation_id, &app.user_token(&w.owner)).await,
        &app.user_token(&w.owner),
    )
    .await;
    assert_eq!(state(&done), ops::OperationState::Succeeded, "{done:?}");
    assert_eq!(texts(&field(&result_field(&done, "moved_phone"), "phone_numbers")), std::slice::from_ref(&w.phone));
    assert_eq!(owner_of(app, &w).await, w.admin, "R9: the requester owns the account");
    assert_eq!(phone_holder(app, &w).await, w.admin, "R4: the number moved with ownership");
    assert_eq!(licenses_of(app, &w.account, &w.owner).await, 1, "the previous owner keeps only the licensed seat");
    let told: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE kind = 'ownership_phone_moved' AND account_id = $1")
            .bind(&w.account)
            .fetch_one(app.identity_db.pool())
            .await
            .expect("outbox");
    assert_eq!(told, 2, "the previous and the new owner are told what moved");
}

async fn r21_r24_unlink_refusals_change_nothing(app: &TestApp) {
    let w = app.seed_world().await;
    let user = freelancer(app, &w).await;
    let refused = app.unlink(&w, &w.member, None).await.expect_err("managed domain");
    assert_eq!((reason(&refused).as_str(), product_code(&refused).as_deref()), ("MANAGED_DOMAIN_USER", Some("1107")));
    let refused = app.unlink(&w, &w.admin, None).await.expect_err("admin");
    assert_eq!((reason(&refused).as_str(), product_code(&refused).as_deref()), ("ADMIN_MUST_BE_DEMOTED", Some("1117")));
    let refused = app.unlink(&w, &user, Some(recordings_to(&w.solo_owner))).await.expect_err("other account");
    assert_eq!((reason(&refused).as_str(), product_code(&refused).as_deref()), ("TARGET_NOT_IN_ACCOUNT", Some("1001")));
    let refused = app.unlink(&w, &w.pending, None).await.expect_err("pending");
    assert_eq!(reason(&refused), "USER_PENDING");
    let refused = app.unlink(&w, &w.owner, None).await.expect_err("owner");
    assert_eq!(reason(&refused), "OWNER_PROTECTED", "R17: the owner is never unlinked");

    // R23: webinars need a target with a webinar license; the member has none. Licensing
    // refuses mid-saga and the saga compensates.
    let webinars = idpb::ContentTransfer { target_user_id: w.member.clone(), webinars: true, ..Default::default() };
    let operation = app.unlink(&w, &user, Some(webinars)).await.expect("started");
    assert_eq!(state(&operation), ops::OperationState::Compensated, "{operation:?}");
    let error = operation.error.expect("why");
    assert_eq!((error.reason.as_str(), error.code.as_str()), ("TARGET_LACKS_LICENSE", "300"));
    assert_untouched(app, &w, &user).await;
}

async fn r21_r23_unlink_with_transfer_moves_recordings_and_the_rest_goes_along(app: &TestApp) {
    let w = app.seed_world().await;
    let user = freelancer(app, &w).await;
    let operation = app.unlink(&w, &user, Some(recordings_to(&w.admin))).await.expect("started");
    assert_eq!(state(&operation), ops::OperationState::Succeeded, "{operation:?}");
    assert!(operation.done);
    let result = operation.result.expect("result");
    let Some(prost_types::value::Kind::StringValue(new_account)) =
        result.fields.get("new_account_id").and_then(|v| v.kind.clone())
    else {
        panic!("no new account in {result:?}")
    };
    assert_eq!(content_of(app, &w.account, &w.admin).await.iter().filter(|t| *t == "Design review").count(), 1);
    assert_eq!(account_of(app, &user).await.as_deref(), Some(new_account.as_str()));
    assert_eq!(content_of(app, &new_account, &user).await, ["Launch", "My room"], "R21: the rest went along");
    assert!(content_of(app, &w.account, &user).await.is_empty());
    assert_eq!(licenses_of(app, &w.account, &user).await, 0, "R21: licenses reclaimed");
    let owner: String = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(&user)
        .fetch_one(app.identity_db.pool())
        .await
        .expect("role");
    assert_eq!(owner, "owner", "R21: they own their new account");
    // R33: the saga's local step is audited under the principal who asked.
    assert_eq!(audited(app, "user.unlinked", &user).await, [format!("user:{}", w.owner)]);
}

/// R23: a meeting on the user's personal meeting id never moves, even when meetings are asked
/// for; it stays with the user and goes along to their new account.
async fn r23_pmi_meetings_stay_with_the_user(app: &TestApp) {
    let w = app.seed_world().await;
    let user = freelancer(app, &w).await;
    let transfer = idpb::ContentTransfer {
        target_user_id: w.admin.clone(),
        meetings: true,
        recordings: true,
        ..Default::default()
    };
    let operation = app.unlink(&w, &user, Some(transfer)).await.expect("started");
    assert_eq!(state(&operation), ops::OperationState::Succeeded, "{operation:?}");
    let kept = field(&result_field(&operation, "kept"), "meetings");
    assert_eq!(kept.kind, Some(prost_types::value::Kind::NumberValue(1.0)), "the PMI meeting is reported as kept");
    assert!(content_of(app, &w.account, &w.admin).await.iter().all(|t| t != "My room"));
    let home = account_of(app, &user).await.expect("user");
    assert_eq!(content_of(app, &home, &user).await, ["Launch", "My room"]);
}

/// The principals of the audit records of `action` on `user`.
async fn audited(app: &TestApp, action: &str, user: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT principal FROM audit_events WHERE action = $1 AND target = $2 AND outcome = 'ok'")
        .bind(action)
        .bind(format!("user:{user}"))
        .fetch_all(app.identity_db.pool())
        .await
        .expect("audit")
}

async fn a_failure_at_any_step_ends_fully_done_or_fully_undone(app: &TestApp, inject: &Inject) {
    removal_failures(app, inject, "user.unlink").await;
    removal_failures(app, inject, "user.delete").await;
    lifecycle_failures(app, inject).await;
    accept_failures(app, inject).await;
    ownership_failures(app, inject).await;
    r4_a_phone_license_taken_after_the_check_still_needs_confirming(app, inject).await;
}

/// SPEC R4 across a race: when the transfer was checked the owner held no phone license, so
/// nothing needed confirming; before the saga's first step ran, the owner was given one. The
/// step asks licensing again and refuses instead of moving it unannounced; nothing changes.
async fn r4_a_phone_license_taken_after_the_check_still_needs_confirming(app: &TestApp, inject: &Inject) {
    let w = app.seed_world().await;
    let owner = app.user_token(&w.owner);
    let phone = || pb::LicenseType::Phone as i32;
    app.licenses()
        .unassign_license(authed(
            pb::UnassignLicenseRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: w.owner.clone(),
                license_type: phone(),
            },
            &owner,
        ))
        .await
        .expect("the owner gives up their phone license and number");

    inject.hold_at("account.transfer_ownership", 0);
    let meanwhile = async {
        while !inject.is_held() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        app.licenses()
            .assign_license(authed(
                pb::AssignLicenseRequest {
                    request_id: rid(),
                    account_id: w.account.clone(),
                    user_id: w.owner.clone(),
                    license_type: phone(),
                },
                &owner,
            ))
            .await
            .expect("meanwhile the owner takes a phone license again");
        inject.release();
    };
    let (started, ()) = tokio::join!(transfer_ownership(app, &w, false), meanwhile);
    let started = started.expect("nothing to confirm when it was checked");
    let operation = settle(app, started, &owner).await;
    assert_eq!(state(&operation), ops::OperationState::Compensated, "{operation:?}");
    assert_eq!(operation.error.as_ref().map(|e| e.reason.as_str()), Some("PHONE_TRANSFER_UNCONFIRMED"));
    assert_eq!(owner_of(app, &w).await, w.owner, "ownership did not move");
    assert_eq!(
        licenses_of(app, &w.account, &w.owner).await,
        2,
        "the owner keeps the licensed seat and the phone license"
    );
}

/// Unlink or delete with a transfer of recordings to the admin.
async fn remove(app: &TestApp, w: &World, kind: &str, user: &str) -> ops::Operation {
    let (account_id, user_id, transfer) = (w.account.clone(), user.to_owned(), Some(recordings_to(&w.admin)));
    let mut users = app.identity_users();
    let token = app.user_token(&w.owner);
    let answer = if kind == "user.unlink" {
        users
            .unlink_user(authed(
                idpb::UnlinkUserRequest { request_id: rid(), account_id, user_id, transfer, validate_only: false },
                &token,
            ))
            .await
    } else {
        users
            .delete_user(authed(
                idpb::DeleteUserRequest { request_id: rid(), account_id, user_id, transfer, validate_only: false },
                &token,
            ))
            .await
    };
    answer.expect("started").into_inner()
}

async fn removal_failures(app: &TestApp, inject: &Inject, kind: &'static str) {
    for step in 0..4 {
        for fault in [Fault::Refuse, Fault::Outage, Fault::Crash] {
            let w = app.seed_world().await;
            let user = freelancer(app, &w).await;
            inject.arm(kind, step, fault);
            let started = remove(app, &w, kind, &user).await;
            let operation = settle(app, started, &app.user_token(&w.owner)).await;
            let case = format!("{kind}: {fault:?} at step {step}: {operation:?}");
            match (fault, step) {
                // Up to and including the point of no return (leaving or deletion): undone.
                (Fault::Refuse, 0..=2) => {
                    assert_eq!(state(&operation), ops::OperationState::Compensated, "{case}");
                    assert_untouched(app, &w, &user).await;
                }
                // After it, a refusal can only come from a changed world: an operator looks.
                (Fault::Refuse, _) => assert_eq!(state(&operation), ops::OperationState::Failed, "{case}"),
                (Fault::Outage | Fault::Crash, _) => {
                    assert_eq!(state(&operation), ops::OperationState::Succeeded, "{case}");
                    let moved = content_of(app, &w.account, &w.admin).await;
                    assert_eq!(moved.iter().filter(|t| *t == "Design review").count(), 1, "{case}: moved once");
                    let now_in = account_of(app, &user).await;
                    assert_ne!(now_in.as_deref(), Some(w.account.as_str()), "{case}");
                    if kind == "user.unlink" {
                        let owns: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE id = $1")
                            .bind(now_in.as_deref().unwrap_or_default())
                            .fetch_one(app.identity_db.pool())
                            .await
                            .expect("account");
                        assert_eq!(owns, 1, "{case}: one new account");
                    } else {
                        assert_eq!(now_in, None, "{case}: deleted");
                    }
                }
            }
        }
    }
}

/// Deactivation and reactivation only move forward (the status change is made at once, in
/// the request): outages and crashes at any step still end fully done.
async fn lifecycle_failures(app: &TestApp, inject: &Inject) {
    for step in 0..2 {
        for fault in [Fault::Outage, Fault::Crash] {
            let w = app.seed_world().await;
            let user = freelancer(app, &w).await;
            inject.arm("user.deactivate", step, fault);
            let operation =
                settle(app, lifecycle(app, &w, &user, Lifecycle::Deactivate).await, &app.user_token(&w.owner)).await;
            assert_eq!(
                state(&operation),
                ops::OperationState::Succeeded,
                "deactivate {fault:?} at {step}: {operation:?}"
            );
            assert_eq!(licenses_of(app, &w.account, &user).await, 0);
            inject.arm("user.reactivate", step, fault);
            let operation =
                settle(app, lifecycle(app, &w, &user, Lifecycle::ReactivateRestoring).await, &app.user_token(&w.owner))
                    .await;
            assert_eq!(
                state(&operation),
                ops::OperationState::Succeeded,
                "reactivate {fault:?} at {step}: {operation:?}"
            );
            assert_eq!(licenses_of(app, &w.account, &user).await, 1, "restored exactly once");
        }
    }
}

async fn accept_failures(app: &TestApp, inject: &Inject) {
    for step in 0..3 {
        for fault in [Fault::Refuse, Fault::Outage, Fault::Crash] {
            let w = app.seed_world().await;
            inject.arm("invitation.accept", step, fault);
            let started = accept_as_sam(app, &w, &rid()).await.expect("started");
            let operation = settle(app, started, &app.user_token(&w.solo_owner)).await;
            let case = format!("{fault:?} at step {step}: {operation:?}");
            let refunds = refunds_of(app, &w.subscription).await;
            match (fault, step) {
                (Fault::Refuse, 0 | 1) => {
                    assert_eq!(state(&operation), ops::OperationState::Compensated, "{case}");
                    assert_eq!(account_of(app, &w.solo_owner).await.as_deref(), Some(w.solo_account.as_str()));
                    assert_eq!(refunds, 0, "{case}");
                }
                (Fault::Refuse, _) => assert_eq!(state(&operation), ops::OperationState::Failed, "{case}"),
                (Fault::Outage | Fault::Crash, _) => {
                    assert_eq!(state(&operation), ops::OperationState::Succeeded, "{case}");
                    assert_eq!(account_of(app, &w.solo_owner).await.as_deref(), Some(w.account.as_str()));
                    assert_eq!(refunds, 1, "{case}: refunded exactly once");
                }
            }
        }
    }
}

async fn ownership_failures(app: &TestApp, inject: &Inject) {
    for step in 0..2 {
        for fault in [Fault::Refuse, Fault::Outage, Fault::Crash] {
            let w = app.seed_world().await;
            inject.arm("account.transfer_ownership", step, fault);
            let started = transfer_ownership(app, &w, true).await.expect("started");
            let operation = settle(app, started, &app.user_token(&w.owner)).await;
            let case = format!("{fault:?} at step {step}: {operation:?}");
            if fault == Fault::Refuse {
                assert_eq!(state(&operation), ops::OperationState::Compensated, "{case}");
                assert_eq!(owner_of(app, &w).await, w.owner, "{case}");
                assert_eq!(phone_holder(app, &w).await, w.owner, "{case}: the number moved back");
            } else {
                assert_eq!(state(&operation), ops::OperationState::Succeeded, "{case}");
                assert_eq!(owner_of(app, &w).await, w.admin, "{case}");
                assert_eq!(phone_holder(app, &w).await, w.admin, "{case}");
            }
        }
    }
}

/// Licensing goes away mid-saga: the operation waits, retrying with growing backoff, and
/// completes once licensing is back, with every step done once.
async fn a_licensing_outage_is_waited_out(app: &mut TestApp) {
    let w = app.seed_world().await;
    let user = freelancer(app, &w).await;
    app.stop_licensing().await;
    let started = app.unlink(&w, &user, Some(recordings_to(&w.admin))).await.expect("started");
    assert_eq!(state(&started), ops::OperationState::Running, "{started:?}");
    let token = app.user_token(&w.owner);
    let mut waiting = started.clone();
    let mut delays = Vec::new();
    for _ in 0..3 {
        // Let the next attempt run (and fail), then see it scheduled further out.
        let due = waiting.progress.as_ref().map_or(0, |p| p.next_attempt_at_ms);
        app.clock.advance_ms((due - app.clock.now_ms()).max(0));
        let previous = waiting.progress.as_ref().map_or(0, |p| p.attempt);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while waiting.progress.as_ref().map_or(0, |p| p.attempt) == previous && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            waiting = get_operation(app, &started.id, &token).await;
        }
        let progress = waiting.progress.clone().expect("progress");
        assert!(!progress.last_error.is_empty(), "{waiting:?}");
        delays.push(progress.next_attempt_at_ms - app.clock.now_ms());
    }
    assert!(delays[2] > delays[0], "the backoff grows: {delays:?}");
    // A watcher sees the operation as it stands, then every change until it is done.
    let mut watch = app
        .operations()
        .watch_operation(authed(ops::WatchOperationRequest { operation_id: started.id.clone() }, &token))
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("stream").expect("the current state");
    assert_eq!(state(&first), ops::OperationState::Running);
    app.start_licensing().await;
    let done = settle(app, waiting, &token).await;
    let mut last = first;
    while let Some(next) = watch.message().await.expect("stream") {
        last = next;
    }
    assert!(last.done, "the stream ends with the finished operation: {last:?}");
    assert_eq!(state(&last), ops::OperationState::Succeeded);
    assert_eq!(state(&done), ops::OperationState::Succeeded, "{done:?}");
    assert_eq!(content_of(app, &w.account, &w.admin).await.iter().filter(|t| *t == "Design review").count(), 1);
    assert_ne!(account_of(app, &user).await.as_deref(), Some(w.account.as_str()));
}

async fn operation_audit(app: &TestApp, operation: &str) -> Vec<(String, String, String)> {
    sqlx::query_as("SELECT action, principal, details FROM audit_events WHERE target = $1 ORDER BY id")
        .bind(format!("operation:{operation}"))
        .fetch_all(app.identity_db.pool())
        .await
        .expect("audit")
}

fn refusal_reason(status: &tonic::Status) -> (tonic::Code, String) {
    (status.code(), reason(status))
}

/// An unlink refused after its point of no return waits for an operator: retried from the
/// failed step it finishes with every step done once; resolved it stays closed, with the note
/// in the audit trail.
async fn operators_retry_and_resolve_failed_operations(app: &TestApp, inject: &Inject) {
    let operator = app.operator_token();
    let w = app.seed_world().await;
    let user = freelancer(app, &w).await;
    inject.arm("user.unlink", 3, Fault::Refuse);
    let started = app.unlink(&w, &user, Some(recordings_to(&w.admin))).await.expect("started");
    let failed = settle(app, started, &operator).await;
    assert_eq!(state(&failed), ops::OperationState::Failed, "{failed:?}");
    assert_eq!(failed.progress.as_ref().map(|p| p.current_step.as_str()), Some("rehome_content"));

    let retried = app
        .operations()
        .retry_operation(authed(
            ops::RetryOperationRequest { operation_id: failed.id.clone(), request_id: rid() },
            &operator,
        ))
        .await
        .expect("retry")
        .into_inner();
    let done = settle(app, retried, &operator).await;
    assert_eq!(state(&done), ops::OperationState::Succeeded, "{done:?}");
    assert_eq!(content_of(app, &w.account, &w.admin).await.iter().filter(|t| *t == "Design review").count(), 1);
    assert_ne!(account_of(app, &user).await.as_deref(), Some(w.account.as_str()));
    let trail = operation_audit(app, &failed.id).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!((trail[0].0.as_str(), trail[0].1.as_str()), ("operation.retried", "operator:support"));
    let again = app
        .operations()
        .retry_operation(authed(
            ops::RetryOperationRequest { operation_id: failed.id.clone(), request_id: rid() },
            &operator,
        ))
        .await
        .expect_err("a succeeded operation is not retried");
    assert_eq!(refusal_reason(&again), (tonic::Code::FailedPrecondition, "OPERATION_NOT_FAILED".into()));

    let w = app.seed_world().await;
    let user = freelancer(app, &w).await;
    inject.arm("user.unlink", 3, Fault::Refuse);
    let started = app.unlink(&w, &user, Some(recordings_to(&w.admin))).await.expect("started");
    let failed = settle(app, started, &operator).await;
    let resolve = |note: &str| ops::ResolveOperationRequest {
        operation_id: failed.id.clone(),
        request_id: rid(),
        note: note.into(),
    };
    let resolved = app
        .operations()
        .resolve_operation(authed(resolve("rehomed the recordings by hand, ticket 4711"), &operator))
        .await
        .expect("resolve")
        .into_inner();
    assert_eq!(state(&resolved), ops::OperationState::Resolved);
    assert!(resolved.done);
    let resolution = resolved.resolution.clone().expect("resolution");
    assert_eq!(resolution.note, "rehomed the recordings by hand, ticket 4711");
    assert_eq!(resolution.resolved_by, "operator:support");
    assert_eq!(resolved.error.as_ref().map(|e| e.reason.as_str()), Some("INJECTED"), "the failure stays on record");
    let trail = operation_audit(app, &failed.id).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(trail[0].0, "operation.resolved");
    assert!(trail[0].2.contains("ticket 4711"), "the note is in the audit trail: {}", trail[0].2);
    let listed = app
        .operations()
        .list_operations(authed(
            ops::ListOperationsRequest {
                account_id: w.account.clone(),
                state: ops::OperationState::Resolved as i32,
                ..Default::default()
            },
            &operator,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.operations.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), [failed.id.as_str()]);
    for refused in [
        app.operations().resolve_operation(authed(resolve("again"), &operator)).await.map(drop),
        app.operations()
            .retry_operation(authed(
                ops::RetryOperationRequest { operation_id: failed.id.clone(), request_id: rid() },
                &operator,
            ))
            .await
            .map(drop),
    ] {
        let status = refused.expect_err("resolved is closed");
        assert_eq!(refusal_reason(&status), (tonic::Code::FailedPrecondition, "OPERATION_NOT_FAILED".into()));
    }
}

/// While licensing is away, an unlink waits at its first step; the owner cancels it. Once
/// licensing answers, that step is seen through and undone, and the user is as before. An
/// operation past its point of no return, or one that only moves forward, cannot be cancelled.
async fn an_operation_cancelled_before_its_point_of_no_return_is_undone(app: &mut TestApp) {
    let w = app.seed_world().await;
    let user = freelancer(app, &w).await;
    let owner = app.user_token(&w.owner);
    app.stop_licensing().await;
    let started = app.unlink(&w, &user, Some(recordings_to(&w.admin))).await.expect("started");
    assert_eq!(state(&started), ops::OperationState::Running, "{started:?}");
    let cancel = |id: &str| ops::CancelOperationRequest { operation_id: id.into(), request_id: rid() };
    let asked =
        app.operations().cancel_operation(authed(cancel(&started.id), &owner)).await.expect("cancel").into_inner();
    assert_eq!(asked.cancel_requested_by, format!("user:{}", w.owner), "{asked:?}");
    let member = app.user_token(&w.member);
    let status = app.operations().cancel_operation(authed(cancel(&started.id), &member)).await.expect_err("member");
    assert_eq!(status.code(), tonic::Code::NotFound, "a member may not see it: {status:?}");

    let deactivation = lifecycle(app, &w, &w.member, Lifecycle::Deactivate).await;
    let status =
        app.operations().cancel_operation(authed(cancel(&deactivation.id), &owner)).await.expect_err("forward only");
    assert_eq!(refusal_reason(&status), (tonic::Code::FailedPrecondition, "OPERATION_NOT_CANCELLABLE".into()));

    app.start_licensing().await;
    let cancelled = settle(app, asked, &owner).await;
    assert_eq!(state(&cancelled), ops::OperationState::Compensated, "{cancelled:?}");
    assert_eq!(cancelled.error.as_ref().map(|e| e.reason.as_str()), Some("OPERATION_CANCELLED"));
    assert!(cancelled.cancel_requested_by.is_empty(), "shown only while it waits");
    assert_untouched(app, &w, &user).await;
    assert_eq!(
        operation_audit(app, &started.id).await.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(),
        ["operation.cancelled"]
    );
    settle(app, deactivation, &owner).await;

    // Past the point of no return: the unlink waits at its last step.
    let w = app.seed_world().await;
    let user = freelancer(app, &w).await;
    let owner = app.user_token(&w.owner);
    let started = app.unlink(&w, &user, Some(recordings_to(&w.admin))).await.expect("started");
    let done = settle(app, started, &owner).await;
    let status =
        app.operations().cancel_operation(authed(cancel(&done.id), &owner)).await.expect_err("already finished");
    assert_eq!(refusal_reason(&status), (tonic::Code::FailedPrecondition, "OPERATION_NOT_CANCELLABLE".into()));
    assert!(status.message().contains("finished (succeeded)"), "{status:?}");
}

/// A scenario that needs an app of its own (faults injected, licensing stopped and started),
/// as a module with one test per backend.
macro_rules! own_app_on_both_backends {
    ($($module:ident => $run:ident),+ $(,)?) => {
        $(
            mod $module {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$run(super::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    super::$run(super::Backend::Postgres).await;
                }
            }
        )+
    };
}

async fn operator_repairs(backend: Backend) {
    let inject = Arc::new(Inject::default());
    let Some(mut app) = TestApp::spawn_with(backend, Some(inject.clone())).await else { return };
    operators_retry_and_resolve_failed_operations(&app, &inject).await;
    an_operation_cancelled_before_its_point_of_no_return_is_undone(&mut app).await;
    app.stop().await;
}

async fn licensing_outage(backend: Backend) {
    let Some(mut app) = TestApp::spawn(backend).await else { return };
    a_licensing_outage_is_waited_out(&mut app).await;
    calls_that_start_or_cancel_sagas_answer_at_once_while_licensing_is_down(&mut app).await;
    app.stop().await;
}

/// Issue 23: with licensing down, a call that starts or cancels a saga answers with its
/// operation at once (the saga waits for licensing, not the caller); only a dry run, which
/// needs licensing's preview, waits, briefly, and then says licensing is unavailable.
async fn calls_that_start_or_cancel_sagas_answer_at_once_while_licensing_is_down(app: &mut TestApp) {
    let w = app.seed_world().await;
    let leaving = freelancer(app, &w).await;
    let previewed = freelancer(app, &w).await;
    let owner = app.user_token(&w.owner);
    app.stop_licensing().await;
    let at_once = std::time::Duration::from_millis(1_500);
    let timed = std::time::Instant::now();
    let deactivated = lifecycle(app, &w, &w.member, Lifecycle::Deactivate).await;
    let took = timed.elapsed();
    assert!(took < at_once, "DeactivateUser answered in {took:?}");
    assert_eq!(state(&deactivated), ops::OperationState::Running, "{deactivated:?}");
    let timed = std::time::Instant::now();
    let unlinking = app.unlink(&w, &leaving, Some(recordings_to(&w.admin))).await.expect("started");
    let took = timed.elapsed();
    assert!(took < at_once, "UnlinkUser answered in {took:?}");
    let timed = std::time::Instant::now();
    let cancel = ops::CancelOperationRequest { operation_id: unlinking.id.clone(), request_id: rid() };
    app.operations().cancel_operation(authed(cancel, &owner)).await.expect("cancel");
    let took = timed.elapsed();
    assert!(took < at_once, "CancelOperation answered in {took:?}");
    let bulk = idpb::StartBulkOperationRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        action: idpb::BulkAction::Deactivate as i32,
        users: vec![idpb::BulkUser { user: w.second_admin.clone(), ..Default::default() }],
        ..Default::default()
    };
    let timed = std::time::Instant::now();
    app.identity_bulk().start_bulk_operation(authed(bulk, &owner)).await.expect("bulk starts");
    let took = timed.elapsed();
    assert!(took < at_once, "StartBulkOperation answered in {took:?}");
    // The dry run needs licensing: it waits briefly, then names it.
    let dry = idpb::UnlinkUserRequest {
        request_id: String::new(),
        account_id: w.account.clone(),
        user_id: previewed,
        transfer: None,
        validate_only: true,
    };
    let timed = std::time::Instant::now();
    let refused = app.identity_users().unlink_user(authed(dry, &owner)).await.expect_err("licensing is down");
    let took = timed.elapsed();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("licensing"), "{refused:?}");
    assert!(took < std::time::Duration::from_secs(6), "the dry run gave up after {took:?}");
    app.start_licensing().await;
}

async fn failure_at_every_step(backend: Backend) {
    let inject = Arc::new(Inject::default());
    let Some(app) = TestApp::spawn_with(backend, Some(inject.clone())).await else { return };
    a_failure_at_any_step_ends_fully_done_or_fully_undone(&app, &inject).await;
    app.stop().await;
}

own_app_on_both_backends!(
    operator_repairs => operator_repairs,
    licensing_outage => licensing_outage,
    failure_at_every_step => failure_at_every_step,
);

on_both_backends!(
    r21_r24_unlink_refusals_change_nothing,
    r21_r23_unlink_with_transfer_moves_recordings_and_the_rest_goes_along,
    r23_pmi_meetings_stay_with_the_user,
    r18_r19_deactivation_reclaims_and_reactivation_restores_exactly_that,
    r22_r23_delete_with_transfer_removes_the_user_and_the_rest_and_frees_the_email,
    r27_r28_accepting_refunds_once_or_refuses_with_1009,
    r4_phone_licenses_move_with_ownership_only_when_confirmed,
    r4_r9_an_automatic_approval_moves_phone_licenses_as_if_confirmed
);
