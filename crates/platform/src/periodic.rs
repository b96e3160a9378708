//! Runs a maintenance pass (pruning old rows, the auto-delete sweep) now and then every interval until shutdown,
//! logging what each pass did and retrying a failed one at the next turn. Shared by both
//! services' housekeeping.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Runs `pass` at once and then every `every`, until `stop` turns true. A pass that did
/// something (its result differs from the default, "nothing") is logged at info under `task`.
pub async fn every<T, F, Fut>(task: &'static str, every: Duration, mut stop: watch::Receiver<bool>, mut pass: F)
where
    T: Debug + Default + PartialEq,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    loop {
        match pass().await {
            Ok(done) if done != T::default() => tracing::info!(task, ?done, "maintenance pass done"),
            Ok(_) => {}
            Err(error) => tracing::warn!(task, %error, "maintenance pass failed; will retry"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
