//! Delivery of the e-mail outbox (SPEC R35). The [`Dispatcher`] claims due e-mails with a
//! lease, hands each to the [`Mailer`], and marks it sent, schedules a retry with exponential
//! backoff (a mail server that is down or answers 4xx), or marks it undeliverable with the
//! server's reason (a 5xx answer, or an address no server would take): nothing is dropped
//! unseen, and nothing is retried forever that can never succeed. Dev mode writes files;
//! production sends over SMTP ([`Smtp`]).

mod relay;
mod smtp;

use std::path::PathBuf;
use std::time::Duration;

pub use smtp::{Smtp, SmtpConfigError};

use futures_util::StreamExt;
use roster_platform::backoff::Backoff;
use roster_platform::clock::SharedClock;
use roster_platform::db::Database;
use tokio::sync::watch;

use crate::store::outbox::{self, Claimed};

/// How an e-mail leaves the system.
#[derive(Debug, Clone)]
pub enum Mailer {
    /// Writes each e-mail as `<dir>/<id>.eml`: the dev server's inbox.
    Files(PathBuf),
    /// Sends it to a mail server (`ROSTER_SMTP_URL`). Boxed: the transport is large, and the
    /// mailer is cloned into every dispatcher.
    Smtp(Box<Smtp>),
}

/// Why an e-mail did not go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Try again later: the server is down, busy, or answered 4xx.
    Retry(String),
    /// It never will go out as it is: the server refused it for good (5xx), or the address
    /// cannot be written in a message. Kept with its reason for operators.
    Undeliverable(String),
}

impl Mailer {
    /// Where e-mails go, for the start-up banner and logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Files(dir) => dir.display().to_string(),
            Self::Smtp(smtp) => format!("SMTP {}", smtp.server()),
        }
    }

    async fn send(&self, email: &Claimed) -> Result<(), SendError> {
        match self {
            Self::Files(dir) => {
                let retry = SendError::Retry;
                tokio::fs::create_dir_all(dir).await.map_err(|e| retry(format!("create {}: {e}", dir.display())))?;
                let sent_at =
                    std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(email.created_at_ms).unwrap_or(0));
                let text = format!(
                    "To: {}\nSubject: {}\nDate: {}\nX-Roster-Kind: {}\n\n{}\n",
                    email.recipient,
                    email.subject,
                    httpdate::fmt_http_date(sent_at),
                    email.kind,
                    email.body
                );
                let path = dir.join(format!("{}.eml", email.id));
                tokio::fs::write(&path, text).await.map_err(|e| retry(format!("write {}: {e}", path.display())))
            }
            Self::Smtp(smtp) => smtp.send(email).await,
        }
    }
}

/// How long a claimed e-mail is held before another sender may take it over.
const LEASE_MS: i64 = 60_000;
const BATCH: i64 = 50;
/// E-mails of a batch in flight at once.
const SENDS_AT_ONCE: usize = 8;
/// Retry delays after failed sends: 5 s doubling, at most an hour, with the sagas' jitter.
const RETRY: Backoff = Backoff { base: Duration::from_secs(5), max: Duration::from_secs(3_600) };

/// Retry delay after `attempts` failed sends (1 for the first failure).
pub fn backoff_ms(attempts: i64) -> i64 {
    let attempt = u32::try_from(attempts.clamp(1, 64) - 1).unwrap_or(0);
    i64::try_from(RETRY.delay(attempt, &mut rand::thread_rng()).as_millis()).unwrap_or(i64::MAX)
}

/// What one pass over the outbox did.
struct Batch {
    sent: usize,
    /// As many were due as one pass takes: more may be waiting.
    full: bool,
}

#[derive(Debug, Clone)]
pub struct Dispatcher {
    pub db: Database,
    pub mailer: Mailer,
    pub clock: SharedClock,
    pub poll_interval: Duration,
}

impl Dispatcher {
    /// Delivers one batch of what is due now; returns how many e-mails were sent.
    pub async fn deliver_due(&self) -> Result<usize, sqlx::Error> {
        Ok(self.deliver_batch().await?.sent)
    }

