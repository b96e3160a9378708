//! The injectable clock. Everything that reads "now" goes through [`Clock`] so tests and the
//! dev server can move time by hand (a 168-hour window becomes testable in a second).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> Millis;
}

pub type SharedClock = Arc<dyn Clock>;

/// Wall-clock time; what production uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that only moves when told to. Tests and the dev server's manual-clock mode.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn starting_at(now_ms: Millis) -> Self {
        Self { now: AtomicI64::new(now_ms) }
    }

    pub fn advance_ms(&self, by: Millis) {
        self.now.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }
}

/// Wall-clock time that can be moved ahead by hand: time passes as usual (so retries and
/// leases work), and jumps forward when told. The dev server's `--manual-clock`, where a person
/// skips a day to see a reminder arrive.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    ahead_ms: AtomicI64,
}

impl ShiftedClock {
    /// A clock already `ahead_ms` ahead of the wall clock (a lead kept across restarts).
    pub fn ahead_by(ahead_ms: Millis) -> Self {
        Self { ahead_ms: AtomicI64::new(ahead_ms) }
    }

    /// How far ahead of the wall clock it runs.
    pub fn ahead_ms(&self) -> Millis {
        self.ahead_ms.load(Ordering::SeqCst)
    }

    pub fn advance_ms(&self, by: Millis) {
        self.ahead_ms.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now_ms(&self) -> Millis {
        SystemClock.now_ms().saturating_add(self.ahead_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::starting_at(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance_ms(168 * 3_600_000);
        assert_eq!(clock.now_ms(), 1_000 + 168 * 3_600_000);
    }

    #[test]
    fn shifted_clock_runs_and_jumps_ahead() {
        let clock = ShiftedClock::default();
        let before = SystemClock.now_ms();
        clock.advance_ms(24 * 3_600_000);
        let now = clock.now_ms();
        assert!(now >= before + 24 * 3_600_000 && now < SystemClock.now_ms() + 24 * 3_600_000 + 1);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
