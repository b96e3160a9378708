//! The SMTP server the benchmark's identity sends its e-mail to, inside `roster-bench`: it
//! accepts each message, counts it and keeps nothing, as a relay on another machine takes mail
//! off a service's hands. The protocol is `mailin`'s state machine; the connections are tokio's.
//!
//! Why not the tests' sink (Python's aiosmtpd, `--smtp-sink aiosmtpd`): it takes about 135
//! e-mails a second and a core of the two this machine has, so the invitation runs measured it
//! as much as Roster. Why not `mailin-embedded`, which wraps `mailin` in a server: its TLS
//! support is not optional, and brings rustls with its default C-built crypto, which the bench
//! has no use for.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mailin::{Action, Response, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running sink; it stops when dropped.
pub struct Sink {
    pub addr: SocketAddr,
    received: Arc<AtomicU64>,
    accepting: JoinHandle<()>,
}

impl Sink {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = Counter(received.clone());
        let accepting = tokio::spawn(async move {
            let sessions = SessionBuilder::new("roster-bench");
            while let Ok((stream, peer)) = listener.accept().await {
                let session = sessions.build(peer.ip(), counter.clone());
                // A session that breaks off loses only its own message; the sender retries it.
                tokio::spawn(async move { drop(converse(stream, session).await) });
            }
        });
        Ok(Self { addr, received, accepting })
    }

    /// Messages accepted so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Counts each message whose data ended, and accepts it.
#[derive(Clone)]
struct Counter(Arc<AtomicU64>);

impl mailin::Handler for Counter {
    fn data_end(&mut self) -> Response {
        self.0.fetch_add(1, Ordering::Relaxed);
        mailin::response::OK
    }
}

/// One client's session, from the greeting to its QUIT (or its hanging up).
async fn converse(stream: TcpStream, mut session: mailin::Session<Counter>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(&session.greeting().buffer()?).await?;
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let response = session.process(&line);
        match response.action {
            Action::NoReply => {}
            Action::Reply => write.write_all(&response.buffer()?).await?,
            // STARTTLS is not offered, so an upgrade is never asked for.
            Action::Close | Action::UpgradeTls => return write.write_all(&response.buffer()?).await,
        }
    }
}
