//! Database pools and embedded migrations for both backends.
//!
//! Services use sqlx's `Any` driver so one set of queries serves PostgreSQL (production) and
//! SQLite (the embedded default). The SQL therefore sticks to what both accept: `$n`
//! placeholders, TEXT and BIGINT columns, `ON CONFLICT`, `RETURNING`, partial unique indexes.
//!
//! SQLite runs with a single pooled connection: every transaction is then serialised, which is
//! SQLite's single-writer model made explicit and avoids `SQLITE_BUSY` on lock upgrades. No
//! code may hold a transaction and wait for a second connection.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};

/// A transaction on whichever backend is configured.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// `count` numbered placeholders from `$first` on, comma-separated, for an `IN (...)` list or
/// a multi-row `VALUES`; "NULL" when `count` is 0, since `IN ()` is not SQL and `IN (NULL)`
/// matches nothing. Not sqlx's `QueryBuilder`: for the `Any` driver it writes `?` (sqlx-core
/// 0.8's default placeholder), which PostgreSQL does not accept.
pub fn params(first: usize, count: usize) -> String {
    if count == 0 {
        return "NULL".to_owned();
    }
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// What queries run on: a transaction for changes (a `&mut Tx` coerces to it) or, for reads
/// that need no transaction, a plain pooled connection, which saves the BEGIN and ROLLBACK
/// round trips.
pub type Conn = sqlx::AnyConnection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else {
            None
        }
    }

    /// The backend a connection talks to, for a query that has only the connection at hand.
    pub fn of(conn: &Conn) -> Self {
        if conn.backend_name() == "PostgreSQL" { Self::Postgres } else { Self::Sqlite }
    }
}

/// One embedded migration: a version, a description, and SQL both backends accept.
#[derive(Debug, Clone, Copy)]
pub struct MigrationSql {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// How long connecting may take before start-up gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a database cannot be opened, naming the server (password hidden) and the cause.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach {url}: {cause}")]
pub struct Unreachable {
    pub url: String,
    pub cause: String,
}

/// One direct connection first: it says at once why the server cannot be reached (refused,
/// unknown host, wrong password), where the pool alone would retry until its timeout and then
/// report only that it timed out.
async fn probe(url: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection as _;
    let unreachable = |cause: String| sqlx::Error::Io(std::io::Error::other(Unreachable { url: redact(url), cause }));
    match tokio::time::timeout(CONNECT_TIMEOUT, sqlx::AnyConnection::connect(url)).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(sqlx::Error::Io(error))) => Err(unreachable(error.to_string())),
        Ok(Err(sqlx::Error::Database(error))) => Err(unreachable(error.message().to_owned())),
        Ok(Err(error)) => Err(unreachable(error.to_string())),
        Err(_) => Err(unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
    }
}

/// What a database failure means for whoever met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection or the server went away (SQLSTATE class 08, 57P01-57P03 when the server
    /// shuts down, restarts or is told to end the backend; I/O and TLS errors; a closed or
    /// exhausted pool): whatever the transaction did is gone unless its COMMIT got through, and
    /// another connection may well work.
    Connection,
    /// The transaction lost to a concurrent one and was rolled back (serialization failure
    /// 40001, deadlock 40P01; SQLite's busy and locked): running it again is the remedy.
    Conflict,
    /// Anything else: a bug or a broken invariant.
    Other,
}

/// Classifies `error` (see [`Failure`]).
pub fn failure(error: &sqlx::Error) -> Failure {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Failure::Connection,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(code) if code.starts_with("08") => Failure::Connection,
            Some("57P01" | "57P02" | "57P03") => Failure::Connection,
            // PostgreSQL's serialization failure and deadlock; SQLite's SQLITE_BUSY and
            // SQLITE_LOCKED, with their extended codes.
            Some("40001" | "40P01" | "5" | "6" | "261" | "262" | "517") => Failure::Conflict,
            _ => Failure::Other,
        },
        _ => Failure::Other,
    }
}

/// A PostgreSQL connection that sat idle longer than this is checked (a ping) before it is
/// handed out: a backend the server ended meanwhile (a restart, a failover, a pooler's
/// recycling) is then replaced instead of failing the caller's first statement. Connections in
/// steady use skip the check.
const TRUST_IDLE_FOR: Duration = Duration::from_secs(1);
/// After a lost connection, every connection is checked before use for this long, so the
/// pool sheds the others the same outage broke.
const DISTRUST_FOR: Duration = Duration::from_secs(5);

/// Until when pooled connections are checked before use, in milliseconds since `epoch`.
#[derive(Debug)]
struct Distrust {
    epoch: Instant,
    until_ms: AtomicU64,
}

