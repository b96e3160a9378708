//! Sending over SMTP with `lettre`: plain, STARTTLS (`smtp://host:587?tls=required`) or
//! implicit TLS (`smtps://host:465`) through rustls, with optional `user:password@`. Each
//! e-mail becomes an RFC 5322 message: From, To, Subject, Date, a Message-ID derived from the
//! outbox row (a resend after a crash carries the same one, so mail systems can tell), and a
//! UTF-8 text body in a MIME transfer encoding. Each goes over a connection of its own
//! ([`Relay`]), ended with QUIT.

use std::time::Duration;

use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::{ContentType, MIME_VERSION_1_0};

use super::SendError;
use super::relay::{Relay, RelayError};
use crate::store::outbox::Claimed;

/// How long one e-mail's exchange may take, from connecting to the server's answer: half the
/// outbox's lease, so a hung server is given up on before another sender may take the e-mail.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Smtp {
    relay: Relay,
    /// [`SEND_TIMEOUT`]; shorter in this module's tests.
    send_timeout: Duration,
    from: Mailbox,
    /// For logs: where mail goes, without credentials.
    server: String,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp").field("server", &self.server).field("from", &self.from.to_string()).finish()
    }
}

/// A setting `Smtp::new` cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtpConfigError {
    #[error("not an SMTP URL (smtp://host:port, smtps://...): {0}")]
    Url(String),
    #[error("not a sender address: {0}")]
    From(String),
}

impl Smtp {
    /// A sender for `url` (see the module docs) writing as `from` (`Roster <noreply@x.example>`).
    pub fn new(url: &str, from: &str) -> Result<Self, SmtpConfigError> {
        let server = roster_platform::db::redact(url);
        let relay = Relay::from_url(url).map_err(|e| SmtpConfigError::Url(format!("{server}: {e}")))?;
        let from = from.parse::<Mailbox>().map_err(|e| SmtpConfigError::From(e.to_string()))?;
        Ok(Self { relay, send_timeout: SEND_TIMEOUT, from, server })
    }

    /// The server, without credentials.
    pub fn server(&self) -> &str {
        &self.server
    }

    pub(super) async fn send(&self, email: &Claimed) -> Result<(), SendError> {
        let to = email
            .recipient
            .parse::<Mailbox>()
            .map_err(|e| SendError::Undeliverable(format!("recipient {:?}: {e}", email.recipient)))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.as_str())
            .date_now()
            .message_id(Some(format!("<{}@roster.outbox>", email.id)))
            .header(MIME_VERSION_1_0)
            .header(ContentType::TEXT_PLAIN)
            .body(email.body.clone())
            .map_err(|e| SendError::Undeliverable(format!("message: {e}")))?;
        match tokio::time::timeout(self.send_timeout, self.deliver(&message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(RelayError::Smtp(error))) if error.is_permanent() => {
                Err(SendError::Undeliverable(format!("{} refused it: {error}", self.server)))
            }
            Ok(Err(RelayError::Smtp(error))) => Err(SendError::Retry(format!("{}: {error}", self.server))),
            Ok(Err(RelayError::Network(error))) => Err(SendError::Retry(error)),
            Err(_) => Err(SendError::Retry(format!("{}: no answer within {:?}", self.server, self.send_timeout))),
        }
    }

    async fn deliver(&self, message: &Message) -> Result<(), RelayError> {
        let mut connection = self.relay.connect().await?;
        let sent = connection.send(message.envelope(), &message.formatted()).await;
        // QUIT, and the connection closed, whatever the answer was.
        connection.abort().await;
        sent.map(drop).map_err(RelayError::Smtp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that accepts the connection and then says nothing (hung, or a black hole
    /// behind a load balancer) costs one e-mail a retry, not the dispatcher its progress.
    #[tokio::test]
    async fn a_server_that_never_answers_is_given_up_on_and_retried() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("smtp://{}", listener.local_addr().expect("its address"));
        let (reached, was_reached) = tokio::sync::oneshot::channel();
        let silent = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("identity connects");
            reached.send(()).expect("the test waits");
            // Held open, never greeted, until the sender gives up.
            std::future::pending::<()>().await;
            drop(socket);
        });
        let mut smtp = Smtp::new(&url, "Roster <noreply@x.example>").expect("settings");
        smtp.send_timeout = Duration::from_millis(300);
        let email = Claimed {
            id: "e1".into(),
            kind: "invitation".into(),
            recipient: "ada@x.example".into(),
            subject: "Welcome".into(),
            body: "Hello".into(),
            attempts: 0,
            created_at_ms: 0,
        };
        let outcome = tokio::time::timeout(Duration::from_secs(10), smtp.send(&email)).await.expect("the send gave up");
        assert!(
            matches!(&outcome, Err(SendError::Retry(reason)) if reason.contains("no answer within")),
            "{outcome:?}"
        );
        assert!(was_reached.await.is_ok(), "the server was reached, and stayed silent");
        silent.abort();
    }
}
