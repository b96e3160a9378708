//! Counters for what the engine did on this replica, for the benchmark and the shutdown log
//! line, and the same events in the Prometheus metrics (`roster_saga_events_total`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

#[derive(Debug, Default)]
pub struct Metrics {
    started: AtomicU64,
    claimed: AtomicU64,
    steps_completed: AtomicU64,
    steps_retried: AtomicU64,
    compensations: AtomicU64,
    completed: AtomicU64,
    compensated: AtomicU64,
    failed: AtomicU64,
    fenced: AtomicU64,
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    pub started: u64,
    pub claimed: u64,
    pub steps_completed: u64,
    pub steps_retried: u64,
    pub compensations: u64,
    pub completed: u64,
    pub compensated: u64,
    pub failed: u64,
    /// Writes refused because another worker had taken the lease over.
    pub fenced: u64,
}

#[derive(Debug, Clone, Copy, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub(crate) enum Event {
    Started,
    Claimed,
    StepCompleted,
    StepRetried,
    Compensation,
    Completed,
    Compensated,
    Failed,
    Fenced,
}

impl Metrics {
    pub(crate) fn record(&self, event: Event) {
        let counter = match event {
            Event::Started => &self.started,
            Event::Claimed => &self.claimed,
            Event::StepCompleted => &self.steps_completed,
            Event::StepRetried => &self.steps_retried,
            Event::Compensation => &self.compensations,
            Event::Completed => &self.completed,
            Event::Compensated => &self.compensated,
            Event::Failed => &self.failed,
            Event::Fenced => &self.fenced,
        };
        metrics::counter!(roster_platform::metrics::SAGA_EVENTS, "event" => <&'static str>::from(event)).increment(1);
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MetricsSnapshot {
            started: read(&self.started),
            claimed: read(&self.claimed),
            steps_completed: read(&self.steps_completed),
            steps_retried: read(&self.steps_retried),
            compensations: read(&self.compensations),
            completed: read(&self.completed),
            compensated: read(&self.compensated),
            failed: read(&self.failed),
            fenced: read(&self.fenced),
        }
    }
}
