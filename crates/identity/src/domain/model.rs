//! The identity model: accounts, users, roles, invitations, integrations, audit events.

use std::collections::BTreeSet;

use super::values::{AccountId, Domain, Email, IntegrationId, InvitationId, OwnershipRequestId, RoleId, UserId};

use strum::{EnumString, IntoStaticStr, VariantArray};

/// Commercial plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoStaticStr, EnumString, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Plan {
    Basic,
    Pro,
    Business,
    Enterprise,
}

/// Where a user is in their lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoStaticStr, EnumString, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum UserStatus {
    Pending,
    Active,
    Deactivated,
}

/// What a role lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoStaticStr, EnumString, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Privilege {
    ManageUsers,
    ManageRoles,
    BulkRemoveUsers,
    ViewBilling,
    ManageLicenses,
    ViewAudit,
}

/// What an invitation is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoStaticStr, EnumString, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Revoked,
}

/// Where an ownership request stands (SPEC R8-R10). Every state but `Open` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoStaticStr, EnumString, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum OwnershipRequestState {
    Open,
    Approved,
    Denied,
    /// The owner did not answer within the window; the requester became owner.
    AutoApproved,
    Cancelled,
    /// At decision time the request no longer held: the requester is no longer eligible,
    /// ownership moved another way, or the plan changed.
    Void,
}

/// What a step-up proof may be spent on (SPEC R10); a proof for one is refused for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoStaticStr, EnumString, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum StepUpPurpose {
    ApproveOwnershipRequest,
    DenyOwnershipRequest,
    /// SPEC R12: where sign-in and every e-mail (step-up codes included) go.
    ChangePrimaryEmail,
    RemoveEmailAddress,
}

/// A user's role: one of the built-ins or a custom role of the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Owner,
    Admin,
    Member,
    Custom(RoleId),
}

impl Role {
    /// Stored spelling of the kind; a custom role also stores its id.
    pub fn kind_str(&self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Custom(_) => "custom",
        }
    }

    pub fn custom_id(&self) -> Option<&RoleId> {
        match self {
            Self::Custom(id) => Some(id),
            _ => None,
        }
    }

    /// How lists show the role: the owner reads "admin (owner)" (SPEC R7).
    pub fn label(&self, custom_name: Option<&str>) -> String {
        match self {
            Self::Owner => "admin (owner)".to_owned(),
            Self::Admin => "admin".to_owned(),
            Self::Member => "member".to_owned(),
            Self::Custom(_) => custom_name.unwrap_or("custom").to_owned(),
        }
    }
}

/// A request by an admin (or, with no admins, a member) to become the owner (SPEC R8, R9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipRequest {
    pub id: OwnershipRequestId,
    pub account_id: AccountId,
    pub requester_user_id: UserId,
    /// The owner when the request was made: the one e-mailed, and the one who decides.
    pub owner_user_id: UserId,
    pub state: OwnershipRequestState,
    /// Why it became void, or who decided it.
    pub outcome_note: String,
    /// The workflow that reminds the owner and decides at the deadline.
    pub operation_id: String,
    pub reminders_sent: u32,
    pub last_reminded_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub deadline_ms: i64,
    pub decided_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountSettings {
    /// 0 = off (SPEC R20).
    pub auto_delete_deactivated_after_days: u32,
    pub notify_admins_before_auto_delete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub plan: Plan,
    pub csm_eligible: bool,
    pub managed_domains: Vec<Domain>,
    pub settings: AccountSettings,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub account_id: AccountId,
    pub email: Email,
    pub display_name: String,
    pub status: UserStatus,
    pub role: Role,
    pub external: bool,
    pub created_at_ms: i64,
    pub deactivated_at_ms: Option<i64>,
    /// The name of the user's custom role, for display; `None` for built-in roles.
    pub custom_role_name: Option<String>,
}

impl User {
    pub fn is_owner(&self) -> bool {
        self.role == Role::Owner
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// An account and its owner, as every member may see it (SPEC R7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    pub account: Account,
    pub owner: Option<User>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRole {
    pub id: RoleId,
    pub account_id: AccountId,
    pub name: String,
    pub privileges: BTreeSet<Privilege>,
}

/// A role as listed: built-ins and custom roles side by side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub privileges: BTreeSet<Privilege>,
    pub user_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: InvitationId,
    pub account_id: AccountId,
    pub email: Email,
    /// The pending user standing for the invitee.
    pub user_id: UserId,
    pub status: InvitationStatus,
    pub invited_by: UserId,
    pub role: Role,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub send_count: u32,
}

impl Invitation {
    pub fn is_open_at(&self, now_ms: i64) -> bool {
        self.status == InvitationStatus::Pending && now_ms < self.expires_at_ms
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    pub id: IntegrationId,
    pub account_id: AccountId,
    pub name: String,
    pub authorized_by: UserId,
    pub needs_reauthorization: bool,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: String,
    pub account_id: Option<AccountId>,
    pub principal: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub request_id: String,
    pub details_json: String,
    pub at_ms: i64,
}

/// Why a sign-in is allowed or not (SPEC R18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    Allowed(User),
    AccountDisabled(User),
    PendingActivation(User),
    UnknownUser,
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_platform::stored_text::StoredText;

    #[test]
    fn r7_owner_is_listed_as_admin_owner() {
        assert_eq!(Role::Owner.label(None), "admin (owner)");
        assert_eq!(Role::Admin.label(None), "admin");
        assert_eq!(Role::Custom(RoleId::generate()).label(Some("Billing clerk")), "Billing clerk");
    }

    #[test]
    fn text_enums_round_trip() {
        for plan in Plan::VARIANTS {
            assert_eq!(Plan::from_str_opt(plan.as_str()), Some(*plan));
        }
        for privilege in Privilege::VARIANTS {
            assert_eq!(Privilege::from_str_opt(privilege.as_str()), Some(*privilege));
        }
        assert_eq!(UserStatus::from_str_opt("gone"), None);
    }
}
