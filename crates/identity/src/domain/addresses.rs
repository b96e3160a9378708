//! SPEC R12 with R34: the limits on adding addresses to a profile. An address added but not
//! yet verified is a claim that reserves nothing (uniqueness is decided when it is verified,
//! or when it is invited), so what bounds the harm a user can do with claims is here: few
//! pending claims per user, and few codes per address and per user in a window, so nobody can
//! flood a stranger's mailbox or their own quota of verification e-mails.

use super::DomainError;

const HOUR_MS: i64 = 3_600_000;
/// How long the code sent to a new address works; the claim lapses with it.
pub const CODE_TTL_MS: i64 = 24 * HOUR_MS;
/// Claims one user may have pending at once.
pub const MAX_PENDING_CLAIMS: i64 = 5;
/// The window the code limits count in.
pub const CODE_WINDOW_MS: i64 = HOUR_MS;
/// Codes sent to one address in a window, whoever asked.
pub const MAX_CODES_PER_ADDRESS: i64 = 3;
/// Codes one user has sent in a window, to any addresses.
pub const MAX_CODES_PER_USER: i64 = 10;

/// Codes sent in the current window: how many, and when the oldest of them went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sent {
    pub count: i64,
    pub oldest_at_ms: Option<i64>,
}

/// May one more code go out? `pending` counts the user's other unexpired claims (a new code
/// for a claim they already have replaces its code and does not add one); `to_address` the
/// codes sent to this address in the window, `by_user` those this user sent.
pub fn check_new_code(pending: i64, to_address: Sent, by_user: Sent, now_ms: i64) -> Result<(), DomainError> {
    if pending >= MAX_PENDING_CLAIMS {
        return Err(DomainError::TooManyPendingAddresses { limit: MAX_PENDING_CLAIMS });
    }
    for (sent, limit) in [(to_address, MAX_CODES_PER_ADDRESS), (by_user, MAX_CODES_PER_USER)] {
        if sent.count >= limit {
            let retry_at_ms = sent.oldest_at_ms.unwrap_or(now_ms) + CODE_WINDOW_MS;
            return Err(DomainError::VerificationCodesLimited { retry_after_ms: (retry_at_ms - now_ms).max(1_000) });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000_000;

    fn sent(count: i64, oldest_at_ms: i64) -> Sent {
        Sent { count, oldest_at_ms: Some(oldest_at_ms) }
    }

    #[test]
    fn r12_a_user_has_at_most_five_pending_claims() {
        assert!(check_new_code(4, Sent::default(), Sent::default(), NOW).is_ok());
        assert_eq!(
            check_new_code(5, Sent::default(), Sent::default(), NOW),
            Err(DomainError::TooManyPendingAddresses { limit: 5 })
        );
    }

    #[test]
    fn r12_codes_to_one_address_and_from_one_user_are_limited_per_hour() {
        assert!(check_new_code(0, sent(2, NOW - 10), sent(9, NOW - 10), NOW).is_ok());
        // The fourth code to an address within the hour waits until the first leaves it.
        assert_eq!(
            check_new_code(0, sent(3, NOW - 600_000), Sent::default(), NOW),
            Err(DomainError::VerificationCodesLimited { retry_after_ms: CODE_WINDOW_MS - 600_000 })
        );
        assert_eq!(
            check_new_code(0, Sent::default(), sent(10, NOW - CODE_WINDOW_MS + 5), NOW),
            Err(DomainError::VerificationCodesLimited { retry_after_ms: 1_000 }),
            "never less than a second"
        );
    }
}
