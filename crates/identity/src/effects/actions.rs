//! The audit trail's action names (SPEC R33), one per kind of change. A change RPC records the
//! same action whether it was made or refused (the outcome says which), so one name finds both.

pub const ACCOUNT_CREATED: &str = "account.created";
pub const ACCOUNT_UPDATED: &str = "account.updated";
pub const OWNERSHIP_TRANSFERRED: &str = "account.ownership_transferred";
/// Platform support made a user the owner (SPEC R11).
pub const OWNERSHIP_REASSIGNED: &str = "account.ownership_reassigned";
pub const OWNERSHIP_REQUESTED: &str = "ownership_request.created";
pub const OWNERSHIP_REQUEST_APPROVED: &str = "ownership_request.approved";
pub const OWNERSHIP_REQUEST_DENIED: &str = "ownership_request.denied";
pub const OWNERSHIP_REQUEST_CANCELLED: &str = "ownership_request.cancelled";
/// The request decided itself: approved at its deadline, or void at decision time.
pub const OWNERSHIP_REQUEST_SETTLED: &str = "ownership_request.settled";
pub const OWNERSHIP_REQUEST_REMINDED: &str = "ownership_request.reminded";
pub const STEP_UP_STARTED: &str = "step_up.started";
pub const STEP_UP_VERIFIED: &str = "step_up.verified";
pub const ACCOUNT_CLOSED: &str = "account.closed";
pub const INTEGRATION_AUTHORIZED: &str = "integration.authorized";
pub const USER_INVITED: &str = "user.invited";
pub const INVITATION_RESENT: &str = "invitation.resent";
pub const INVITATION_REVOKED: &str = "invitation.revoked";
pub const INVITATION_ACCEPTED: &str = "invitation.accepted";
/// The refunds an accepted invitation caused (SPEC R28), recorded once they are made.
pub const INVITATION_REFUNDED: &str = "invitation.refunded";
/// The auto-delete setting's week-ahead notice, and the deletion it starts (SPEC R20).
pub const USER_AUTO_DELETE_NOTICE: &str = "user.auto_delete_notice";
pub const USER_AUTO_DELETE_STARTED: &str = "user.auto_delete_started";
/// SPEC R12: a user's other addresses and the change of their primary one.
pub const EMAIL_ADDED: &str = "user.email_added";
pub const EMAIL_VERIFIED: &str = "user.email_verified";
pub const PRIMARY_EMAIL_CHANGED: &str = "user.primary_email_changed";
pub const EMAIL_REMOVED: &str = "user.email_removed";
/// A bulk removal was started (SPEC R14, R25); each row's change is audited as the
/// single-user change it is.
pub const BULK_STARTED: &str = "bulk.started";
pub const USER_DEACTIVATED: &str = "user.deactivated";
pub const USER_REACTIVATED: &str = "user.reactivated";
pub const USER_UNLINKED: &str = "user.unlinked";
pub const USER_DELETED: &str = "user.deleted";
pub const ROLE_CREATED: &str = "role.created";
pub const ROLE_UPDATED: &str = "role.updated";
pub const ROLE_DELETED: &str = "role.deleted";
pub const USER_ROLE_CHANGED: &str = "user.role_changed";
/// SPEC R18: a user's settings were replaced.
pub const USER_SETTINGS_CHANGED: &str = "user.settings_changed";
pub const USER_LICENSES_RECLAIMED: &str = "user.licenses_reclaimed";
pub const OPERATION_RETRIED: &str = "operation.retried";
pub const OPERATION_RESOLVED: &str = "operation.resolved";
pub const OPERATION_CANCELLED: &str = "operation.cancelled";
