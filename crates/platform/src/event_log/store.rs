//! The `events` table and its pruning watermark, on both backends (see the module above for
//! why a position is a transaction id and a number).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Filter, Position};
use crate::db::{Backend, Conn, Database, MigrationSql, params};
use crate::folded::Folded;

/// The tables; each service applies it among its migrations under a version of its own.
pub const fn migration(version: i64) -> MigrationSql {
    MigrationSql {
        version,
        description: "event log",
        sql: r"
CREATE TABLE events (
    tx BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    type TEXT NOT NULL,
    request_id TEXT NOT NULL,
    operation_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (tx, seq)
);
CREATE INDEX events_by_account ON events (account_id, tx, seq);
CREATE INDEX events_by_time ON events (at_ms);
-- The position of the newest event pruned: cursors before it are out of range.
CREATE TABLE events_pruned (
    id BIGINT PRIMARY KEY,
    tx BIGINT NOT NULL,
    seq BIGINT NOT NULL
);
INSERT INTO events_pruned (id, tx, seq) VALUES (1, -1, -1);
",
    }
}

/// An event as a change records it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub at_ms: i64,
    pub account_id: String,
    pub subject: String,
    pub kind: &'static str,
    pub request_id: String,
    pub operation_id: String,
    pub principal: String,
    /// The service's typed payload, serialised (JSON).
    pub payload: String,
}

/// An event as the log hands it out.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub position: Position,
    pub at_ms: i64,
    pub account_id: String,
    pub subject: String,
    pub kind: String,
    pub request_id: String,
    pub operation_id: String,
    pub principal: String,
    pub payload: String,
}

const COLUMNS: &str = "tx, seq, at_ms, account_id, subject, type, request_id, operation_id, principal, payload";

fn decode(row: &AnyRow) -> Result<StoredEvent, sqlx::Error> {
    Ok(StoredEvent {
        position: Position { tx: row.try_get("tx")?, seq: row.try_get("seq")? },
        at_ms: row.try_get("at_ms")?,
        account_id: row.try_get("account_id")?,
        subject: row.try_get("subject")?,
        kind: row.try_get("type")?,
        request_id: row.try_get("request_id")?,
        operation_id: row.try_get("operation_id")?,
        principal: row.try_get("principal")?,
        payload: row.try_get("payload")?,
    })
}

/// Appends `event` in the caller's transaction, numbered after the transaction's earlier
/// events (on SQLite, after every event: its transactions commit one at a time).
pub async fn append(tx: &mut Conn, event: &NewEvent) -> Result<(), sqlx::Error> {
    let mut write = Folded::on(tx);
    append_into(&mut write, event);
    write.run(tx).await?;
    Ok(())
}

/// [`append`] as one of a change's folded writes. An event numbers itself after the newest
/// of its transaction, counting the events of the same statement it cannot see.
pub fn append_into(write: &mut Folded, event: &NewEvent) {
    let this_tx = match write.backend() {
        Backend::Postgres => "pg_current_xact_id()::text::bigint",
        Backend::Sqlite => "0",
    };
    let next = 1 + write.unseen_before("events");
    write.write(|args| {
        format!(
            "INSERT INTO events ({COLUMNS}) \
             SELECT this.tx, COALESCE((SELECT MAX(seq) FROM events WHERE events.tx = this.tx), 0) + {next}, \
             {}, {}, {}, {}, {}, {}, {}, {} FROM (SELECT {this_tx} AS tx) this",
            args.bind(event.at_ms),
            args.bind(event.account_id.clone()),
            args.bind(event.subject.clone()),
            args.bind(event.kind),
            args.bind(event.request_id.clone()),
            args.bind(event.operation_id.clone()),
            args.bind(event.principal.clone()),
            args.bind(event.payload.clone()),
        )
    });
}

/// What may be handed out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Every event at or before this has committed, and no event can still appear before it.
    pub through: Position,
    /// The newest event at or before `through`.
    pub newest: Option<Position>,
}

