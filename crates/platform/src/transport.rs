//! Transport limits that keep a hostile or broken client from tying up the server: a request
//! body must keep arriving ([`BodyGuardLayer`]), a message may not announce more bytes than
//! the limit (refused from its 5-byte gRPC header, before it is buffered), health and reflection
//! never take a slot of the API's concurrency limit ([`ApiConcurrencyLayer`]), and the number
//! of open connections is capped ([`limit_connections`]).
//!
//! Written here rather than taken from tower-http: its body timeout ends a stalled body with an
//! error tonic reports as `UNKNOWN`, and no kept crate checks gRPC frame lengths as they
//! arrive; both need a status the client can act on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::future::Either;
use futures_util::{Stream, StreamExt};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::Status;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tower::{Layer, Service};

use crate::auth::is_public_path;

/// Wraps every request body in a [`GuardedBody`].
#[derive(Debug, Clone)]
pub struct BodyGuardLayer {
    idle: Duration,
    max_message_bytes: usize,
}

impl BodyGuardLayer {
    /// `idle`: longest wait for the next part of a request body; `max_message_bytes`: largest
    /// gRPC message a request may carry.
    pub fn new(idle: Duration, max_message_bytes: usize) -> Self {
        Self { idle, max_message_bytes }
    }
}

impl<S> Layer<S> for BodyGuardLayer {
    type Service = BodyGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyGuard { inner, settings: self.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct BodyGuard<S> {
    inner: S,
    settings: BodyGuardLayer,
}

impl<S> Service<http::Request<tonic::body::Body>> for BodyGuard<S>
where
    S: Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let BodyGuardLayer { idle, max_message_bytes } = self.settings;
        let request = request.map(|body| tonic::body::Body::new(GuardedBody::new(body, idle, max_message_bytes)));
        self.inner.call(request)
    }
}

/// A request body that fails with `DEADLINE_EXCEEDED` when no part of it arrives for `idle`,
/// and with `RESOURCE_EXHAUSTED` as soon as a gRPC message header announces more than the limit.
pub struct GuardedBody<B> {
    inner: B,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    frames: FrameLengths,
}

impl<B> GuardedBody<B> {
    fn new(inner: B, idle: Duration, max_message_bytes: usize) -> Self {
        Self { inner, idle, deadline: Box::pin(tokio::time::sleep(idle)), frames: FrameLengths::new(max_message_bytes) }
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes, Error = Status> + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.deadline.as_mut().reset(Instant::now() + this.idle);
                if let Some(data) = frame.data_ref()
                    && let Err(announced) = this.frames.feed(data.chunk())
                {
                    return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                        "request message of {announced} bytes is larger than the {} byte limit",
                        this.frames.max
                    )))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                    "the request body did not arrive within {} ms",
                    this.idle.as_millis()
                ))))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Follows the gRPC length-prefixed messages in a byte stream (1 flag byte, a 4-byte big-endian
/// length, then the message), across chunk boundaries.
#[derive(Debug)]
struct FrameLengths {
    max: usize,
    header: [u8; 5],
    header_len: usize,
    body_left: usize,
}

impl FrameLengths {
    fn new(max: usize) -> Self {
        Self { max, header: [0; 5], header_len: 0, body_left: 0 }
    }

    /// Consumes `data`; `Err(length)` when a message announces more than `max` bytes.
    fn feed(&mut self, mut data: &[u8]) -> Result<(), usize> {
        while !data.is_empty() {
            if self.body_left > 0 {
                let skip = self.body_left.min(data.len());
                self.body_left -= skip;
                data = &data[skip..];
                continue;
            }
            self.header[self.header_len] = data[0];
            self.header_len += 1;
            data = &data[1..];
            if self.header_len == self.header.len() {
                self.header_len = 0;
                let [_, a, b, c, d] = self.header;
                let length = u32::from_be_bytes([a, b, c, d]) as usize;
                if length > self.max {
                    return Err(length);
                }
                self.body_left = length;
            }
        }
        Ok(())
    }
}

/// A concurrency limit for API calls only: health probes and reflection pass without a permit,
/// so stalled public requests can never starve the API (or the probes that watch it).
#[derive(Debug, Clone)]
pub struct ApiConcurrencyLayer {
    permits: Arc<Semaphore>,
    queue_wait: Duration,
}

impl ApiConcurrencyLayer {
    /// At most `limit` API calls at once; a call that finds them all taken waits at most
    /// `queue_wait` for one, then is refused.
    pub fn new(limit: usize, queue_wait: Duration) -> Self {
        Self { permits: Arc::new(Semaphore::new(limit)), queue_wait }
    }
}

impl<S> Layer<S> for ApiConcurrencyLayer {
    type Service = ApiConcurrency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiConcurrency { inner, permits: self.permits.clone(), queue_wait: self.queue_wait }
    }
}

