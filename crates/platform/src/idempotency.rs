//! Request-id idempotency for mutating RPCs (DESIGN "API conventions", SPEC R32).
//!
//! A change is keyed by (principal, method, request id), and its response is recorded under
//! the key in the change's own transaction, so the change and its record land together or not
//! at all. [`gated_once`] runs most changes: it makes the change without looking the key up
//! first, and a repeat, which either refuses or collides with the stored record on the key's
//! primary key, rolls back and hands back the stored response, or `REQUEST_ID_REUSED` if the
//! key was used for a different request. Two concurrent calls with one key race on the same
//! primary key: the loser rolls back and replays the winner. Handlers that hold their own
//! transaction (batches) use [`begin`] or [`lookup`] and [`record`]. Each service's
//! migrations create the `idempotency_keys` table this module reads and writes.

use futures_util::future::BoxFuture;
use prost::Message;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::{Conn, Database, Tx, is_unique_violation};
use crate::folded::{self, Folded};
use crate::status;

/// Longest accepted request id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

#[derive(Debug, Clone)]
pub struct Key {
    principal: String,
    method: &'static str,
    request_id: String,
    request_hash: String,
}

impl Key {
    /// Validates the request id and fingerprints the request.
    pub fn new<M: Message>(
        principal: &str,
        method: &'static str,
        request_id: &str,
        request: &M,
    ) -> Result<Self, tonic::Status> {
        if request_id.trim().is_empty() {
            return Err(status::invalid_argument(
                "request_id",
                "is required: choose a unique id per change and reuse it on retry",
            ));
        }
        if request_id.len() > MAX_REQUEST_ID_LEN {
            return Err(status::invalid_argument("request_id", format!("is longer than {MAX_REQUEST_ID_LEN} bytes")));
        }
        // The RPC's span (see `rpc_log`) names the change it is about.
        tracing::Span::current().record("request_id", request_id);
        let digest = Sha256::digest(request.encode_to_vec());
        Ok(Self {
            principal: principal.to_owned(),
            method,
            request_id: request_id.to_owned(),
            request_hash: hex_text(&digest),
        })
    }
}

/// Either the response of an earlier call with the same key, or a transaction to make the
/// change in.
#[derive(Debug)]
pub enum Idempotent<R> {
    Replay(R),
    Fresh(Fresh),
}

#[derive(Debug)]
pub struct Fresh {
    pub tx: Tx,
    key: Key,
    db: Database,
}

fn reused() -> tonic::Status {
    status::refusal(
        tonic::Code::InvalidArgument,
        status::Reason::new("REQUEST_ID_REUSED", None),
        "request_id was already used for a different request; choose a new id",
    )
}

/// The response committed under `key`, read on `tx`; `REQUEST_ID_REUSED` when the key was
/// used for another request. For handlers that hold their own transaction (batches).
pub async fn lookup<R: Message + Default>(tx: &mut Conn, key: &Key) -> Result<Option<R>, tonic::Status> {
    let row = sqlx::query(
        "SELECT request_hash, response FROM idempotency_keys WHERE principal = $1 AND method = $2 AND request_id = $3",
    )
    .bind(&key.principal)
    .bind(key.method)
    .bind(&key.request_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| status::from_db(&e))?;
    let Some(row) = row else { return Ok(None) };
    let hash: String = row.try_get("request_hash").map_err(|e| status::internal(&e))?;
    if hash != key.request_hash {
        return Err(reused());
    }
    let response: String = row.try_get("response").map_err(|e| status::internal(&e))?;
    let bytes = hex::decode(&response).map_err(|_| status::internal(&"corrupt idempotency record"))?;
    R::decode(bytes.as_slice()).map(Some).map_err(|e| status::internal(&e))
}

/// Opens the transaction for a mutating call, or returns the earlier response.
pub async fn begin<R: Message + Default>(db: &Database, key: Key) -> Result<Idempotent<R>, tonic::Status> {
    let mut tx = db.begin().await.map_err(|e| status::from_db(&e))?;
    if let Some(earlier) = lookup(&mut tx, &key).await? {
        tx.rollback().await.map_err(|e| status::from_db(&e))?;
        return Ok(Idempotent::Replay(earlier));
    }
    Ok(Idempotent::Fresh(Fresh { tx, key, db: db.clone() }))
}