pub async fn head(conn: &mut Conn) -> Result<Head, sqlx::Error> {
    match Backend::of(conn) {
        Backend::Postgres => {
            let row = sqlx::query(
                "SELECT h.horizon, e.tx, e.seq \
                 FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon) h \
                 LEFT JOIN LATERAL (SELECT tx, seq FROM events WHERE tx < h.horizon \
                   ORDER BY tx DESC, seq DESC LIMIT 1) e ON true",
            )
            .fetch_one(&mut *conn)
            .await?;
            let horizon: i64 = row.try_get("horizon")?;
            let newest = match (row.try_get::<Option<i64>, _>("tx")?, row.try_get::<Option<i64>, _>("seq")?) {
                (Some(tx), Some(seq)) => Some(Position { tx, seq }),
                _ => None,
            };
            Ok(Head { through: Position { tx: horizon - 1, seq: i64::MAX }, newest })
        }
        Backend::Sqlite => {
            let seq: Option<i64> =
                sqlx::query("SELECT MAX(seq) AS seq FROM events").fetch_one(&mut *conn).await?.try_get("seq")?;
            let newest = seq.map(|seq| Position { tx: 0, seq });
            Ok(Head { through: newest.unwrap_or(Position { tx: 0, seq: 0 }), newest })
        }
    }
}

/// Events after `after` and at or before `through` that `filter` matches, oldest first.
pub async fn between(
    conn: &mut Conn,
    after: Position,
    through: Position,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let mut sql = format!(
        "SELECT {COLUMNS} FROM events WHERE (tx > $1 OR (tx = $1 AND seq > $2)) \
         AND (tx < $3 OR (tx = $3 AND seq <= $4))"
    );
    let mut next = 6;
    if !filter.accounts.is_empty() {
        sql.push_str(&format!(" AND account_id IN ({})", params(next, filter.accounts.len())));
        next += filter.accounts.len();
    }
    if !filter.kinds.is_empty() {
        sql.push_str(&format!(" AND type IN ({})", params(next, filter.kinds.len())));
    }
    sql.push_str(" ORDER BY tx, seq LIMIT $5");
    let mut query = sqlx::query(&sql)
        .bind(after.tx)
        .bind(after.seq)
        .bind(through.tx)
        .bind(through.seq)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    for value in filter.accounts.iter().chain(&filter.kinds) {
        query = query.bind(value);
    }
    query.fetch_all(&mut *conn).await?.iter().map(decode).collect()
}

/// The newest position pruned; [`Position::START`] while nothing has been.
pub async fn pruned_through(conn: &mut Conn) -> Result<Position, sqlx::Error> {
    let row = sqlx::query("SELECT tx, seq FROM events_pruned WHERE id = 1").fetch_one(&mut *conn).await?;
    Ok(Position { tx: row.try_get("tx")?, seq: row.try_get("seq")? })
}

/// Rows one slice of pruning removes, each slice its own short transaction.
const PRUNE_SLICE: i64 = 500;

/// Removes events made before `before_ms`, but never the newest event (SQLite numbers the
/// next one after it). The watermark moves first, so a cursor is refused before the events
/// after it go. Returns the events removed.
pub async fn prune(db: &Database, before_ms: i64) -> Result<u64, sqlx::Error> {
    let mut conn = db.writer().await?;
    let boundary = sqlx::query(
        "SELECT tx, seq FROM events WHERE at_ms < $1 \
         AND (tx, seq) <> (SELECT tx, seq FROM events ORDER BY tx DESC, seq DESC LIMIT 1) \
         ORDER BY tx DESC, seq DESC LIMIT 1",
    )
    .bind(before_ms)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(boundary) = boundary else { return Ok(0) };
    let through = Position { tx: boundary.try_get("tx")?, seq: boundary.try_get("seq")? };
    sqlx::query("UPDATE events_pruned SET tx = $1, seq = $2 WHERE id = 1 AND (tx < $1 OR (tx = $1 AND seq < $2))")
        .bind(through.tx)
        .bind(through.seq)
        .execute(&mut *conn)
        .await?;
    drop(conn);
    let mut removed = 0;
    loop {
        let gone = sqlx::query(
            "DELETE FROM events WHERE (tx, seq) IN (SELECT tx, seq FROM events \
             WHERE tx < $1 OR (tx = $1 AND seq <= $2) ORDER BY tx, seq LIMIT $3)",
        )
        .bind(through.tx)
        .bind(through.seq)
        .bind(PRUNE_SLICE)
        .execute(&mut *db.writer().await?)
        .await?
        .rows_affected();
        removed += gone;
        if gone < PRUNE_SLICE.unsigned_abs() {
            return Ok(removed);
        }
        tokio::task::yield_now().await;
    }
}
