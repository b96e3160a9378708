//! SPEC R34: every RPC x every kind of caller, with the status each must get. Each cell runs
//! against a fresh account, so a cell's success cannot hide another's refusal. A guard test
//! fails when the protos gain an RPC the matrix does not cover.

mod support;

use prost::Message;
use roster_platform::clock::Clock;
use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use roster_testkit::tokens::{Forgery, forged};
use support::{TestApp, World, authed, rid};
use tonic::{Code, Request, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Owner,
    Admin,
    Member,
    /// An admin of another account, calling on this one.
    OtherAdmin,
    Operator,
    NoToken,
    /// A token wrong in one way: expired, another audience, an unknown key, or a key that may
    /// not sign the principal it names.
    Forged(Forgery),
}

const CALLERS: [Caller; 6] =
    [Caller::Owner, Caller::Admin, Caller::Member, Caller::OtherAdmin, Caller::Operator, Caller::NoToken];

/// Every caller: the ones above and a token wrong in each way.
fn callers() -> impl Iterator<Item = Caller> {
    CALLERS.into_iter().chain(Forgery::ALL.map(Caller::Forged))
}

const RPCS: [&str; 58] = [
    "AccountService/CreateAccount",
    "AccountService/GetAccount",
    "AccountService/UpdateAccount",
    "AccountService/TransferOwnership",
    "AccountService/GetMyAccess",
    "AccountService/AuthorizeIntegration",
    "AccountService/ListIntegrations",
    "AccountService/ListAuditEvents",
    "AccountService/ReassignOwnership",
    "AccountService/ListUndeliverableEmails",
    "AccountService/RequestOwnership",
    "AccountService/ApproveOwnershipRequest",
    "AccountService/DenyOwnershipRequest",
    "AccountService/CancelOwnershipRequest",
    "AccountService/GetOwnershipRequest",
    "AccountService/ListOwnershipRequests",
    "AccountService/StartStepUp",
    "AccountService/VerifyStepUp",
    "UserService/GetUser",
    "UserService/ListUsers",
    "UserService/InviteUser",
    "UserService/ListInvitations",
    "UserService/ResendInvitation",
    "UserService/RevokeInvitation",
    "UserService/AcceptInvitation",
    "UserService/DeactivateUser",
    "UserService/ReactivateUser",
    "UserService/UnlinkUser",
    "UserService/DeleteUser",
    "UserService/CheckSignIn",
    "UserService/ListEmailAddresses",
    "UserService/AddEmailAddress",
    "UserService/VerifyEmailAddress",
    "UserService/MakeEmailPrimary",
    "UserService/RemoveEmailAddress",
    "UserService/GetUserSettings",
    "UserService/UpdateUserSettings",
    "BulkService/GetBulkTemplate",
    "BulkService/StartBulkOperation",
    "BulkService/UploadBulkCsv",
    "BulkService/ListBulkRows",
    "BulkService/DownloadBulkResults",
    "RoleService/ListRoles",
    "RoleService/CreateRole",
    "RoleService/UpdateRole",
    "RoleService/DeleteRole",
    "RoleService/AssignRole",
    "DirectoryService/GetMember",
    "DirectoryService/GetMembers",
    "DirectoryService/LookupAccount",
    "Operations/GetOperation",
    "Operations/ListOperations",
    "Operations/WatchOperation",
    "Operations/RetryOperation",
    "Operations/ResolveOperation",
    "Operations/CancelOperation",
    "Events/WatchEvents",
    "Events/ListEvents",
];

/// The dry runs (`validate_only`) of the RPCs that have one: checked like any RPC, but apart
/// from `RPCS`, which must name each RPC once.
const DRY_RUNS: [&str; 4] = [
    "UserService/DeactivateUser validate_only",
    "UserService/UnlinkUser validate_only",
    "UserService/DeleteUser validate_only",
    "BulkService/StartBulkOperation validate_only",
];

