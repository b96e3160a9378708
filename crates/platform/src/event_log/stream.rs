//! One consumer's stream: the events after its position as they commit, heartbeats while
//! nothing matches, and a last status that says where to resume.
//!
//! Memory per stream is bounded: events go out through a channel of [`BUFFER`] items, and the
//! task reading the log waits while the channel is full. A consumer that leaves it full for
//! the log's stall limit is ended with `RESOURCE_EXHAUSTED`; a server shutting down ends every
//! stream with `UNAVAILABLE`; a stream whose caller's token expires ends with
//! `UNAUTHENTICATED` (`TOKEN_EXPIRED`), so a stolen token reads no longer than it is valid. Each
//! says in `ErrorInfo.metadata["resume_after"]` where to resume, so nothing is lost either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{EventLog, Filter, Position, StoredEvent};
use crate::auth::TokenExpiry;
use crate::status::ERROR_DOMAIN;

/// Items a stream holds for a consumer that is not reading.
pub const BUFFER: usize = 64;
/// Events read from the log at a time.
const BATCH: usize = 256;
/// How often a consumer's right to read is checked again at most.
pub const RECHECK_EVERY: Duration = Duration::from_secs(15);

/// Event streams one caller may hold open at once on one server.
pub const MAX_STREAMS_PER_CALLER: usize = 16;

/// Open streams by caller (see [`EventLog::stream_slot`]).
pub type OpenStreams = Arc<Mutex<HashMap<String, usize>>>;

