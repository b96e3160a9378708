//! A response body that shows each frame it hands over to a watcher and is dropped with it:
//! what serving needs to know when an RPC has really ended (its stream's last frame), for the
//! drain (`server`) and for the line per RPC (`rpc_log`).

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Frame;

/// One poll's answer, as the body passes it on.
pub type Polled = Poll<Option<Result<Frame<bytes::Bytes>, tonic::Status>>>;

/// Told of every poll's answer; dropped when the body is.
pub trait Watch: Send + Unpin + 'static {
    fn polled(&mut self, _polled: &Polled) {}
}

/// `inner`, passed on unchanged, with `watch` told of each frame.
pub struct WatchedBody<W> {
    inner: tonic::body::Body,
    watch: W,
}

impl<W: Watch> WatchedBody<W> {
    /// As a body tonic serves.
    pub fn wrap(inner: tonic::body::Body, watch: W) -> tonic::body::Body {
        tonic::body::Body::new(Self { inner, watch })
    }
}

impl<W: Watch> http_body::Body for WatchedBody<W> {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        // Both fields are Unpin: the inner body is boxed, and watchers are.
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        this.watch.polled(&polled);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
