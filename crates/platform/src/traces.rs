//! Traces across the hop between the services and through the saga store, in W3C trace
//! context (`traceparent`). When tracing is on ([`crate::telemetry`]), an RPC's span continues
//! the caller's trace, each call to the other service carries the current span as its parent,
//! and a workflow keeps the `traceparent` of the RPC that started it, so its steps are spans
//! of that trace on whichever replica runs them, also after a crash. When tracing is off, the
//! caller's `traceparent` is passed on unchanged (to the other service, and through the
//! workflow row), so log lines on both sides still share its trace id.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header W3C trace context travels in.
pub const TRACEPARENT: &str = "traceparent";

tokio::task_local! {
    /// The `traceparent` the work in hand continues, as it came: what is passed on when
    /// tracing is off and there is no span of ours to name.
    static CONTINUES: Option<String>;
}

/// Runs `work` as the continuation of `traceparent` (see [`CONTINUES`]).
pub async fn continuing<F: std::future::Future>(traceparent: Option<String>, work: F) -> F::Output {
    CONTINUES.scope(traceparent, work).await
}

/// A well-formed `traceparent` among `headers`, as it came.
pub fn incoming(headers: &http::HeaderMap) -> Option<String> {
    header_trace_id(headers)?;
    headers.get(TRACEPARENT)?.to_str().ok().map(str::to_owned)
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`); `None` when
/// there is none or it is malformed.
pub fn header_trace_id(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (_version, trace, _parent) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()) && trace.bytes().any(|b| b != b'0');
    valid.then(|| trace.to_ascii_lowercase())
}

fn continued() -> Option<String> {
    CONTINUES.try_with(Clone::clone).ok().flatten()
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (http::HeaderName::try_from(key), http::HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

/// One `traceparent` value, for [`set_parent`].
struct Stored<'a>(&'a str);

impl Extractor for Stored<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

struct Capture(Option<String>);

impl Injector for Capture {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

/// Makes `span` a child of the caller's span named in `headers`, if there is one.
pub fn continue_from_headers(span: &Span, headers: &http::HeaderMap) {
    if headers.contains_key(TRACEPARENT) {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        let _ = span.set_parent(parent);
    }
}

/// Writes the current span into `headers` as the parent of the call they go with; with
/// tracing off, the `traceparent` the work continues.
pub fn inject_current(headers: &mut http::HeaderMap) {
    let context = Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeadersMut(headers));
    } else if let Some(value) = continued().and_then(|v| http::HeaderValue::try_from(v).ok()) {
        headers.insert(TRACEPARENT, value);
    }
}

/// The current span as a `traceparent` value, to store with work that continues later; with
/// tracing off, the one the work continues.
pub fn current_traceparent() -> Option<String> {
    let context = Span::current().context();
    if !context.span().span_context().is_valid() {
        return continued();
    }
    let mut captured = Capture(None);
    TraceContextPropagator::new().inject_context(&context, &mut captured);
    captured.0
}

/// Makes `span` a child of the span a stored `traceparent` names.
pub fn set_parent(span: &Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        let _ = span.set_parent(TraceContextPropagator::new().extract(&Stored(traceparent)));
    }
}

/// The trace id of `span` (32 hex digits), when tracing is on.
pub fn trace_id(span: &Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_id_is_read_from_a_well_formed_traceparent_only() {
        let with = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", value.parse().expect("header"));
            header_trace_id(&headers)
        };
        assert_eq!(
            with("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(with("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None, "all zeros is invalid");
        assert_eq!(with("00-4bf92f3577b34da6-00f067aa0ba902b7-01"), None, "too short");
        assert_eq!(with("garbage"), None);
        assert_eq!(header_trace_id(&http::HeaderMap::new()), None);
    }
}
