//! One `info` line per RPC, and its count and latency in the metrics, from a tower layer
//! around every other layer, so that a call refused by authentication or by the limits leaves
//! a line as well as one a handler answers. Health checks and reflection, the plumbing that
//! probes and tools call many times a minute, get their span and line at `debug` instead.
//!
//! The layer opens the RPC's span (`rpc`: `method`, and `trace_id` from a W3C `traceparent`
//! header); the authentication layer records `principal` (its kind) in it, and the idempotency
//! key records `request_id`, so every line written while handling the call names them too.
//! The line itself (`rpc finished`, with `code` and `latency_ms`) is written when the response
//! ends: at its trailers, or, for a refusal sent as headers only, with the status those carry.
//! A response dropped before its end (the client went away) is logged as `CANCELLED`.
//!
//! The method in the span, the line and the metrics' labels is the path only for methods the
//! server serves ([`KnownMethods`]); any other path is `unknown`, so a caller inventing paths
//! cannot grow the set of metric series (each costs memory in the exporter for good).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use prost::Message as _;

use tower::{Layer, Service};
use tracing::Span;
use tracing::field::Empty;

use crate::watched_body::{Polled, Watch, WatchedBody};

/// What the line and the metrics call a path the server does not serve.
pub const UNKNOWN_METHOD: &str = "unknown";

/// The `/package.Service/Method` paths a server answers, read from the descriptor sets of its
/// services (Roster's, health's and reflection's), each with its labels and metric series.
#[derive(Debug, Clone)]
pub struct KnownMethods {
    served: HashMap<String, Arc<Method>>,
    unknown: Arc<Method>,
}

impl Default for KnownMethods {
    fn default() -> Self {
        Self { served: HashMap::new(), unknown: Arc::new(Method::new(UNKNOWN_METHOD)) }
    }
}

impl KnownMethods {
    /// Every method of the services named (fully qualified).
    pub fn of<'a>(services: impl IntoIterator<Item = &'a str>) -> Self {
        let services: HashSet<&str> = services.into_iter().collect();
        let sets = [
            roster_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut known = Self::default();
        for set in sets {
            // The sets are compiled in; one that does not decode is a build defect.
            let set = prost_types::FileDescriptorSet::decode(set).expect("a compiled-in descriptor set decodes");
            for file in &set.file {
                for service in &file.service {
                    let name = format!("{}.{}", file.package(), service.name());
                    if services.contains(name.as_str()) {
                        for method in &service.method {
                            let path = format!("/{name}/{}", method.name());
                            known.served.insert(path.clone(), Arc::new(Method::new(&path)));
                        }
                    }
                }
            }
        }
        known
    }

    /// The method at `path` if served here, else the one named [`UNKNOWN_METHOD`].
    fn label(&self, path: &str) -> Arc<Method> {
        self.served.get(path).unwrap_or(&self.unknown).clone()
    }
}

/// One method as the span, the line and the metrics name it.
#[derive(Debug)]
struct Method {
    /// `/package.Service/Method`, or [`UNKNOWN_METHOD`].
    path: String,
    /// The metrics' `service` and `method` labels: the path's two parts, or `unknown` twice.
    service: String,
    name: String,
    /// Its request counter and latency histogram for each status code, registered with the
    /// recorder when first used (so only the series that happen are exported). Building the
    /// labels and finding the series for every call was about 4 % of a cheap call's
    /// instructions (`valgrind --tool=callgrind`, a call refused before the database). The
    /// recorder is installed before a server starts, so every handle kept here is its own.
    series: [OnceLock<Series>; STATUS_CODES],
}

/// gRPC's status codes, `OK` (0) to `UNAUTHENTICATED` (16).
const STATUS_CODES: usize = 17;

