//! Who may do what: the privileges each role grants, and the [`Caller`] of an operation as
//! loaded from current data (never from token claims, SPEC R34).

use std::collections::BTreeSet;
use strum::VariantArray;

use super::error::DomainError;
use super::model::{Privilege, Role, User};

/// Privileges the built-in roles carry. Billing is the owner's alone (SPEC R5), so it follows
/// ownership the moment it moves; custom roles can never carry it.
pub fn built_in(role: &Role) -> BTreeSet<Privilege> {
    match role {
        Role::Owner => Privilege::VARIANTS.iter().copied().collect(),
        Role::Admin => {
            [Privilege::ManageUsers, Privilege::ManageRoles, Privilege::ManageLicenses, Privilege::ViewAudit]
                .into_iter()
                .collect()
        }
        Role::Member | Role::Custom(_) => BTreeSet::new(),
    }
}

/// Whether a custom role may carry `privilege`.
pub fn grantable(privilege: Privilege) -> bool {
    privilege != Privilege::ViewBilling
}

/// An active user of an account, with the privileges their current role gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user: User,
    pub privileges: BTreeSet<Privilege>,
}

impl Actor {
    /// `custom` holds the privileges of the user's custom role, if they have one.
    pub fn new(user: User, custom: Option<BTreeSet<Privilege>>) -> Self {
        let privileges = match (&user.role, custom) {
            (Role::Custom(_), Some(custom)) => custom.into_iter().filter(|p| grantable(*p)).collect(),
            (role, _) => built_in(role),
        };
        Self { user, privileges }
    }

    pub fn is_owner(&self) -> bool {
        self.user.is_owner()
    }

    pub fn has(&self, privilege: Privilege) -> bool {
        self.privileges.contains(&privilege)
    }

    pub fn require(&self, privilege: Privilege) -> Result<(), DomainError> {
        if self.has(privilege) { Ok(()) } else { Err(DomainError::MissingPrivilege(privilege)) }
    }
}

/// The least a caller must be for a kind of change, checked from current data before an
/// earlier answer to the same request id is replayed (SPEC R34). The use case then applies its
/// full rules, which include this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any active user of the account.
    ActiveMember,
    /// An active user holding the privilege.
    Privilege(Privilege),
    /// The account's owner.
    Owner,
    /// An operator, or an active user holding the privilege: who may read what it guards.
    Reader(Privilege),
    /// Platform support alone (SPEC R11).
    Operator,
}

/// The caller of an operation on one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An active user of that account.
    Member(Actor),
    /// Platform support; never an account user (SPEC R11).
    Operator(String),
    /// Another Roster service.
    Service(String),
}

impl Caller {
    /// The acting member, or a refusal for operators and services.
    pub fn member(&self) -> Result<&Actor, DomainError> {
        match self {
            Self::Member(actor) => Ok(actor),
            Self::Operator(_) | Self::Service(_) => Err(DomainError::MissingPrivilege(Privilege::ManageUsers)),
        }
    }

    /// The user acting on their own behalf (their profile, their request, their step-up);
    /// operators and services act for no user of the account.
    pub fn acting_user(&self) -> Result<&Actor, DomainError> {
        match self {
            Self::Member(actor) => Ok(actor),
            Self::Operator(_) | Self::Service(_) => Err(DomainError::OperatorOnly),
        }
    }

    /// A member holding `privilege`.
    pub fn member_with(&self, privilege: Privilege) -> Result<&Actor, DomainError> {
        let actor = self.member()?;
        actor.require(privilege)?;
        Ok(actor)
    }

    /// Whether the caller is at least what `need` asks.
    pub fn satisfies(&self, need: Need) -> Result<(), DomainError> {
        match need {
            Need::ActiveMember => self.member().map(drop),
            Need::Privilege(privilege) => self.member_with(privilege).map(drop),
            Need::Owner => match self {
                Self::Member(actor) if actor.is_owner() => Ok(()),
                _ => Err(DomainError::NotAccountOwner),
            },
            Need::Reader(privilege) => self.may_read(Some(privilege)),
            Need::Operator => match self {
                Self::Operator(_) => Ok(()),
                _ => Err(DomainError::OperatorOnly),
            },
        }
    }

    /// Reads that members with `privilege` and operators may make.
    pub fn may_read(&self, privilege: Option<Privilege>) -> Result<(), DomainError> {
        match (self, privilege) {
            (Self::Operator(_), _) | (Self::Member(_), None) => Ok(()),
            (Self::Member(actor), Some(p)) => actor.require(p),
            (Self::Service(_), _) => Err(DomainError::OperatorOnly),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::UserStatus;
    use crate::domain::values::RoleId;

    fn user(role: Role) -> User {
        crate::domain::fixtures::user(role, UserStatus::Active)
    }

    #[test]
    fn r5_only_the_owner_sees_billing() {
        assert!(Actor::new(user(Role::Owner), None).has(Privilege::ViewBilling));
        assert!(!Actor::new(user(Role::Admin), None).has(Privilege::ViewBilling));
        assert!(!Actor::new(user(Role::Member), None).has(Privilege::ViewBilling));
        let custom = [Privilege::ViewBilling, Privilege::ManageUsers].into_iter().collect();
        let holder = Actor::new(user(Role::Custom(RoleId::generate())), Some(custom));
        assert!(!holder.has(Privilege::ViewBilling), "custom roles never carry billing");
        assert!(holder.has(Privilege::ManageUsers));
    }

    #[test]
    fn r16_bulk_remove_comes_from_ownership_or_a_custom_role() {
        assert!(Actor::new(user(Role::Owner), None).has(Privilege::BulkRemoveUsers));
        assert!(!Actor::new(user(Role::Admin), None).has(Privilege::BulkRemoveUsers));
        let custom = [Privilege::BulkRemoveUsers].into_iter().collect();
        assert!(Actor::new(user(Role::Custom(RoleId::generate())), Some(custom)).has(Privilege::BulkRemoveUsers));
    }

    #[test]
    fn members_have_no_privileges_and_operators_only_read() {
        let member = Caller::Member(Actor::new(user(Role::Member), None));
        assert_eq!(
            member.member_with(Privilege::ManageUsers).err(),
            Some(DomainError::MissingPrivilege(Privilege::ManageUsers))
        );
        assert!(member.may_read(None).is_ok());
        let operator = Caller::Operator("support".into());
        assert!(operator.may_read(Some(Privilege::ViewAudit)).is_ok());
        assert!(operator.member().is_err());
        assert!(Caller::Service("licensing".into()).may_read(None).is_err());
    }

    #[test]
    fn r34_needs_are_met_by_current_role_only() {
        let owner = Caller::Member(Actor::new(user(Role::Owner), None));
        let admin = Caller::Member(Actor::new(user(Role::Admin), None));
        let member = Caller::Member(Actor::new(user(Role::Member), None));
        let operator = Caller::Operator("support".into());
        assert!(owner.satisfies(Need::Owner).is_ok());
        assert_eq!(admin.satisfies(Need::Owner), Err(DomainError::NotAccountOwner));
        assert!(admin.satisfies(Need::Privilege(Privilege::ManageUsers)).is_ok());
        assert!(member.satisfies(Need::Privilege(Privilege::ManageUsers)).is_err());
        assert!(member.satisfies(Need::ActiveMember).is_ok());
        assert!(operator.satisfies(Need::ActiveMember).is_err());
        assert!(operator.satisfies(Need::Operator).is_ok());
        assert_eq!(owner.satisfies(Need::Operator), Err(DomainError::OperatorOnly));
    }
}
