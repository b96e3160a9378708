//! Every conversion between the wire (`roster.identity.v1`) and the domain. Parsing into
//! validated types happens here, so bad input is refused with `INVALID_ARGUMENT` naming the
//! field before any use case runs, and the domain never sees raw strings.

use std::collections::BTreeSet;

use roster_platform::status::{self, invalid_argument};
use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use roster_workflow::{Instance, State};
use tonic::Status;

use crate::app::accounts::SupportVerification;
use crate::app::emails::Address;
use crate::app::step_up::{ChallengeSent, Proof};
use crate::domain::model::{
    AccountSettings, AccountView, AuditEvent, Integration, Invitation, InvitationStatus, OwnershipRequest,
    OwnershipRequestState, Plan, Privilege, Role, RoleView, StepUpPurpose, User, UserStatus,
};
use crate::domain::privileges::Actor;
use crate::domain::settings::{StoredSettings, UserSettings};
use crate::domain::values::{
    self, AccountId, ChallengeId, Domain, Email, InvitationId, OwnershipRequestId, RoleId, UserId,
};
use crate::sagas::removal::TransferRequest;
use crate::store::outbox::Undeliverable;

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_ROLE_NAME_CHARS: usize = 64;
pub const MAX_MANAGED_DOMAINS: usize = 50;
pub const MAX_AUTO_DELETE_DAYS: u32 = 3_650;
const MAX_CODE_LEN: usize = 128;

fn field_error(field: &'static str) -> impl Fn(values::Invalid) -> Status {
    move |why| invalid_argument(field, why.0)
}

pub fn account_id(raw: &str) -> Result<AccountId, Status> {
    AccountId::parse(raw).map_err(field_error("account_id"))
}

pub fn user_id(field: &'static str, raw: &str) -> Result<UserId, Status> {
    UserId::parse(raw).map_err(field_error(field))
}

/// The `n`-th user id of a repeated field: a bad one is named `field[n]`.
pub fn listed_user_id(field: &str, n: usize, raw: &str) -> Result<UserId, Status> {
    UserId::parse(raw).map_err(|why| invalid_argument(&format!("{field}[{n}]"), why.0))
}

pub fn invitation_id(raw: &str) -> Result<InvitationId, Status> {
    InvitationId::parse(raw).map_err(field_error("invitation_id"))
}

pub fn custom_role_id(field: &'static str, raw: &str) -> Result<RoleId, Status> {
    RoleId::parse(raw).map_err(field_error(field))
}

pub fn email(field: &'static str, raw: &str) -> Result<Email, Status> {
    Email::parse(raw).map_err(field_error(field))
}

/// Required, trimmed, bounded text.
pub fn required_text(field: &'static str, raw: &str, max_chars: usize) -> Result<String, Status> {
    let text = values::display_text(raw, max_chars).map_err(field_error(field))?;
    if text.is_empty() {
        return Err(invalid_argument(field, "is required"));
    }
    Ok(text)
}

/// Optional, trimmed, bounded text (empty stays empty).
pub fn optional_text(field: &'static str, raw: &str, max_chars: usize) -> Result<String, Status> {
    values::display_text(raw, max_chars).map_err(field_error(field))
}

pub fn plan(raw: i32) -> Result<Plan, Status> {
    match pb::Plan::try_from(raw) {
        Ok(pb::Plan::Basic) => Ok(Plan::Basic),
        Ok(pb::Plan::Pro) => Ok(Plan::Pro),
        Ok(pb::Plan::Business) => Ok(Plan::Business),
        Ok(pb::Plan::Enterprise) => Ok(Plan::Enterprise),
        Ok(pb::Plan::Unspecified) => Err(invalid_argument("plan", "is required")),
        Err(_) => Err(invalid_argument("plan", format!("{raw} is not a known plan"))),
    }
}

pub fn managed_domains(raw: &[String]) -> Result<Vec<Domain>, Status> {
    if raw.len() > MAX_MANAGED_DOMAINS {
        return Err(invalid_argument("managed_domains", format!("at most {MAX_MANAGED_DOMAINS} domains")));
    }
    let mut domains =
        raw.iter().map(|d| Domain::parse(d).map_err(field_error("managed_domains"))).collect::<Result<Vec<_>, _>>()?;
    domains.sort();
    domains.dedup();
    Ok(domains)
}