impl Fresh {
    /// Records `response` under the key and commits the change with it. If a concurrent call
    /// with the same key committed first, this change is rolled back and that call's response
    /// is returned instead.
    pub async fn finish<R: Message + Default>(mut self, response: R, now_ms: i64) -> Result<R, tonic::Status> {
        let mut write = Folded::on(&self.tx);
        insert_into(&mut write, &self.key, &response, now_ms);
        match write.run(&mut self.tx).await.map(drop) {
            Ok(()) => {
                self.tx.commit().await.map_err(|e| status::from_commit(&e))?;
                Ok(response)
            }
            Err(error) if is_unique_violation(&error) => {
                self.tx.rollback().await.map_err(|e| status::from_db(&e))?;
                let mut tx = self.db.begin().await.map_err(|e| status::from_db(&e))?;
                let earlier = lookup::<R>(&mut tx, &self.key).await?;
                tx.rollback().await.map_err(|e| status::from_db(&e))?;
                earlier.ok_or_else(|| status::internal(&"idempotency record vanished"))
            }
            Err(error) => Err(status::from_db(&error)),
        }
    }
}

impl Fresh {
    /// Rolls the change back after a refusal. If a concurrent call with the same key and input
    /// committed meanwhile, its response is returned: the refusal was only this retry seeing
    /// its twin's effect (e.g. "e-mail in use" for the user the twin just invited).
    pub async fn abandon<R: Message + Default>(self) -> Result<Option<R>, tonic::Status> {
        self.tx.rollback().await.map_err(|e| status::from_db(&e))?;
        let mut tx = self.db.begin().await.map_err(|e| status::from_db(&e))?;
        let earlier = lookup::<R>(&mut tx, &self.key).await;
        tx.rollback().await.map_err(|e| status::from_db(&e))?;
        earlier
    }
}

async fn insert<R: Message>(tx: &mut Conn, key: &Key, response: &R, now_ms: i64) -> Result<(), sqlx::Error> {
    let mut write = Folded::on(tx);
    insert_into(&mut write, key, response, now_ms);
    write.run(tx).await?;
    Ok(())
}

/// `bytes` as lowercase hex. `hex::encode` builds its string a `char` at a time, about 10k
/// instructions for an invitation's stored answer (`callgrind`); this writes the bytes in place.
fn hex_text(bytes: &[u8]) -> String {
    let mut text = vec![0; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut text).expect("a buffer twice the input's length");
    String::from_utf8(text).expect("hex digits are ASCII")
}

fn insert_into<R: Message>(write: &mut Folded, key: &Key, response: &R, now_ms: i64) {
    write.write(|args| {
        format!(
            "INSERT INTO idempotency_keys (principal, method, request_id, request_hash, response, created_at_ms) \
             VALUES ({}, {}, {}, {}, {}, {})",
            args.bind(key.principal.clone()),
            args.bind(key.method.to_owned()),
            args.bind(key.request_id.clone()),
            args.bind(key.request_hash.clone()),
            args.bind(hex_text(&response.encode_to_vec())),
            args.bind(now_ms),
        )
    });
}

/// Records `response` under `key` in the caller's transaction, for handlers that make several
/// keyed changes in one commit and have read [`lookup`] for each under a lock that keeps
/// twins out. A twin that committed anyway fails the whole transaction with `ABORTED`, to be
/// retried (the retry replays the twin).
pub async fn record<R: Message>(tx: &mut Conn, key: &Key, response: &R, now_ms: i64) -> Result<(), tonic::Status> {
    match insert(tx, key, response, now_ms).await {
        Ok(()) => Ok(()),
        Err(error) if is_unique_violation(&error) => {
            Err(tonic::Status::aborted("a concurrent call with the same request_id committed first; retry"))
        }
        Err(error) => Err(status::from_db(&error)),
    }
}

