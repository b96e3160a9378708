//! Coalesces the reclaim steps of concurrent sagas into `ReclaimLicensesBatch` calls, one
//! account at a time: a batch goes out as soon as nothing for its account is in flight, and
//! the steps that arrive meanwhile wait and go together in the next. A saga alone pays
//! nothing extra; the 64 rows a bulk removal keeps in flight take licensing's account lock
//! a handful of times instead of 64 (each reclaim holds it until its commit, so one by one
//! they queue on it).
//!
//! Each item keeps the request id its step would send alone, so a step retried after a lost
//! answer replays, whichever form carried it first.
//!
//! Written here rather than taken from a crate: tower's `Buffer` queues without batching, and
//! the batching layers published (tower-batch-control) batch all items of one service
//! together, with no notion of a key that must have only one call in flight.

use std::collections::{HashMap, HashSet};

use roster_platform::auth::ServiceCredentials;
use roster_platform::peer::PeerChannel;
use roster_proto::licensing::v1 as pb;
use roster_proto::licensing::v1::license_service_client::LicenseServiceClient;
use roster_workflow::{Failure, StepError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::answers::{Answer, step_error};

/// Most items per call; licensing accepts up to 256.
const MAX_BATCH: usize = 128;

/// A reclaim step waiting for its batch.
struct Waiting {
    account: String,
    item: pb::ReclaimLicensesItem,
    answer: oneshot::Sender<Answer<pb::LicenseSet>>,
}

/// The steps' side: hands a reclaim to the batching task and waits for its answer.
#[derive(Clone)]
pub struct ReclaimBatcher {
    queue: mpsc::UnboundedSender<Waiting>,
}

impl ReclaimBatcher {
    /// Starts the batching task; it ends when the last handle is dropped and its calls are
    /// answered. Must be called inside the Tokio runtime.
    pub fn spawn(client: LicenseServiceClient<PeerChannel>, credentials: ServiceCredentials) -> Self {
        let (queue, incoming) = mpsc::unbounded_channel();
        tokio::spawn(
            Batching { client, credentials, waiting: HashMap::new(), busy: HashSet::new(), calls: HashMap::new() }
                .run(incoming),
        );
        Self { queue }
    }

    pub async fn reclaim(&self, request_id: String, account: &str, user: &str) -> Answer<pb::LicenseSet> {
        let (answer, answered) = oneshot::channel();
        let item = pb::ReclaimLicensesItem { request_id, user_id: user.to_owned() };
        let stopped = || StepError::Transient("licensing: the reclaim batcher stopped".into());
        self.queue.send(Waiting { account: account.to_owned(), item, answer }).map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

struct Batching {
    client: LicenseServiceClient<PeerChannel>,
    credentials: ServiceCredentials,
    /// Steps not yet sent, by account.
    waiting: HashMap<String, Vec<Waiting>>,
    /// Accounts with a call in flight.
    busy: HashSet<String>,
    /// Which account each call in flight is for.
    calls: HashMap<tokio::task::Id, String>,
}

impl Batching {
    async fn run(mut self, mut incoming: mpsc::UnboundedReceiver<Waiting>) {
        let mut in_flight: JoinSet<()> = JoinSet::new();
        let mut open = true;
        while open || !in_flight.is_empty() {
            tokio::select! {
                next = incoming.recv(), if open => match next {
                    Some(first) => {
                        // Take everything already queued, so a burst goes out together.
                        let mut arrived = vec![first];
                        while let Ok(more) = incoming.try_recv() {
                            arrived.push(more);
                        }
                        for waiting in arrived {
                            self.waiting.entry(waiting.account.clone()).or_default().push(waiting);
                        }
                        let idle: Vec<String> =
                            self.waiting.keys().filter(|account| !self.busy.contains(*account)).cloned().collect();
                        for account in idle {
                            self.send(account, &mut in_flight);
                        }
                    }
                    None => open = false,
                },
                Some(done) = in_flight.join_next_with_id() => {
                    // A call that panicked dropped its steps' answers (they retry); its
                    // account is free again either way.
                    let id = match &done { Ok((id, _)) => *id, Err(error) => error.id() };
                    if let Some(account) = self.calls.remove(&id) {
                        self.busy.remove(&account);
                        self.send(account, &mut in_flight);
                    }
                }
            }
        }
    }

    /// Sends the next batch of `account`'s waiting steps, if any.
    fn send(&mut self, account: String, in_flight: &mut JoinSet<()>) {
        let Some(queued) = self.waiting.get_mut(&account) else { return };
        let batch: Vec<Waiting> = queued.drain(..queued.len().min(MAX_BATCH)).collect();
        if queued.is_empty() {
            self.waiting.remove(&account);
        }
        if batch.is_empty() {
            return;
        }
        let mut client = self.client.clone();
        let request = self.credentials.request(pb::ReclaimLicensesBatchRequest {
            account_id: account.clone(),
            items: batch.iter().map(|waiting| waiting.item.clone()).collect(),
        });
        let call = in_flight.spawn(async move {
            answer(batch, client.reclaim_licenses_batch(request).await.map(tonic::Response::into_inner));
        });
        self.busy.insert(account.clone());
        self.calls.insert(call.id(), account);
    }
}

/// Hands each step its item's result; a failed call fails every item the same way.
fn answer(batch: Vec<Waiting>, answered: Result<pb::ReclaimLicensesBatchResponse, tonic::Status>) {
    match answered {
        Ok(response) if response.results.len() == batch.len() => {
            for (waiting, result) in batch.into_iter().zip(response.results) {
                let _ = waiting.answer.send(item_answer(result));
            }
        }
        Ok(response) => {
            let wrong = format!("licensing: {} results for {} items", response.results.len(), batch.len());
            for waiting in batch {
                let _ = waiting.answer.send(Err(StepError::Transient(wrong.clone())));
            }
        }
        Err(status) => {
            let failed = step_error(status);
            for waiting in batch {
                let _ = waiting.answer.send(Err(failed.clone()));
            }
        }
    }
}

fn item_answer(result: pb::ReclaimLicensesResult) -> Answer<pb::LicenseSet> {
    match result.refused {
        Some(refusal) => Err(StepError::Refused(Failure {
            reason: refusal.reason,
            code: Some(refusal.code).filter(|code| !code.is_empty()),
            message: refusal.message,
        })),
        None => Ok(result.reclaimed.unwrap_or_default()),
    }
}