pub fn settings(raw: &pb::AccountSettings) -> Result<AccountSettings, Status> {
    if raw.auto_delete_deactivated_after_days > MAX_AUTO_DELETE_DAYS {
        return Err(invalid_argument(
            "settings.auto_delete_deactivated_after_days",
            format!("must be at most {MAX_AUTO_DELETE_DAYS} days"),
        ));
    }
    Ok(AccountSettings {
        auto_delete_deactivated_after_days: raw.auto_delete_deactivated_after_days,
        notify_admins_before_auto_delete: raw.notify_admins_before_auto_delete,
    })
}

pub fn privileges(raw: &[i32]) -> Result<BTreeSet<Privilege>, Status> {
    raw.iter()
        .map(|value| match pb::Privilege::try_from(*value) {
            Ok(pb::Privilege::ManageUsers) => Ok(Privilege::ManageUsers),
            Ok(pb::Privilege::ManageRoles) => Ok(Privilege::ManageRoles),
            Ok(pb::Privilege::BulkRemoveUsers) => Ok(Privilege::BulkRemoveUsers),
            Ok(pb::Privilege::ViewBilling) => Ok(Privilege::ViewBilling),
            Ok(pb::Privilege::ManageLicenses) => Ok(Privilege::ManageLicenses),
            Ok(pb::Privilege::ViewAudit) => Ok(Privilege::ViewAudit),
            Ok(pb::Privilege::Unspecified) | Err(_) => {
                Err(invalid_argument("privileges", format!("{value} is not a known privilege")))
            }
        })
        .collect()
}

/// The role an invitee starts with: member unless a custom role is named.
pub fn invitation_role(kind: i32, custom_role: &str) -> Result<Role, Status> {
    match pb::RoleKind::try_from(kind) {
        Ok(pb::RoleKind::Unspecified | pb::RoleKind::Member) => Ok(Role::Member),
        Ok(pb::RoleKind::Admin) => Ok(Role::Admin),
        Ok(pb::RoleKind::Owner) => Ok(Role::Owner),
        Ok(pb::RoleKind::Custom) => Ok(Role::Custom(custom_role_id("custom_role_id", custom_role)?)),
        Err(_) => Err(invalid_argument("role", format!("{kind} is not a known role kind"))),
    }
}

/// `AssignRole.role_id`: "admin", "member", "owner" or a custom role id.
pub fn assigned_role(raw: &str) -> Result<Role, Status> {
    match raw {
        "owner" => Ok(Role::Owner),
        "admin" => Ok(Role::Admin),
        "member" => Ok(Role::Member),
        other => Ok(Role::Custom(custom_role_id("role_id", other)?)),
    }
}

pub fn status_filter(raw: i32) -> Result<Option<UserStatus>, Status> {
    match pb::UserStatus::try_from(raw) {
        Ok(pb::UserStatus::Unspecified) => Ok(None),
        Ok(pb::UserStatus::Pending) => Ok(Some(UserStatus::Pending)),
        Ok(pb::UserStatus::Active) => Ok(Some(UserStatus::Active)),
        Ok(pb::UserStatus::Deactivated) => Ok(Some(UserStatus::Deactivated)),
        Err(_) => Err(invalid_argument("status", format!("{raw} is not a known status"))),
    }
}

pub fn role_filter(raw: i32) -> Result<Option<&'static str>, Status> {
    match pb::RoleKind::try_from(raw) {
        Ok(pb::RoleKind::Unspecified) => Ok(None),
        Ok(pb::RoleKind::Owner) => Ok(Some("owner")),
        Ok(pb::RoleKind::Admin) => Ok(Some("admin")),
        Ok(pb::RoleKind::Member) => Ok(Some("member")),
        Ok(pb::RoleKind::Custom) => Ok(Some("custom")),
        Err(_) => Err(invalid_argument("role", format!("{raw} is not a known role kind"))),
    }
}

