//! Serving a service: the tonic server with the authentication and limit layers (`transport`
//! has the limits), over TLS when configured (`tls`), health (`grpc.health.v1`) and
//! reflection (v1 and v1alpha), and graceful shutdown.
//!
//! Shutdown order: the signal arrives, health turns NOT_SERVING (load balancers stop routing)
//! and stays so for the shutdown delay while calls are still taken, then the listener closes,
//! long-lived streams are told to end ([`ServiceSet::draining`]: they send a final status
//! rather than being cut), and in-flight RPCs (streams until their last frame) drain, bounded
//! by the grace period; then idle client connections are closed (they would otherwise hold
//! the process until the grace period ends) and the caller stops its background workers and
//! closes the database.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::convert::Infallible;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{Layer, Service};

use crate::auth::{AuthLayer, Verifier};
use crate::config::LimitArgs;
use crate::deadline::DeadlineLayer;
use crate::rpc_log::RpcLogLayer;
use crate::tls::ServerTls;
use crate::transport::{ApiConcurrencyLayer, BodyGuardLayer, limit_connections};
use crate::watched_body::{Watch, WatchedBody};

/// Request headers, all together, may not exceed this: a bearer token is at most 8 KiB and
/// gRPC adds a few short headers.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// One of a service's generated tonic servers, as every Roster API is served: requests up to
/// `max` bytes, gzip-compressed or not. Answers go out uncompressed, even to a client that
/// lists gzip in `grpc-accept-encoding` (Python's and Java's gRPC do by default): tonic
/// compresses each message with a fresh encoder whose tables it first zeroes, and for a
/// `GetUser` answer that cost 430k instructions, more than five times the rest of the call
/// (README, "Measuring"). Roster's answers are small, and its callers share its network.
#[macro_export]
macro_rules! api_server {
    ($server:ident, $api:expr, $max:expr) => {
        $server::new($api).max_decoding_message_size($max).accept_compressed(tonic::codec::CompressionEncoding::Gzip)
    };
}

/// What a service hands over to be served: its gRPC services, each added once, from which
/// the routes, reflection's list, health's statuses and the metrics' method labels all
/// derive, so no list can miss a service another has.
#[derive(Debug)]
pub struct ServiceSet {
    names: Vec<&'static str>,
    routes: Routes,
    /// Cancelled when the listener closes: a server-streaming RPC then sends its final status
    /// (`UNAVAILABLE`, call again elsewhere) and ends, so the drain can finish it cleanly.
    draining: CancellationToken,
}

impl ServiceSet {
    pub fn new(draining: CancellationToken) -> Self {
        Self { names: Vec::new(), routes: Routes::default(), draining }
    }

    /// Serves `service` under its fully qualified name.
    pub fn serve<S>(mut self, service: S) -> Self
    where
        S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes = self.routes.add_service(service);
        self
    }

    /// The fully qualified names of the services added, in order.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

