//! The channel each service calls the other one over: spread over every replica of the peer,
//! and each call bounded by the caller's deadline.
//!
//! A single HTTP/2 connection to a Kubernetes ClusterIP pins all of a replica's calls to one
//! peer Pod, since the connection is balanced once, when it opens. Instead the peer's URL names a
//! headless Service, whose DNS name answers with every ready replica's address: each address
//! gets a connection of its own, and tonic's balanced channel (tower's power-of-two-choices)
//! sends each call to the less loaded of two. The name is resolved again every
//! [`RESOLVE_EVERY`], so replicas that come and go are followed; a failed lookup keeps the
//! addresses already known rather than dropping every connection. Several URLs may be given,
//! separated by commas, and are balanced together.
//!
//! Why not ginepro, the crate that balances tonic channels over DNS: it brings its own DNS
//! client (hickory-resolver, with anyhow and async-trait) and takes one host and port, while
//! what is here is a lookup loop of under a hundred lines over tonic's own balanced channel
//! (`Channel::balance_channel`), using the system resolver; the call wrapper below (deadline,
//! trace context) would be needed either way.
//!
//! An `https://` URL is called over TLS ([`crate::tls::ClientTls`]): the peer's certificate
//! must name the URL's host, and renewed certificate files make every connection anew.
//!
//! Each call carries the current span as its `traceparent` ([`crate::traces`]), and is sent
//! with a `grpc-timeout` of what the RPC being handled has left
//! ([`crate::deadline`]), at most the client's own cap, and is abandoned with
//! `DEADLINE_EXCEEDED` when that runs out, also while no replica is known yet.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc::Sender;
use tonic::body::Body;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tower::Service;

use crate::deadline;
use crate::tls::ClientTls;

/// How often the peer's name is resolved again. Kubernetes DNS answers for a headless
/// Service with a TTL of about this much.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// Connections being opened or replaced at once, queued for the balancer.
const CHANGE_QUEUE: usize = 64;

/// One peer URL, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    scheme: String,
    host: String,
    port: u16,
}

/// A peer URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{url:?}: {reason}")]
pub struct PeerUrlError {
    url: String,
    reason: &'static str,
}

fn targets(urls: &str) -> Result<Vec<Target>, PeerUrlError> {
    let targets = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            let error = |reason| PeerUrlError { url: url.to_owned(), reason };
            let uri: http::Uri = url.parse().map_err(|_| error("not a URL"))?;
            let scheme = match uri.scheme_str() {
                Some(scheme @ ("http" | "https")) => scheme.to_owned(),
                _ => return Err(error("must start with http:// or https://")),
            };
            let host = uri.host().filter(|host| !host.is_empty()).ok_or_else(|| error("names no host"))?;
            let port = uri.port_u16().ok_or_else(|| error("names no port"))?;
            // A bracketed IPv6 literal resolves without its brackets.
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            Ok(Target { scheme, host, port })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if targets.is_empty() {
        return Err(PeerUrlError { url: urls.to_owned(), reason: "names no URL" });
    }
    Ok(targets)
}

/// Settings of a peer channel.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// How long opening one connection may take.
    pub connect_timeout: Duration,
    /// The longest any call may take, whatever deadline its caller has.
    pub call_cap: Duration,
    /// For `https://` URLs: the CA to trust and the certificate to present.
    pub tls: Option<ClientTls>,
}

/// The client side of calls to the other service; see the module doc. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PeerChannel {
    channel: Channel,
    cap: Duration,
}

impl PeerChannel {
    /// Parses `urls` and starts following the addresses they name (so: inside the Tokio
    /// runtime). Connections open when calls need them.
    pub fn new(urls: &str, settings: PeerSettings) -> Result<Self, PeerUrlError> {
        let targets = targets(urls)?;
        if settings.tls.is_none()
            && let Some(target) = targets.iter().find(|t| t.scheme == "https")
        {
            return Err(PeerUrlError {
                url: target.host.clone(),
                reason: "is https:// but no peer CA is set (ROSTER_TLS_PEER_CA)",
            });
        }
        let cap = settings.call_cap;
        let (channel, changes) = Channel::balance_channel::<SocketAddr>(CHANGE_QUEUE);
        tokio::spawn(follow(targets, settings, changes));
        Ok(Self { channel, cap })
    }
}

