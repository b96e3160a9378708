//! SPEC R20: when a deactivated user is deleted by the account's auto-delete setting, and when
//! the admins are told.

const DAY_MS: i64 = 24 * 3_600_000;
/// How long before a deletion the admins are e-mailed (R20), and the least time between
/// changing the setting and any deletion it causes.
pub const NOTICE_AHEAD_MS: i64 = 7 * DAY_MS;

/// When a user deactivated at `deactivated_at_ms` is deleted under a setting of `days`, last
/// changed at `changed_at_ms`: `days` after deactivation (also for users deactivated before
/// the setting was turned on), but never sooner than a week after the setting changed. A user
/// whose date has already passed when the setting is turned on is thus deleted a week later,
/// after the notice, and not the moment the setting is saved.
pub fn deletion_due(deactivated_at_ms: i64, days: u32, changed_at_ms: i64) -> i64 {
    (deactivated_at_ms + i64::from(days) * DAY_MS).max(changed_at_ms + NOTICE_AHEAD_MS)
}

/// When the admins are told of that deletion.
pub fn notice_due(deletion_due_ms: i64) -> i64 {
    deletion_due_ms - NOTICE_AHEAD_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r20_n_days_after_deactivation_and_a_week_after_the_setting_changed_at_the_earliest() {
        let turned_on = 100 * DAY_MS;
        // Deactivated after the setting: 30 days later.
        assert_eq!(deletion_due(turned_on + DAY_MS, 30, turned_on), turned_on + 31 * DAY_MS);
        // Deactivated 10 days before the setting: 20 days after it.
        assert_eq!(deletion_due(turned_on - 10 * DAY_MS, 30, turned_on), turned_on + 20 * DAY_MS);
        // Deactivated long before: a week after the setting, never at once.
        assert_eq!(deletion_due(turned_on - 90 * DAY_MS, 30, turned_on), turned_on + 7 * DAY_MS);
        assert_eq!(notice_due(turned_on + 7 * DAY_MS), turned_on);
    }
}
