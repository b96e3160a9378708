//! SPEC R8-R10 as plain rules: who may request ownership, when the owner is reminded, when
//! the request decides itself, and when it no longer holds (void).

use super::error::DomainError;
use super::model::{Account, OwnershipRequest, Plan, User, UserStatus};

const HOUR_MS: i64 = 3_600_000;
/// How long the owner has to answer (R9).
pub const DECISION_WINDOW_MS: i64 = 168 * HOUR_MS;
/// How often the owner is reminded while the request is open (R9).
pub const REMINDER_EVERY_MS: i64 = 24 * HOUR_MS;

/// R8: a `pro` account that is not CSM-eligible; an active admin, or an active member when
/// the account has no admins. `admins` counts the account's active admins.
pub fn check_may_request(account: &Account, requester: &User, admins: u64) -> Result<(), DomainError> {
    let refuse = |why: String| Err(DomainError::OwnershipRequestNotAllowed { why });
    if account.plan != Plan::Pro {
        let plan: &str = account.plan.into();
        return refuse(format!("the account is on the {plan} plan; only pro accounts can request ownership"));
    }
    if account.csm_eligible {
        return refuse("the account is served by a customer-success manager; ask them to move ownership".into());
    }
    if requester.is_owner() {
        return Err(DomainError::invalid("account_id", "you are already the owner of this account"));
    }
    if requester.status != UserStatus::Active {
        return refuse("only active users can request ownership".into());
    }
    if requester.is_admin() || admins == 0 {
        return Ok(());
    }
    refuse("only admins can request ownership while the account has admins".into())
}

/// What an open request needs next, at `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The window has closed without an answer: the requester becomes owner (R9).
    Decide,
    /// A day has passed since the request or the last reminder (R9).
    Remind,
    /// Nothing until this instant.
    Sleep(i64),
}

/// R9: a reminder 24 hours after the request and after each reminder, never at or after the
/// deadline, which decides. A clock that jumped several days sends one reminder, not a burst.
pub fn due(request: &OwnershipRequest, now_ms: i64) -> Due {
    if now_ms >= request.deadline_ms {
        return Due::Decide;
    }
    let next_reminder = request.last_reminded_at_ms.unwrap_or(request.created_at_ms) + REMINDER_EVERY_MS;
    if next_reminder >= request.deadline_ms {
        return Due::Sleep(request.deadline_ms);
    }
    if now_ms >= next_reminder { Due::Remind } else { Due::Sleep(next_reminder) }
}