/// A code we sent by e-mail: an invitation's, or an address verification's.
pub fn one_time_code(raw: &str) -> Result<String, Status> {
    let code = raw.trim();
    if code.is_empty() {
        return Err(invalid_argument("code", "is required"));
    }
    if code.len() > MAX_CODE_LEN {
        return Err(invalid_argument("code", "is too long to be a code from our e-mails"));
    }
    Ok(code.to_owned())
}

fn plan_to_pb(plan: Plan) -> pb::Plan {
    match plan {
        Plan::Basic => pb::Plan::Basic,
        Plan::Pro => pb::Plan::Pro,
        Plan::Business => pb::Plan::Business,
        Plan::Enterprise => pb::Plan::Enterprise,
    }
}

fn role_kind(role: &Role) -> pb::RoleKind {
    match role {
        Role::Owner => pb::RoleKind::Owner,
        Role::Admin => pb::RoleKind::Admin,
        Role::Member => pb::RoleKind::Member,
        Role::Custom(_) => pb::RoleKind::Custom,
    }
}

fn privilege_to_pb(privilege: Privilege) -> pb::Privilege {
    match privilege {
        Privilege::ManageUsers => pb::Privilege::ManageUsers,
        Privilege::ManageRoles => pb::Privilege::ManageRoles,
        Privilege::BulkRemoveUsers => pb::Privilege::BulkRemoveUsers,
        Privilege::ViewBilling => pb::Privilege::ViewBilling,
        Privilege::ManageLicenses => pb::Privilege::ManageLicenses,
        Privilege::ViewAudit => pb::Privilege::ViewAudit,
    }
}

fn privileges_to_pb(privileges: &BTreeSet<Privilege>) -> Vec<i32> {
    privileges.iter().map(|p| privilege_to_pb(*p) as i32).collect()
}

fn user_ref(user: &User) -> pb::UserRef {
    pb::UserRef { user_id: user.id.to_string(), email: user.email.to_string(), display_name: user.display_name.clone() }
}

pub fn account(view: &AccountView) -> pb::Account {
    let account = &view.account;
    pb::Account {
        id: account.id.to_string(),
        name: account.name.clone(),
        plan: plan_to_pb(account.plan) as i32,
        csm_eligible: account.csm_eligible,
        managed_domains: account.managed_domains.iter().map(|d| d.as_str().to_owned()).collect(),
        settings: Some(pb::AccountSettings {
            auto_delete_deactivated_after_days: account.settings.auto_delete_deactivated_after_days,
            notify_admins_before_auto_delete: account.settings.notify_admins_before_auto_delete,
        }),
        owner: view.owner.as_ref().map(user_ref),
        created_at_ms: account.created_at_ms,
    }
}

fn user_status_to_pb(status: UserStatus) -> pb::UserStatus {
    match status {
        UserStatus::Pending => pb::UserStatus::Pending,
        UserStatus::Active => pb::UserStatus::Active,
        UserStatus::Deactivated => pb::UserStatus::Deactivated,
    }
}

/// A user as other services see them (`DirectoryService.GetMember`).
pub fn member(actor: &Actor) -> pb::Member {
    pb::Member {
        account_id: actor.user.account_id.to_string(),
        user_id: actor.user.id.to_string(),
        status: user_status_to_pb(actor.user.status) as i32,
        role: role_kind(&actor.user.role) as i32,
        privileges: privileges_to_pb(&actor.privileges),
        is_owner: actor.is_owner(),
    }
}

pub fn user(user: &User) -> pb::User {
    pb::User {
        id: user.id.to_string(),
        account_id: user.account_id.to_string(),
        email: user.email.to_string(),
        display_name: user.display_name.clone(),
        status: user_status_to_pb(user.status) as i32,
        role: role_kind(&user.role) as i32,
        custom_role_id: user.role.custom_id().map(ToString::to_string).unwrap_or_default(),
        role_label: user.role.label(user.custom_role_name.as_deref()),
        external: user.external,
        created_at_ms: user.created_at_ms,
        deactivated_at_ms: user.deactivated_at_ms.unwrap_or_default(),
    }
}

