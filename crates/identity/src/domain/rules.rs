//! The checks SPEC's identity rules impose, as pure functions over current data. Use cases
//! load the data inside their transaction, call these, and only then write.

use roster_platform::stored_text::StoredText;
use std::collections::BTreeSet;

use super::error::DomainError;
use super::model::{Invitation, Privilege, Role, User, UserStatus};
use super::privileges::{Actor, grantable};
use super::values::{Domain, Email};

/// How long an invitation link stays valid.
pub const INVITATION_TTL_MS: i64 = 30 * 24 * 3_600_000;

/// R1, R2: only the owner transfers ownership, and only to an active admin of the account.
pub fn check_ownership_transfer(actor: &Actor, new_owner: &User) -> Result<(), DomainError> {
    if !actor.is_owner() {
        return Err(DomainError::NotAccountOwner);
    }
    if new_owner.id == actor.user.id {
        return Err(DomainError::invalid("new_owner_user_id", "is already the owner"));
    }
    match new_owner.status {
        UserStatus::Pending => return Err(DomainError::UserPending),
        UserStatus::Deactivated => return Err(DomainError::NewOwnerNotActiveAdmin),
        UserStatus::Active => {}
    }
    if !new_owner.is_admin() {
        return Err(DomainError::NewOwnerNotActiveAdmin);
    }
    Ok(())
}

/// R11: support may make any active user of the account its owner, but not the owner again.
pub fn check_support_reassignment(new_owner: &User) -> Result<(), DomainError> {
    match new_owner.status {
        _ if new_owner.is_owner() => Err(DomainError::invalid("new_owner_user_id", "is already the owner")),
        UserStatus::Pending => Err(DomainError::UserPending),
        UserStatus::Deactivated => Err(DomainError::UserDeactivated),
        UserStatus::Active => Ok(()),
    }
}

/// R14, R15, R17: whether `actor` may deactivate, unlink or delete `target`.
pub fn check_removal(actor: &Actor, target: &User) -> Result<(), DomainError> {
    actor.require(Privilege::ManageUsers)?;
    check_removable(target)
}

/// R15, R17: the target's side of [`check_removal`], checked again when a saga reaches the
/// point of no return (the user may have been made an admin meanwhile).
pub fn check_removable(target: &User) -> Result<(), DomainError> {
    if target.is_owner() {
        return Err(DomainError::OwnerProtected);
    }
    if target.status == UserStatus::Pending {
        return Err(DomainError::UserPending);
    }
    if target.is_admin() {
        return Err(DomainError::AdminMustBeDemoted);
    }
    Ok(())
}

/// R24 on top of [`check_removal`]: a user whose e-mail domain the account manages stays.
pub fn check_unlink(actor: &Actor, target: &User, managed_domains: &[Domain]) -> Result<(), DomainError> {
    check_removal(actor, target)?;
    check_not_managed(target, managed_domains)
}

/// R24 alone, for the saga's re-check.
pub fn check_not_managed(target: &User, managed_domains: &[Domain]) -> Result<(), DomainError> {
    if managed_domains.iter().any(|d| d.as_str() == target.email.domain()) {
        return Err(DomainError::ManagedDomainUser);
    }
    Ok(())
}

/// R23: data goes to another active user of the same account (`target` is looked up in the
/// account, so a user elsewhere arrives here as `None`).
pub fn check_transfer_target(subject: &User, target: Option<&User>) -> Result<(), DomainError> {
    let target = target.ok_or(DomainError::TargetNotInAccount)?;
    if target.id == subject.id {
        return Err(DomainError::invalid("transfer.target_user_id", "must be another user than the one removed"));
    }
    if target.status != UserStatus::Active {
        return Err(DomainError::TargetNotActive);
    }
    Ok(())
}

/// R16 with R14: acting on many users at once needs the bulk-remove privilege (the owner's,
/// or a custom role's) besides managing users; each row then gets the single-user checks.
pub fn check_bulk_removal(actor: &Actor) -> Result<(), DomainError> {
    actor.require(Privilege::BulkRemoveUsers)?;
    actor.require(Privilege::ManageUsers)
}