#[derive(Debug)]
struct Series {
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

impl Method {
    fn new(path: &str) -> Self {
        // `/package.Service/Method`, as every gRPC path served is; `unknown` for both otherwise.
        let (service, name) = path.trim_start_matches('/').split_once('/').unwrap_or((UNKNOWN_METHOD, UNKNOWN_METHOD));
        Self {
            path: path.to_owned(),
            service: service.to_owned(),
            name: name.to_owned(),
            series: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn series(&self, code: tonic::Code) -> &Series {
        self.series[code as usize % STATUS_CODES].get_or_init(|| {
            let labels = [
                ("service", self.service.clone()),
                ("method", self.name.clone()),
                ("code", code_name(code).to_owned()),
            ];
            Series {
                requests: metrics::counter!(crate::metrics::RPC_REQUESTS, &labels),
                duration: metrics::histogram!(crate::metrics::RPC_DURATION, &labels),
            }
        })
    }
}

/// Wraps a server's service stack; see the module doc.
#[derive(Debug, Clone, Default)]
pub struct RpcLogLayer {
    known: Arc<KnownMethods>,
}

impl RpcLogLayer {
    pub fn new(known: KnownMethods) -> Self {
        Self { known: Arc::new(known) }
    }
}

impl<S> Layer<S> for RpcLogLayer {
    type Service = RpcLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcLog { inner, known: self.known.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct RpcLog<S> {
    inner: S,
    known: Arc<KnownMethods>,
}

impl<S, B> Service<http::Request<B>> for RpcLog<S>
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
        let method = self.known.label(request.uri().path());
        let path = method.path.as_str();
        // The `otel.*` fields name the exported span; without traces they would only be more
        // text in every log line of the call.
        macro_rules! rpc_span {
            ($level:expr) => {
                tracing::span!($level, "rpc", method = path, principal = Empty, request_id = Empty, trace_id = Empty,)
            };
            ($level:expr, exported) => {
                tracing::span!(
                    $level,
                    "rpc",
                    method = path,
                    principal = Empty,
                    request_id = Empty,
                    trace_id = Empty,
                    "otel.name" = path,
                    "otel.kind" = "server",
                    "otel.status_code" = Empty,
                )
            };
        }
        let quiet = is_plumbing(path);
        let span = match (quiet, crate::telemetry::exporting_spans()) {
            (true, false) => rpc_span!(tracing::Level::DEBUG),
            (false, false) => rpc_span!(tracing::Level::INFO),
            (true, true) => rpc_span!(tracing::Level::DEBUG, exported),
            (false, true) => rpc_span!(tracing::Level::INFO, exported),
        };
        // With traces on, the span continues the caller's trace (or starts one) and its id is
        // the one logged; with them off, the caller's trace id is logged as it came.
        crate::traces::continue_from_headers(&span, request.headers());
        if let Some(trace_id) =
            crate::traces::trace_id(&span).or_else(|| crate::traces::header_trace_id(request.headers()))
        {
            span.record("trace_id", trace_id);
        }
        let started = Instant::now();
        let continues = crate::traces::incoming(request.headers());
        // Entered while the inner layers take the request: authentication records the
        // principal synchronously, in `call`.
        let response = span.in_scope(|| self.inner.call(request));
        let end = End { span: span.clone(), method, started, code: None, logged: false, quiet };
        Box::pin(tracing::Instrument::instrument(
            async move {
                let response = crate::traces::continuing(continues, response).await?;
                let mut end = end;
                // A refusal comes as headers only, its status among them.
                end.code = grpc_code(response.headers());
                Ok(response.map(|body| WatchedBody::wrap(body, end)))
            },
            span,
        ))
    }
}

/// Health checks and reflection: logged at `debug`, counted in the metrics all the same.
fn is_plumbing(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

fn grpc_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(tonic::Code::from_i32(value))
}

/// What is needed to write the line once the response ends.
struct End {
    span: Span,
    method: Arc<Method>,
    started: Instant,
    /// Known from the headers of a headers-only response, else from the trailers.
    code: Option<tonic::Code>,
    logged: bool,
    /// Health or reflection: the line is written at `debug`.
    quiet: bool,
}

impl End {
    fn log(&mut self, code: tonic::Code) {
        if self.logged {
            return;
        }
        self.logged = true;
        let latency = self.started.elapsed().as_secs_f64();
        let latency_ms = latency * 1_000.0;
        if code != tonic::Code::Ok {
            self.span.record("otel.status_code", "error");
        }
        self.span.in_scope(|| {
            if self.quiet {
                tracing::debug!(code = code_name(code), latency_ms, "rpc finished");
            } else {
                tracing::info!(code = code_name(code), latency_ms, "rpc finished");
            }
        });
        let series = self.method.series(code);
        series.requests.increment(1);
        series.duration.record(latency);
    }
}

impl Drop for End {
    /// A headers-only response's empty body may never be polled: its status is the one its
    /// headers carry. Any other response dropped before its trailers was cut off.
    fn drop(&mut self) {
        self.log(self.code.unwrap_or(tonic::Code::Cancelled));
    }
}

/// The status name as gRPC spells it (`OK`, `INVALID_ARGUMENT`, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The RPC's line is written when its response's last frame has gone out.
impl Watch for End {
    fn polled(&mut self, polled: &Polled) {
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_code) {
                    self.log(code);
                }
            }
            Poll::Ready(Some(Err(status))) => self.log(status.code()),
            Poll::Ready(None) => self.log(self.code.unwrap_or(tonic::Code::Unknown)),
            Poll::Pending => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_reflection_are_plumbing_and_the_api_is_not() {
        assert!(is_plumbing("/grpc.health.v1.Health/Check"));
        assert!(is_plumbing("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
        assert!(is_plumbing("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"));
        assert!(!is_plumbing("/roster.identity.v1.UserService/GetUser"));
        assert!(!is_plumbing(UNKNOWN_METHOD));
    }

    #[test]
    fn only_served_methods_are_labelled_by_their_path() {
        let known = KnownMethods::of(["roster.identity.v1.UserService", "grpc.health.v1.Health"]);
        let get_user = known.label("/roster.identity.v1.UserService/GetUser");
        assert_eq!(
            (get_user.path.as_str(), get_user.service.as_str(), get_user.name.as_str()),
            ("/roster.identity.v1.UserService/GetUser", "roster.identity.v1.UserService", "GetUser")
        );
        assert_eq!(known.label("/grpc.health.v1.Health/Check").path, "/grpc.health.v1.Health/Check");
        let unknown = known.label("/x/y");
        assert_eq!((unknown.service.as_str(), unknown.name.as_str()), (UNKNOWN_METHOD, UNKNOWN_METHOD));
        for made_up in [
            "/roster.identity.v1.UserService/Nope",
            "/roster.licensing.v1.LicenseService/AssignLicense",
            "/x/y",
            "",
            "/roster.identity.v1.UserService/GetUser/extra",
        ] {
            assert_eq!(known.label(made_up).path, UNKNOWN_METHOD, "{made_up:?}");
        }
    }
}
