//! Sending over SMTP with `lettre`: plain, STARTTLS (`smtp://host:587?tls=required`) or
//! implicit TLS (`smtps://host:465`) through rustls, with optional `user:password@`. Each
//! e-mail becomes an RFC 5322 message: From, To, Subject, Date, a Message-ID derived from the
//! outbox row (a resend after a crash carries the same one, so mail systems can tell), and a
//! UTF-8 text body in a MIME transfer encoding.

use lettre::message::Mailbox;
use lettre::message::header::{ContentType, MIME_VERSION_1_0};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::SendError;
use crate::store::outbox::Claimed;

#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
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
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| SmtpConfigError::Url(e.to_string()))?
            .build();
        let from = from.parse::<Mailbox>().map_err(|e| SmtpConfigError::From(e.to_string()))?;
        Ok(Self { transport, from, server: roster_platform::db::redact(url) })
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
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_permanent() => {
                Err(SendError::Undeliverable(format!("{} refused it: {error}", self.server)))
            }
            Err(error) => Err(SendError::Retry(format!("{}: {error}", self.server))),
        }
    }
}