/// The expected status of `rpc` for `caller`.
fn expected(rpc: &str, caller: Caller) -> Code {
    use Caller::*;
    use Code::{FailedPrecondition, InvalidArgument, NotFound, Ok, PermissionDenied as Denied, Unauthenticated};
    if matches!(caller, NoToken | Forged(_)) {
        return Unauthenticated;
    }
    // A dry run is allowed exactly when the call is.
    let method = rpc.split('/').nth(1).expect("method").trim_end_matches(" validate_only");
    match (method, caller) {
        // Operators only.
        ("CreateAccount", Operator) => Ok,
        ("CreateAccount", _) => Denied,
        // The auth front end (a service) or operators only.
        ("CheckSignIn", Operator) => Ok,
        ("CheckSignIn", _) => Denied,
        // Repairing a failed operation is for operators alone; to others it is not a question
        // of which account.
        ("RetryOperation" | "ResolveOperation", Operator) => Ok,
        ("RetryOperation" | "ResolveOperation", _) => Denied,
        // Other Roster services only (licensing); `flow` checks a service gets an answer.
        ("GetMember" | "GetMembers" | "LookupAccount", _) => Denied,
        // Only the invitee can accept; to anyone else the invitation does not exist.
        ("AcceptInvitation", _) => NotFound,
        // The sample file holds nothing of any account's.
        ("GetBulkTemplate", _) => Ok,
        // The event log: services and operators, and the account's own owner and admins; to
        // anyone else, whatever account they name, the same refusal.
        ("WatchEvents" | "ListEvents", Owner | Admin | Operator) => Ok,
        ("WatchEvents" | "ListEvents", _) => Denied,
        // Another account's admin learns nothing: the account "does not exist" for them.
        (_, OtherAdmin) => NotFound,
        // SPEC R16: the owner, or a custom role with the bulk privilege; admins lack it.
        ("StartBulkOperation" | "UploadBulkCsv", Owner) => Ok,
        ("StartBulkOperation" | "UploadBulkCsv", _) => Denied,
        // A bulk operation's rows are seen as the operation is.
        ("ListBulkRows" | "DownloadBulkResults", Owner | Admin | Operator) => Ok,
        ("ListBulkRows" | "DownloadBulkResults", _) => NotFound,
        // Reads any member or operator may make.
        ("GetAccount" | "ListIntegrations" | "GetUser" | "ListUsers" | "ListRoles", _) => Ok,
        // The caller's own access and integrations: members only.
        ("GetMyAccess" | "AuthorizeIntegration", Operator) => Denied,
        ("GetMyAccess" | "AuthorizeIntegration", _) => Ok,
        // Reads that need a privilege; operators may read them.
        ("ListAuditEvents" | "ListInvitations", Operator) => Ok,
        ("ListAuditEvents" | "ListInvitations", Owner | Admin) => Ok,
        ("ListAuditEvents" | "ListInvitations", _) => Denied,
        // Operations: their account's user managers and operators; to anyone else an
        // operation does not exist, and listing needs the manage-users privilege.
        ("GetOperation" | "WatchOperation" | "CancelOperation", Owner | Admin | Operator) => Ok,
        ("GetOperation" | "WatchOperation" | "CancelOperation", _) => NotFound,
        ("ListOperations", Operator) => Ok,
        // SPEC R12: each user their own addresses; operators have none. The cell's address
        // was added by the owner, so to anyone else it is not theirs.
        ("ListEmailAddresses" | "AddEmailAddress", Operator) => Denied,
        ("ListEmailAddresses" | "AddEmailAddress", _) => Ok,
        ("VerifyEmailAddress" | "MakeEmailPrimary" | "RemoveEmailAddress", Operator) => Denied,
        ("VerifyEmailAddress" | "MakeEmailPrimary" | "RemoveEmailAddress", Owner) => Ok,
        ("VerifyEmailAddress" | "MakeEmailPrimary" | "RemoveEmailAddress", _) => NotFound,
        // SPEC R18: the cell's target is the admin: they and user managers read and change
        // their settings; support reads them.
        ("GetUserSettings", Operator) => Ok,
        ("GetUserSettings" | "UpdateUserSettings", Member) => Denied,
        // SPEC R11: support alone; and undeliverable e-mails are support's to see (R35).
        ("ReassignOwnership" | "ListUndeliverableEmails", Operator) => Ok,
        ("ReassignOwnership" | "ListUndeliverableEmails", _) => Denied,
        // SPEC R8: the admin asks (the owner already owns it; a member may ask only when the
        // account has no admins, and the world's has one); users ask, not operators.
        ("RequestOwnership", Admin) => Ok,
        ("RequestOwnership", Owner) => InvalidArgument,
        ("RequestOwnership", Member) => FailedPrecondition,
        // The world's admin made the request: they cancel it; the owner denies instead, and
        // to a member it does not exist.
        ("CancelOwnershipRequest", Admin) => Ok,
        ("CancelOwnershipRequest", Owner | Operator) => Denied,
        ("CancelOwnershipRequest" | "GetOwnershipRequest", Member) => NotFound,
        ("GetOwnershipRequest" | "ListOwnershipRequests", _) => Ok,
        // SPEC R10: step-up is for the account's users, each with their own code (the cell's
        // challenge is the owner's, so to anyone else it does not exist).
        ("StartStepUp", Operator) | ("VerifyStepUp", Operator) => Denied,
        ("StartStepUp", _) => Ok,
        ("VerifyStepUp", Owner) => Ok,
        ("VerifyStepUp", _) => NotFound,
        // SPEC R1, R10: the owner alone.
        ("TransferOwnership" | "ApproveOwnershipRequest" | "DenyOwnershipRequest", Owner) => Ok,
        ("TransferOwnership" | "ApproveOwnershipRequest" | "DenyOwnershipRequest", _) => Denied,
        // Changes for owners and admins; members and operators are refused.
        (_, Owner | Admin) => Ok,
        (_, Member | Operator) => Denied,
        (_, NoToken | Forged(_)) => Unauthenticated,
    }
}

fn token(app: &TestApp, caller: Caller, world: &World, other: &World) -> Option<String> {
    Some(match caller {
        Caller::Owner => app.user_token(&world.owner),
        Caller::Admin => app.user_token(&world.admin),
        Caller::Member => app.user_token(&world.member),
        Caller::OtherAdmin => app.user_token(&other.admin),
        Caller::Operator => app.operator_token(),
        Caller::NoToken => return None,
        Caller::Forged(forgery) => forged(&app.signers, forgery, &world.owner),
    })
}

fn request<T>(message: T, token: &Option<String>) -> Request<T> {
    match token {
        Some(token) => authed(message, token),
        None => Request::new(message),
    }
}

