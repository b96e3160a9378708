//! Several writes of one change sent to the database as one statement where it can: on
//! PostgreSQL each write becomes a data-modifying CTE of a single statement (one round trip
//! instead of one per write, issue 25); SQLite has no data-modifying CTEs and no network to
//! save, so there the writes run one after another in the same transaction.
//!
//! Each store module adds its write with the placeholders [`Args::bind`] hands out, so the SQL
//! of a write lives once, beside its table, whichever way it is sent.
//!
//! A change can also hold writes back for its last statement ([`write_last`]): its audit
//! record and its events, which nothing in the change reads back, go out with its idempotency
//! record instead of one round trip each. The holding is a task-local scope
//! ([`holding_tail`]) rather than a parameter, so the use cases that audit keep their
//! signatures and a saga step or housekeeping pass, which runs outside one, writes at once. Not sqlx's
//! `QueryBuilder`: for the `Any` driver it writes `?`, which PostgreSQL does not accept, and it
//! cannot number one statement's placeholders per part for SQLite.

use std::cell::RefCell;
use std::future::Future;

use sqlx::any::{Any, AnyArguments, AnyRow};
use sqlx::{Arguments, Encode, Type};

use crate::db::{Backend, Conn};

/// The values of one statement, and the placeholders that name them (`$1`, `$2`, ...).
#[derive(Default)]
pub struct Args {
    values: AnyArguments<'static>,
    count: usize,
}

impl Args {
    /// Binds `value` and returns its placeholder, to write into the statement.
    pub fn bind<T>(&mut self, value: T) -> Placeholder
    where
        T: 'static + Encode<'static, Any> + Type<Any>,
    {
        // Encoding into the `Any` buffer only records the value; it fails for no type sqlx's
        // `Any` driver supports, and only those satisfy the bound.
        self.values.add(value).expect("a value the Any driver encodes");
        self.count += 1;
        Placeholder(self.count)
    }
}

/// A bound value's placeholder (`$3`), written straight into its statement's text. It was a
/// `String` of its own, formatted with `core::fmt`'s integer padding: an invitation binds 48
/// values, and that cost 25k of its 459k instructions (`callgrind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placeholder(usize);

impl std::fmt::Display for Placeholder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("$")?;
        f.write_str(itoa::Buffer::new().format(self.0))
    }
}

/// The writes of one change, to run together by [`Folded::run`].
pub struct Folded {
    backend: Backend,
    /// PostgreSQL: every write's SQL, sharing `shared`'s placeholders. SQLite: each write with
    /// its own.
    writes: Vec<(String, Args)>,
    shared: Args,
    /// The tables of the writes that asked [`Folded::unseen_before`].
    numbered: Vec<&'static str>,
}

impl Folded {
    pub fn new(backend: Backend) -> Self {
        Self { backend, writes: Vec::new(), shared: Args::default(), numbered: Vec::new() }
    }

    /// How many rows of `table` this statement adds before the write about to be added, among
    /// the writes that asked this too, that the write cannot see: on PostgreSQL, where the
    /// writes of one statement do not see each other, those writes; on SQLite, where each runs
    /// after the last, none. For a write that numbers its row from what is there already.
    pub fn unseen_before(&mut self, table: &'static str) -> usize {
        let earlier = self.numbered.iter().filter(|t| **t == table).count();
        self.numbered.push(table);
        match self.backend {
            Backend::Postgres => earlier,
            Backend::Sqlite => 0,
        }
    }

    /// For writes on `conn`'s database.
    pub fn on(conn: &Conn) -> Self {
        Self::new(Backend::of(conn))
    }

    /// The database the writes are for, for SQL that differs between the two.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Adds one `INSERT`, `UPDATE` or `DELETE`, written by `write` with the placeholders it
    /// binds. The writes of one statement all see the database as it was before any of them,
    /// so none may depend on another's effect (e.g. a row count that another write changes).
    pub fn write(&mut self, write: impl FnOnce(&mut Args) -> String) {
        match self.backend {
            Backend::Postgres => {
                let sql = write(&mut self.shared);
                self.writes.push((sql, Args::default()));
            }
            Backend::Sqlite => {
                let mut args = Args::default();
                let sql = write(&mut args);
                self.writes.push((sql, args));
            }
        }
    }