#[derive(Debug, Clone)]
pub struct ApiConcurrency<S> {
    inner: S,
    permits: Arc<Semaphore>,
    queue_wait: Duration,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How long a client refused for overload should wait before trying again.
const OVERLOAD_RETRY_AFTER: Duration = Duration::from_millis(200);

/// The answer to a call that found every slot taken for longer than the queue wait: refused
/// at once rather than queued until the caller's deadline, so the client (or its mesh) can
/// back off or try another replica.
fn overloaded() -> Status {
    crate::status::retry_later(
        tonic::Code::Unavailable,
        crate::status::Reason::new("SERVER_OVERLOADED", None),
        OVERLOAD_RETRY_AFTER,
        "this server is handling as many calls as it may (ROSTER_CONCURRENCY_LIMIT); retry with backoff",
    )
}

impl<S, B> Service<http::Request<B>> for ApiConcurrency<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if is_public_path(request.uri().path()) {
            return Either::Left(self.inner.call(request));
        }
        // The permit is awaited inside the future, so a waiting call holds nothing; the
        // service that was made ready goes with it (the standard clone-and-swap).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let (permits, queue_wait) = (self.permits.clone(), self.queue_wait);
        Either::Right(Box::pin(async move {
            // The semaphore is never closed, so acquiring cannot fail.
            let permit = tokio::time::timeout(queue_wait, permits.acquire_owned()).await;
            let Ok(permit) = permit else { return Ok(overloaded().into_http()) };
            let _permit = permit.expect("semaphore open");
            inner.call(request).await
        }))
    }
}

/// Accepted connections beyond `max` at once are closed straight away (a warning is logged at
/// most every 10 s), so a flood of idle connections cannot exhaust memory or file descriptors.
pub fn limit_connections<S, IO, E>(incoming: S, max: usize) -> impl Stream<Item = Result<Counted<IO>, E>>
where
    S: Stream<Item = Result<IO, E>>,
{
    let permits = Arc::new(Semaphore::new(max));
    let last_warning = Arc::new(AtomicU64::new(0));
    incoming.filter_map(move |accepted| {
        let admitted = match accepted {
            Ok(io) => match permits.clone().try_acquire_owned() {
                Ok(permit) => Some(Ok(Counted { io, _permit: permit })),
                Err(_) => {
                    warn_throttled(&last_warning, max);
                    None
                }
            },
            Err(error) => Some(Err(error)),
        };
        std::future::ready(admitted)
    })
}

fn warn_throttled(last: &AtomicU64, max: usize) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let before = last.load(Ordering::Relaxed);
    if now >= before + 10 && last.compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        tracing::warn!(max_connections = max, "connection limit reached; closing new connections");
    }
}

/// A connection holding one of the connection limit's permits until it closes.
#[derive(Debug)]
pub struct Counted<IO> {
    io: IO,
    _permit: OwnedSemaphorePermit,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: Connected<ConnectInfo = TcpConnectInfo>> Connected for Counted<IO> {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend(std::iter::repeat_n(7, len as usize));
        bytes
    }

