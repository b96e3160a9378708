//! Refund of the unused remainder of a subscription period (SPEC R28).
//!
//! Time is counted in whole seconds: the period is `P = (end - start) / 1000` seconds and
//! the unused part `U = (end - max(now, start)) / 1000` seconds, clamped to `0..=P` (a
//! started second counts as used). The refund is `floor(price * U / P)` minor units,
//! computed in `u128`, where `price * U` is below 2^126 for any `i64` price and period, so
//! nothing can overflow. Rounding down means a refund never exceeds the unused share of what
//! was paid; it is exactly the price at the start and exactly zero at the end.

use super::error::DomainError;

/// Shortest period a subscription may have.
pub const MIN_PERIOD_MS: i64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proration {
    pub amount_minor: i64,
    pub unused_seconds: i64,
    pub period_seconds: i64,
}

/// Checks a price and period before a subscription is created.
pub fn validate(price_minor: i64, period_start_ms: i64, period_end_ms: i64) -> Result<(), DomainError> {
    if price_minor < 1 {
        return Err(DomainError::invalid("price_minor", "must be at least 1 minor unit"));
    }
    if period_start_ms < 0 {
        return Err(DomainError::invalid("period_start_ms", "must not be before 1970"));
    }
    if period_end_ms.checked_sub(period_start_ms).is_none_or(|length| length < MIN_PERIOD_MS) {
        return Err(DomainError::invalid("period_end_ms", "must be at least one second after period_start_ms"));
    }
    Ok(())
}

/// The refund at `now_ms` for a valid price and period (see [`validate`]).
pub fn refund(price_minor: i64, period_start_ms: i64, period_end_ms: i64, now_ms: i64) -> Proration {
    let period_seconds = (period_end_ms - period_start_ms) / 1_000;
    let unused_ms = period_end_ms.saturating_sub(now_ms.max(period_start_ms)).max(0);
    let unused_seconds = (unused_ms / 1_000).min(period_seconds);
    let price = u128::try_from(price_minor).unwrap_or(0);
    let share = price * u128::try_from(unused_seconds).unwrap_or(0) / u128::try_from(period_seconds).unwrap_or(1);
    Proration {
        // share <= price <= i64::MAX, so this conversion always succeeds.
        amount_minor: i64::try_from(share).unwrap_or(price_minor),
        unused_seconds,
        period_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY_MS: i64 = 86_400_000;

    #[test]
    fn r28_half_a_month_refunds_half_rounded_down() {
        // 30 days at 1999 cents, 15 days left: 999.5 cents, rounded down to 999.
        let refund = refund(1_999, 0, 30 * DAY_MS, 15 * DAY_MS);
        assert_eq!(refund, Proration { amount_minor: 999, unused_seconds: 15 * 86_400, period_seconds: 30 * 86_400 });
    }

    #[test]
    fn r28_a_started_second_counts_as_used() {
        let refund = refund(1_000, 0, 10_000, 1);
        assert_eq!((refund.unused_seconds, refund.amount_minor), (9, 900));
    }

    #[test]
    fn r28_extremes_do_not_overflow() {
        let whole = refund(i64::MAX, 0, i64::MAX, 0);
        assert_eq!(whole.amount_minor, i64::MAX);
        let last_second = refund(i64::MAX, 0, i64::MAX, i64::MAX - 1_000);
        assert_eq!(last_second.unused_seconds, 1);
        assert_eq!(last_second.amount_minor, i64::MAX / (i64::MAX / 1_000));
        assert_eq!(refund(i64::MAX, i64::MAX - 1_000, i64::MAX, i64::MIN).amount_minor, i64::MAX);
        assert_eq!(refund(1, 0, 1_000, i64::MAX).amount_minor, 0);
    }

    #[test]
    fn periods_and_prices_are_validated() {
        assert!(validate(1, 0, 1_000).is_ok());
        assert!(validate(0, 0, 1_000).is_err());
        assert!(validate(1, 0, 999).is_err());
        assert!(validate(1, 5_000, 1_000).is_err());
        assert!(validate(1, -1, 1_000).is_err());
        assert!(validate(i64::MAX, 0, i64::MAX).is_ok());
    }

    fn period() -> impl Strategy<Value = (i64, i64)> {
        (0..i64::MAX - MIN_PERIOD_MS).prop_flat_map(|start| (Just(start), start + MIN_PERIOD_MS..=i64::MAX))
    }

    proptest! {
        #[test]
        fn r28_refund_is_between_zero_and_the_price(price in 1..=i64::MAX, (start, end) in period(), now in any::<i64>()) {
            let refund = refund(price, start, end, now);
            prop_assert!(refund.amount_minor >= 0);
            prop_assert!(refund.amount_minor <= price);
            prop_assert!(refund.unused_seconds <= refund.period_seconds);
        }

        #[test]
        fn r28_exact_at_the_start_and_the_end(price in 1..=i64::MAX, (start, end) in period()) {
            prop_assert_eq!(refund(price, start, end, start).amount_minor, price);
            prop_assert_eq!(refund(price, start, end, end).amount_minor, 0);
        }

        #[test]
        fn r28_refund_never_grows_with_time(price in 1..=i64::MAX, (start, end) in period(), a in any::<i64>(), b in any::<i64>()) {
            let (earlier, later) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(refund(price, start, end, earlier).amount_minor >= refund(price, start, end, later).amount_minor);
        }

        #[test]
        fn r28_refund_is_the_exact_floor_of_the_unused_share(price in 1..=1_000_000_000i64, days in 1..=366i64, used_s in 0..=366 * 86_400i64) {
            let end = days * DAY_MS;
            let refund = refund(price, 0, end, used_s * 1_000);
            let unused = (days * 86_400 - used_s).max(0);
            // refund = floor(price * unused / period) exactly when refund * period <= price * unused < (refund + 1) * period.
            let (p, u, r, period) = (i128::from(price), i128::from(unused), i128::from(refund.amount_minor), i128::from(days * 86_400));
            prop_assert!(r * period <= p * u && p * u < (r + 1) * period);
        }
    }
}