/// Resolves the targets now and every [`RESOLVE_EVERY`], telling the balancer which addresses
/// appeared and which went, until the channel is dropped.
async fn follow(targets: Vec<Target>, mut settings: PeerSettings, changes: Sender<Change<SocketAddr, Endpoint>>) {
    let mut known: HashSet<SocketAddr> = HashSet::new();
    let mut lookup_failing = false;
    loop {
        // Renewed certificate files: every connection is made again with them.
        let renewed = match settings.tls.as_mut().map(ClientTls::refresh) {
            Some(Ok(renewed)) => renewed,
            Some(Err(error)) => {
                tracing::warn!(%error, "cannot read the TLS files for the peer; keeping the previous ones");
                false
            }
            None => false,
        };
        let (found, failures) = resolve(&targets, &settings).await;
        // Only a complete answer may take addresses away: a lookup that failed says nothing
        // about whether its replicas are gone.
        let complete = failures.is_empty();
        if !complete && !lookup_failing {
            tracing::warn!(failures = %failures.join("; "), "peer lookup failed; keeping the addresses known");
        }
        lookup_failing = !complete;
        let (mut added, removed) = diff(&known, found.keys().copied().collect(), complete);
        if renewed {
            added = found.keys().copied().collect();
            added.sort_unstable();
        }
        if !renewed && (!added.is_empty() || !removed.is_empty()) {
            tracing::info!(added = ?added, removed = ?removed, "peer replicas changed");
        }
        for address in removed {
            known.remove(&address);
            if changes.send(Change::Remove(address)).await.is_err() {
                return;
            }
        }
        for address in added {
            known.insert(address);
            let endpoint = found[&address].clone();
            if changes.send(Change::Insert(address, endpoint)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = changes.closed() => return,
            () = tokio::time::sleep(RESOLVE_EVERY) => {}
        }
    }
}

/// Every address the targets resolve to, with its endpoint, and a line per failed lookup.
async fn resolve(targets: &[Target], settings: &PeerSettings) -> (HashMap<SocketAddr, Endpoint>, Vec<String>) {
    let mut found = HashMap::new();
    let mut failures = Vec::new();
    for target in targets {
        match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
            Ok(addresses) => {
                for address in addresses {
                    match endpoint(target, address, settings) {
                        Ok(endpoint) => {
                            found.insert(address, endpoint);
                        }
                        Err(error) => failures.push(format!("{address}: {error}")),
                    }
                }
            }
            Err(error) => failures.push(format!("{}: {error}", target.host)),
        }
    }
    (found, failures)
}

/// The endpoint for one address of `target`: over TLS for `https://`, where the peer's
/// certificate must name the URL's host (the address is an IP, so the name is set apart).
fn endpoint(
    target: &Target,
    address: SocketAddr,
    settings: &PeerSettings,
) -> Result<Endpoint, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("{}://{address}", target.scheme))?
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true);
    match settings.tls.as_ref().and_then(|tls| tls.for_host(&target.host)).filter(|_| target.scheme == "https") {
        Some(tls) => endpoint.tls_config(tls),
        None => Ok(endpoint),
    }
}

/// Which addresses to add and which to drop; nothing is dropped unless `complete`.
fn diff(known: &HashSet<SocketAddr>, found: HashSet<SocketAddr>, complete: bool) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let mut added: Vec<_> = found.difference(known).copied().collect();
    let mut removed: Vec<_> = if complete { known.difference(&found).copied().collect() } else { Vec::new() };
    added.sort_unstable();
    removed.sort_unstable();
    (added, removed)
}

impl Service<http::Request<Body>> for PeerChannel {
    type Response = http::Response<Body>;
    type Error = tower::BoxError;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let asked =
            request.headers().get(deadline::GRPC_TIMEOUT).and_then(|v| v.to_str().ok()).and_then(deadline::parse);
        let budget = asked.map_or(deadline::budget(self.cap), |asked| asked.min(deadline::budget(self.cap)));
        request.headers_mut().insert(deadline::GRPC_TIMEOUT, deadline::encode(budget));
        crate::traces::inject_current(request.headers_mut());
        let response = self.channel.call(request);
        Box::pin(async move {
            match tokio::time::timeout(budget, response).await {
                Ok(answer) => answer.map_err(Into::into),
                Err(_) => Err(Box::new(tonic::Status::deadline_exceeded(format!(
                    "no answer from the peer service within {} ms",
                    budget.as_millis()
                ))) as tower::BoxError),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn urls_name_a_scheme_a_host_and_a_port() {
        let parsed = targets("http://roster-licensing-peers:50052, https://[::1]:7").unwrap();
        assert_eq!(
            parsed,
            [
                Target { scheme: "http".into(), host: "roster-licensing-peers".into(), port: 50052 },
                Target { scheme: "https".into(), host: "::1".into(), port: 7 },
            ]
        );
        for bad in ["", " , ", "roster:50052", "ftp://host:1", "http://host", "http://:80"] {
            assert!(targets(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_a_complete_answer_takes_addresses_away() {
        let known: HashSet<_> = [addr("10.0.0.1:1"), addr("10.0.0.2:1")].into();
        let found: HashSet<_> = [addr("10.0.0.2:1"), addr("10.0.0.3:1")].into();
        assert_eq!(diff(&known, found.clone(), true), (vec![addr("10.0.0.3:1")], vec![addr("10.0.0.1:1")]));
        assert_eq!(diff(&known, found, false), (vec![addr("10.0.0.3:1")], vec![]));
        assert_eq!(diff(&known, HashSet::new(), false), (vec![], vec![]), "a failed lookup keeps everything");
    }

    #[tokio::test]
    async fn a_name_resolves_to_every_address_it_has() {
        let settings =
            PeerSettings { connect_timeout: Duration::from_secs(1), call_cap: Duration::from_secs(1), tls: None };
        let (found, failures) = resolve(&targets("http://localhost:9, http://127.0.0.2:9").unwrap(), &settings).await;
        assert!(failures.is_empty(), "{failures:?}");
        assert!(found.contains_key(&addr("127.0.0.1:9")) && found.contains_key(&addr("127.0.0.2:9")), "{found:?}");
        let (_, failures) = resolve(&targets("http://no-such-host.invalid:9").unwrap(), &settings).await;
        assert_eq!(failures.len(), 1);
    }
}