/// Why a service could not start, naming the setting an operator looks at: an address that
/// cannot be bound is the configuration's to fix (exit 64), a database that cannot be reached
/// is a dependency that is down (exit 69).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind { key: &'static str, addr: std::net::SocketAddr, source: std::io::Error },
    #[error("{key}: cannot open the {service} database {url}: {source}")]
    Connect { key: &'static str, service: &'static str, url: String, source: sqlx::Error },
    #[error("{service} migrations failed: {source}")]
    Migrate { service: &'static str, source: sqlx::migrate::MigrateError },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Reflection serves our protos, health, and the google.rpc error details, so `grpcurl` can
/// decode `ErrorInfo`, `BadRequest` and `PreconditionFailure` in refusals. It lists only the
/// services this server answers (`names`), health and itself: both Roster services share one
/// descriptor set, and identity must not advertise licensing's services or the reverse.
fn reflection(names: &[&'static str], itself: &'static str) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(roster_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
    names
        .iter()
        .chain(["grpc.health.v1.Health", itself].iter())
        .fold(builder, |builder, name| builder.with_service_name(*name))
}

async fn set_all(reporter: &HealthReporter, names: &[&'static str], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in names {
        reporter.set_service_status(*name, status).await;
    }
}

/// Binds the plaintext health port (`ROSTER_HEALTH_LISTEN`) if one is set; the error names
/// the address.
pub async fn bind_health(
    addr: Option<std::net::SocketAddr>,
) -> Result<Option<TcpListener>, (std::net::SocketAddr, std::io::Error)> {
    match addr {
        Some(addr) => TcpListener::bind(addr).await.map(Some).map_err(|source| (addr, source)),
        None => Ok(None),
    }
}

/// Serves `services` on `listener` until `shutdown` resolves, then drains; health alone also
/// on `health_listener`, in plaintext.
pub async fn serve(
    listener: TcpListener,
    services: ServiceSet,
    verifier: Arc<Verifier>,
    limits: &LimitArgs,
    tls: Option<&ServerTls>,
    health_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    // The plaintext health port answers from the same reporter, so it turns NOT_SERVING with
    // the main port, and stops when the main server has drained.
    let health_only = health_listener.map(|listener| {
        let health = health.clone();
        tokio::spawn(async move {
            let served = Server::builder()
                .add_service(health)
                .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "the health port stopped");
            }
        })
    });
    let ServiceSet { names, routes, draining: streams_end } = services;
    let reflection_v1 = reflection(&names, "grpc.reflection.v1.ServerReflection").build_v1()?;
    let reflection_v1alpha = reflection(&names, "grpc.reflection.v1alpha.ServerReflection").build_v1alpha()?;
    let routes = routes.add_service(health).add_service(reflection_v1).add_service(reflection_v1alpha);
    let rpc_log = RpcLogLayer::new(crate::rpc_log::KnownMethods::of(names.iter().copied().chain([
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ])));

    set_all(&reporter, &names, ServingStatus::Serving).await;
    let draining = Arc::new(Notify::new());
    let draining_signal = draining.clone();
    let health_reporter = reporter.clone();
    let delay = limits.shutdown_delay();
    let on_shutdown = async move {
        shutdown.await;
        tracing::info!(delay_ms = delay.as_millis() as u64, "shutdown requested: health NOT_SERVING");
        set_all(&health_reporter, &names, ServingStatus::NotServing).await;
        // Calls still arrive until every balancer has seen NOT_SERVING; they are served.
        tokio::time::sleep(delay).await;
        tracing::info!("closing the listener and draining in-flight RPCs");
        streams_end.cancel();
        draining_signal.notify_one();
    };

    let in_flight = InFlight::default();
    let server = Server::builder()
        // Advertised in SETTINGS, so well-behaved clients queue instead of being refused.
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(Some(limits.keepalive_interval()))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout()))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        // Outermost: its span names the method in every line written for the RPC, and its
        // line per RPC also covers refusals by the layers below.
        .layer(rpc_log)
        // The caller's deadline (or the server's limit), for the calls the handler makes to the
        // other service, and ended with DEADLINE_EXCEEDED when it passes.
        .layer(DeadlineLayer::new(limits.request_timeout()))
        .layer(in_flight.clone())
        .layer(BodyGuardLayer::new(limits.request_body_timeout(), limits.max_message_bytes()))
        .layer(AuthLayer::new(verifier))
        .layer(ApiConcurrencyLayer::new(
            usize::try_from(limits.concurrency_limit).unwrap_or(usize::MAX),
            limits.concurrency_queue_wait(),
        ))
        .add_routes(routes);
    let connections =
        limit_connections(incoming(listener), usize::try_from(limits.max_connections).unwrap_or(usize::MAX));
    // The two kinds of connection are different types, so each gets its own server future.
    let server: futures_util::future::BoxFuture<'_, Result<(), tonic::transport::Error>> = match tls {
        Some(tls) => Box::pin(server.serve_with_incoming_shutdown(tls.accept(connections), on_shutdown)),
        None => Box::pin(server.serve_with_incoming_shutdown(connections, on_shutdown)),
    };
    tokio::pin!(server);
    let grace = limits.shutdown_grace();
    tokio::select! {
        result = &mut server => result?,
        () = async { draining.notified().await; in_flight.drained(grace).await } => {}
    }
    if let Some(health_only) = health_only {
        health_only.abort();
    }
    Ok(())
}

/// Tracks RPCs being handled (`tokio-util`'s `TaskTracker`), so shutdown waits for exactly
/// those and not for idle connections. A response counts until its body's last frame (a
/// stream's final status) has been handed over.
#[derive(Debug, Clone, Default)]
struct InFlight(TaskTracker);

impl InFlight {
    /// Resolves once no RPC is in flight, or when `grace` runs out.
    async fn drained(&self, grace: Duration) {
        self.0.close();
        if tokio::time::timeout(grace, self.0.wait()).await.is_ok() {
            tracing::info!("in-flight RPCs drained");
        } else {
            tracing::warn!(
                in_flight = self.0.len(),
                grace_ms = grace.as_millis() as u64,
                "grace period over; abandoning RPCs still running"
            );
        }
    }
}

impl<S> Layer<S> for InFlight {
    type Service = InFlightService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightService { inner, tracker: self.0.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct InFlightService<S> {
    inner: S,
    tracker: TaskTracker,
}

impl<S, R> Service<R> for InFlightService<S>
where
    S: Service<R, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let token = self.tracker.token();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| WatchedBody::wrap(body, token)))
        })
    }
}

/// A response's token keeps its RPC counted as in flight until the body is dropped.
impl Watch for TaskTrackerToken {}

/// Accepted connections with `TCP_NODELAY` and keepalive. Without nodelay, Nagle's
/// algorithm and delayed ACKs stall some responses by ~40 ms (measured here: world set-up in
/// the tests went from 45 ms to 175 ms depending on message sizes).
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true)).with_keepalive(Some(std::time::Duration::from_secs(60)))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn drain_returns_after_the_last_rpc_or_at_the_grace() {
        let in_flight = InFlight::default();
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        tokio::spawn(in_flight.0.track_future(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
        }));
        in_flight.drained(Duration::from_secs(30)).await;
        assert!(finished.load(Ordering::SeqCst), "drain returned only after the RPC finished");

        let stuck = InFlight::default();
        let _never = stuck.0.track_future(std::future::pending::<()>());
        let started = std::time::Instant::now();
        stuck.drained(Duration::from_millis(30)).await;
        assert_eq!(stuck.0.len(), 1, "drain gave up with an RPC still running");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
