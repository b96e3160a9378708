//! Retry delays for everything that retries later, sagas' steps and the e-mail outbox alike:
//! exponential growth with "equal jitter", so a burst of work that failed together (the other
//! service restarting, the SMTP server away) does not retry in lockstep.
//!
//! Written here rather than taken from `backon`: both callers store the delay of the n-th
//! attempt as a durable due time, where `backon` yields a sequence for an in-process retry
//! loop; and its jitter is added on top of the delay, so a capped delay could reach twice the
//! cap. Equal jitter keeps every delay within [ceiling / 2, ceiling].

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base: Duration::from_millis(100), max: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// The ceiling for the `attempt`-th retry (0-based): `base * 2^attempt`, capped at `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A delay drawn uniformly from the upper half of the ceiling: never less than half of it
    /// (the backoff still grows), never more (the cap holds).
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + rng.gen_range(Duration::ZERO..=ceiling - half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_then_caps() {
        let backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(2) };
        let ceilings: Vec<_> = (0..7).map(|n| backoff.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(2), "huge attempt counts do not overflow");
    }

    #[test]
    fn delays_stay_within_the_upper_half_of_the_ceiling_and_vary() {
        let backoff = Backoff::default();
        let mut rng = rand::thread_rng();
        for attempt in 0..12 {
            let ceiling = backoff.ceiling(attempt);
            let delays: Vec<_> = (0..200).map(|_| backoff.delay(attempt, &mut rng)).collect();
            assert!(delays.iter().all(|d| *d >= ceiling / 2 && *d <= ceiling), "attempt {attempt}");
            assert!(delays.iter().any(|d| *d != delays[0]), "attempt {attempt}: jitter varies the delay");
        }
    }
}
