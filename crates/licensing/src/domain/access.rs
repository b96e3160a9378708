//! Who may do what in licensing, decided from identity's current data (SPEC R34): the
//! caller's status, ownership and privileges as identity reports them right now.

use std::collections::BTreeSet;

use super::error::DomainError;
use super::model::Id;

/// The principal name identity's sagas call with; only it may run saga steps.
pub use roster_platform::auth::IDENTITY_SERVICE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    Pending,
    Active,
    Deactivated,
}

/// The identity privileges licensing cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Privilege {
    ManageUsers,
    ManageLicenses,
    ViewBilling,
    ViewAudit,
}

impl Privilege {
    fn as_str(self) -> &'static str {
        match self {
            Self::ManageUsers => "manage_users",
            Self::ManageLicenses => "manage_licenses",
            Self::ViewBilling => "view_billing",
            Self::ViewAudit => "view_audit",
        }
    }
}

/// A user of an account as identity describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub account_id: Id,
    pub user_id: Id,
    pub status: MemberStatus,
    pub is_owner: bool,
    /// Holds the built-in admin role.
    pub is_admin: bool,
    pub privileges: BTreeSet<Privilege>,
}

impl Member {
    pub fn is_active(&self) -> bool {
        self.status == MemberStatus::Active
    }
}

/// Who is calling, resolved against the account in question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A user of this account, in any status.
    Member(Member),
    /// Platform support.
    Operator(String),
    /// Identity's saga worker.
    Identity,
    /// Any other service principal.
    OtherService(String),
}

impl Caller {
    /// May this caller change anything in the account at all? A user must be an active member
    /// (R34: decided from current data before any earlier answer is replayed); what they may
    /// change is then the use case's decision.
    pub fn may_change(&self) -> Result<(), DomainError> {
        match self {
            Self::Member(member) if !member.is_active() => Err(DomainError::CallerNotActive),
            _ => Ok(()),
        }
    }

    /// An active member of the account.
    pub fn active_member(&self) -> Result<&Member, DomainError> {
        match self {
            Self::Member(member) if member.is_active() => Ok(member),
            Self::Member(_) => Err(DomainError::CallerNotActive),
            Self::Operator(_) | Self::Identity | Self::OtherService(_) => Err(DomainError::PrincipalNotAllowed),
        }
    }

    /// An active member holding `privilege`.
    pub fn member_with(&self, privilege: Privilege) -> Result<&Member, DomainError> {
        let member = self.active_member()?;
        if member.privileges.contains(&privilege) {
            Ok(member)
        } else {
            Err(DomainError::MissingPrivilege(privilege.as_str()))
        }
    }

    /// The current owner (SPEC R5: billing follows ownership at once).
    pub fn owner(&self) -> Result<&Member, DomainError> {
        let member = self.active_member()?;
        if member.is_owner { Ok(member) } else { Err(DomainError::NotAccountOwner) }
    }

    /// The current owner's billing view; identity's accept-invitation saga, which refunds the
    /// subscriptions of an account its owner is leaving (SPEC R28); and platform support, who
    /// answers questions about them.
    pub fn billing_reader(&self) -> Result<(), DomainError> {
        match self {
            Self::Identity | Self::Operator(_) => Ok(()),
            _ => self.owner().map(drop),
        }
    }

    /// The owner, or an operator (buying seats, starting subscriptions).
    pub fn owner_or_operator(&self) -> Result<(), DomainError> {
        match self {
            Self::Operator(_) => Ok(()),
            _ => self.owner().map(drop),
        }
    }

    /// Readers of the account's event log: services and operators, or its active owner and
    /// admins.
    pub fn event_reader(&self) -> Result<(), DomainError> {
        match self {
            Self::Operator(_) | Self::Identity | Self::OtherService(_) => Ok(()),
            Self::Member(_) => {
                let member = self.active_member()?;
                if member.is_owner || member.is_admin { Ok(()) } else { Err(DomainError::OwnerOrAdminOnly) }
            }
        }
    }

    /// Saga steps: identity's principal only.
    pub fn identity(&self) -> Result<(), DomainError> {
        match self {
            Self::Identity => Ok(()),
            _ => Err(DomainError::PrincipalNotAllowed),
        }
    }

    /// Reads of account-wide data: operators, identity's sagas (which check seats, phone
    /// licenses and rooms before acting), or active members holding `privilege`.
    pub fn reader_with(&self, privilege: Privilege) -> Result<(), DomainError> {
        match self {
            Self::Operator(_) | Self::Identity => Ok(()),
            _ => self.member_with(privilege).map(drop),
        }
    }

    /// Reads about one user: that user themselves, holders of `privilege`, or operators.
    pub fn reader_of(&self, user: &Id, privilege: Privilege) -> Result<(), DomainError> {
        match self {
            Self::Member(member) if member.is_active() && member.user_id == *user => Ok(()),
            _ => self.reader_with(privilege),
        }
    }

    /// Any active member, an operator, or identity's sagas.
    pub fn any_reader(&self) -> Result<(), DomainError> {
        match self {
            Self::Operator(_) | Self::Identity => Ok(()),
            _ => self.active_member().map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(status: MemberStatus, is_owner: bool, privileges: &[Privilege]) -> Caller {
        Caller::Member(Member {
            account_id: Id::generate(),
            user_id: Id::generate(),
            status,
            is_owner,
            is_admin: false,
            privileges: privileges.iter().copied().collect(),
        })
    }

    #[test]
    fn r5_billing_is_for_the_current_active_owner_only() {
        let owner = member(MemberStatus::Active, true, &[Privilege::ViewBilling]);
        assert!(owner.owner().is_ok());
        let admin = member(MemberStatus::Active, false, &[Privilege::ManageLicenses]);
        assert_eq!(admin.owner().err(), Some(DomainError::NotAccountOwner));
        assert_eq!(Caller::Operator("support".into()).owner().err(), Some(DomainError::PrincipalNotAllowed));
        assert_eq!(Caller::Identity.owner().err(), Some(DomainError::PrincipalNotAllowed));
    }

    #[test]
    fn r34_saga_steps_accept_only_identity() {
        assert!(Caller::Identity.identity().is_ok());
        for other in [
            Caller::OtherService("billing-sync".into()),
            Caller::Operator("support".into()),
            member(MemberStatus::Active, true, &[Privilege::ManageLicenses]),
        ] {
            assert_eq!(other.identity().err(), Some(DomainError::PrincipalNotAllowed), "{other:?}");
        }
    }

    #[test]
    fn r31_deactivated_callers_act_on_nothing() {
        let gone = member(MemberStatus::Deactivated, false, &[Privilege::ManageLicenses]);
        assert_eq!(gone.member_with(Privilege::ManageLicenses).err(), Some(DomainError::CallerNotActive));
        let user = match &gone {
            Caller::Member(m) => m.user_id.clone(),
            _ => unreachable!(),
        };
        assert!(gone.reader_of(&user, Privilege::ManageLicenses).is_err());
    }

    #[test]
    fn members_read_their_own_and_managers_read_all() {
        let plain = member(MemberStatus::Active, false, &[]);
        let me = match &plain {
            Caller::Member(m) => m.user_id.clone(),
            _ => unreachable!(),
        };
        assert!(plain.reader_of(&me, Privilege::ManageLicenses).is_ok());
        assert!(plain.reader_of(&Id::generate(), Privilege::ManageLicenses).is_err());
        let manager = member(MemberStatus::Active, false, &[Privilege::ManageLicenses]);
        assert!(manager.reader_of(&Id::generate(), Privilege::ManageLicenses).is_ok());
    }
}
