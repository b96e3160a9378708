//! The audit trail's action names (SPEC R33), one per kind of change. A change RPC records the
//! same action whether it was made or refused (the outcome says which), so one name finds both.

pub const SEATS_SET: &str = "seats.set";
pub const LICENSE_ASSIGNED: &str = "license.assigned";
pub const LICENSE_UNASSIGNED: &str = "license.unassigned";
pub const PHONE_NUMBER_ADDED: &str = "phone_number.added";
pub const PHONE_NUMBER_ATTACHED: &str = "phone_number.attached";
pub const PHONE_NUMBER_DETACHED: &str = "phone_number.detached";
pub const LICENSES_RECLAIMED: &str = "licenses.reclaimed";
pub const LICENSES_RESTORED: &str = "licenses.restored";
pub const PHONE_LICENSES_MOVED: &str = "phone_licenses.moved";
pub const CONTENT_REGISTERED: &str = "content.registered";
pub const CONTENT_TRANSFERRED: &str = "content.transferred";
pub const CONTENT_TRANSFER_UNDONE: &str = "content.transfer_undone";
pub const CONTENT_DELETED: &str = "content.deleted";
pub const CONTENT_REHOMED: &str = "content.rehomed";
pub const SUBSCRIPTION_CREATED: &str = "subscription.created";
pub const SUBSCRIPTION_REFUNDED: &str = "subscription.refunded";
/// Not a change: an operator read an account's billing (SPEC R5 with R11), recorded so the
/// owner sees every time support looked.
pub const BILLING_READ_BY_OPERATOR: &str = "billing.read_by_operator";