/// Calls `rpc` on `w`'s account with `token`; only the status matters.
/// An operation of the world's account: seeding it ran sagas (joins, a deactivation).
async fn some_operation(app: &TestApp, w: &World) -> String {
    sqlx::query_scalar::<_, Option<String>>("SELECT MIN(id) FROM workflows WHERE account_id = $1")
        .bind(&w.account)
        .fetch_one(app.db.pool())
        .await
        .expect("operations")
        .expect("seeding the world ran sagas")
}

/// An operation of the world's account marked FAILED, as a refusal past the point of no
/// return would leave it.
async fn failed_operation(app: &TestApp, w: &World) -> String {
    let id = some_operation(app, w).await;
    sqlx::query(roster_testkit::MARK_OPERATION_FAILED).bind(&id).execute(app.db.pool()).await.expect("fail it");
    id
}

/// An unlink of the world's member that has not run its first step yet (due in a day), so
/// it can still be cancelled.
async fn cancellable_operation(app: &TestApp, w: &World) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO workflows (id, kind, account_id, subject, started_by, state, input, step_cursor, steps_total, \
         current_step, attempt, due_at_ms, lease_token, step_started_at_ms, created_at_ms, updated_at_ms) \
         VALUES ($1, 'user.unlink', $2, $3, $4, 'running', '{}', 0, 5, 'first', 0, $5, 0, $6, $6, $6)",
    )
    .bind(&id)
    .bind(&w.account)
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(format!("user:{}", w.owner))
    .bind(app.clock.now_ms() + 86_400_000)
    .bind(app.clock.now_ms())
    .execute(app.db.pool())
    .await
    .expect("insert");
    id
}

/// A verified second address of the world's owner (SPEC R12), and its code; the
/// unauthenticated cells share one world, so one already there is reused.
async fn owners_second_address(app: &TestApp, w: &World) -> (String, String) {
    let email = format!("second-{}@owner.example", w.account);
    let owner = app.user_token(&w.owner);
    let exists: Option<String> = sqlx::query_scalar("SELECT email FROM user_emails WHERE email = $1")
        .bind(&email)
        .fetch_optional(app.db.pool())
        .await
        .expect("addresses");
    if exists.is_none() {
        app.users()
            .add_email_address(authed(
                pb::AddEmailAddressRequest { request_id: rid(), account_id: w.account.clone(), email: email.clone() },
                &owner,
            ))
            .await
            .expect("the owner adds an address");
    }
    let code = app
        .mails(&email, "email_verification")
        .await
        .last()
        .and_then(|body| body.lines().find_map(|l| l.strip_prefix("Verification code: ").map(str::to_owned)))
        .expect("the code");
    app.users()
        .verify_email_address(authed(
            pb::VerifyEmailAddressRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                email: email.clone(),
                code: code.clone(),
            },
            &owner,
        ))
        .await
        .expect("the owner verifies it");
    (email, code)
}

/// An ownership request the world's admin has open (SPEC R8); the unauthenticated cells
/// share one world, so an open one is reused.
async fn open_request(app: &TestApp, w: &World) -> String {
    let open: Option<String> =
        sqlx::query_scalar("SELECT id FROM ownership_requests WHERE account_id = $1 AND state = 'open'")
            .bind(&w.account)
            .fetch_optional(app.db.pool())
            .await
            .expect("open requests");
    match open {
        Some(id) => id,
        None => app.request_ownership(&w.account, &w.admin).await.expect("the admin requests ownership").id,
    }
}

/// A bulk deactivation of the world's already deactivated user (its one row is refused).
fn bulk_of_the_deactivated(w: &World) -> pb::StartBulkOperationRequest {
    pb::StartBulkOperationRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        action: pb::BulkAction::Deactivate as i32,
        users: vec![pb::BulkUser { user: w.deactivated.clone(), ..Default::default() }],
        ..Default::default()
    }
}

/// A bulk operation the owner started in the world's account.
async fn bulk_operation(app: &TestApp, w: &World) -> String {
    let started = app.bulk().start_bulk_operation(authed(bulk_of_the_deactivated(w), &app.user_token(&w.owner))).await;
    started.expect("the owner starts a bulk operation").into_inner().id
}