pub fn invitation(invitation: &Invitation) -> pb::Invitation {
    pb::Invitation {
        id: invitation.id.to_string(),
        account_id: invitation.account_id.to_string(),
        email: invitation.email.to_string(),
        user_id: invitation.user_id.to_string(),
        status: match invitation.status {
            InvitationStatus::Pending => pb::InvitationStatus::Pending,
            InvitationStatus::Accepted => pb::InvitationStatus::Accepted,
            InvitationStatus::Revoked => pb::InvitationStatus::Revoked,
        } as i32,
        invited_by_user_id: invitation.invited_by.to_string(),
        created_at_ms: invitation.created_at_ms,
        expires_at_ms: invitation.expires_at_ms,
        send_count: invitation.send_count,
        role: role_kind(&invitation.role) as i32,
        custom_role_id: invitation.role.custom_id().map(ToString::to_string).unwrap_or_default(),
    }
}

pub fn integration(integration: &Integration) -> pb::Integration {
    pb::Integration {
        id: integration.id.to_string(),
        account_id: integration.account_id.to_string(),
        name: integration.name.clone(),
        authorized_by_user_id: integration.authorized_by.to_string(),
        needs_reauthorization: integration.needs_reauthorization,
        created_at_ms: integration.created_at_ms,
    }
}

pub fn audit_event(event: &AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        id: event.id.clone(),
        account_id: event.account_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        principal: event.principal.clone(),
        action: event.action.clone(),
        target: event.target.clone(),
        outcome: event.outcome.clone(),
        request_id: event.request_id.clone(),
        details_json: event.details_json.clone(),
        at_ms: event.at_ms,
    }
}

pub fn role(view: &RoleView) -> pb::Role {
    pb::Role {
        id: view.id.clone(),
        name: view.name.clone(),
        kind: role_kind(&view.role) as i32,
        privileges: privileges_to_pb(&view.privileges),
        user_count: view.user_count,
    }
}

pub fn access(actor: &Actor) -> pb::Access {
    pb::Access {
        account_id: actor.user.account_id.to_string(),
        user_id: actor.user.id.to_string(),
        role: role_kind(&actor.user.role) as i32,
        privileges: privileges_to_pb(&actor.privileges),
        is_owner: actor.is_owner(),
    }
}

/// The optional transfer of SPEC R23: a target and at least one kind.
pub fn content_transfer(transfer: Option<&pb::ContentTransfer>) -> Result<Option<TransferRequest>, Status> {
    let Some(transfer) = transfer else { return Ok(None) };
    let target = user_id("transfer.target_user_id", &transfer.target_user_id)?;
    let kinds: Vec<&'static str> = [
        (transfer.meetings, "meeting"),
        (transfer.webinars, "webinar"),
        (transfer.events, "event"),
        (transfer.recordings, "recording"),
    ]
    .into_iter()
    .filter_map(|(chosen, kind)| chosen.then_some(kind))
    .collect();
    if kinds.is_empty() {
        return Err(status::invalid_argument(
            "transfer",
            "choose at least one of meetings, webinars, events, recordings",
        ));
    }
    Ok(Some(TransferRequest { target, kinds }))
}