/// The stored response of an earlier call with this key, if any, read without holding a
/// transaction: handlers that must ask another service before changing anything check this
/// first, so a retry gets its first answer even if that service's answer has changed since.
pub async fn replayed<R: Message + Default>(db: &Database, key: &Key) -> Result<Option<R>, tonic::Status> {
    let mut conn = db.reader().await.map_err(|e| status::from_db(&e))?;
    lookup(&mut conn, key).await
}

/// Runs `op`'s change exactly once per key: the first call commits it with its response;
/// a repeat hands that response back (see [`gated_once`]). A refusal (`Err(E)`) rolls back
/// and comes back as `Ok(Err(E))`, unless a twin with the same key committed meanwhile, whose
/// response is returned instead.
pub async fn once<R, E, C, F>(
    db: &Database,
    key: Key,
    now_ms: i64,
    ctx: &C,
    op: F,
) -> Result<Result<R, E>, tonic::Status>
where
    R: Message + Default,
    C: ?Sized + Sync,
    F: for<'t> FnOnce(&'t mut Tx, &'t C) -> BoxFuture<'t, Result<R, E>>,
{
    gated_once(db, key, now_ms, ctx, |_, _| Box::pin(async { Ok(()) }), op).await
}

/// [`once`], with `gate` deciding, in the same transaction and from current data, whether
/// the caller may make this request at all before an earlier response is handed back: a caller
/// who may not gets the refusal, never the replay (SPEC R34).
///
/// The key is not looked up first, which saves a round trip on every fresh request: a
/// repeated request runs `op` again, and either `op` refuses (it sees its own earlier effect)
/// or its record collides with the stored one; either way the transaction rolls back and the
/// stored response is handed back once `gate` allows it. `op` must therefore do nothing
/// outside its transaction (it may start work that runs once it commits). The writes `op`
/// holds back with [`folded::write_last`] (its audit record, its events) go out in one
/// statement with the record.
pub async fn gated_once<R, E, C, G, F>(
    db: &Database,
    key: Key,
    now_ms: i64,
    ctx: &C,
    gate: G,
    op: F,
) -> Result<Result<R, E>, tonic::Status>
where
    R: Message + Default,
    C: ?Sized + Sync,
    G: for<'t> FnOnce(&'t mut Tx, &'t C) -> BoxFuture<'t, Result<(), E>>,
    F: for<'t> FnOnce(&'t mut Tx, &'t C) -> BoxFuture<'t, Result<R, E>>,
{
    let tx = db.begin().await.map_err(|e| status::from_db(&e))?;
    let mut fresh = Fresh { tx, key, db: db.clone() };
    let (outcome, tail) = folded::holding_tail(op(&mut fresh.tx, ctx)).await;
    let response = match outcome {
        Ok(response) => response,
        Err(refusal) => return refused(fresh, ctx, gate, refusal).await,
    };
    let mut write = tail.unwrap_or_else(|| Folded::on(&fresh.tx));
    insert_into(&mut write, &fresh.key, &response, now_ms);
    match write.run(&mut fresh.tx).await {
        Ok(_) => {
            fresh.tx.commit().await.map_err(|e| status::from_commit(&e))?;
            Ok(Ok(response))
        }
        // A repeat of a request whose `op` succeeded again, or a twin that committed first.
        Err(error) if is_unique_violation(&error) => match fresh.abandon::<R>().await? {
            Some(earlier) => replay_if_allowed(db, ctx, gate, earlier).await,
            None => Err(status::internal(&"idempotency record vanished")),
        },
        Err(error) => Err(status::from_db(&error)),
    }
}

/// Hands back `earlier` if `gate` allows it, decided in a transaction of its own.
async fn replay_if_allowed<R, E, C, G>(
    db: &Database,
    ctx: &C,
    gate: G,
    earlier: R,
) -> Result<Result<R, E>, tonic::Status>
where
    C: ?Sized + Sync,
    G: for<'t> FnOnce(&'t mut Tx, &'t C) -> BoxFuture<'t, Result<(), E>>,
{
    let mut tx = db.begin().await.map_err(|e| status::from_db(&e))?;
    let allowed = gate(&mut tx, ctx).await;
    tx.rollback().await.map_err(|e| status::from_db(&e))?;
    Ok(allowed.map(|()| earlier))
}

