//! Keeps tables bounded: idempotency records are kept 7 days
//! ([`roster_platform::saga_retry::CLIENT_RETENTION`]: only clients send identity request
//! ids), delivered e-mails and finished operations 30 days (for support questions). Address
//! claims go when their code expires, and the record of codes sent once it is outside every
//! rate window. Events of the event log go after the configured retention (7 days by default).
//! Audit events are never pruned here: they are the account's history.
//! Unfinished operations are never pruned.

use std::time::Duration;

use roster_platform::clock::SharedClock;
use roster_platform::db::Database;
use roster_platform::event_log::EventLog;
use roster_platform::idempotency;
use roster_platform::saga_retry::CLIENT_RETENTION;
use tokio::sync::watch;

pub const IDEMPOTENCY_RETENTION_MS: i64 = CLIENT_RETENTION.as_millis() as i64;
pub const SENT_EMAIL_RETENTION_MS: i64 = 30 * 24 * 3_600_000;
pub const FINISHED_OPERATION_RETENTION_MS: i64 = 30 * 24 * 3_600_000;
const EVERY: Duration = Duration::from_secs(600);

/// Rows removed by one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    pub idempotency_keys: u64,
    pub sent_emails: u64,
    pub finished_operations: u64,
    pub address_claims: u64,
    pub code_sends: u64,
    pub events: u64,
}

impl roster_platform::periodic::PassReport for Pruned {
    fn log(&self, task: &'static str) {
        let Self { idempotency_keys, sent_emails, finished_operations, address_claims, code_sends, events } = *self;
        tracing::info!(
            task,
            idempotency_keys,
            sent_emails,
            finished_operations,
            address_claims,
            code_sends,
            events,
            "maintenance pass done"
        );
    }
}

/// One pass. Safe on several replicas at once: each delete is idempotent. Large deletes go in
/// slices (`delete_in_slices`), so a backlog never holds SQLite's writer for long.
pub async fn prune(db: &Database, now_ms: i64) -> Result<Pruned, sqlx::Error> {
    let keys = idempotency::prune(db, now_ms - IDEMPOTENCY_RETENTION_MS).await?;
    let sent_emails = roster_platform::db::delete_in_slices(
        db,
        "DELETE FROM outbox WHERE id IN \
         (SELECT id FROM outbox WHERE sent_at_ms IS NOT NULL AND sent_at_ms < $1 LIMIT $2)",
        now_ms - SENT_EMAIL_RETENTION_MS,
    )
    .await?;
    let operations = roster_workflow::prune_finished(db, now_ms - FINISHED_OPERATION_RETENTION_MS).await?;
    let mut conn = db.writer().await?;
    let sends_before_ms = now_ms - crate::domain::addresses::CODE_WINDOW_MS;
    let (address_claims, code_sends) = crate::store::user_emails::prune(&mut conn, now_ms, sends_before_ms).await?;
    Ok(Pruned {
        idempotency_keys: keys,
        sent_emails,
        finished_operations: operations,
        address_claims,
        code_sends,
        events: 0,
    })
}

/// Prunes every ten minutes, the event log after its retention too, until `stop` turns true.
pub async fn run(db: Database, clock: SharedClock, log: EventLog, stop: watch::Receiver<bool>) {
    roster_platform::periodic::every("housekeeping", EVERY, stop, || async {
        let pruned = prune(&db, clock.now_ms()).await?;
        Ok(Pruned { events: log.prune().await?, ..pruned })
    })
    .await;
}