/// A workflow instance as the Operations API shows it.
pub fn operation(instance: &Instance) -> ops::Operation {
    let state = OPERATION_STATES
        .iter()
        .find(|(s, _)| *s == instance.state)
        .map_or(ops::OperationState::Unspecified, |(_, pb)| *pb);
    let done = instance.state.is_final();
    let count = |n: i64| u32::try_from(n).unwrap_or(0);
    ops::Operation {
        id: instance.id.clone(),
        kind: instance.kind.clone(),
        account_id: instance.account_id.clone(),
        subject: instance.subject.clone(),
        started_by: instance.started_by.clone(),
        state: state as i32,
        done,
        progress: Some(ops::Progress {
            steps_done: count(if instance.state == State::Completed { instance.steps_total } else { instance.cursor }),
            steps_total: count(instance.steps_total),
            current_step: instance.current_step.clone(),
            attempt: count(instance.attempt),
            last_error: instance.last_error.clone().unwrap_or_default(),
            next_attempt_at_ms: if done { 0 } else { instance.due_at_ms },
            // Filled in for bulk operations, from their rows.
            rows: None,
        }),
        result: instance.result.as_ref().map(json_struct),
        error: instance.failure.as_ref().map(|f| ops::OperationError {
            reason: f.reason.clone(),
            code: f.code.clone().unwrap_or_default(),
            message: f.message.clone(),
        }),
        created_at_ms: instance.created_at_ms,
        updated_at_ms: instance.updated_at_ms,
        finished_at_ms: instance.finished_at_ms.unwrap_or_default(),
        resolution: instance.resolution.as_ref().map(|r| ops::Resolution {
            note: r.note.clone(),
            resolved_by: r.by.clone(),
            resolved_at_ms: r.at_ms,
        }),
        cancel_requested_by: if done {
            String::new()
        } else {
            instance.cancel_requested_by.clone().unwrap_or_default()
        },
    }
}

/// An operation id: a UUID, in its canonical form.
pub fn operation_id(value: &str) -> Result<String, Status> {
    uuid::Uuid::parse_str(value)
        .map(|id| id.to_string())
        .map_err(|_| status::invalid_argument("operation_id", "must be an operation id (a UUID)"))
}

/// A dry run's answer (`validate_only`): an operation that was never stored, so it has no id,
/// already done, with the result the saga would end with.
pub fn dry_run_operation(
    kind: &str,
    account: &AccountId,
    user: &UserId,
    started_by: String,
    now_ms: i64,
    result: &serde_json::Value,
) -> ops::Operation {
    ops::Operation {
        kind: kind.to_owned(),
        account_id: account.to_string(),
        subject: user.to_string(),
        started_by,
        state: ops::OperationState::Succeeded as i32,
        done: true,
        result: Some(json_struct(result)),
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
        finished_at_ms: now_ms,
        ..Default::default()
    }
}

/// A JSON object as a `google.protobuf.Struct` (anything else is wrapped as `{"value": ...}`).
pub fn json_struct(value: &serde_json::Value) -> prost_types::Struct {
    match value {
        serde_json::Value::Object(fields) => {
            prost_types::Struct { fields: fields.iter().map(|(k, v)| (k.clone(), json_value(v))).collect() }
        }
        other => prost_types::Struct { fields: [("value".to_owned(), json_value(other))].into_iter().collect() },
    }
}

fn json_value(value: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => {
            Kind::ListValue(prost_types::ListValue { values: items.iter().map(json_value).collect() })
        }
        serde_json::Value::Object(_) => Kind::StructValue(json_struct(value)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// Workflow states as the API names them (the engine's `completed` is `SUCCEEDED`).
const OPERATION_STATES: [(State, ops::OperationState); 6] = [
    (State::Running, ops::OperationState::Running),
    (State::Compensating, ops::OperationState::Compensating),
    (State::Completed, ops::OperationState::Succeeded),
    (State::Compensated, ops::OperationState::Compensated),
    (State::Resolved, ops::OperationState::Resolved),
    (State::Failed, ops::OperationState::Failed),
];

/// The `state` filter of ListOperations; unspecified means any.
pub fn operation_state(value: i32) -> Result<Option<State>, Status> {
    if value == ops::OperationState::Unspecified as i32 {
        return Ok(None);
    }
    OPERATION_STATES
        .iter()
        .find(|(_, pb)| *pb as i32 == value)
        .map(|(state, _)| Some(*state))
        .ok_or_else(|| status::invalid_argument("state", "unknown operation state"))
}

pub fn ownership_request_id(raw: &str) -> Result<OwnershipRequestId, Status> {
    OwnershipRequestId::parse(raw).map_err(field_error("ownership_request_id"))
}

pub fn challenge_id(raw: &str) -> Result<ChallengeId, Status> {
    ChallengeId::parse(raw).map_err(field_error("challenge_id"))
}

/// A step-up code: the six digits e-mailed by `StartStepUp`.
pub fn step_up_code(raw: &str) -> Result<String, Status> {
    let code = raw.trim();
    if code.is_empty() {
        return Err(invalid_argument("code", "is required"));
    }
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid_argument("code", "is the six digits from the e-mail"));
    }
    Ok(code.to_owned())
}