impl Distrust {
    fn new() -> Self {
        Self { epoch: Instant::now(), until_ms: AtomicU64::new(0) }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn start(&self) {
        let until = self.now_ms() + u64::try_from(DISTRUST_FOR.as_millis()).unwrap_or(u64::MAX);
        self.until_ms.fetch_max(until, Ordering::Relaxed);
    }

    fn active(&self) -> bool {
        self.now_ms() < self.until_ms.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    /// Read-only transactions. On SQLite a pool of its own beside the single writer, so reads
    /// run side by side (WAL gives each a snapshot) instead of queueing behind one another and
    /// behind writes; on PostgreSQL the same pool.
    readers: AnyPool,
    backend: Backend,
    distrust: Arc<Distrust>,
    /// SQLite: who asks for the single writer next (see `fair`).
    turns: Option<Arc<crate::fair::WriterTurns>>,
}

/// Read connections to an embedded database.
const SQLITE_READERS: u32 = 4;

impl Database {
    /// The SQLite URL of a service's embedded database inside `data_dir`.
    pub fn sqlite_url(data_dir: &Path, service: &str) -> String {
        format!("sqlite://{}?mode=rwc", data_dir.join(format!("{service}.db")).display())
    }

    /// Connects; `max_connections` applies to PostgreSQL (SQLite always has one writer, and
    /// [`SQLITE_READERS`] readers).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        install_default_drivers();
        let backend = Backend::from_url(url).ok_or_else(|| {
            sqlx::Error::Configuration(format!("unsupported database URL scheme in {}", redact(url)).into())
        })?;
        // No ping before each acquire: it was a round trip on every transaction (11.6 % of
        // identity's CPU under load). A connection that died in the pool fails its first
        // statement instead, the call answers UNAVAILABLE, and the client retries it with the
        // same request id; sqlx then drops the connection.
        let options = AnyPoolOptions::new().acquire_timeout(CONNECT_TIMEOUT).test_before_acquire(false);
        let distrust = Arc::new(Distrust::new());
        let (pool, readers) = match backend {
            Backend::Postgres => {
                probe(url).await?;
                let checks = distrust.clone();
                let pool = options
                    .max_connections(max_connections)
                    .before_acquire(move |conn, meta| {
                        let check = meta.idle_for > TRUST_IDLE_FOR || checks.active();
                        Box::pin(async move {
                            if check {
                                use sqlx::Connection as _;
                                conn.ping().await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect(url)
                    .await?;
                (pool.clone(), pool)
            }
            Backend::Sqlite => {
                let writer = options
                    .clone()
                    .max_connections(1)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?;
                // Opened after the writer, which created the file and switched it to WAL.
                let readers = options
                    .max_connections(SQLITE_READERS)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;").await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?;
                (writer, readers)
            }
        };
        let turns = (backend == Backend::Sqlite).then(Arc::default);
        Ok(Self { pool, readers, backend, distrust, turns })
    }

    /// Checks every pooled connection before use for a few seconds: called when a statement
    /// met a lost connection, since an outage that broke one broke the others too.
    pub fn distrust_idle_connections(&self) {
        self.distrust.start();
    }

    /// Which backend this is, for the few statements that must differ (row-lock hints).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The writer pool itself, for its gauges, migrations and tests. Writes go through
    /// [`Database::begin`] or [`Database::writer`] instead: on SQLite those wait in their
    /// account's line, and a statement run here would skip it.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A write transaction. On SQLite it waits for the one writer in its account's line
    /// (`fair::in_lane`), the lines taking turns.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let started = std::time::Instant::now();
        let turn = self.turn().await;
        let tx = self.pool.begin().await;
        drop(turn);
        acquired("writer", started.elapsed());
        tx
    }

    /// A writer connection outside any transaction, for statements that each commit by
    /// themselves (a refusal's audit record, the outbox's and the sagas' leases). It waits in
    /// line as [`Database::begin`] does. Take it only when holding no other connection.
    pub async fn writer(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, sqlx::Error> {
        let started = std::time::Instant::now();
        let turn = self.turn().await;
        let conn = self.pool.acquire().await;
        drop(turn);
        acquired("writer", started.elapsed());
        conn
    }

    /// SQLite: waits until the current lane may ask for the writer; the next is let through
    /// once the returned turn is dropped, when the writer has been got.
    async fn turn(&self) -> Option<crate::fair::Turn<'_>> {
        match &self.turns {
            Some(turns) => Some(turns.turn().await),
            None => None,
        }
    }

    /// The pool [`Database::reader`] takes from (on PostgreSQL, the writer's).
    pub fn readers(&self) -> &AnyPool {
        &self.readers
    }

    /// A connection for reads only (writes on it fail on SQLite) that does not wait for the
    /// writer. No transaction: each statement sees what was committed when it ran, as inside
    /// a PostgreSQL READ COMMITTED transaction, without the BEGIN and ROLLBACK round trips.
    pub async fn reader(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, sqlx::Error> {
        let started = std::time::Instant::now();
        let conn = self.readers.acquire().await;
        acquired("reader", started.elapsed());
        conn
    }

    /// Applies the service's migrations in order. On PostgreSQL sqlx holds an advisory lock, so
    /// replicas starting together migrate once.
    pub async fn migrate(&self, migrations: &[MigrationSql]) -> Result<(), sqlx::migrate::MigrateError> {
        let migrations = migrations
            .iter()
            .map(|m| {
                Migration::new(
                    m.version,
                    Cow::Borrowed(m.description),
                    MigrationType::Simple,
                    Cow::Borrowed(m.sql),
                    false,
                )
            })
            .collect::<Vec<_>>();
        let migrator = Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT };
        migrator.run(&self.pool).await
    }

    /// Deletes every row of every table but the migrations' record, in one transaction: the
    /// schema stays, the data goes. `roster up --demo --reset` starts from this on PostgreSQL,
    /// where deleting the data directory resets nothing.
    pub async fn empty(&self) -> Result<(), sqlx::Error> {
        use sqlx::Row as _;
        let mut tx = self.begin().await?;
        let list = match self.backend {
            Backend::Postgres => "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = current_schema()",
            Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        };
        let tables: Vec<String> = sqlx::query(list)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>("name"))
            .collect::<Result<_, _>>()?;
        let quoted: Vec<String> = tables
            .iter()
            .filter(|name| name.as_str() != "_sqlx_migrations")
            .map(|name| format!("\"{}\"", name.replace('"', "\"\"")))
            .collect();
        if quoted.is_empty() {
            return tx.commit().await;
        }
        match self.backend {
            Backend::Postgres => {
                tx.execute(format!("TRUNCATE {}", quoted.join(", ")).as_str()).await?;
            }
            Backend::Sqlite => {
                // Checked at the commit, when every table is empty, not row by row.
                tx.execute("PRAGMA defer_foreign_keys = ON").await?;
                for table in &quoted {
                    tx.execute(format!("DELETE FROM {table}").as_str()).await?;
                }
            }
        }
        tx.commit().await
    }

    pub async fn close(&self) {
        self.readers.close().await;
        self.pool.close().await;
    }
}

/// Rows one slice of a housekeeping delete removes: few enough that, on SQLite's single writer,
/// another account's write never waits behind one for more than a few milliseconds.
pub const DELETE_SLICE: i64 = 500;

/// Runs `delete` (a DELETE whose subquery picks at most `$2` rows, with `$1` bound to `bound`)
/// slice after slice, each committing by itself, until a slice removes fewer than
/// [`DELETE_SLICE`]; returns the rows removed. A long backlog is then cleared in many short
/// turns of the writer instead of one long one.
pub async fn delete_in_slices(db: &Database, delete: &str, bound: i64) -> Result<u64, sqlx::Error> {
    let mut removed = 0;
    loop {
        let gone =
            sqlx::query(delete).bind(bound).bind(DELETE_SLICE).execute(&mut *db.writer().await?).await?.rows_affected();
        removed += gone;
        if gone < DELETE_SLICE.unsigned_abs() {
            return Ok(removed);
        }
        tokio::task::yield_now().await;
    }
}

/// The URL without its password, for logs and error messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &credentials[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// True when the error is a unique-constraint violation (a lost race on an insert).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The histogram of how long a caller waited for a connection, by `pool`. Recorded here, where
/// the wait happens; `metrics` describes it with the others.
pub const DB_ACQUIRE: &str = "roster_db_acquire_seconds";

/// Records how long getting a connection from `pool` took.
fn acquired(pool: &'static str, waited: Duration) {
    metrics::histogram!(DB_ACQUIRE, "pool" => pool).record(waited.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_lists_number_on_and_an_empty_one_matches_nothing() {
        assert_eq!(params(2, 3), "$2, $3, $4");
        assert_eq!(params(1, 1), "$1");
        assert_eq!(params(5, 0), "NULL");
    }

    /// With one SQLite connection for everything, these reads would wait for the open write
    /// (the pool has nothing to hand out): the two-second bound only catches that wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_reads_see_committed_data_while_a_write_is_open_and_cannot_write() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Database::connect(&Database::sqlite_url(dir.path(), "t"), 1).await.expect("sqlite");
        sqlx::query("CREATE TABLE t (v BIGINT)").execute(db.pool()).await.expect("create");
        sqlx::query("INSERT INTO t (v) VALUES (1)").execute(db.pool()).await.expect("insert");
        let mut writing = db.begin().await.expect("writer");
        sqlx::query("INSERT INTO t (v) VALUES (2)").execute(&mut *writing).await.expect("uncommitted insert");
        let reads = (0..SQLITE_READERS).map(|_| async {
            let mut conn = db.reader().await.expect("reader");
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM t").fetch_one(&mut *conn).await.expect("count")
        });
        let counts = tokio::time::timeout(Duration::from_secs(2), futures_util::future::join_all(reads))
            .await
            .expect("reads do not wait for the writer");
        assert!(counts.iter().all(|n| *n == 1), "each read sees the committed row only: {counts:?}");
        writing.commit().await.expect("commit");
        let mut conn = db.reader().await.expect("reader");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t").fetch_one(&mut *conn).await.expect("count");
        assert_eq!(n, 2, "a read after the commit sees it");
        assert!(
            sqlx::query("INSERT INTO t (v) VALUES (3)").execute(&mut *conn).await.is_err(),
            "readers are read-only"
        );
        assert_eq!(Backend::of(&conn), Backend::Sqlite);
    }

    /// Statements outside a transaction (the outbox's and the sagas' leases) wait in their
    /// line too: a quiet account's write goes before a busy line's backlog, whichever way
    /// each asks for the writer. Straight from the pool they would go first come, first served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_use_of_the_sqlite_writer_waits_in_its_line() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Database::connect(&Database::sqlite_url(dir.path(), "w"), 1).await.expect("sqlite");
        let held = db.begin().await.expect("the writer, held");
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for (n, lane) in ["busy", "busy", "busy", "quiet"].into_iter().enumerate() {
            let (db, order) = (db.clone(), order.clone());
            waiting.push(tokio::spawn(crate::fair::in_lane(lane, async move {
                if lane == "quiet" {
                    let _tx = db.begin().await.expect("a transaction");
                    order.lock().expect("order").push(format!("{lane}{n}"));
                } else {
                    let _conn = db.writer().await.expect("a writer connection");
                    order.lock().expect("order").push(format!("{lane}{n}"));
                }
            })));
            // Each is in its line before the next comes.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        held.commit().await.expect("commit");
        for task in waiting {
            task.await.expect("the writer");
        }
        // The first busy one was already asking the pool when the others came.
        assert_eq!(*order.lock().expect("order"), ["busy0", "quiet3", "busy1", "busy2"]);
    }

    #[tokio::test]
    async fn emptying_keeps_the_schema_and_the_migrations_record_on_sqlite() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Database::connect(&Database::sqlite_url(dir.path(), "e"), 1).await.expect("sqlite");
        let migration = MigrationSql {
            version: 1,
            description: "parents and children",
            sql: "CREATE TABLE parent (id BIGINT PRIMARY KEY); \
             CREATE TABLE child (parent_id BIGINT NOT NULL REFERENCES parent (id))",
        };
        db.migrate(&[migration]).await.expect("migrate");
        sqlx::query("INSERT INTO parent (id) VALUES (1)").execute(db.pool()).await.expect("parent");
        sqlx::query("INSERT INTO child (parent_id) VALUES (1)").execute(db.pool()).await.expect("child");
        db.empty().await.expect("empty, whatever order the tables come in");
        let mut conn = db.reader().await.expect("reader");
        for (table, rows) in [("parent", 0), ("child", 0), ("_sqlx_migrations", 1)] {
            let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&mut *conn)
                .await
                .unwrap_or_else(|e| panic!("{table} is still there: {e}"));
            assert_eq!(count, rows, "{table}: the data goes, the migrations' record stays");
        }
    }

    #[test]
    fn lost_connections_conflicts_and_bugs_are_told_apart() {
        assert_eq!(failure(&sqlx::Error::PoolTimedOut), Failure::Connection);
        assert_eq!(failure(&sqlx::Error::Io(std::io::Error::other("reset"))), Failure::Connection);
        assert_eq!(failure(&sqlx::Error::RowNotFound), Failure::Other);
        assert_eq!(failure(&sqlx::Error::ColumnNotFound("x".into())), Failure::Other);
    }

    #[test]
    fn distrust_lasts_a_few_seconds() {
        let distrust = Distrust::new();
        assert!(!distrust.active());
        distrust.start();
        assert!(distrust.active());
        distrust.until_ms.store(distrust.now_ms().saturating_sub(1), Ordering::Relaxed);
        assert!(!distrust.active());
    }

    #[test]
    fn backend_follows_the_url_scheme() {
        assert_eq!(Backend::from_url("postgres://x@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("sqlite:///tmp/a.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("mysql://h/db"), None);
    }

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(redact("postgres://app:secret@db:5432/roster"), "postgres://app:***@db:5432/roster");
        assert_eq!(redact("postgres://app@db/roster"), "postgres://app@db/roster");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}