/// Why an open request no longer holds at decision time, if it does not (R8-R10): the
/// requester is gone, deactivated or no longer eligible, ownership moved another way, or the
/// plan changed. `owner` is the account's current owner.
pub fn void_reason(
    request: &OwnershipRequest,
    account: &Account,
    requester: Option<&User>,
    owner: Option<&User>,
    admins: u64,
) -> Option<String> {
    let Some(requester) = requester else { return Some("the requester was removed from the account".into()) };
    if owner.map(|o| &o.id) != Some(&request.owner_user_id) {
        return Some("ownership moved another way while the request was open".into());
    }
    if requester.status == UserStatus::Deactivated {
        return Some("the requester was deactivated".into());
    }
    match check_may_request(account, requester, admins) {
        Ok(()) => None,
        Err(DomainError::OwnershipRequestNotAllowed { why }) => Some(format!("the requester may no longer ask: {why}")),
        Err(other) => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::user;
    use crate::domain::model::{AccountSettings, OwnershipRequestState, Role};
    use crate::domain::values::{AccountId, OwnershipRequestId, UserId};

    fn account(plan: Plan, csm: bool) -> Account {
        Account {
            id: AccountId::generate(),
            name: "Acme".into(),
            plan,
            csm_eligible: csm,
            managed_domains: vec![],
            settings: AccountSettings::default(),
            created_at_ms: 0,
        }
    }

    fn request(owner: &User) -> OwnershipRequest {
        OwnershipRequest {
            id: OwnershipRequestId::generate(),
            account_id: owner.account_id.clone(),
            requester_user_id: UserId::generate(),
            owner_user_id: owner.id.clone(),
            state: OwnershipRequestState::Open,
            outcome_note: String::new(),
            operation_id: String::new(),
            reminders_sent: 0,
            last_reminded_at_ms: None,
            created_at_ms: 1_000,
            deadline_ms: 1_000 + DECISION_WINDOW_MS,
            decided_at_ms: None,
        }
    }

    fn not_allowed(result: Result<(), DomainError>) -> bool {
        matches!(result, Err(DomainError::OwnershipRequestNotAllowed { .. }))
    }

    #[test]
    fn r8_only_pro_accounts_without_a_csm() {
        let admin = user(Role::Admin, UserStatus::Active);
        assert_eq!(check_may_request(&account(Plan::Pro, false), &admin, 1), Ok(()));
        for plan in [Plan::Basic, Plan::Business, Plan::Enterprise] {
            assert!(not_allowed(check_may_request(&account(plan, false), &admin, 1)), "{plan:?}");
        }
        assert!(not_allowed(check_may_request(&account(Plan::Pro, true), &admin, 1)));
    }

    #[test]
    fn r8_members_only_when_the_account_has_no_admins() {
        let pro = account(Plan::Pro, false);
        let member = user(Role::Member, UserStatus::Active);
        assert!(not_allowed(check_may_request(&pro, &member, 1)));
        assert_eq!(check_may_request(&pro, &member, 0), Ok(()));
        assert!(not_allowed(check_may_request(&pro, &user(Role::Admin, UserStatus::Deactivated), 0)));
        assert!(matches!(
            check_may_request(&pro, &user(Role::Owner, UserStatus::Active), 0),
            Err(DomainError::Invalid { .. })
        ));
    }

    #[test]
    fn r9_one_reminder_a_day_and_the_deadline_decides() {
        let owner = user(Role::Owner, UserStatus::Active);
        let mut open = request(&owner);
        let day = REMINDER_EVERY_MS;
        assert_eq!(due(&open, 1_000), Due::Sleep(1_000 + day));
        assert_eq!(due(&open, 1_000 + day), Due::Remind);
        // Three days skipped at once: one reminder now, the next a day later.
        assert_eq!(due(&open, 1_000 + 3 * day + 5), Due::Remind);
        open.last_reminded_at_ms = Some(1_000 + 3 * day + 5);
        assert_eq!(due(&open, 1_000 + 3 * day + 6), Due::Sleep(1_000 + 4 * day + 5));
        // No reminder at the deadline itself: the deadline decides.
        open.last_reminded_at_ms = Some(1_000 + 6 * day);
        assert_eq!(due(&open, 1_000 + 6 * day + 1), Due::Sleep(open.deadline_ms));
        assert_eq!(due(&open, open.deadline_ms - 1), Due::Sleep(open.deadline_ms));
        assert_eq!(due(&open, open.deadline_ms), Due::Decide);
    }

    #[test]
    fn r10_a_request_is_void_once_it_no_longer_holds() {
        let pro = account(Plan::Pro, false);
        let owner = user(Role::Owner, UserStatus::Active);
        let admin = user(Role::Admin, UserStatus::Active);
        let open = request(&owner);
        assert_eq!(void_reason(&open, &pro, Some(&admin), Some(&owner), 1), None);
        assert!(void_reason(&open, &pro, None, Some(&owner), 1).is_some(), "removed");
        let demoted = user(Role::Member, UserStatus::Active);
        assert!(void_reason(&open, &pro, Some(&demoted), Some(&owner), 1).is_some(), "demoted");
        let deactivated = user(Role::Admin, UserStatus::Deactivated);
        assert!(void_reason(&open, &pro, Some(&deactivated), Some(&owner), 1).is_some(), "deactivated");
        let other_owner = user(Role::Owner, UserStatus::Active);
        assert!(void_reason(&open, &pro, Some(&admin), Some(&other_owner), 1).is_some(), "moved");
        assert!(void_reason(&open, &account(Plan::Business, false), Some(&admin), Some(&owner), 1).is_some(), "plan");
    }
}