/// A step-up proof as `VerifyStepUp` hands it out (64 hex digits); empty is left to the use
/// case, which answers `STEP_UP_REQUIRED` (R10).
pub fn step_up_proof(raw: &str) -> Result<String, Status> {
    if raw.len() > MAX_CODE_LEN {
        return Err(invalid_argument("step_up_proof", "is too long to be a step-up proof"));
    }
    Ok(raw.trim().to_owned())
}

pub fn step_up_purpose(raw: i32) -> Result<StepUpPurpose, Status> {
    match pb::StepUpPurpose::try_from(raw) {
        Ok(pb::StepUpPurpose::ApproveOwnershipRequest) => Ok(StepUpPurpose::ApproveOwnershipRequest),
        Ok(pb::StepUpPurpose::DenyOwnershipRequest) => Ok(StepUpPurpose::DenyOwnershipRequest),
        Ok(pb::StepUpPurpose::ChangePrimaryEmail) => Ok(StepUpPurpose::ChangePrimaryEmail),
        Ok(pb::StepUpPurpose::RemoveEmailAddress) => Ok(StepUpPurpose::RemoveEmailAddress),
        Ok(pb::StepUpPurpose::Unspecified) => Err(invalid_argument("purpose", "is required")),
        Err(_) => Err(invalid_argument("purpose", format!("{raw} is not a known step-up purpose"))),
    }
}

fn step_up_purpose_to_pb(purpose: StepUpPurpose) -> pb::StepUpPurpose {
    match purpose {
        StepUpPurpose::ApproveOwnershipRequest => pb::StepUpPurpose::ApproveOwnershipRequest,
        StepUpPurpose::DenyOwnershipRequest => pb::StepUpPurpose::DenyOwnershipRequest,
        StepUpPurpose::ChangePrimaryEmail => pb::StepUpPurpose::ChangePrimaryEmail,
        StepUpPurpose::RemoveEmailAddress => pb::StepUpPurpose::RemoveEmailAddress,
    }
}

pub fn step_up_challenge(sent: &ChallengeSent) -> pb::StepUpChallenge {
    pb::StepUpChallenge {
        challenge_id: sent.id.to_string(),
        purpose: step_up_purpose_to_pb(sent.purpose).into(),
        expires_at_ms: sent.expires_at_ms,
    }
}

pub fn step_up_proof_pb(proof: &Proof) -> pb::StepUpProof {
    pb::StepUpProof {
        proof: proof.proof.clone(),
        purpose: step_up_purpose_to_pb(proof.purpose).into(),
        expires_at_ms: proof.expires_at_ms,
    }
}

fn ownership_request_state_to_pb(state: OwnershipRequestState) -> pb::OwnershipRequestState {
    match state {
        OwnershipRequestState::Open => pb::OwnershipRequestState::Open,
        OwnershipRequestState::Approved => pb::OwnershipRequestState::Approved,
        OwnershipRequestState::Denied => pb::OwnershipRequestState::Denied,
        OwnershipRequestState::AutoApproved => pb::OwnershipRequestState::AutoApproved,
        OwnershipRequestState::Cancelled => pb::OwnershipRequestState::Cancelled,
        OwnershipRequestState::Void => pb::OwnershipRequestState::Void,
    }
}

pub fn ownership_request(request: &OwnershipRequest) -> pb::OwnershipRequest {
    pb::OwnershipRequest {
        id: request.id.to_string(),
        account_id: request.account_id.to_string(),
        requester_user_id: request.requester_user_id.to_string(),
        owner_user_id: request.owner_user_id.to_string(),
        state: ownership_request_state_to_pb(request.state).into(),
        outcome_note: request.outcome_note.clone(),
        operation_id: request.operation_id.clone(),
        reminders_sent: i32::try_from(request.reminders_sent).unwrap_or(i32::MAX),
        created_at_ms: request.created_at_ms,
        deadline_ms: request.deadline_ms,
        decided_at_ms: request.decided_at_ms.unwrap_or(0),
    }
}