async fn call(app: &TestApp, rpc: &str, w: &World, token: &Option<String>) -> Result<(), Status> {
    let account = w.account.clone();
    let t = token;
    match rpc.split('/').nth(1).expect("method") {
        "CreateAccount" => app
            .accounts()
            .create_account(request(
                pb::CreateAccountRequest {
                    request_id: rid(),
                    name: "New".into(),
                    plan: pb::Plan::Basic as i32,
                    owner_email: format!("{}@new.example", rid()),
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "GetAccount" => {
            app.accounts().get_account(request(pb::GetAccountRequest { account_id: account }, t)).await.map(drop)
        }
        "UpdateAccount" => app
            .accounts()
            .update_account(request(
                pb::UpdateAccountRequest {
                    request_id: rid(),
                    account_id: account,
                    settings: Some(pb::AccountSettings {
                        auto_delete_deactivated_after_days: 30,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "TransferOwnership" => app
            .accounts()
            .transfer_ownership(request(
                pb::TransferOwnershipRequest {
                    request_id: rid(),
                    account_id: account,
                    new_owner_user_id: w.admin.clone(),
                    confirm_phone_transfer: false,
                },
                t,
            ))
            .await
            .map(drop),
        "GetMyAccess" => {
            app.accounts().get_my_access(request(pb::GetMyAccessRequest { account_id: account }, t)).await.map(drop)
        }
        "AuthorizeIntegration" => app
            .accounts()
            .authorize_integration(request(
                pb::AuthorizeIntegrationRequest { request_id: rid(), account_id: account, name: "Zapper".into() },
                t,
            ))
            .await
            .map(drop),
        "ListIntegrations" => app
            .accounts()
            .list_integrations(request(pb::ListIntegrationsRequest { account_id: account }, t))
            .await
            .map(drop),
        "ListAuditEvents" => app
            .accounts()
            .list_audit_events(request(pb::ListAuditEventsRequest { account_id: account, ..Default::default() }, t))
            .await
            .map(drop),
        "ListEmailAddresses" => app
            .users()
            .list_email_addresses(request(pb::ListEmailAddressesRequest { account_id: account }, t))
            .await
            .map(drop),
        "AddEmailAddress" => app
            .users()
            .add_email_address(request(
                pb::AddEmailAddressRequest {
                    request_id: rid(),
                    account_id: account,
                    email: format!("{}@second.example", rid()),
                },
                t,
            ))
            .await
            .map(drop),
        "VerifyEmailAddress" | "MakeEmailPrimary" | "RemoveEmailAddress" => {
            let (email, code) = owners_second_address(app, w).await;
            let mut users = app.users();
            match rpc.split('/').nth(1).expect("method") {
                "VerifyEmailAddress" => users
                    .verify_email_address(request(
                        pb::VerifyEmailAddressRequest { request_id: rid(), account_id: account, email, code },
                        t,
                    ))
                    .await
                    .map(drop),
                // The owner's proof (SPEC R10): to anyone else the address is not theirs anyway.
                "MakeEmailPrimary" => {
                    let purpose = pb::StepUpPurpose::ChangePrimaryEmail;
                    let step_up_proof = app.step_up_proof(&account, &w.owner, &w.email_of("owner"), purpose).await;
                    let message =
                        pb::MakeEmailPrimaryRequest { request_id: rid(), account_id: account, email, step_up_proof };
                    users.make_email_primary(request(message, t)).await.map(drop)
                }
                _ => {
                    let purpose = pb::StepUpPurpose::RemoveEmailAddress;
                    let step_up_proof = app.step_up_proof(&account, &w.owner, &w.email_of("owner"), purpose).await;
                    let message =
                        pb::RemoveEmailAddressRequest { request_id: rid(), account_id: account, email, step_up_proof };
                    users.remove_email_address(request(message, t)).await.map(drop)
                }
            }
        }
        "ReassignOwnership" => app
            .accounts()
            .reassign_ownership(request(
                pb::ReassignOwnershipRequest {
                    request_id: rid(),
                    account_id: account,
                    new_owner_user_id: w.member.clone(),
                    verification: Some(pb::SupportVerification {
                        ticket_reference: "SUP-1".into(),
                        identity_check: "id".into(),
                        relationship_check: "rel".into(),
                        billing_check: "bill".into(),
                    }),
                },
                t,
            ))
            .await
            .map(drop),
        "ListUndeliverableEmails" => app
            .accounts()
            .list_undeliverable_emails(request(
                pb::ListUndeliverableEmailsRequest { account_id: account, ..Default::default() },
                t,
            ))
            .await
            .map(drop),
        "RequestOwnership" => app
            .accounts()
            .request_ownership(request(pb::RequestOwnershipRequest { request_id: rid(), account_id: account }, t))
            .await
            .map(drop),
        "ApproveOwnershipRequest" | "DenyOwnershipRequest" => {
            let ownership_request_id = open_request(app, w).await;
            let approve = rpc.ends_with("ApproveOwnershipRequest");
            let purpose = if approve {
                pb::StepUpPurpose::ApproveOwnershipRequest
            } else {
                pb::StepUpPurpose::DenyOwnershipRequest
            };
            let step_up_proof = app.step_up_proof(&account, &w.owner, &w.email_of("owner"), purpose).await;
            let message = pb::AnswerOwnershipRequestRequest {
                request_id: rid(),
                account_id: account,
                ownership_request_id,
                step_up_proof,
            };
            if approve {
                app.accounts().approve_ownership_request(request(message, t)).await.map(drop)
            } else {
                app.accounts().deny_ownership_request(request(message, t)).await.map(drop)
            }
        }
        "CancelOwnershipRequest" => {
            let ownership_request_id = open_request(app, w).await;
            let message =
                pb::CancelOwnershipRequestRequest { request_id: rid(), account_id: account, ownership_request_id };
            app.accounts().cancel_ownership_request(request(message, t)).await.map(drop)
        }
        "GetOwnershipRequest" => {
            let ownership_request_id = open_request(app, w).await;
            let message = pb::GetOwnershipRequestRequest { account_id: account, ownership_request_id };
            app.accounts().get_ownership_request(request(message, t)).await.map(drop)
        }
        "ListOwnershipRequests" => app
            .accounts()
            .list_ownership_requests(request(
                pb::ListOwnershipRequestsRequest { account_id: account, ..Default::default() },
                t,
            ))
            .await
            .map(drop),
        "StartStepUp" => app
            .accounts()
            .start_step_up(request(
                pb::StartStepUpRequest {
                    request_id: rid(),
                    account_id: account,
                    purpose: pb::StepUpPurpose::ApproveOwnershipRequest as i32,
                },
                t,
            ))
            .await
            .map(drop),
        "VerifyStepUp" => {
            let purpose = pb::StepUpPurpose::ApproveOwnershipRequest;
            let challenge = app.start_step_up(&account, &w.owner, purpose).await.expect("the owner's challenge");
            let code = app.step_up_code(&w.email_of("owner")).await;
            let message = pb::VerifyStepUpRequest { account_id: account, challenge_id: challenge.challenge_id, code };
            app.accounts().verify_step_up(request(message, t)).await.map(drop)
        }
        "GetUser" => app
            .users()
            .get_user(request(pb::GetUserRequest { account_id: account, user_id: w.member.clone() }, t))
            .await
            .map(drop),
        "ListUsers" => app
            .users()
            .list_users(request(pb::ListUsersRequest { account_id: account, ..Default::default() }, t))
            .await
            .map(drop),
        "InviteUser" => app
            .users()
            .invite_user(request(
                pb::InviteUserRequest {
                    request_id: rid(),
                    account_id: account,
                    email: format!("{}@invitee.example", rid()),
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "ListInvitations" => app
            .users()
            .list_invitations(request(pb::ListInvitationsRequest { account_id: account, ..Default::default() }, t))
            .await
            .map(drop),
        "ResendInvitation" => app
            .users()
            .resend_invitation(request(
                pb::ResendInvitationRequest {
                    request_id: rid(),
                    account_id: account,
                    invitation_id: w.invitation_id.clone(),
                },
                t,
            ))
            .await
            .map(drop),
        "RevokeInvitation" => app
            .users()
            .revoke_invitation(request(
                pb::RevokeInvitationRequest {
                    request_id: rid(),
                    account_id: account,
                    invitation_id: w.invitation_id.clone(),
                },
                t,
            ))
            .await
            .map(drop),
        "AcceptInvitation" => app
            .users()
            .accept_invitation(request(
                pb::AcceptInvitationRequest { request_id: rid(), code: w.invitation_code.clone() },
                t,
            ))
            .await
            .map(drop),
        "GetBulkTemplate" => app
            .bulk()
            .get_bulk_template(request(pb::GetBulkTemplateRequest { action: pb::BulkAction::Unlink as i32 }, t))
            .await
            .map(drop),
        "StartBulkOperation" => app.bulk().start_bulk_operation(request(bulk_of_the_deactivated(w), t)).await.map(drop),
        "StartBulkOperation validate_only" => {
            let message = pb::StartBulkOperationRequest { validate_only: true, ..bulk_of_the_deactivated(w) };
            app.bulk().start_bulk_operation(request(message, t)).await.map(drop)
        }
        "UploadBulkCsv" => {
            let part = pb::UploadBulkCsvRequest {
                request_id: rid(),
                account_id: account,
                action: pb::BulkAction::Deactivate as i32,
                data: format!("email\n{}\n", w.email_of("member")).into_bytes(),
                validate_only: false,
            };
            app.bulk().upload_bulk_csv(request(futures_util::stream::iter([part]), t)).await.map(drop)
        }
        "ListBulkRows" => {
            let operation_id = bulk_operation(app, w).await;
            let message = pb::ListBulkRowsRequest { operation_id, ..Default::default() };
            app.bulk().list_bulk_rows(request(message, t)).await.map(drop)
        }
        "DownloadBulkResults" => {
            let operation_id = bulk_operation(app, w).await;
            app.bulk()
                .download_bulk_results(request(pb::DownloadBulkResultsRequest { operation_id }, t))
                .await
                .map(drop)
        }
        "DeactivateUser" | "DeactivateUser validate_only" => app
            .users()
            .deactivate_user(request(
                pb::DeactivateUserRequest {
                    request_id: rid(),
                    account_id: account,
                    user_id: w.member.clone(),
                    validate_only: rpc.ends_with("validate_only"),
                },
                t,
            ))
            .await
            .map(drop),
        "ReactivateUser" => app
            .users()
            .reactivate_user(request(
                pb::ReactivateUserRequest {
                    request_id: rid(),
                    account_id: account,
                    user_id: w.deactivated.clone(),
                    restore_licenses: false,
                },
                t,
            ))
            .await
            .map(drop),
        "UnlinkUser" | "UnlinkUser validate_only" => app
            .users()
            .unlink_user(request(
                pb::UnlinkUserRequest {
                    request_id: rid(),
                    account_id: account,
                    user_id: w.member.clone(),
                    transfer: None,
                    validate_only: rpc.ends_with("validate_only"),
                },
                t,
            ))
            .await
            .map(drop),
        "DeleteUser" | "DeleteUser validate_only" => app
            .users()
            .delete_user(request(
                pb::DeleteUserRequest {
                    request_id: rid(),
                    account_id: account,
                    user_id: w.member.clone(),
                    transfer: None,
                    validate_only: rpc.ends_with("validate_only"),
                },
                t,
            ))
            .await
            .map(drop),
        "GetUserSettings" => app
            .users()
            .get_user_settings(request(pb::GetUserSettingsRequest { account_id: account, user_id: w.admin.clone() }, t))
            .await
            .map(drop),
        "UpdateUserSettings" => app
            .users()
            .update_user_settings(request(
                pb::UpdateUserSettingsRequest {
                    request_id: rid(),
                    account_id: account,
                    user_id: w.admin.clone(),
                    time_zone: "Europe/Amsterdam".into(),
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "WatchEvents" | "ListEvents" => {
            use roster_proto::events::v1 as ev;
            let filter = Some(ev::EventFilter { account_ids: vec![account], types: Vec::new() });
            let mut client = ev::events_client::EventsClient::new(app.channel.clone());
            if rpc.ends_with("ListEvents") {
                client.list_events(request(ev::ListEventsRequest { filter, ..Default::default() }, t)).await.map(drop)
            } else {
                client.watch_events(request(ev::WatchEventsRequest { filter, ..Default::default() }, t)).await.map(drop)
            }
        }
        "GetOperation" | "WatchOperation" => {
            let operation = some_operation(app, w).await;
            let mut client = app.operations();
            if rpc.ends_with("GetOperation") {
                client.get_operation(request(ops::GetOperationRequest { operation_id: operation }, t)).await.map(drop)
            } else {
                client
                    .watch_operation(request(ops::WatchOperationRequest { operation_id: operation }, t))
                    .await
                    .map(drop)
            }
        }
        "RetryOperation" => {
            let operation_id = failed_operation(app, w).await;
            let message = ops::RetryOperationRequest { operation_id, request_id: rid() };
            app.operations().retry_operation(request(message, t)).await.map(drop)
        }
        "ResolveOperation" => {
            let operation_id = failed_operation(app, w).await;
            let message =
                ops::ResolveOperationRequest { operation_id, request_id: rid(), note: "fixed by hand".into() };
            app.operations().resolve_operation(request(message, t)).await.map(drop)
        }
        "CancelOperation" => {
            let operation_id = cancellable_operation(app, w).await;
            let message = ops::CancelOperationRequest { operation_id, request_id: rid() };
            app.operations().cancel_operation(request(message, t)).await.map(drop)
        }
        "ListOperations" => app
            .operations()
            .list_operations(request(ops::ListOperationsRequest { account_id: account, ..Default::default() }, t))
            .await
            .map(drop),
        "CheckSignIn" => app
            .users()
            .check_sign_in(request(pb::CheckSignInRequest { email: w.pending_email.clone() }, t))
            .await
            .map(drop),
        "ListRoles" => app.roles().list_roles(request(pb::ListRolesRequest { account_id: account }, t)).await.map(drop),
        "CreateRole" => app
            .roles()
            .create_role(request(
                pb::CreateRoleRequest {
                    request_id: rid(),
                    account_id: account,
                    name: "Auditors".into(),
                    privileges: vec![pb::Privilege::ManageUsers as i32],
                },
                t,
            ))
            .await
            .map(drop),
        "UpdateRole" => app
            .roles()
            .update_role(request(
                pb::UpdateRoleRequest {
                    request_id: rid(),
                    account_id: account,
                    role_id: w.custom_role.clone(),
                    name: "Helpdesk 2".into(),
                    privileges: vec![pb::Privilege::ManageUsers as i32],
                },
                t,
            ))
            .await
            .map(drop),
        "DeleteRole" => app
            .roles()
            .delete_role(request(
                pb::DeleteRoleRequest { request_id: rid(), account_id: account, role_id: w.custom_role.clone() },
                t,
            ))
            .await
            .map(drop),
        "AssignRole" => app
            .roles()
            .assign_role(request(
                pb::AssignRoleRequest {
                    request_id: rid(),
                    account_id: account,
                    user_id: w.member.clone(),
                    role_id: w.custom_role.clone(),
                },
                t,
            ))
            .await
            .map(drop),
        "GetMember" => app
            .directory()
            .get_member(request(pb::GetMemberRequest { account_id: account, user_id: w.member.clone() }, t))
            .await
            .map(drop),
        "GetMembers" => app
            .directory()
            .get_members(request(pb::GetMembersRequest { account_id: account, user_ids: vec![w.member.clone()] }, t))
            .await
            .map(drop),
        "LookupAccount" => app
            .directory()
            .lookup_account(request(pb::LookupAccountRequest { account_id: account, ..Default::default() }, t))
            .await
            .map(drop),
        other => panic!("the matrix has no call for {other}"),
    }
}

on_both_backends!(
    r34_every_rpc_checks_the_caller,
    r34_objects_of_another_account_do_not_exist_here,
    r33_every_refused_change_is_audited_at_once_and_stalls_no_other_account,
);

async fn r34_every_rpc_checks_the_caller(app: &TestApp) {
    let other = app.seed_world("other").await;
    let shared = app.seed_world("shared").await;
    let mut failures = Vec::new();
    let mut cell = 0;
    for rpc in RPCS.into_iter().chain(DRY_RUNS) {
        for caller in callers() {
            cell += 1;
            let unauthenticated = matches!(caller, Caller::NoToken | Caller::Forged(_));
            // Unauthenticated cells never reach a handler, so they can share one account.
            let world = if unauthenticated { shared.clone() } else { app.seed_world(&format!("cell{cell}")).await };
            let token = token(app, caller, &world, &other);
            let answer = call(app, rpc, &world, &token).await;
            let got = answer.as_ref().map_or_else(|status| status.code(), |()| Code::Ok);
            let want = expected(rpc, caller);
            if got != want {
                failures.push(format!("{rpc} as {caller:?}: got {got:?}, want {want:?}"));
            } else if let (Caller::Forged(forgery), Err(status)) = (caller, &answer)
                && support::reason(status) != forgery.reason()
            {
                failures.push(format!("{rpc} as {caller:?}: refused for {}", support::reason(status)));
            }
        }
    }
    assert!(failures.is_empty(), "authorisation matrix mismatches:\n{}", failures.join("\n"));
}

/// The RPCs that change something, and so audit their refusals: those whose request carries a
/// `request_id`, and `VerifyStepUp`, whose wrong codes count.
fn changes() -> Vec<&'static str> {
    let descriptors = prost_types::FileDescriptorSet::decode(roster_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let keyed: Vec<String> = descriptors
        .file
        .iter()
        .flat_map(|file| file.message_type.iter().map(move |m| (file.package(), m)))
        .filter(|(_, message)| message.field.iter().any(|f| f.name() == "request_id"))
        .map(|(package, message)| format!(".{package}.{}", message.name()))
        .collect();
    let methods: Vec<String> = descriptors
        .file
        .iter()
        .filter(|file| matches!(file.package(), "roster.identity.v1" | "roster.operations.v1"))
        .flat_map(|file| file.service.iter())
        .flat_map(|service| {
            service
                .method
                .iter()
                .filter(|m| keyed.iter().any(|k| k == m.input_type()))
                .map(move |m| format!("{}/{}", service.name(), m.name()))
        })
        .collect();
    RPCS.into_iter().filter(|rpc| *rpc == "AccountService/VerifyStepUp" || methods.iter().any(|m| m == rpc)).collect()
}

/// SPEC R33 with R34: every change refused to a caller (the first of a member, another account's
/// admin, an admin and an operator that the matrix refuses) answers at once, leaves its
/// `refused:` record, and never holds the database while it does: another account's writes,
/// made over and over meanwhile, each answer well within a second or two (on SQLite a refusal
/// once held the only writer for the pool's 10 s timeout and lost its record).
async fn r33_every_refused_change_is_audited_at_once_and_stalls_no_other_account(app: &TestApp) {
    let other = app.seed_world("other").await;
    let bystander = app.seed_world("bystander").await;
    let generous = std::time::Duration::from_secs(5);
    let mut failures = Vec::new();
    let rpcs = changes();
    assert!(rpcs.len() >= 30, "every change RPC is covered: {rpcs:?}");
    for (n, rpc) in rpcs.into_iter().enumerate() {
        let refused_caller = [Caller::Member, Caller::OtherAdmin, Caller::Admin, Caller::Operator]
            .into_iter()
            .find(|caller| !matches!(expected(rpc, *caller), Code::Ok | Code::Unauthenticated));
        let Some(caller) = refused_caller else { continue };
        let world = app.seed_world(&format!("refused{n}")).await;
        let principal = match caller {
            Caller::Member => format!("user:{}", world.member),
            Caller::OtherAdmin => format!("user:{}", other.admin),
            Caller::Admin => format!("user:{}", world.admin),
            _ => "operator:support".to_owned(),
        };
        let refusals = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM audit_events WHERE principal = $1 AND outcome LIKE 'refused:%'",
            )
            .bind(&principal)
            .fetch_one(app.db.pool())
            .await
            .expect("audit")
        };
        let before = refusals().await;
        // Another account's owner writes, over and over, while the refused call runs.
        let stop = tokio::sync::watch::channel(false);
        let writes = {
            let (mut stopped, account, owner) = (stop.1.clone(), bystander.account.clone(), bystander.owner.clone());
            let (channel, token) = (app.channel.clone(), app.user_token(&owner));
            tokio::spawn(async move {
                let mut slowest = std::time::Duration::ZERO;
                let mut client = pb::account_service_client::AccountServiceClient::new(channel);
                while !*stopped.borrow_and_update() {
                    let started = std::time::Instant::now();
                    let request = pb::AuthorizeIntegrationRequest {
                        request_id: rid(),
                        account_id: account.clone(),
                        name: "Bystander".into(),
                    };
                    client.authorize_integration(authed(request, &token)).await.expect("the bystander's write");
                    slowest = slowest.max(started.elapsed());
                }
                slowest
            })
        };
        let token = token(app, caller, &world, &other);
        let started = std::time::Instant::now();
        let got = call(app, rpc, &world, &token).await;
        let took = started.elapsed();
        let _ = stop.0.send(true);
        let slowest_write = writes.await.expect("writes");
        if got.is_ok() {
            failures.push(format!("{rpc} as {caller:?} was not refused"));
            continue;
        }
        if took > generous || slowest_write > generous {
            failures.push(format!(
                "{rpc} as {caller:?}: answered in {took:?}, another account's write took {slowest_write:?}"
            ));
        }
        if refusals().await != before + 1 {
            failures.push(format!("{rpc} as {caller:?}: no refused record for {principal}"));
        }
    }
    assert!(
        failures.is_empty(),
        "refusals that were slow, stalled others or went unrecorded:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_matrix_covers_every_identity_rpc() {
    let descriptors = prost_types::FileDescriptorSet::decode(roster_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut declared: Vec<String> = descriptors
        .file
        .iter()
        .filter(|file| matches!(file.package(), "roster.identity.v1" | "roster.operations.v1" | "roster.events.v1"))
        .flat_map(|file| file.service.iter())
        .flat_map(|service| service.method.iter().map(move |m| format!("{}/{}", service.name(), m.name())))
        .collect();
    declared.sort();
    let mut covered: Vec<String> = RPCS.iter().map(|s| s.to_string()).collect();
    covered.sort();
    assert_eq!(declared, covered, "add new RPCs to the authorisation matrix");
}

/// The caller is the owner of their own account, but names objects that belong to another
/// account: each must read as missing (never as "forbidden"), and nothing may change there.
async fn r34_objects_of_another_account_do_not_exist_here(app: &TestApp) {
    let mine = app.seed_world("mine").await;
    let theirs = app.seed_world("theirs").await;
    let owner = Some(app.user_token(&mine.owner));
    let their_users = || async {
        sqlx::query_as::<_, (String, String, String)>(
            "SELECT id, status, role FROM users WHERE account_id = $1 ORDER BY id",
        )
        .bind(&theirs.account)
        .fetch_all(app.db.pool())
        .await
        .expect("their users")
    };
    let before = their_users().await;

    // My account id, their users, invitation and role.
    let foreign = World { account: mine.account.clone(), ..theirs.clone() };
    // My member, their role.
    let foreign_role = World { member: mine.member.clone(), ..foreign.clone() };
    let cases = [
        ("UserService/GetUser", &foreign, "USER_NOT_FOUND"),
        ("UserService/DeactivateUser", &foreign, "USER_NOT_FOUND"),
        ("UserService/ReactivateUser", &foreign, "USER_NOT_FOUND"),
        ("AccountService/TransferOwnership", &foreign, "USER_NOT_FOUND"),
        ("RoleService/AssignRole", &foreign, "USER_NOT_FOUND"),
        ("RoleService/AssignRole", &foreign_role, "ROLE_NOT_FOUND"),
        ("RoleService/UpdateRole", &foreign, "ROLE_NOT_FOUND"),
        ("RoleService/DeleteRole", &foreign, "ROLE_NOT_FOUND"),
        ("UserService/ResendInvitation", &foreign, "INVITATION_NOT_FOUND"),
        ("UserService/RevokeInvitation", &foreign, "INVITATION_NOT_FOUND"),
    ];
    for (rpc, world, expected) in cases {
        let status = call(app, rpc, world, &owner).await.expect_err(rpc);
        assert_eq!((status.code(), support::reason(&status).as_str()), (Code::NotFound, expected), "{rpc}");
    }
    let invite_with_their_role = app
        .users()
        .invite_user(authed(
            pb::InviteUserRequest {
                request_id: rid(),
                account_id: mine.account.clone(),
                email: "new@mine.example".into(),
                role: pb::RoleKind::Custom as i32,
                custom_role_id: theirs.custom_role.clone(),
                ..Default::default()
            },
            owner.as_deref().expect("token"),
        ))
        .await
        .expect_err("their role");
    assert_eq!(support::reason(&invite_with_their_role), "ROLE_NOT_FOUND");

    // Their ownership request and their owner's step-up challenge, named from my account.
    let their_request = open_request(app, &theirs).await;
    let my_proof = app
        .step_up_proof(&mine.account, &mine.owner, &mine.email_of("owner"), pb::StepUpPurpose::DenyOwnershipRequest)
        .await;
    let denied = app
        .accounts()
        .deny_ownership_request(authed(
            pb::AnswerOwnershipRequestRequest {
                request_id: rid(),
                account_id: mine.account.clone(),
                ownership_request_id: their_request.clone(),
                step_up_proof: my_proof,
            },
            owner.as_deref().expect("token"),
        ))
        .await
        .expect_err("their request");
    assert_eq!(support::reason(&denied), "OWNERSHIP_REQUEST_NOT_FOUND");
    let read = app
        .accounts()
        .get_ownership_request(authed(
            pb::GetOwnershipRequestRequest {
                account_id: mine.account.clone(),
                ownership_request_id: their_request.clone(),
            },
            owner.as_deref().expect("token"),
        ))
        .await
        .expect_err("their request");
    assert_eq!(support::reason(&read), "OWNERSHIP_REQUEST_NOT_FOUND");
    let challenge = app
        .start_step_up(&theirs.account, &theirs.owner, pb::StepUpPurpose::ApproveOwnershipRequest)
        .await
        .expect("their owner's challenge");
    let code = app.step_up_code(&theirs.email_of("owner")).await;
    let stolen =
        app.verify_step_up(&mine.account, &mine.owner, &challenge.challenge_id, &code).await.expect_err("theirs");
    assert_eq!(support::reason(&stolen), "STEP_UP_CHALLENGE_NOT_FOUND");
    let still_open: String = sqlx::query_scalar("SELECT state FROM ownership_requests WHERE id = $1")
        .bind(&their_request)
        .fetch_one(app.db.pool())
        .await
        .expect("their request");
    assert_eq!(still_open, "open");

    assert_eq!(their_users().await, before, "nothing changed in the other account");
    let role_name: String = sqlx::query_scalar("SELECT name FROM custom_roles WHERE id = $1")
        .bind(&theirs.custom_role)
        .fetch_one(app.db.pool())
        .await
        .expect("their role still exists");
    assert_eq!(role_name, "Helpdesk");
}
