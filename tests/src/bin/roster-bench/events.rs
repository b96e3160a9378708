//! `roster-bench --events RATE`: how soon a watcher sees a change. Eight callers (one per bench
//! account) change a user's settings at RATE changes a second in all, while one
//! `Events/WatchEvents` stream, as an operator, follows identity's log for them. For each change
//! the time from its commit to the watcher's receipt lies between two figures the bench can
//! see: from the call's answer (after the commit) and from the call's start (before it). Both
//! are printed, their 99th percentiles beside the goal (100 ms).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roster_e2e::{Error, authed};
use roster_proto::events::v1 as ev;
use roster_proto::identity::v1 as pb;

use crate::measure::{self, Load, Server};
use crate::workloads::{ACCOUNTS, Setup};

const GOAL: Duration = Duration::from_millis(100);

/// When each change's call began and was answered, by request id.
type Calls = Arc<Mutex<HashMap<String, (Instant, Instant)>>>;

pub async fn measure(server: &Server, setup: &Setup, operator: &str, rate: f64, seconds: u64) -> Result<(), Error> {
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
    let filter = ev::EventFilter { account_ids: Vec::new(), types: vec!["user.settings_changed".into()] };
    let mut stream = ev::events_client::EventsClient::new(setup.identity())
        .watch_events(authed(ev::WatchEventsRequest { filter: Some(filter), ..Default::default() }, operator))
        .await?
        .into_inner();
    let received: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watcher = {
        let received = received.clone();
        tokio::spawn(async move {
            while let Ok(Some(item)) = stream.message().await {
                if let Some(ev::watch_events_response::Item::Event(event)) = item.item {
                    received.lock().expect("received").insert(event.request_id, Instant::now());
                }
            }
        })
    };
    let calls: Calls = Arc::default();
    let change = {
        let (setup, calls) = (setup.clone(), calls.clone());
        move |n: u64| {
            let (setup, calls) = (setup.clone(), calls.clone());
            Box::pin(async move {
                let (account_id, token, user_id) = setup.account((n / 1_000_000_000) as usize);
                let request_id = format!("events-{run}-{n}");
                let request = pb::UpdateUserSettingsRequest {
                    request_id: request_id.clone(),
                    account_id,
                    user_id,
                    settings: vec![pb::Setting { key: "bench".into(), value: n.to_string() }],
                    ..Default::default()
                };
                let began = Instant::now();
                pb::user_service_client::UserServiceClient::new(setup.identity())
                    .update_user_settings(authed(request, &token))
                    .await
                    .map_err(|status| status.to_string())?;
                calls.lock().expect("calls").insert(request_id, (began, Instant::now()));
                Ok(())
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        }
    };
    eprintln!("roster-bench: {rate} settings changes a second for {seconds} s, one watcher");
    let figures = measure::run(server, Load { pace: Some(rate), ..Load::flat_out(ACCOUNTS, seconds) }, change).await;
    // What is still in flight gets a moment to arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    watcher.abort();
    let calls = calls.lock().expect("calls").clone();
    let received = received.lock().expect("received").clone();
    let (mut after_answer, mut after_start, mut missing) = (Vec::new(), Vec::new(), 0);
    for (request_id, (began, answered)) in &calls {
        match received.get(request_id) {
            Some(at) => {
                after_answer.push(at.saturating_duration_since(*answered));
                after_start.push(at.saturating_duration_since(*began));
            }
            None => missing += 1,
        }
    }
    let p = |latencies: &mut Vec<Duration>, q: f64| {
        latencies.sort();
        latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied()
    };
    let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3));
    println!(
        "changes: {} at {:.0}/s (asked {rate:.0}/s), p99 of the call {}; {} errors{}",
        calls.len(),
        figures.rps,
        ms(Some(figures.p99)),
        figures.errors,
        if figures.first_error.is_empty() { String::new() } else { format!(" (first: {})", figures.first_error) }
    );
    println!("watcher received {} of them; {missing} never arrived", calls.len() - missing);
    let (upper99, lower99) = (p(&mut after_start, 0.99), p(&mut after_answer, 0.99));
    println!(
        "commit to receipt: p50 {} to {}, p99 {} to {} (from the call's answer to from its start); goal p99 <= {} ms: {}",
        ms(p(&mut after_answer, 0.50)),
        ms(p(&mut after_start, 0.50)),
        ms(lower99),
        ms(upper99),
        GOAL.as_millis(),
        match (lower99, upper99) {
            (_, Some(upper)) if upper <= GOAL => "met",
            (Some(lower), _) if lower > GOAL => "not met",
            _ => "unclear",
        }
    );
    Ok(())
}
