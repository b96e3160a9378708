//! `roster.events.v1.Events` as both services serve it ([`EventsService`]): each says which
//! accounts a caller may read ([`Readers`]) and how its stored payloads read back
//! ([`Decode`]); checking the request, paging, streaming, asking again while a user's stream
//! lasts, and turning stored events into messages are the same for both.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use roster_proto::events::v1 as pb;
use roster_proto::events::v1::events_server::Events;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::stream::{Entitlement, Item, Recheck, Watch};
use super::{EventLog, Filter, StoredEvent, check_filter};
use crate::auth::{Principal, TokenExpiry, principal};
use crate::pagination::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::status;

/// Reads a stored payload back as the API's typed payload; `Err` names what is wrong.
pub type Decode = fn(&StoredEvent) -> Result<pb::event::Payload, String>;

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send>>;

/// Who may read a service's log, decided by the service from current data (SPEC R34).
#[tonic::async_trait]
pub trait Readers: Clone + Send + Sync + 'static {
    /// The accounts `caller` may read of those `requested` (empty: every account it may), or
    /// the refusal.
    async fn readable(&self, caller: &Principal, requested: Vec<String>) -> Result<Vec<String>, Status>;
}

/// The `Events` gRPC service over one service's log.
#[derive(Debug, Clone)]
pub struct EventsService<R> {
    log: EventLog,
    readers: R,
    decode: Decode,
    /// Cancelled as the server drains: streams end saying where to resume.
    draining: CancellationToken,
}

impl<R: Readers> EventsService<R> {
    pub fn new(log: EventLog, readers: R, decode: Decode, draining: CancellationToken) -> Self {
        Self { log, readers, decode, draining }
    }

    /// The accounts of the request's filter the caller may read, and its filter narrowed to them.
    async fn filter(
        &self,
        caller: &Principal,
        filter: Option<pb::EventFilter>,
    ) -> Result<(Vec<String>, Filter), Status> {
        let requested = filter.clone().unwrap_or_default().account_ids;
        let accounts = self.readers.readable(caller, requested).await?;
        Ok((accounts.clone(), self.log.filter(filter, accounts)?))
    }

    /// For a user, asks the service again while the stream lasts: a demoted or deactivated
    /// admin's stream ends with the refusal. Services and operators are not users of any account.
    fn recheck(&self, caller: &Principal, accounts: Vec<String>) -> Option<Recheck> {
        if !matches!(caller, Principal::User { .. }) {
            return None;
        }
        let (readers, caller) = (self.readers.clone(), caller.clone());
        Some(Box::new(move || {
            let (readers, caller, accounts) = (readers.clone(), caller.clone(), accounts.clone());
            Box::pin(async move { readers.readable(&caller, accounts).await.map(drop) })
        }))
    }
}

#[tonic::async_trait]
impl<R: Readers> Events for EventsService<R> {
    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = principal(&request)?;
        let token_expiry = TokenExpiry::of(&request);
        let request = request.into_inner();
        let (accounts, filter) = self.filter(&caller, request.filter.clone()).await?;
        let entitlement = Entitlement { recheck: self.recheck(&caller, accounts), token_expiry };
        let stream = self
            .log
            .watch_request(&caller.audit_name(), &request, filter, entitlement, self.decode, self.draining.clone())
            .await?;
        Ok(Response::new(stream))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let caller = principal(&request)?;
        let request = request.into_inner();
        let (_, filter) = self.filter(&caller, request.filter.clone()).await?;
        Ok(Response::new(self.log.list(&request, filter, self.decode).await?))
    }
}

const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
const MAX_HEARTBEAT_SECONDS: u32 = 300;

impl EventLog {
    /// The filter of a request, after the service narrowed its accounts to `accounts` (the
    /// caller's own account for a user; as asked for operators and services). Unknown event
    /// types are refused, so a typo does not silently match nothing.
    pub fn filter(&self, filter: Option<pb::EventFilter>, accounts: Vec<String>) -> Result<Filter, Status> {
        let requested = filter.unwrap_or_default();
        let filter = Filter { accounts, kinds: requested.types };
        check_filter(&filter)?;
        if let Some((n, unknown)) =
            filter.kinds.iter().enumerate().find(|(_, kind)| !self.kinds.contains(&kind.as_str()))
        {
            return Err(status::invalid_argument(
                &format!("filter.types[{n}]"),
                format!("{unknown:?} is not an event type of {}; it has {}", self.name, self.kinds.join(", ")),
            ));
        }
        Ok(filter)
    }

    /// `ListEvents`: a page of the log after the request's cursor.
    pub async fn list(
        &self,
        request: &pb::ListEventsRequest,
        filter: Filter,
        decode: Decode,
    ) -> Result<pb::ListEventsResponse, Status> {
        let size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(status::invalid_argument("page_size", "must not be negative")),
            n => u32::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_PAGE_SIZE)
                .ok_or_else(|| status::invalid_argument("page_size", format!("must be at most {MAX_PAGE_SIZE}")))?,
        };
        let after = self.start_after(&request.after, true).await?;
        let (events, next, more) = self.read(after, &filter, size as usize).await.map_err(|e| status::from_db(&e))?;
        let events = events.iter().map(|event| self.message(event, decode)).collect::<Result<_, _>>()?;
        Ok(pb::ListEventsResponse { events, cursor: self.cursor(next), more })
    }

    /// `WatchEvents` by `caller` (an audit name): the stream, or the request's error.
    pub async fn watch_request(
        &self,
        caller: &str,
        request: &pb::WatchEventsRequest,
        filter: Filter,
        entitlement: Entitlement,
        decode: Decode,
        draining: CancellationToken,
    ) -> Result<EventStream, Status> {
        let heartbeat = match request.heartbeat_seconds {
            0 => DEFAULT_HEARTBEAT,
            n if n > MAX_HEARTBEAT_SECONDS => {
                return Err(status::invalid_argument(
                    "heartbeat_seconds",
                    format!("must be at most {MAX_HEARTBEAT_SECONDS}"),
                ));
            }
            n => Duration::from_secs(u64::from(n)),
        };
        if !request.after.is_empty() && request.from_start {
            return Err(status::invalid_argument("from_start", "cannot be set together with after"));
        }
        let after = self.start_after(&request.after, request.from_start).await?;
        let slot = self.stream_slot(caller)?;
        let log = self.clone();
        let items = self.watch(Watch { after, filter, heartbeat, entitlement }, draining, slot);
        Ok(Box::pin(items.map(move |item| {
            let item = match item? {
                Item::Event { event, .. } => pb::watch_events_response::Item::Event(log.message(&event, decode)?),
                Item::Heartbeat { cursor } => {
                    pb::watch_events_response::Item::Heartbeat(pb::Heartbeat { cursor, at_ms: log.clock.now_ms() })
                }
            };
            Ok(pb::WatchEventsResponse { item: Some(item) })
        })))
    }

    fn message(&self, event: &StoredEvent, decode: Decode) -> Result<pb::Event, Status> {
        let payload = decode(event).map_err(|cause| {
            status::internal(&format!("event {} of {}'s log does not decode: {cause}", event.kind, self.name))
        })?;
        Ok(pb::Event {
            cursor: self.cursor(event.position),
            at_ms: event.at_ms,
            account_id: event.account_id.clone(),
            subject: event.subject.clone(),
            r#type: event.kind.clone(),
            request_id: event.request_id.clone(),
            operation_id: event.operation_id.clone(),
            principal: event.principal.clone(),
            payload: Some(payload),
        })
    }
}