    #[test]
    fn frame_lengths_are_followed_across_chunks_and_oversize_is_caught_from_the_header() {
        let mut stream = message(3);
        stream.extend(message(10));
        stream.extend(message(0));
        for chunk_size in [1, 2, 5, 7, stream.len()] {
            let mut frames = FrameLengths::new(10);
            for chunk in stream.chunks(chunk_size) {
                assert_eq!(frames.feed(chunk), Ok(()), "chunks of {chunk_size}");
            }
        }
        let mut frames = FrameLengths::new(10);
        assert_eq!(frames.feed(&message(3)), Ok(()));
        // Only the header of the oversize message is needed to refuse it.
        assert_eq!(frames.feed(&message(5_000_000)[..5]), Err(5_000_000));
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_closed_as_they_arrive() {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let admitted = limit_connections(tonic::transport::server::TcpIncoming::from(listener), 2);
        let (kept_tx, mut kept_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            futures_util::pin_mut!(admitted);
            while let Some(Ok(connection)) = admitted.next().await {
                let _ = kept_tx.send(connection);
            }
        });
        let mut clients = Vec::new();
        let mut admitted_here = Vec::new();
        for _ in 0..2 {
            clients.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
            admitted_here.push(kept_rx.recv().await.expect("admitted"));
        }
        // The third is accepted by the kernel, then closed by the server: it reads end of file.
        let mut third = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut byte)).await.expect("closed promptly");
        assert!(matches!(read, Ok(0) | Err(_)), "the connection over the limit is closed: {read:?}");
        // A connection that ends gives its place back.
        drop(admitted_here.pop());
        clients.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        let next = tokio::time::timeout(Duration::from_secs(5), kept_rx.recv()).await.expect("admitted promptly");
        assert!(next.is_some());
    }

    /// A call that finds every slot taken waits the queue time, then is refused UNAVAILABLE
    /// with a RetryInfo, instead of waiting until its deadline; health still gets through.
    #[tokio::test(start_paused = true)]
    async fn calls_over_the_limit_are_refused_after_the_queue_wait() {
        let release = Arc::new(tokio::sync::Notify::new());
        let held = release.clone();
        // API calls wait until released; health answers at once.
        let slow = tower::service_fn(move |request: http::Request<()>| {
            let held = (!is_public_path(request.uri().path())).then(|| held.clone());
            async move {
                if let Some(held) = held {
                    held.notified().await;
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
            }
        });
        let mut limited = ApiConcurrencyLayer::new(1, Duration::from_millis(100)).layer(slow);
        let call = |path: &str| http::Request::builder().uri(path).body(()).expect("request");
        let first = tokio::spawn(limited.call(call("/roster.identity.v1.UserService/GetUser")));
        tokio::task::yield_now().await;
        let started = Instant::now();
        let refused = limited.call(call("/roster.identity.v1.UserService/GetUser")).await.expect("an answer");
        assert_eq!(started.elapsed(), Duration::from_millis(100), "refused after the queue wait, not the deadline");
        let status = Status::from_header_map(refused.headers()).expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        use tonic_types::StatusExt as _;
        assert!(status.get_details_retry_info().is_some(), "{status:?}");
        // Health never takes a slot.
        limited.call(call("/grpc.health.v1.Health/Check")).await.expect("health while the slot is taken");
        release.notify_waiters();
        first.await.expect("join").expect("the first call");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_ends_with_deadline_exceeded() {
        use http_body_util::BodyExt as _;
        let (mut sender, body) = http_body_util::channel::Channel::<Bytes, Status>::new(4);
        let mut guarded = GuardedBody::new(body, Duration::from_secs(5), 1024);
        sender.send_data(Bytes::from(message(2))).await.expect("send");
        let first = guarded.frame().await.expect("frame").expect("data");
        assert_eq!(first.into_data().expect("data").len(), 7);
        // Nothing more arrives: after the idle time the body fails instead of waiting forever.
        let stalled = guarded.frame().await.expect("an error frame").expect_err("deadline");
        assert_eq!(stalled.code(), tonic::Code::DeadlineExceeded);
        drop(sender);
    }
}