/// R18 on top of [`check_removal`]: deactivating twice is refused, not silently repeated.
pub fn check_deactivation(actor: &Actor, target: &User) -> Result<(), DomainError> {
    check_removal(actor, target)?;
    if target.status == UserStatus::Deactivated {
        return Err(DomainError::UserDeactivated);
    }
    Ok(())
}

/// R19: only a deactivated user can be reactivated, by someone who manages users.
pub fn check_reactivation(actor: &Actor, target: &User) -> Result<(), DomainError> {
    actor.require(Privilege::ManageUsers)?;
    if target.status != UserStatus::Deactivated {
        return Err(DomainError::UserNotDeactivated);
    }
    Ok(())
}

/// R2, R17: role changes. Ownership never moves this way; giving or taking admin rights is
/// the owner's decision; a user who has not activated cannot become an admin.
pub fn check_role_change(actor: &Actor, target: &User, new_role: &Role) -> Result<(), DomainError> {
    actor.require(Privilege::ManageRoles)?;
    if *new_role == Role::Owner || target.is_owner() {
        return Err(DomainError::OwnerRoleFixed);
    }
    if (target.is_admin() || *new_role == Role::Admin) && !actor.is_owner() {
        return Err(DomainError::NotAccountOwner);
    }
    if *new_role == Role::Admin {
        match target.status {
            UserStatus::Pending => return Err(DomainError::UserPending),
            UserStatus::Deactivated => return Err(DomainError::UserDeactivated),
            UserStatus::Active => {}
        }
    }
    Ok(())
}

/// R16: roles carry privileges, so defining or handing out a role is limited to privileges
/// the actor holds; otherwise an admin could mint "bulk remove" for themselves. Billing is
/// never grantable (SPEC R5).
pub fn check_grant(actor: &Actor, privileges: &BTreeSet<Privilege>) -> Result<(), DomainError> {
    actor.require(Privilege::ManageRoles)?;
    if let Some(p) = privileges.iter().find(|p| !grantable(**p)) {
        return Err(DomainError::invalid(
            "privileges",
            format!("{} belongs to the owner and cannot be granted", p.as_str()),
        ));
    }
    match privileges.iter().find(|p| !actor.has(**p)) {
        Some(p) => Err(DomainError::MissingPrivilege(*p)),
        None => Ok(()),
    }
}

/// R2, R26: inviting needs the manage-users privilege; invitees start as members or with a
/// custom role, since admin rights wait for activation.
pub fn check_invitation(actor: &Actor, role: &Role) -> Result<(), DomainError> {
    actor.require(Privilege::ManageUsers)?;
    match role {
        Role::Owner => Err(DomainError::OwnerRoleFixed),
        Role::Admin => Err(DomainError::UserPending),
        Role::Member | Role::Custom(_) => Ok(()),
    }
}

/// R26, R29: the invitation must still be open and addressed to the accepting user.
pub fn check_acceptance(invitation: &Invitation, invitee_email: &Email, now_ms: i64) -> Result<(), DomainError> {
    if !invitation.is_open_at(now_ms) || invitation.email != *invitee_email {
        return Err(DomainError::InvitationNotFound);
    }
    Ok(())
}

/// R27: an invitee can only leave an account that has nobody else in it.
pub fn check_leaving_account(other_users: u64) -> Result<(), DomainError> {
    if other_users > 0 {
        return Err(DomainError::AccountHasOtherUsers { other_users });
    }
    Ok(())
}

/// What licensing reports the owner and the new owner hold (SPEC R4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhoneHoldings {
    pub owner_has_phone_license: bool,
    pub owner_numbers: Vec<String>,
    pub new_owner_has_phone_license: bool,
}

