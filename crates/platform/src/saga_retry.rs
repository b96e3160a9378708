//! How long a saga keeps re-sending one step's request, and from that, how long a service
//! must remember the request ids it answered.
//!
//! A saga step that calls another service sends one request id on every attempt, so the other
//! side applies it once. That only holds while the other side still has its idempotency
//! record, so the record must outlive the last attempt. The bound, with `t0` the instant the
//! step first ran (no record can be older than that):
//!
//! - automatic retries stop once `window` has passed since `t0` (the step then fails and waits
//!   for an operator);
//! - the attempt scheduled just before that runs at most one backoff cap later, and may run
//!   for at most one lease;
//! - so the last automatic attempt starts before `t0 + horizon`, with
//!   `horizon = window + backoff cap + lease`;
//! - an operator's retry opens a fresh window at `now`, and is only allowed while
//!   `now + horizon <= t0 + retention` ([`SagaRetry::may_retry_by_hand`]).
//!
//! With `retention >= 2 * horizon` (and at least [`CLIENT_RETENTION`], for clients retrying
//! their own calls) every attempt finds its record. Both services derive these figures from
//! the same settings ([`SagaRetryArgs`]): identity to stop retrying, licensing to prune.

use std::time::Duration;

use crate::backoff::Backoff;

/// How long any service keeps idempotency records for its direct clients: they retry within
/// minutes, and a week covers a long outage.
pub const CLIENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3_600);

/// The saga retry settings, read by identity (which retries) and licensing (which must
/// remember request ids for as long).
#[derive(Debug, Clone, clap::Args)]
pub struct SagaRetryArgs {
    /// How long a worker's claim on a saga lasts without progress; another replica takes over
    /// after it. Must outlast one step (licensing calls time out after 10 s).
    #[arg(long = "workflow-lease-ms", env = "ROSTER_WORKFLOW_LEASE_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1_000..=600_000))]
    pub lease_ms: u64,
    /// How long a saga step that keeps failing transiently (the other service away) is retried
    /// before the operation fails and waits for an operator.
    #[arg(long = "workflow-retry-window-s", env = "ROSTER_WORKFLOW_RETRY_WINDOW_S", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(60..=30 * 86_400))]
    pub retry_window_s: u64,
}

impl SagaRetryArgs {
    pub fn retry(&self) -> SagaRetry {
        SagaRetry {
            lease: Duration::from_millis(self.lease_ms),
            window: Duration::from_secs(self.retry_window_s),
            backoff: Backoff::default(),
        }
    }
}

/// The figures the bound above is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SagaRetry {
    pub lease: Duration,
    pub window: Duration,
    pub backoff: Backoff,
}

impl Default for SagaRetry {
    fn default() -> Self {
        Self { lease: Duration::from_secs(30), window: Duration::from_secs(86_400), backoff: Backoff::default() }
    }
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

impl SagaRetry {
    /// The latest a step's request is sent, counted from the start of its retry window.
    pub fn horizon(&self) -> Duration {
        self.window + self.backoff.max + self.lease
    }

    /// How long a service that saga steps call keeps its idempotency records.
    pub fn idempotency_retention(&self) -> Duration {
        CLIENT_RETENTION.max(self.horizon() * 2)
    }

    /// Whether automatic retries of a step whose window opened at `window_start_ms` are over.
    pub fn window_closed(&self, window_start_ms: i64, now_ms: i64) -> bool {
        now_ms.saturating_sub(window_start_ms) >= ms(self.window)
    }

    /// Whether an operator may re-run a step that first ran at `step_started_ms`: the fresh
    /// window must end while the step's idempotency records are still kept.
    pub fn may_retry_by_hand(&self, step_started_ms: i64, now_ms: i64) -> bool {
        now_ms.saturating_add(ms(self.horizon())) <= step_started_ms.saturating_add(ms(self.idempotency_retention()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn retry(lease_s: u64, window_s: u64, cap_s: u64) -> SagaRetry {
        SagaRetry {
            lease: Duration::from_secs(lease_s),
            window: Duration::from_secs(window_s),
            backoff: Backoff { base: Duration::from_millis(100), max: Duration::from_secs(cap_s) },
        }
    }

    proptest! {
        /// The last attempt of an automatic window, and of an operator's retry allowed at any
        /// instant, start before a record made at the step's first run is pruned.
        #[test]
        fn every_attempt_finds_its_record(
            lease_s in 1u64..600, window_s in 60u64..(30 * 86_400), cap_s in 1u64..3_600,
            retried_after_s in 0u64..(90 * 86_400),
        ) {
            let retry = retry(lease_s, window_s, cap_s);
            let t0 = 1_000_000_i64;
            let pruned_at = t0 + ms(retry.idempotency_retention());
            // The last transient failure inside the window reschedules at most one cap later,
            // and that attempt holds the lease at most one lease long.
            let last_auto = t0 + ms(retry.window) + ms(retry.backoff.max) + ms(retry.lease);
            prop_assert!(last_auto <= pruned_at);
            let by_hand = t0 + i64::try_from(retried_after_s * 1_000).unwrap();
            if retry.may_retry_by_hand(t0, by_hand) {
                prop_assert!(by_hand + ms(retry.horizon()) <= pruned_at);
            }
        }
    }

    #[test]
    fn an_operator_may_retry_within_a_horizon_of_the_first_run() {
        let default = SagaRetry::default();
        let t0 = 0;
        assert!(default.may_retry_by_hand(t0, ms(default.horizon())));
        assert!(!default.may_retry_by_hand(t0, ms(default.idempotency_retention())));
        assert_eq!(default.idempotency_retention(), CLIENT_RETENTION, "a day's window keeps the week");
        let long = retry(30, 5 * 86_400, 30);
        assert_eq!(long.idempotency_retention(), long.horizon() * 2, "a long window stretches the retention");
    }

    #[test]
    fn the_window_closes_after_its_length() {
        let retry = retry(30, 60, 30);
        assert!(!retry.window_closed(0, 59_999));
        assert!(retry.window_closed(0, 60_000));
    }
}