    /// Runs the writes, then `check`: a `SELECT` of one row, written like a write. On
    /// PostgreSQL it is the statement's final query, so it sees the database as it was when the
    /// statement began (the locks taken by earlier statements held, these writes not yet
    /// made); on SQLite it runs after the writes, in the same transaction.
    pub async fn run_then_check(
        self,
        conn: &mut Conn,
        check: impl FnOnce(&mut Args) -> String,
    ) -> Result<AnyRow, sqlx::Error> {
        match self.backend {
            Backend::Postgres => {
                let mut shared = self.shared;
                let check = check(&mut shared);
                let ctes = self
                    .writes
                    .iter()
                    .enumerate()
                    .map(|(n, (sql, _))| format!("w{n} AS ({sql})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = if ctes.is_empty() { check } else { format!("WITH {ctes} {check}") };
                sqlx::query_with(&sql, shared.values).fetch_one(&mut *conn).await
            }
            Backend::Sqlite => {
                for (sql, args) in self.writes {
                    sqlx::query_with(&sql, args.values).execute(&mut *conn).await?;
                }
                let mut args = Args::default();
                let check = check(&mut args);
                sqlx::query_with(&check, args.values).fetch_one(&mut *conn).await
            }
        }
    }

    /// Runs the writes; returns how many rows the last one changed (a lone write's count).
    pub async fn run(self, conn: &mut Conn) -> Result<u64, sqlx::Error> {
        if self.backend == Backend::Postgres && self.writes.len() > 1 {
            let ctes = self.writes.len() - 1;
            let mut writes = self.writes.into_iter();
            let head = writes.by_ref().take(ctes).enumerate().map(|(n, (sql, _))| format!("w{n} AS ({sql})"));
            let head = head.collect::<Vec<_>>().join(", ");
            let (last, _) = writes.next().expect("more than one write");
            let sql = format!("WITH {head} {last}");
            return Ok(sqlx::query_with(&sql, self.shared.values).execute(&mut *conn).await?.rows_affected());
        }
        let mut changed = 0;
        let mut shared = Some(self.shared);
        for (sql, args) in self.writes {
            // PostgreSQL's one write binds the shared values; SQLite's each their own.
            let values = match self.backend {
                Backend::Postgres => shared.take().unwrap_or_default().values,
                Backend::Sqlite => args.values,
            };
            changed = sqlx::query_with(&sql, values).execute(&mut *conn).await?.rows_affected();
        }
        Ok(changed)
    }
}

tokio::task_local! {
    /// The writes held back for the last statement of the change running on this task.
    static TAIL: RefCell<Option<Folded>>;
}

/// Runs `change`, holding back the writes it adds with [`write_last`]; returns its outcome and
/// those writes, for the caller to send with the change's own last write before COMMIT (the
/// request's idempotency record: `crate::idempotency`). Dropped unsent if the change refuses.
pub async fn holding_tail<F: Future>(change: F) -> (F::Output, Option<Folded>) {
    TAIL.scope(RefCell::new(None), async move {
        let outcome = change.await;
        (outcome, TAIL.with(|tail| tail.borrow_mut().take()))
    })
    .await
}

/// Adds a write that must commit with its change but that nothing in the change reads back,
/// such as its audit record or its event, to the change's last statement when the change runs
/// under [`holding_tail`]: a round trip fewer per write on PostgreSQL. Otherwise (a saga step,
/// a housekeeping pass) runs it now on `conn`.
pub async fn write_last(conn: &mut Conn, write: impl FnOnce(&mut Folded)) -> Result<(), sqlx::Error> {
    if TAIL.try_with(|_| ()).is_ok() {
        let backend = Backend::of(conn);
        TAIL.with(|tail| write(tail.borrow_mut().get_or_insert_with(|| Folded::new(backend))));
        return Ok(());
    }
    let mut now = Folded::on(conn);
    write(&mut now);
    now.run(conn).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_the_values_from_one_as_they_are_bound() {
        let mut args = Args::default();
        let sql = format!("VALUES ({}, {})", args.bind(7_i64), args.bind("seven".to_owned()));
        let later: Vec<String> = (0..10).map(|n| args.bind(n as i64).to_string()).collect();
        assert_eq!(sql, "VALUES ($1, $2)");
        assert_eq!(later.first().map(String::as_str), Some("$3"));
        assert_eq!(later.last().map(String::as_str), Some("$12"));
        assert_eq!(args.count, 12);
    }
}
