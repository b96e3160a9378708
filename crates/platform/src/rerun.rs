//! A call whose database work failed without leaving anything behind (its connection was lost,
//! or it lost a conflict, before COMMIT) runs once more, on a fresh connection, before the
//! caller hears of it: a backend the server ended (a failover, a restart, a pooler recycling
//! it) is then invisible to clients. The first failure also makes the pool check its other
//! connections before use for a while, since whatever ended one usually ended them all.
//! A call keyed by a request id may also run again after a COMMIT whose answer was lost: if it
//! did commit, the second run replays its answer.

use std::future::Future;

use crate::db::Database;
use crate::status;

/// Runs `attempt`, and once more if [`status::may_rerun`] allows it.
pub async fn once_more<T, F, Fut>(db: &Database, keyed: bool, mut attempt: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    match attempt().await {
        Err(status) if status::may_rerun(&status, keyed) => {
            db.distrust_idle_connections();
            tracing::debug!(message = status.message(), "running the call again on a fresh connection");
            attempt().await
        }
        answer => answer,
    }
}