impl PhoneHoldings {
    /// R4: what would move to the new owner (`license:phone`, `number:<n>`); nothing when they
    /// hold a phone license already.
    pub fn would_move(&self) -> Vec<String> {
        if self.new_owner_has_phone_license {
            return Vec::new();
        }
        let license = self.owner_has_phone_license.then(|| "license:phone".to_owned());
        license.into_iter().chain(self.owner_numbers.iter().map(|n| format!("number:{n}"))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::user;
    use crate::domain::model::InvitationStatus;
    use crate::domain::values::{AccountId, InvitationId, RoleId, UserId};
    use strum::VariantArray;

    fn actor(role: Role) -> Actor {
        Actor::new(user(role, UserStatus::Active), None)
    }

    fn custom_actor(privileges: &[Privilege]) -> Actor {
        Actor::new(
            user(Role::Custom(RoleId::generate()), UserStatus::Active),
            Some(privileges.iter().copied().collect()),
        )
    }

    #[test]
    fn r11_support_makes_any_active_user_the_owner() {
        for role in [Role::Admin, Role::Member, Role::Custom(RoleId::generate())] {
            assert_eq!(check_support_reassignment(&user(role, UserStatus::Active)), Ok(()));
        }
        assert_eq!(check_support_reassignment(&user(Role::Member, UserStatus::Pending)), Err(DomainError::UserPending));
        assert_eq!(
            check_support_reassignment(&user(Role::Member, UserStatus::Deactivated)),
            Err(DomainError::UserDeactivated)
        );
        assert!(matches!(
            check_support_reassignment(&user(Role::Owner, UserStatus::Active)),
            Err(DomainError::Invalid { .. })
        ));
    }

    #[test]
    fn r1_only_the_owner_can_transfer_ownership() {
        let target = user(Role::Admin, UserStatus::Active);
        assert_eq!(check_ownership_transfer(&actor(Role::Admin), &target), Err(DomainError::NotAccountOwner));
        assert_eq!(check_ownership_transfer(&actor(Role::Member), &target), Err(DomainError::NotAccountOwner));
        assert_eq!(
            check_ownership_transfer(&custom_actor(Privilege::VARIANTS), &target),
            Err(DomainError::NotAccountOwner)
        );
        assert_eq!(check_ownership_transfer(&actor(Role::Owner), &target), Ok(()));
    }

    #[test]
    fn r2_new_owner_must_be_an_active_admin() {
        let owner = actor(Role::Owner);
        assert_eq!(
            check_ownership_transfer(&owner, &user(Role::Member, UserStatus::Active)),
            Err(DomainError::NewOwnerNotActiveAdmin)
        );
        assert_eq!(
            check_ownership_transfer(&owner, &user(Role::Admin, UserStatus::Pending)),
            Err(DomainError::UserPending)
        );
        assert_eq!(
            check_ownership_transfer(&owner, &user(Role::Admin, UserStatus::Deactivated)),
            Err(DomainError::NewOwnerNotActiveAdmin)
        );
        assert!(matches!(check_ownership_transfer(&owner, &owner.user), Err(DomainError::Invalid { .. })));
    }

    #[test]
    fn r2_pending_user_cannot_become_admin() {
        let owner = actor(Role::Owner);
        assert_eq!(
            check_role_change(&owner, &user(Role::Member, UserStatus::Pending), &Role::Admin),
            Err(DomainError::UserPending)
        );
        assert_eq!(check_invitation(&owner, &Role::Admin), Err(DomainError::UserPending));
        assert_eq!(check_role_change(&owner, &user(Role::Member, UserStatus::Active), &Role::Admin), Ok(()));
    }

    #[test]
    fn r15_pending_users_cannot_be_removed() {
        let owner = actor(Role::Owner);
        assert_eq!(check_deactivation(&owner, &user(Role::Member, UserStatus::Pending)), Err(DomainError::UserPending));
        assert_eq!(check_removal(&owner, &user(Role::Member, UserStatus::Pending)), Err(DomainError::UserPending));
    }

    #[test]
    fn r17_admins_must_be_demoted_and_owner_is_protected() {
        let owner = actor(Role::Owner);
        assert_eq!(
            check_deactivation(&owner, &user(Role::Admin, UserStatus::Active)),
            Err(DomainError::AdminMustBeDemoted)
        );
        assert_eq!(
            check_deactivation(&owner, &user(Role::Owner, UserStatus::Active)),
            Err(DomainError::OwnerProtected)
        );
        assert_eq!(
            check_deactivation(&actor(Role::Admin), &user(Role::Owner, UserStatus::Active)),
            Err(DomainError::OwnerProtected)
        );
    }

    #[test]
    fn r17_only_the_owner_demotes_an_admin() {
        let target = user(Role::Admin, UserStatus::Active);
        assert_eq!(check_role_change(&actor(Role::Admin), &target, &Role::Member), Err(DomainError::NotAccountOwner));
        assert_eq!(check_role_change(&actor(Role::Owner), &target, &Role::Member), Ok(()));
        assert_eq!(check_role_change(&actor(Role::Owner), &target, &Role::Owner), Err(DomainError::OwnerRoleFixed));
        assert_eq!(
            check_role_change(&actor(Role::Owner), &user(Role::Owner, UserStatus::Active), &Role::Member),
            Err(DomainError::OwnerRoleFixed)
        );
    }

    #[test]
    fn r14_removal_needs_the_manage_users_privilege() {
        let target = user(Role::Member, UserStatus::Active);
        assert_eq!(
            check_deactivation(&actor(Role::Member), &target),
            Err(DomainError::MissingPrivilege(Privilege::ManageUsers))
        );
        assert_eq!(check_deactivation(&actor(Role::Admin), &target), Ok(()));
        assert_eq!(check_deactivation(&custom_actor(&[Privilege::ManageUsers]), &target), Ok(()));
    }

    #[test]
    fn r18_deactivating_twice_is_refused() {
        let target = user(Role::Member, UserStatus::Deactivated);
        assert_eq!(check_deactivation(&actor(Role::Owner), &target), Err(DomainError::UserDeactivated));
    }

    #[test]
    fn r19_only_deactivated_users_are_reactivated() {
        let owner = actor(Role::Owner);
        assert_eq!(
            check_reactivation(&owner, &user(Role::Member, UserStatus::Active)),
            Err(DomainError::UserNotDeactivated)
        );
        assert_eq!(check_reactivation(&owner, &user(Role::Member, UserStatus::Deactivated)), Ok(()));
        assert_eq!(
            check_reactivation(&actor(Role::Member), &user(Role::Member, UserStatus::Deactivated)),
            Err(DomainError::MissingPrivilege(Privilege::ManageUsers))
        );
    }

    fn invitation(email: &str, status: InvitationStatus, expires_at_ms: i64) -> Invitation {
        Invitation {
            id: InvitationId::generate(),
            account_id: AccountId::generate(),
            email: Email::parse(email).expect("email"),
            user_id: UserId::generate(),
            status,
            invited_by: UserId::generate(),
            role: Role::Member,
            created_at_ms: 0,
            expires_at_ms,
            send_count: 1,
        }
    }

    #[test]
    fn r26_revoked_expired_or_foreign_invitations_are_not_found() {
        let me = Email::parse("new@example.com").expect("email");
        assert_eq!(check_acceptance(&invitation("new@example.com", InvitationStatus::Pending, 100), &me, 50), Ok(()));
        assert_eq!(
            check_acceptance(&invitation("new@example.com", InvitationStatus::Pending, 100), &me, 100),
            Err(DomainError::InvitationNotFound)
        );
        assert_eq!(
            check_acceptance(&invitation("new@example.com", InvitationStatus::Revoked, 100), &me, 50),
            Err(DomainError::InvitationNotFound)
        );
        assert_eq!(
            check_acceptance(&invitation("other@example.com", InvitationStatus::Pending, 100), &me, 50),
            Err(DomainError::InvitationNotFound)
        );
    }

    #[test]
    fn r26_inviting_needs_manage_users() {
        assert_eq!(
            check_invitation(&actor(Role::Member), &Role::Member),
            Err(DomainError::MissingPrivilege(Privilege::ManageUsers))
        );
        assert_eq!(check_invitation(&actor(Role::Admin), &Role::Member), Ok(()));
        assert_eq!(check_invitation(&actor(Role::Owner), &Role::Owner), Err(DomainError::OwnerRoleFixed));
    }

    #[test]
    fn r27_invitee_account_must_have_no_other_users() {
        assert_eq!(check_leaving_account(2), Err(DomainError::AccountHasOtherUsers { other_users: 2 }));
        assert_eq!(check_leaving_account(0), Ok(()));
    }

    #[test]
    fn r16_bulk_removal_needs_the_bulk_privilege_and_managing_users() {
        let missing = |p| Err(DomainError::MissingPrivilege(p));
        assert_eq!(check_bulk_removal(&actor(Role::Owner)), Ok(()));
        assert_eq!(check_bulk_removal(&actor(Role::Admin)), missing(Privilege::BulkRemoveUsers));
        assert_eq!(check_bulk_removal(&actor(Role::Member)), missing(Privilege::BulkRemoveUsers));
        assert_eq!(check_bulk_removal(&custom_actor(&[Privilege::BulkRemoveUsers])), missing(Privilege::ManageUsers));
        let both = custom_actor(&[Privilege::BulkRemoveUsers, Privilege::ManageUsers]);
        assert_eq!(check_bulk_removal(&both), Ok(()));
    }

    #[test]
    fn r16_roles_grant_only_what_the_granter_holds() {
        let bulk: BTreeSet<Privilege> = [Privilege::BulkRemoveUsers].into_iter().collect();
        assert_eq!(
            check_grant(&actor(Role::Admin), &bulk),
            Err(DomainError::MissingPrivilege(Privilege::BulkRemoveUsers))
        );
        assert_eq!(check_grant(&actor(Role::Owner), &bulk), Ok(()));
        let billing: BTreeSet<Privilege> = [Privilege::ViewBilling].into_iter().collect();
        assert!(matches!(
            check_grant(&actor(Role::Owner), &billing),
            Err(DomainError::Invalid { field: "privileges", .. })
        ));
        let manage: BTreeSet<Privilege> = [Privilege::ManageUsers].into_iter().collect();
        assert_eq!(
            check_grant(&actor(Role::Member), &manage),
            Err(DomainError::MissingPrivilege(Privilege::ManageRoles))
        );
    }

    #[test]
    fn r24_managed_domain_users_cannot_be_unlinked() {
        let admin = actor(Role::Admin);
        let member = user(Role::Member, UserStatus::Active);
        let managed = [Domain::parse("example.com").expect("domain")];
        let elsewhere = [Domain::parse("other.example").expect("domain")];
        assert_eq!(check_unlink(&admin, &member, &managed), Err(DomainError::ManagedDomainUser));
        assert_eq!(check_unlink(&admin, &member, &elsewhere), Ok(()));
        assert_eq!(
            check_unlink(&admin, &user(Role::Admin, UserStatus::Active), &elsewhere),
            Err(DomainError::AdminMustBeDemoted),
            "R17 comes first"
        );
    }

    #[test]
    fn r23_transfer_target_is_another_active_user_of_the_account() {
        let subject = user(Role::Member, UserStatus::Active);
        assert_eq!(check_transfer_target(&subject, None), Err(DomainError::TargetNotInAccount));
        assert!(matches!(check_transfer_target(&subject, Some(&subject)), Err(DomainError::Invalid { .. })));
        let deactivated = user(Role::Member, UserStatus::Deactivated);
        assert_eq!(check_transfer_target(&subject, Some(&deactivated)), Err(DomainError::TargetNotActive));
        let colleague = user(Role::Admin, UserStatus::Active);
        assert_eq!(check_transfer_target(&subject, Some(&colleague)), Ok(()));
    }
}