/// The longest a part of a support verification may be.
const MAX_VERIFICATION_CHARS: usize = 1_000;

/// SPEC R11: every part of the verification is required; the first missing one is named.
pub fn support_verification(raw: Option<&pb::SupportVerification>) -> Result<SupportVerification, Status> {
    let empty = pb::SupportVerification::default();
    let raw = raw.unwrap_or(&empty);
    let part = |field: &'static str, text: &str| -> Result<String, Status> {
        let text = text.trim();
        if text.is_empty() {
            return Err(invalid_argument(field, "is required: say what support checked"));
        }
        if text.chars().count() > MAX_VERIFICATION_CHARS {
            return Err(invalid_argument(field, format!("at most {MAX_VERIFICATION_CHARS} characters")));
        }
        Ok(text.to_owned())
    };
    Ok(SupportVerification {
        ticket_reference: part("verification.ticket_reference", &raw.ticket_reference)?,
        identity_check: part("verification.identity_check", &raw.identity_check)?,
        relationship_check: part("verification.relationship_check", &raw.relationship_check)?,
        billing_check: part("verification.billing_check", &raw.billing_check)?,
    })
}

pub fn undeliverable_email(email: &Undeliverable) -> pb::UndeliverableEmail {
    pb::UndeliverableEmail {
        id: email.id.clone(),
        kind: email.kind.clone(),
        recipient: email.recipient.clone(),
        subject: email.subject.clone(),
        attempts: i32::try_from(email.attempts).unwrap_or(i32::MAX),
        reason: email.reason.clone(),
        created_at_ms: email.created_at_ms,
        failed_at_ms: email.failed_at_ms,
    }
}

pub fn email_address(address: &Address) -> pb::EmailAddress {
    pb::EmailAddress {
        email: address.email.to_string(),
        primary: address.primary,
        verified: address.verified,
        added_at_ms: address.added_at_ms,
        expires_at_ms: address.expires_at_ms.unwrap_or_default(),
    }
}

pub fn email_addresses(addresses: &[Address]) -> pb::ListEmailAddressesResponse {
    pb::ListEmailAddressesResponse { addresses: addresses.iter().map(email_address).collect() }
}

/// A stored identity event's payload as the API's typed payload (see `domain::events`).
pub fn event_payload(
    event: &roster_platform::event_log::StoredEvent,
) -> Result<roster_proto::events::v1::event::Payload, String> {
    use crate::domain::events::{Change, OwnershipCause};
    use roster_proto::events::v1 as ev;
    use roster_proto::events::v1::event::Payload;
    let change: Change = serde_json::from_str(&event.payload).map_err(|e| e.to_string())?;
    let role_kind = |role: &str| match role {
        "owner" => pb::RoleKind::Owner,
        "admin" => pb::RoleKind::Admin,
        "custom" => pb::RoleKind::Custom,
        _ => pb::RoleKind::Member,
    } as i32;
    Ok(match change {
        Change::UserInvited { user_id, email, role } => {
            Payload::UserInvited(ev::UserInvited { user_id, email, role: role_kind(&role) })
        }
        Change::UserJoined { user_id, from_account_id } => {
            Payload::UserJoined(ev::UserJoined { user_id, from_account_id: from_account_id.unwrap_or_default() })
        }
        Change::UserActivated { user_id } => Payload::UserActivated(ev::UserActivated { user_id }),
        Change::UserDeactivated { user_id } => Payload::UserDeactivated(ev::UserDeactivated { user_id }),
        Change::UserReactivated { user_id } => Payload::UserReactivated(ev::UserReactivated { user_id }),
        Change::UserUnlinked { user_id, new_account_id } => {
            Payload::UserUnlinked(ev::UserUnlinked { user_id, new_account_id })
        }
        Change::UserDeleted { user_id } => Payload::UserDeleted(ev::UserDeleted { user_id }),
        Change::RoleChanged { user_id, role, custom_role_id } => Payload::RoleChanged(ev::RoleChanged {
            user_id,
            role: role_kind(&role),
            custom_role_id: custom_role_id.unwrap_or_default(),
        }),
        Change::EmailChanged { user_id, email } => Payload::EmailChanged(ev::EmailChanged { user_id, email }),
        Change::OwnershipMoved { previous_owner_id, new_owner_id, cause } => {
            let cause = match cause {
                OwnershipCause::Transfer => ev::OwnershipCause::Transfer,
                OwnershipCause::Request => ev::OwnershipCause::Request,
                OwnershipCause::Support => ev::OwnershipCause::Support,
            };
            Payload::OwnershipMoved(ev::OwnershipMoved { previous_owner_id, new_owner_id, cause: cause as i32 })
        }
        Change::SettingsChanged { user_id } => Payload::UserSettingsChanged(ev::UserSettingsChanged { user_id }),
    })
}

