//! The `roster.events.v1.Events` requests as both services answer them, once the service has
//! decided which accounts the caller may read: checking the request, paging, streaming, and
//! turning stored events into messages with the service's own payload decoder.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use roster_proto::events::v1 as pb;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::stream::{Item, Recheck, Watch};
use super::{EventLog, Filter, StoredEvent, check_filter};
use crate::pagination::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::status;

/// Reads a stored payload back as the API's typed payload; `Err` names what is wrong.
pub type Decode = fn(&StoredEvent) -> Result<pb::event::Payload, String>;

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send>>;

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
        recheck: Option<Recheck>,
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
        let items = self.watch(Watch { after, filter, heartbeat, recheck }, draining, slot);
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
