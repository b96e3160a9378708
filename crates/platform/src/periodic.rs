//! Runs a maintenance pass (pruning old rows, the auto-delete sweep) now and then every interval until shutdown,
//! logging what each pass did and retrying a failed one at the next turn (an outage is logged
//! once: see `incident`). Shared by both services' housekeeping.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// What a maintenance pass did. The default is "nothing"; anything else is logged, each count
/// as a field of its own, so JSON logs can be queried by it.
pub trait PassReport: Default + PartialEq {
    /// Writes the pass's `info` line, under `task`.
    fn log(&self, task: &'static str);
}

/// A pass that removes one kind of row reports how many.
impl PassReport for u64 {
    fn log(&self, task: &'static str) {
        tracing::info!(task, removed = *self, "maintenance pass done");
    }
}

/// Runs `pass` at once and then every `every`, until `stop` turns true. A pass that did
/// something (its result differs from the default, "nothing") is logged at info under `task`.
pub async fn every<T, F, Fut>(task: &'static str, every: Duration, mut stop: watch::Receiver<bool>, mut pass: F)
where
    T: PassReport,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    // A pass that keeps failing (the database is down) is logged once, and its recovery once.
    let failing = crate::incident::Incident::new(task);
    loop {
        match failing.note(pass().await) {
            Ok(done) if done != T::default() => done.log(task),
            Ok(_) | Err(_) => {}
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