/// A caller's open stream, counted until dropped.
#[derive(Debug)]
pub struct StreamSlot {
    open: OpenStreams,
    caller: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

/// What a stream sends.
#[derive(Debug, Clone)]
pub enum Item {
    Event { event: StoredEvent },
    Heartbeat { cursor: String },
}

/// Called every [`RECHECK_EVERY`] (or every heartbeat, if sooner), so a consumer that may no
/// longer read (a demoted admin) is ended with the status it returns, however long the
/// heartbeats it asked for.
pub type Recheck = Box<dyn Fn() -> BoxFuture<'static, Result<(), Status>> + Send + Sync>;

/// What keeps a stream's caller entitled to it: their right to read, asked again
/// ([`Recheck`]), and their bearer token, whose expiry ends the stream.
#[derive(Default)]
pub struct Entitlement {
    pub recheck: Option<Recheck>,
    pub token_expiry: Option<TokenExpiry>,
}

/// What a stream watches.
pub struct Watch {
    pub after: Position,
    pub filter: Filter,
    pub heartbeat: Duration,
    pub entitlement: Entitlement,
}

impl EventLog {
    /// The stream of `watch`, ended (as the module doc says) when `draining` is cancelled.
    /// `slot` is held until the stream ends.
    pub fn watch(
        &self,
        watch: Watch,
        draining: CancellationToken,
        slot: StreamSlot,
    ) -> impl Stream<Item = Result<Item, Status>> + use<> {
        let (items, outbox) = mpsc::channel(BUFFER);
        let (last, last_status) = oneshot::channel();
        let log = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Some(status) = log.feed(watch, &items, draining).await {
                let _ = last.send(status);
            }
        });
        let items = futures_util::stream::unfold(outbox, |mut outbox| async move {
            outbox.recv().await.map(|item| (Ok(item), outbox))
        });
        let last = futures_util::stream::once(last_status).filter_map(|status| async move { status.ok().map(Err) });
        items.chain(last)
    }

    /// Sends what `watch` asks for until the consumer goes (`None`) or the stream must end.
    async fn feed(&self, watch: Watch, items: &mpsc::Sender<Item>, draining: CancellationToken) -> Option<Status> {
        let Watch { mut after, filter, heartbeat, entitlement: Entitlement { recheck, token_expiry } } = watch;
        let expired = tokio::time::sleep(token_expiry.map_or(Duration::ZERO, TokenExpiry::remaining));
        tokio::pin!(expired);
        let mut newest = self.newest.subscribe();
        let mut beats = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        let recheck_every = heartbeat.min(RECHECK_EVERY);
        let mut rechecks = tokio::time::interval_at(tokio::time::Instant::now() + recheck_every, recheck_every);
        loop {
            loop {
                let (events, next, more) = match self.read(after, &filter, BATCH).await {
                    Ok(read) => read,
                    Err(error) => {
                        tracing::debug!(%error, "event stream could not read the log");
                        return Some(self.resume_status(
                            Code::Unavailable,
                            "EVENT_LOG_UNAVAILABLE",
                            "the event log could not be read; resume after the cursor in a moment",
                            after,
                        ));
                    }
                };
                for event in events {
                    let position = event.position;
                    let item = Item::Event { event };
                    if let Err(end) = self.send(items, item, after, &draining).await {
                        return end;
                    }
                    after = position;
                }
                after = next;
                if !more {
                    break;
                }
            }
            tokio::select! {
                // The consumer went away: the stream's slot and task are given back at once.
                () = items.closed() => return None,
                () = draining.cancelled() => return Some(self.shutting_down(after)),
                () = &mut expired, if token_expiry.is_some() => {
                    return Some(self.resume_status(
                        Code::Unauthenticated,
                        "TOKEN_EXPIRED",
                        "the bearer token expired; resume after the cursor with a fresh one",
                        after,
                    ));
                }
                changed = newest.changed() => {
                    if changed.is_err() {
                        return Some(self.shutting_down(after));
                    }
                }
                _ = rechecks.tick() => {
                    if let Some(recheck) = &recheck
                        && let Err(status) = recheck().await
                    {
                        return Some(status);
                    }
                }
                _ = beats.tick() => {
                    let beat = Item::Heartbeat { cursor: self.cursor(after) };
                    if let Err(end) = self.send(items, beat, after, &draining).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Queues `item`; `Err(None)` when the consumer went away, `Err(Some(status))` when it
    /// left the queue full for the stall limit or the server began shutting down meanwhile (a
    /// consumer catching up slowly still gets its status before the grace period ends).
    async fn send(
        &self,
        items: &mpsc::Sender<Item>,
        item: Item,
        after: Position,
        draining: &CancellationToken,
    ) -> Result<(), Option<Status>> {
        let sent = tokio::select! {
            sent = tokio::time::timeout(self.settings.stall_limit, items.send(item)) => sent,
            () = draining.cancelled() => return Err(Some(self.shutting_down(after))),
        };
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(None),
            Err(_) => Err(Some(self.resume_status(
                Code::ResourceExhausted,
                "EVENT_CONSUMER_TOO_SLOW",
                "this consumer stopped reading for too long; resume after the cursor",
                after,
            ))),
        }
    }

    /// One of `caller`'s [`MAX_STREAMS_PER_CALLER`] streams in this process, or
    /// `RESOURCE_EXHAUSTED`: a caller cannot pin memory and tasks without bound by opening
    /// stream after stream.
    pub fn stream_slot(&self, caller: &str) -> Result<StreamSlot, Status> {
        let mut open = self.open_streams.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(caller.to_owned()).or_default();
        if *count >= MAX_STREAMS_PER_CALLER {
            return Err(crate::status::retry_later(
                Code::ResourceExhausted,
                crate::status::Reason::new("EVENT_STREAMS_LIMIT", None),
                Duration::from_secs(5),
                format!("at most {MAX_STREAMS_PER_CALLER} event streams at once per caller on one server; close one"),
            ));
        }
        *count += 1;
        Ok(StreamSlot { open: self.open_streams.clone(), caller: caller.to_owned() })
    }

    fn shutting_down(&self, after: Position) -> Status {
        self.resume_status(
            Code::Unavailable,
            "SERVER_SHUTTING_DOWN",
            "this server is shutting down; resume after the cursor on another replica",
            after,
        )
    }

    /// A stream's last status: the reason, and the cursor to resume after in its metadata.
    fn resume_status(&self, code: Code, reason: &str, message: &str, after: Position) -> Status {
        let mut details = ErrorDetails::new();
        details.set_error_info(reason, ERROR_DOMAIN, HashMap::from([("resume_after".to_owned(), self.cursor(after))]));
        Status::with_error_details(code, message, details)
    }
}
