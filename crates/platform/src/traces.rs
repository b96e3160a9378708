//! Traces across the hop between the services and through the saga store, in W3C trace
//! context (`traceparent`). When tracing is on ([`crate::telemetry`]), an RPC's span continues
//! the caller's trace, each call to the other service carries the current span as its parent,
//! and a workflow keeps the `traceparent` of the RPC that started it, so its steps are spans
//! of that trace on whichever replica runs them, also after a crash. When tracing is off,
//! every function here does nothing.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header W3C trace context travels in.
pub const TRACEPARENT: &str = "traceparent";

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

/// Writes the current span into `headers` as the parent of the call they go with.
pub fn inject_current(headers: &mut http::HeaderMap) {
    let context = Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut HeadersMut(headers));
    }
}

/// The current span as a `traceparent` value, to store with work that continues later.
pub fn current_traceparent() -> Option<String> {
    let context = Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
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