/// After `op` refused: rolls back, and hands back a twin's answer if one committed meanwhile
/// (the refusal was this call seeing the twin's effect), once `gate` allows the replay.
async fn refused<R, E, C, G>(fresh: Fresh, ctx: &C, gate: G, refusal: E) -> Result<Result<R, E>, tonic::Status>
where
    R: Message + Default,
    C: ?Sized + Sync,
    G: for<'t> FnOnce(&'t mut Tx, &'t C) -> BoxFuture<'t, Result<(), E>>,
{
    let db = fresh.db.clone();
    match fresh.abandon::<R>().await? {
        Some(twin) => replay_if_allowed(&db, ctx, gate, twin).await,
        None => Ok(Err(refusal)),
    }
}

/// What a change run by [`gated_once_folded`] needs to record its own answer: the request's
/// key, which it writes with its other writes in one statement.
#[derive(Debug)]
pub struct Receipt {
    key: Key,
    now_ms: i64,
}

/// Proof that a change added its answer's record to its writes ([`Receipt::record_into`]).
#[derive(Debug)]
#[must_use]
pub struct Recorded<R>(R);

impl Receipt {
    /// Adds the record of `response` under the request's key to `write`.
    pub fn record_into<R: Message>(self, write: &mut Folded, response: R) -> Recorded<R> {
        insert_into(write, &self.key, &response, self.now_ms);
        Recorded(response)
    }
}

/// [`gated_once`] for a change that writes its idempotency record itself, folded into its
/// own writes ([`Receipt`]) in one statement. A repeated request runs `op` again, as there;
/// `op` then refuses or fails on the key's primary key, and the stored answer is handed back
/// once `gate` allows it.
pub async fn gated_once_folded<R, E, C, G, F>(
    db: &Database,
    key: Key,
    now_ms: i64,
    ctx: &C,
    gate: G,
    op: F,
) -> Result<Result<R, E>, tonic::Status>
where
    R: Message + Default,
    C: ?Sized + Sync,
    G: for<'t> FnOnce(&'t mut Tx, &'t C) -> BoxFuture<'t, Result<(), E>>,
    F: for<'t> FnOnce(&'t mut Tx, &'t C, Receipt) -> BoxFuture<'t, Result<Recorded<R>, E>>,
{
    let tx = db.begin().await.map_err(|e| status::from_db(&e))?;
    let mut fresh = Fresh { tx, key: key.clone(), db: db.clone() };
    match op(&mut fresh.tx, ctx, Receipt { key, now_ms }).await {
        Ok(Recorded(response)) => {
            fresh.tx.commit().await.map_err(|e| status::from_commit(&e))?;
            Ok(Ok(response))
        }
        Err(refusal) => refused(fresh, ctx, gate, refusal).await,
    }
}

/// Forgets the records made before `before_ms`; each service chooses how long it keeps them
/// (see [`crate::saga_retry`]). Returns how many went. Safe on several replicas at once.
pub async fn prune(db: &Database, before_ms: i64) -> Result<u64, sqlx::Error> {
    crate::db::delete_in_slices(
        db,
        "DELETE FROM idempotency_keys WHERE (principal, method, request_id) IN \
         (SELECT principal, method, request_id FROM idempotency_keys WHERE created_at_ms < $1 LIMIT $2)",
        before_ms,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_answers_are_the_same_hex_as_before() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(hex_text(&bytes), hex::encode(&bytes));
        assert_eq!(hex_text(&[]), "");
    }

    #[test]
    fn request_id_is_required_and_bounded() {
        let request = prost_types_free_message();
        assert!(Key::new("user:1", "m", "", &request).is_err());
        assert!(Key::new("user:1", "m", &"x".repeat(MAX_REQUEST_ID_LEN + 1), &request).is_err());
        assert!(Key::new("user:1", "m", "r-1", &request).is_ok());
    }

    #[test]
    fn different_requests_hash_differently() {
        let a = Key::new("user:1", "m", "r", &String::from("a")).expect("key");
        let b = Key::new("user:1", "m", "r", &String::from("b")).expect("key");
        assert_ne!(a.request_hash, b.request_hash);
    }

    fn prost_types_free_message() -> String {
        String::from("payload")
    }
}