    async fn deliver_batch(&self) -> Result<Batch, sqlx::Error> {
        let now = self.clock.now_ms();
        let claimed = outbox::claim_due(&mut *self.db.writer().await?, self.db.backend(), now, LEASE_MS, BATCH).await?;
        let full = claimed.len() as i64 == BATCH;
        // Sent side by side: a mail server's round trip, not one send after another, sets the
        // pace. A crash before the batch is marked sends its e-mails again (at least once).
        let sends = futures_util::stream::iter(claimed)
            .map(|email| {
                let mailer = self.mailer.clone();
                async move {
                    let outcome = mailer.send(&email).await;
                    (email, outcome)
                }
            })
            .buffer_unordered(SENDS_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        for (email, outcome) in &sends {
            match outcome {
                Ok(()) => {}
                Err(SendError::Retry(error)) => {
                    tracing::warn!(id = %email.id, attempts = email.attempts, %error, "e-mail not sent; will retry");
                }
                Err(SendError::Undeliverable(error)) => {
                    tracing::warn!(id = %email.id, kind = %email.kind, %error, "e-mail refused for good; not retried");
                }
            }
        }
        let sent = sends.iter().filter(|(_, outcome)| outcome.is_ok()).count();
        self.record_outcomes(&sends).await?;
        Ok(Batch { sent, full })
    }

    /// Records how a batch's sends went. An e-mail that went out must be marked sent before its
    /// lease ends, or a sender would send it again: a database outage meanwhile is waited out,
    /// retrying with backoff for up to half the lease. (A crash in that window still sends it
    /// twice, with the same Message-ID, which mail systems use to tell.)
    async fn record_outcomes(&self, sends: &[(outbox::Claimed, Result<(), SendError>)]) -> Result<(), sqlx::Error> {
        let give_up = tokio::time::Instant::now() + Duration::from_millis(u64::try_from(LEASE_MS / 2).unwrap_or(0));
        let mut pause = Duration::from_millis(100);
        loop {
            match self.mark(sends).await {
                Err(error)
                    if roster_platform::db::failure(&error) == roster_platform::db::Failure::Connection
                        && tokio::time::Instant::now() + pause < give_up =>
                {
                    tracing::debug!(%error, "cannot record sent e-mails yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                recorded => return recorded,
            }
        }
    }

    async fn mark(&self, sends: &[(outbox::Claimed, Result<(), SendError>)]) -> Result<(), sqlx::Error> {
        let mut sent = Vec::with_capacity(sends.len());
        // One turn at the writer for the batch's marks, each a statement of its own.
        let mut writer = self.db.writer().await?;
        for (email, outcome) in sends {
            match outcome {
                Ok(()) => sent.push(email.id.as_str()),
                Err(SendError::Retry(error)) => {
                    let retry_at = self.clock.now_ms() + backoff_ms(email.attempts);
                    outbox::mark_failed(&mut *writer, &email.id, error.as_str(), retry_at).await?;
                }
                Err(SendError::Undeliverable(error)) => {
                    outbox::mark_undeliverable(&mut *writer, &email.id, error.as_str(), self.clock.now_ms()).await?;
                }
            }
        }
        outbox::mark_sent(&mut *writer, &sent, self.clock.now_ms()).await
    }

    /// Polls until `stop` turns true. A full batch is followed by the next one at once, so a
    /// burst (ten thousand invitations) drains at the sending rate, not one batch per poll.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        // A database outage is logged once, and its end once (sends that fail are per e-mail).
        let outage = roster_platform::incident::Incident::new("outbox delivery");
        loop {
            match outage.note(self.deliver_batch().await) {
                Ok(Batch { full: true, .. }) if !*stop.borrow() => continue,
                Ok(_) | Err(_) => {}
            }
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }
}

/// An instant as e-mails show it: `Tue, 08 Dec 2026 14:00:00 GMT`, never an epoch number.
pub fn human_time(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    httpdate::fmt_http_date(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r35_backoff_grows_and_is_capped() {
        // Each delay lies in the upper half of 5 s * 2^(attempts - 1), capped at an hour.
        for (attempts, ceiling) in [(0, 5_000), (1, 5_000), (2, 10_000), (3, 20_000), (40, 3_600_000)] {
            for _ in 0..50 {
                let delay = backoff_ms(attempts);
                assert!((ceiling / 2..=ceiling).contains(&delay), "{attempts} attempts: {delay} ms");
            }
        }
    }
}
