//! SPEC R10's step-up verification: a one-time code e-mailed to the user, exchanged for a
//! short-lived, single-use proof; wrong codes in a row lock it for a while.

const MINUTE_MS: i64 = 60_000;
/// How long an e-mailed code may be used.
pub const CODE_TTL_MS: i64 = 10 * MINUTE_MS;
/// How long a proof stays valid once the code is verified (R10: at most 5 minutes).
pub const PROOF_TTL_MS: i64 = 5 * MINUTE_MS;
/// Wrong codes in a row that lock step-up.
pub const MAX_WRONG_CODES: i64 = 5;
/// How long the lock lasts.
pub const LOCK_MS: i64 = 15 * MINUTE_MS;

/// After one more wrong code: the new count of wrong codes in a row, and the instant the
/// lock ends if this one locks (the count then starts again).
pub fn after_wrong_code(wrong_codes: i64, now_ms: i64) -> (i64, Option<i64>) {
    let wrong = wrong_codes + 1;
    if wrong >= MAX_WRONG_CODES { (0, Some(now_ms + LOCK_MS)) } else { (wrong, None) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r10_the_fifth_wrong_code_in_a_row_locks_for_fifteen_minutes() {
        let mut wrong = 0;
        for _ in 0..4 {
            let (next, lock) = after_wrong_code(wrong, 1_000);
            assert_eq!(lock, None);
            wrong = next;
        }
        assert_eq!(after_wrong_code(wrong, 1_000), (0, Some(1_000 + 15 * 60_000)));
    }
}
