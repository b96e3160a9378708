//! The log of changes a service made, for the services that act on them
//! (`roster.events.v1.Events`): each service appends an event in the transaction of the change
//! it describes ([`store::append`]), and consumers read it in commit order, each event once,
//! resuming after the last cursor they saw ([`EventLog`]).
//!
//! **Order without gaps.** On PostgreSQL an id from a sequence is not commit order: a
//! transaction that took a smaller id may commit after a larger one has been read, and a
//! consumer that had moved past the larger id would never see it. So an event's position is
//! the id of its transaction (`pg_current_xact_id()`) and its number within it, and events are
//! handed out only once every transaction with a smaller id has ended: positions below the
//! oldest transaction still running (`pg_snapshot_xmin`) can no longer gain an event. On
//! SQLite the single writer commits in the order it numbers, so the position is the number.
//! Either way a consumer that saw position P later sees every event after P, and none twice.
//!
//! The cost: one transaction left open holds back delivery (not writes) until it ends;
//! PostgreSQL's `idle_in_transaction_session_timeout` bounds that for stray sessions.

pub mod serve;
pub mod store;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::db::Database;
use crate::pagination::PageTokens;
use crate::status::{self, Reason};

pub use store::{NewEvent, StoredEvent};

/// Where an event sits in its log: its transaction's id (0 on SQLite) and its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub tx: i64,
    pub seq: i64,
}

impl Position {
    /// Before every event.
    pub const START: Self = Self { tx: -1, seq: -1 };

    fn to_text(self) -> String {
        format!("{}.{}", self.tx, self.seq)
    }

    fn parse(text: &str) -> Option<Self> {
        let (tx, seq) = text.split_once('.')?;
        Some(Self { tx: tx.parse().ok()?, seq: seq.parse().ok()? })
    }
}

/// Which events a consumer wants: empty lists match all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub accounts: Vec<String>,
    pub kinds: Vec<String>,
}

/// Most account ids and event types a filter may name.
pub const MAX_FILTER_ACCOUNTS: usize = 100;
pub const MAX_FILTER_TYPES: usize = 50;

/// How long events are kept, and how long a consumer may leave the stream unread.
#[derive(Debug, Clone, Copy)]
pub struct LogSettings {
    pub retention: Duration,
    pub stall_limit: Duration,
}

pub const EXPIRED: Reason = Reason::new("EVENT_CURSOR_EXPIRED", None);

/// One service's event log: its database, the key its cursors are sealed with, and the
/// newest deliverable position, which one task per process watches for every stream.
#[derive(Debug, Clone)]
pub struct EventLog {
    db: Database,
    /// The log's name (the service), which cursors are bound to.
    name: &'static str,
    /// The event types this log holds, which filters may name.
    kinds: &'static [&'static str],
    tokens: PageTokens,
    settings: LogSettings,
    clock: SharedClock,
    newest: Arc<watch::Sender<Option<Position>>>,
    open_streams: stream::OpenStreams,
}

/// How often the newest deliverable position is read while anyone watches.
const HEAD_POLL: Duration = Duration::from_millis(10);

