//! The deadline of the RPC being handled, so the calls it makes to the other service give up
//! when its caller has. The server layer reads the caller's `grpc-timeout` header and keeps
//! the deadline in a task-local while the handler runs; [`crate::peer`] sends each call with
//! what is left of it, capped by that client's own timeout. A call outside an RPC (a saga
//! step, a background task) gets the cap alone.
//!
//! `parse` and `encode` are written here because tonic's own `grpc-timeout` reader and writer
//! are private to it (its server's timeout layer and `Request::set_timeout`), and this layer
//! and [`crate::peer`] work on the HTTP request below tonic's `Request`.

use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service};

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The header gRPC carries a deadline in: a positive integer of at most 8 digits and a unit.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// How long the RPC being handled has left, if its caller set a deadline.
pub fn remaining() -> Option<Duration> {
    DEADLINE.try_with(|deadline| deadline.saturating_duration_since(Instant::now())).ok()
}

/// The time a call made now may take: what the current RPC has left, at most `cap`.
pub fn budget(cap: Duration) -> Duration {
    remaining().map_or(cap, |left| left.min(cap))
}

/// Parses a `grpc-timeout` value (`100m`, `5S`, ...). `None` for anything else, which gRPC
/// says to treat as no deadline.
pub fn parse(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Writes `timeout` as a `grpc-timeout` value, rounded up to whole milliseconds so a short
/// remainder never reads as zero, in seconds once milliseconds would need more than 8 digits.
pub fn encode(timeout: Duration) -> http::HeaderValue {
    let millis = timeout.as_nanos().div_ceil(1_000_000).max(1);
    let text = if millis < 100_000_000 { format!("{millis}m") } else { format!("{}S", millis.div_ceil(1000)) };
    http::HeaderValue::from_str(&text).expect("digits and a unit are a valid header value")
}

/// How much sooner than tonic's own timeout [`DeadlineLayer`] ends a call (see there).
pub const AHEAD_OF_TONIC: Duration = Duration::from_millis(10);

/// Server layer: runs each request's handler with its deadline in scope, and ends it there.
/// The deadline is the caller's (`grpc-timeout`) or the server's own limit
/// (`ROSTER_REQUEST_TIMEOUT_MS`), whichever comes first; a call still unanswered then is
/// answered `DEADLINE_EXCEEDED`, as gRPC says. tonic's server also ends a call at its caller's
/// `grpc-timeout`, from outside every layer, and answers `CANCELLED` (which clients and meshes
/// read as the caller having given up); so this layer ends it [`AHEAD_OF_TONIC`] earlier.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    limit: Duration,
}

impl DeadlineLayer {
    /// `limit`: the longest any call may take, whatever its caller allows.
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = WithDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithDeadline { inner, limit: self.limit }
    }
}

#[derive(Debug, Clone)]
pub struct WithDeadline<S> {
    inner: S,
    limit: Duration,
}

impl<S, B> Service<http::Request<B>> for WithDeadline<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let asked = request.headers().get(GRPC_TIMEOUT).and_then(|v| v.to_str().ok()).and_then(parse);
        let (timeout, whose) = match asked {
            Some(asked) if asked <= self.limit => (asked, "the caller's deadline"),
            _ => (self.limit, "the server's limit on a call (ROSTER_REQUEST_TIMEOUT_MS)"),
        };
        let deadline = Instant::now() + timeout.saturating_sub(AHEAD_OF_TONIC);
        let handled = DEADLINE.scope(deadline, self.inner.call(request));
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, handled).await {
                Ok(answered) => answered,
                Err(_) => {
                    let message = format!("{whose} ({} ms) passed before the call was answered", timeout.as_millis());
                    Ok(tonic::Status::deadline_exceeded(message).into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values_parse_in_every_unit_and_refuse_the_rest() {
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "m", "123456789m", "5s", "-1S", "1.5S", "S5"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encoded_timeouts_round_up_and_read_back() {
        assert_eq!(encode(Duration::from_micros(1)), "1m");
        assert_eq!(encode(Duration::from_micros(1500)), "2m");
        assert_eq!(encode(Duration::from_secs(10)), "10000m");
        let long = Duration::from_secs(200_000);
        assert_eq!(encode(long), "200000S");
        assert_eq!(parse(encode(Duration::from_millis(1234)).to_str().unwrap()), Some(Duration::from_millis(1234)));
    }

    #[tokio::test]
    async fn the_budget_is_the_callers_remainder_capped() {
        let cap = Duration::from_secs(10);
        assert_eq!(budget(cap), cap, "outside an RPC the cap alone");
        let short = DEADLINE.scope(Instant::now() + Duration::from_secs(2), async { budget(cap) }).await;
        assert!(short <= Duration::from_secs(2) && short > Duration::from_secs(1), "{short:?}");
        let long = DEADLINE.scope(Instant::now() + Duration::from_secs(60), async { budget(cap) }).await;
        assert_eq!(long, cap);
    }
}