/// The settings of an `UpdateUserSettingsRequest`, within SPEC's bounds (see
/// `domain::settings`).
pub fn user_settings(req: &pb::UpdateUserSettingsRequest) -> Result<UserSettings, Status> {
    let entries = req.settings.iter().map(|s| (s.key.clone(), s.value.clone())).collect();
    UserSettings::parse(req.time_zone.clone(), req.language.clone(), entries)
        .map_err(|violation| invalid_argument(&violation.field, violation.message))
}

pub fn user_settings_to_pb(account: &AccountId, user: &UserId, stored: &StoredSettings) -> pb::UserSettings {
    pb::UserSettings {
        account_id: account.to_string(),
        user_id: user.to_string(),
        time_zone: stored.settings.time_zone.clone(),
        language: stored.settings.language.clone(),
        settings: stored
            .settings
            .entries
            .iter()
            .map(|(key, value)| pb::Setting { key: key.clone(), value: value.clone() })
            .collect(),
        version: u64::try_from(stored.version).unwrap_or_default(),
        updated_at_ms: stored.updated_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn every_workflow_state_has_one_api_state_and_filters_by_it() {
        for state in State::VARIANTS {
            let (_, pb) = OPERATION_STATES.iter().find(|(s, _)| s == state).expect("mapped");
            assert_eq!(operation_state(*pb as i32).expect("known"), Some(*state));
        }
        assert_eq!(operation_state(0).expect("unspecified"), None);
        assert!(operation_state(99).is_err());
    }

    #[test]
    fn unknown_enum_values_are_refused_with_the_field() {
        assert!(plan(99).is_err());
        assert!(plan(0).is_err());
        assert!(privileges(&[1, 42]).is_err());
        assert!(privileges(&[0]).is_err());
        assert!(status_filter(7).is_err());
        assert!(role_filter(-1).is_err());
        assert!(invitation_role(9, "").is_err());
        assert_eq!(invitation_role(0, "").expect("default"), Role::Member);
    }

    #[test]
    fn assigned_role_accepts_built_ins_and_custom_ids() {
        assert_eq!(assigned_role("admin").expect("admin"), Role::Admin);
        assert!(assigned_role("superuser").is_err());
        let id = RoleId::generate();
        assert_eq!(assigned_role(id.as_str()).expect("custom"), Role::Custom(id));
    }

    #[test]
    fn managed_domains_are_bounded_and_deduplicated() {
        let domains = managed_domains(&["B.example.com".into(), "b.example.com".into()]).expect("valid");
        assert_eq!(domains.len(), 1);
        assert!(managed_domains(&["not a domain".into()]).is_err());
        assert!(managed_domains(&vec!["x.example.com".to_owned(); MAX_MANAGED_DOMAINS + 1]).is_err());
    }

    #[test]
    fn text_fields_are_required_and_bounded() {
        assert!(required_text("name", "  ", 10).is_err());
        assert!(required_text("name", &"x".repeat(11), 10).is_err());
        assert_eq!(required_text("name", " Acme ", 10).expect("valid"), "Acme");
        assert!(one_time_code(&"c".repeat(200)).is_err());
    }
}