impl EventLog {
    /// The log of `name` (identity, licensing) in `db`, holding events of `kinds`; watches its
    /// head until `stop`.
    pub fn start(
        db: Database,
        name: &'static str,
        kinds: &'static [&'static str],
        tokens: PageTokens,
        settings: LogSettings,
        clock: SharedClock,
        stop: CancellationToken,
    ) -> Self {
        let (newest, _) = watch::channel(None);
        let log = Self {
            db,
            name,
            kinds,
            tokens,
            settings,
            clock,
            newest: Arc::new(newest),
            open_streams: Default::default(),
        };
        tokio::spawn(log.clone().watch_head(stop));
        log
    }

    /// The cursor a consumer gets for `position`.
    pub fn cursor(&self, position: Position) -> String {
        self.tokens.seal_position(self.name, &position.to_text())
    }

    /// Where a request starts: after its cursor, from the oldest event kept, or from now.
    /// A cursor this log did not seal is `INVALID_ARGUMENT`; one older than what is kept,
    /// `OUT_OF_RANGE`.
    pub async fn start_after(&self, after: &str, from_start: bool) -> Result<Position, tonic::Status> {
        let mut conn = self.db.reader().await.map_err(|e| status::from_db(&e))?;
        let pruned = store::pruned_through(&mut conn).await.map_err(|e| status::from_db(&e))?;
        if after.is_empty() {
            return if from_start {
                Ok(pruned)
            } else {
                Ok(store::head(&mut conn).await.map_err(|e| status::from_db(&e))?.through)
            };
        }
        let position =
            self.tokens.open_position(self.name, after).and_then(|text| Position::parse(&text)).ok_or_else(|| {
                status::invalid_argument(
                    "after",
                    format!("is not a cursor of {}'s event log; pass back an event's or heartbeat's cursor", self.name),
                )
            })?;
        if position < pruned {
            return Err(status::refusal(
                tonic::Code::OutOfRange,
                EXPIRED,
                format!(
                    "events after this cursor are no longer kept ({} days are); resynchronise, then watch from now",
                    self.settings.retention.as_secs() / 86_400
                ),
            ));
        }
        Ok(position)
    }

    /// Up to `limit` events after `after` that `filter` matches, all committed, and the
    /// position to go on from: the last event's, or everything committed when fewer came.
    pub async fn read(
        &self,
        after: Position,
        filter: &Filter,
        limit: usize,
    ) -> Result<(Vec<StoredEvent>, Position, bool), sqlx::Error> {
        let mut conn = self.db.reader().await?;
        let head = store::head(&mut conn).await?;
        let events = store::between(&mut conn, after, head.through, filter, limit).await?;
        let more = events.len() >= limit;
        let next = match events.last() {
            Some(last) if more => last.position,
            _ => after.max(head.through),
        };
        Ok((events, next, more))
    }

    /// Reads the newest deliverable position every [`HEAD_POLL`] while any stream waits on
    /// it, so each stream reads the log only when there is something new.
    async fn watch_head(self, stop: CancellationToken) {
        let incident = crate::incident::Incident::new("event log head");
        loop {
            let pause = if self.newest.receiver_count() == 0 { HEAD_POLL * 10 } else { HEAD_POLL };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            if self.newest.receiver_count() == 0 {
                continue;
            }
            let read = async {
                let mut conn = self.db.reader().await?;
                store::head(&mut conn).await
            };
            if let Ok(head) = incident.note(read.await) {
                self.newest.send_if_modified(|newest| {
                    let changed = *newest != head.newest;
                    *newest = head.newest;
                    changed
                });
            }
        }
    }

    /// Prunes events older than the retention (see [`store::prune`]).
    pub async fn prune(&self) -> Result<u64, sqlx::Error> {
        let before_ms =
            self.clock.now_ms().saturating_sub(i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX));
        store::prune(&self.db, before_ms).await
    }
}

/// `INVALID_ARGUMENT` unless the filter is within bounds.
pub fn check_filter(filter: &Filter) -> Result<(), tonic::Status> {
    if filter.accounts.len() > MAX_FILTER_ACCOUNTS {
        return Err(status::invalid_argument(
            "filter.account_ids",
            format!("names more than {MAX_FILTER_ACCOUNTS} accounts"),
        ));
    }
    if filter.kinds.len() > MAX_FILTER_TYPES {
        return Err(status::invalid_argument("filter.types", format!("names more than {MAX_FILTER_TYPES} types")));
    }
    if let Some(empty) = filter.accounts.iter().position(String::is_empty) {
        return Err(status::invalid_argument(&format!("filter.account_ids[{empty}]"), "is empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_transaction_then_number() {
        let a = Position { tx: 5, seq: 9 };
        let b = Position { tx: 6, seq: 1 };
        assert!(Position::START < a && a < b);
        assert_eq!(Position::parse(&b.to_text()), Some(b));
        assert_eq!(Position::parse("6"), None);
        assert_eq!(Position::parse("x.1"), None);
    }
}
