//! A caller's deadline reaches the other service: a server with the deadline layer, whose
//! handler calls a second server over a [`PeerChannel`], passes on what its caller has left,
//! capped by the channel's own limit; and a call still unanswered at its deadline is answered
//! DEADLINE_EXCEEDED. Real gRPC over sockets on both hops.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roster_platform::deadline::{DeadlineLayer, parse};
use roster_platform::peer::{PeerChannel, PeerSettings};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const CAP: Duration = Duration::from_secs(10);

/// Answers health by asking the peer, as a Roster handler asks the other service.
struct AsksThePeer {
    peer: PeerChannel,
}

#[tonic::async_trait]
impl Health for AsksThePeer {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        HealthClient::new(self.peer.clone()).check(request.into_inner()).await
    }

    type WatchStream =
        Pin<Box<dyn futures_util::Stream<Item = Result<HealthCheckResponse, tonic::Status>> + Send + 'static>>;

    async fn watch(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not here"))
    }
}

async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    (listener, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_remaining_deadline_is_passed_on_capped() {
    // The peer: plain health, noting the grpc-timeout of each call it gets.
    let seen: Arc<Mutex<Vec<Option<Duration>>>> = Arc::default();
    let (peer_listener, peer_addr) = listener().await;
    let noted = seen.clone();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let recording = tonic::service::interceptor::InterceptedService::new(health, move |request: tonic::Request<()>| {
        let timeout = request.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse);
        noted.lock().expect("seen").push(timeout);
        Ok(request)
    });
    tokio::spawn(Server::builder().add_service(recording).serve_with_incoming(TcpIncoming::from(peer_listener)));

    // The middle server: the deadline layer, and a handler that calls the peer.
    let (listener, addr) = listener().await;
    let channel = PeerChannel::new(
        &format!("http://{peer_addr}"),
        PeerSettings { connect_timeout: Duration::from_secs(2), call_cap: CAP, tls: None },
    )
    .expect("peer url");
    let middle = HealthServer::new(AsksThePeer { peer: channel });
    tokio::spawn(
        Server::builder()
            .layer(DeadlineLayer::new(Duration::from_secs(60)))
            .add_service(middle)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );

    let client = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("url").connect_lazy();
    let mut with_deadline = tonic::Request::new(HealthCheckRequest { service: String::new() });
    with_deadline.set_timeout(Duration::from_secs(3));
    HealthClient::new(client.clone()).check(with_deadline).await.expect("answered within 3 s");
    HealthClient::new(client).check(HealthCheckRequest { service: String::new() }).await.expect("no deadline");

    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let passed_on = seen[0].expect("a deadline was passed on");
    assert!(
        passed_on <= Duration::from_secs(3) && passed_on > Duration::from_secs(2),
        "what is left of 3 s: {passed_on:?}"
    );
    assert_eq!(seen[1], Some(CAP), "without a caller's deadline, the cap");
}

/// Takes longer than any deadline in the test.
struct Slow;

#[tonic::async_trait]
impl Health for Slow {
    async fn check(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(tonic::Response::new(HealthCheckResponse::default()))
    }

    type WatchStream =
        Pin<Box<dyn futures_util::Stream<Item = Result<HealthCheckResponse, tonic::Status>> + Send + 'static>>;

    async fn watch(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not here"))
    }
}

/// The server ends a call at its caller's deadline, or at its own limit when that comes first,
/// with DEADLINE_EXCEEDED (tonic's own timeout says CANCELLED, as if the caller had left).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_unanswered_at_its_deadline_is_answered_deadline_exceeded() {
    let (listener, addr) = listener().await;
    tokio::spawn(
        Server::builder()
            .layer(DeadlineLayer::new(Duration::from_millis(600)))
            .add_service(HealthServer::new(Slow))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let client = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("url").connect_lazy();
    for (asked, within) in [(Some("200m"), Duration::from_millis(200)), (None, Duration::from_millis(600))] {
        // Sent as a header only, so the answer is the server's, not a timer of the client's.
        let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
        if let Some(asked) = asked {
            request.metadata_mut().insert("grpc-timeout", asked.parse().expect("header"));
        }
        let started = std::time::Instant::now();
        let status = HealthClient::new(client.clone()).check(request).await.expect_err("too slow");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{asked:?}: {status:?}");
        let took = started.elapsed();
        let earliest = within.saturating_sub(roster_platform::deadline::AHEAD_OF_TONIC);
        assert!(took >= earliest && took < within + Duration::from_secs(5), "{asked:?}: answered after {took:?}");
    }
}
