//! The mail server Roster hands its e-mail to: its settings, read from `ROSTER_SMTP_URL` as
//! lettre reads such URLs, and connections to it.
//!
//! Connections are opened here rather than by lettre's `AsyncSmtpTransport` for one reason:
//! TCP_NODELAY. lettre writes a message's body and its closing dot as two writes, then waits
//! for the reply. With Nagle's algorithm on, the dot waits until the server acknowledges the
//! body, and servers delay that acknowledgement (40 ms on Linux), so every message cost 40 ms
//! of waiting and eight sends at a time went out at about 155 a second (README, Measuring).
//! lettre 0.11.23, the newest release, never sets the option (its main branch does, since pull
//! request 1159); once a release does, `AsyncSmtpTransport::from_url` can take this module's
//! place. The dialogue itself (EHLO, STARTTLS, AUTH, the message) is still lettre's.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long connecting may take, as lettre's transport allows.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where mail goes, and how the connection is secured.
#[derive(Clone)]
pub struct Relay {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
}

#[derive(Clone)]
enum Security {
    /// `smtp://host` (port 25).
    Plain,
    /// `smtp://host?tls=required` or `?tls=opportunistic` (port 587): STARTTLS after EHLO.
    StartTls { required: bool },
    /// `smtps://host` (port 465): TLS from the first byte.
    Implicit(TlsConnector),
}

/// What went wrong with the mail server: reaching it, or what it answered.
#[derive(Debug)]
pub enum RelayError {
    /// Nothing answered, or the TCP or TLS handshake failed: worth trying again later.
    Network(String),
    /// The server answered with a refusal (to EHLO, STARTTLS, the login or the message).
    Smtp(lettre::transport::smtp::Error),
}

impl Relay {
    /// Reads `url`: `smtp[s]://[user:password@]host[:port][/hello-name][?tls=required|opportunistic]`.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        let host = parsed.host_str().ok_or("no host")?.to_owned();
        let tls = parsed.query_pairs().find(|(key, _)| key == "tls").map(|(_, value)| value.into_owned());
        let (security, default_port) = match (parsed.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::Plain, 25),
            ("smtp", Some("required")) => (Security::StartTls { required: true }, 587),
            ("smtp", Some("opportunistic")) => (Security::StartTls { required: false }, 587),
            ("smtps", _) => (Security::Implicit(implicit_tls()?), 465),
            (scheme, tls) => return Err(format!("scheme {scheme:?} with tls={tls:?}")),
        };
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(|text| text.into_owned())
                .map_err(|e| e.to_string())
        };
        let credentials = match parsed.password() {
            Some(password) => Some(Credentials::new(decode(parsed.username())?, decode(password)?)),
            None => None,
        };
        let hello = match parsed.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_owned()),
        };
        Ok(Self { port: parsed.port().unwrap_or(default_port), host, security, credentials, hello })
    }

    /// A connection past EHLO, secured and logged in as the URL asks.
    pub async fn connect(&self) -> Result<AsyncSmtpConnection, RelayError> {
        let network = |e: io::Error| RelayError::Network(format!("{}:{}: {e}", self.host, self.port));
        let tcp = self.tcp().await.map_err(network)?;
        let stream: Box<dyn AsyncTokioStream> = match &self.security {
            Security::Implicit(tls) => {
                let name = ServerName::try_from(self.host.clone()).map_err(|e| network(io::Error::other(e)))?;
                Box::new(Encrypted(tls.connect(name, tcp).await.map_err(network)?))
            }
            Security::Plain | Security::StartTls { .. } => Box::new(tcp),
        };
        let mut connection =
            AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await.map_err(RelayError::Smtp)?;
        if let Security::StartTls { required } = self.security
            && (required || connection.can_starttls())
        {
            let parameters = TlsParameters::new(self.host.clone()).map_err(RelayError::Smtp)?;
            connection.starttls(parameters, &self.hello).await.map_err(RelayError::Smtp)?;
        }
        if let Some(credentials) = &self.credentials {
            connection.auth(DEFAULT_MECHANISMS, credentials).await.map_err(RelayError::Smtp)?;
        }
        Ok(connection)
    }

    /// The TCP connection, each write sent at once (see the module doc).
    async fn tcp(&self) -> io::Result<TcpStream> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((self.host.as_str(), self.port)))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }
}

/// TLS for `smtps://`, trusting the web's roots as lettre's STARTTLS does.
fn implicit_tls() -> Result<TlsConnector, String> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// An `smtps://` connection as lettre takes a stream (its trait is not implemented for
/// tokio-rustls's type).
#[derive(Debug)]
struct Encrypted(TlsStream<TcpStream>);

impl AsyncTokioStream for Encrypted {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for Encrypted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Encrypted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(url: &str) -> (String, u16, &'static str, Option<Credentials>, ClientId) {
        let relay = Relay::from_url(url).expect(url);
        let security = match relay.security {
            Security::Plain => "plain",
            Security::StartTls { required: true } => "starttls required",
            Security::StartTls { required: false } => "starttls opportunistic",
            Security::Implicit(_) => "implicit",
        };
        (relay.host, relay.port, security, relay.credentials, relay.hello)
    }

    #[test]
    fn urls_read_as_lettre_reads_them() {
        let localhost = ClientId::default();
        let cases = [
            ("smtp://mail.example", "mail.example", 25, "plain"),
            ("smtp://mail.example:2525", "mail.example", 2525, "plain"),
            ("smtp://mail.example?tls=required", "mail.example", 587, "starttls required"),
            ("smtp://mail.example:26?tls=opportunistic", "mail.example", 26, "starttls opportunistic"),
            ("smtps://mail.example", "mail.example", 465, "implicit"),
            ("smtps://mail.example?tls=required", "mail.example", 465, "implicit"),
            ("smtp://127.0.0.1:1025", "127.0.0.1", 1025, "plain"),
        ];
        for (url, host, port, security) in cases {
            assert_eq!(read(url), (host.to_owned(), port, security, None, localhost.clone()), "{url}");
        }
    }

    #[test]
    fn credentials_are_percent_decoded_and_a_path_names_the_client() {
        let (.., credentials, hello) = read("smtps://roster%40x.example:p%2Fss%20word@mail.example/roster.x.example");
        assert_eq!(credentials, Some(Credentials::new("roster@x.example".into(), "p/ss word".into())));
        assert_eq!(hello, ClientId::Domain("roster.x.example".into()));
    }

    #[test]
    fn what_is_not_an_smtp_url_is_refused() {
        for url in ["http://mail.example", "smtp://mail.example?tls=always", "smtp:/", "mail.example:25"] {
            assert!(Relay::from_url(url).is_err(), "{url}");
        }
    }

    /// What the module is for: without TCP_NODELAY every message waits on the server's
    /// delayed acknowledgement.
    #[tokio::test]
    async fn connections_send_each_write_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("smtp://{}", listener.local_addr().expect("its address"));
        let tcp = Relay::from_url(&url).expect("settings").tcp().await.expect("connects");
        assert!(tcp.nodelay().expect("the option reads"));
    }
}
