//! `roster events tail`: follows a service's event log (`roster.events.v1`) as a consumer
//! would: a line per event for people, proto3 JSON lines (events and heartbeats, each with
//! its cursor) for scripts. When the server ends the stream with a cursor to resume after (it
//! shut down, or this reader fell behind) or cannot be reached, it reconnects with backoff
//! and goes on from the last cursor, so nothing is missed or shown twice.

use std::time::Duration;

use roster_platform::backoff::Backoff;
use roster_proto::events::v1 as ev;
use roster_proto::events::v1::events_client::EventsClient;
use tonic::Code;
use tonic_types::StatusExt;

use super::remote::{Remote, RemoteArgs, refused};
use super::{Failure, render};

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// The token to call with (a service's, an operator's, or an account owner's or admin's)
    /// and where identity is.
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum EventsCommand {
    /// Prints events as they commit, resuming by itself after a restart of the service.
    Tail(TailArgs),
}

#[derive(Debug, clap::Args)]
struct TailArgs {
    /// Whose log: identity's (users, roles, ownership) or licensing's (licenses, phone
    /// numbers, licensed data, refunds).
    #[arg(long, value_enum, default_value_t = Service::Identity)]
    service: Service,
    /// Where licensing's gRPC API is, for `--service licensing`.
    #[arg(long = "licensing-url", env = "ROSTER_LICENSING_URL", default_value = "http://127.0.0.1:50052")]
    licensing_url: String,
    /// Only this account's events; repeat for several. A user must name their own account.
    #[arg(long = "account")]
    accounts: Vec<String>,
    /// Only events of this type, e.g. `user.deactivated`; repeat for several.
    #[arg(long = "type")]
    types: Vec<String>,
    /// Start after this cursor (from an event or a heartbeat printed before).
    #[arg(long, conflicts_with = "from_start")]
    after: Option<String>,
    /// Start from the oldest event kept; without this or `--after`, from now.
    #[arg(long)]
    from_start: bool,
    /// Stop after this many events.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Seconds between heartbeats while nothing matches (printed with `--json` only).
    #[arg(long = "heartbeat-seconds", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=300))]
    heartbeat_seconds: u32,
    /// Print proto3 JSON lines (events and heartbeats) instead of one line per event.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Service {
    Identity,
    Licensing,
}

/// Reconnections in a row before giving up on a service that stays away.
const MAX_RECONNECTS: u32 = 20;

pub async fn run(args: EventsArgs) -> Result<(), Failure> {
    let EventsCommand::Tail(tail) = args.command;
    let mint = "roster token --operator NAME";
    let remote = match tail.service {
        Service::Identity => Remote::connect(&args.remote, mint).await?,
        Service::Licensing => {
            Remote::connect_at(&tail.licensing_url, "ROSTER_LICENSING_URL", &args.remote, mint).await?
        }
    };
    let mut client = EventsClient::new(remote.channel());
    let filter = ev::EventFilter { account_ids: tail.accounts.clone(), types: tail.types.clone() };
    let mut after = tail.after.clone().unwrap_or_default();
    let mut from_start = tail.from_start;
    let mut printed = 0;
    let mut failures = 0;
    let backoff = Backoff { base: Duration::from_millis(200), max: Duration::from_secs(5) };
    loop {
        let request = remote.request(ev::WatchEventsRequest {
            after: after.clone(),
            from_start,
            filter: Some(filter.clone()),
            heartbeat_seconds: tail.heartbeat_seconds,
        });
        let ended = match client.watch_events(request).await {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(item)) => {
                            failures = 0;
                            if let Some(cursor) = show(&item, tail.json)? {
                                after = cursor;
                                from_start = false;
                            }
                            if matches!(item.item, Some(ev::watch_events_response::Item::Event(_))) {
                                printed += 1;
                                if tail.count.is_some_and(|count| printed >= count) {
                                    return Ok(());
                                }
                            }
                        }
                        Ok(None) => break Status::from_code(Code::Unavailable),
                        Err(status) => break Status::from(status),
                    }
                }
            }
            Err(status) => Status::from(status),
        };
        if !ended.resumable() || failures >= MAX_RECONNECTS {
            return Err(refused(ended.0));
        }
        if let Some(resume_after) = ended.resume_after() {
            after = resume_after;
            from_start = false;
        }
        eprintln!("roster: the event stream ended ({}); resuming after the last cursor", ended.0.message());
        tokio::time::sleep(backoff.ceiling(failures)).await;
        failures += 1;
    }
}

/// How a stream ended.
struct Status(tonic::Status);

impl Status {
    fn from_code(code: Code) -> Self {
        Self(tonic::Status::new(code, "the server closed the stream"))
    }

    /// A restart, an outage or falling behind: worth coming back for. A refusal is not.
    fn resumable(&self) -> bool {
        matches!(self.0.code(), Code::Unavailable | Code::ResourceExhausted | Code::Cancelled | Code::Unknown)
    }

    fn resume_after(&self) -> Option<String> {
        self.0.get_details_error_info().and_then(|info| info.metadata.get("resume_after").cloned())
    }
}

impl From<tonic::Status> for Status {
    fn from(status: tonic::Status) -> Self {
        Self(status)
    }
}

/// Prints one item; returns its cursor.
fn show(item: &ev::WatchEventsResponse, as_json: bool) -> Result<Option<String>, Failure> {
    if as_json {
        out!("{}", render::message_json(item, "roster.events.v1.WatchEventsResponse")?);
    }
    Ok(match &item.item {
        Some(ev::watch_events_response::Item::Event(event)) => {
            if !as_json {
                out!("{}", line(event));
            }
            Some(event.cursor.clone())
        }
        Some(ev::watch_events_response::Item::Heartbeat(beat)) => Some(beat.cursor.clone()),
        None => None,
    })
}

/// An event for people: when, where, what, about whom, and who caused it.
fn line(event: &ev::Event) -> String {
    let at = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(event.at_ms).unwrap_or_default()),
    );
    let operation =
        if event.operation_id.is_empty() { String::new() } else { format!(" operation {}", event.operation_id) };
    format!("{at} {} {} {} by {}{operation}", event.account_id, event.r#type, event.subject, event.principal)
}
