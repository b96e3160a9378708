//! Logging with `tracing` (human-readable text by default, JSON when asked), and traces sent
//! over OTLP/gRPC when the standard `OTEL_*` variables ask for them.
//!
//! Lines are formatted on the thread that logs them and written to stderr by a thread of their
//! own (`tracing-appender`'s non-blocking writer), so a slow reader of the pipe (a log shipper
//! behind) never holds up a call; that thread writes what it finds queued in one system call. Its queue is bounded ([`QUEUED_LINES`]): when it is full,
//! lines are dropped rather than memory grown or calls stalled, and counted
//! ([`dropped_lines`], the metric `roster_log_lines_dropped_total`).
//!
//! Traces are on for the servers when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, unless `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none`; the exporter and the batch processor read the rest
//! (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*`, ...), and
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the service. Spans come from the
//! same `tracing` spans the logs use (`tracing-opentelemetry`); [`crate::traces`] carries
//! them across the hop.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

use crate::config::{ConfigError, LogFormat, TelemetryArgs};

/// Lines the log writer holds before it drops new ones: over half a second of the per-RPC
/// lines of roster-bench's busiest run (20,000-25,000 calls a second), which dropped none. The
/// queue's slots are allocated and written when it is made (crossbeam's bounded channel), 32
/// bytes each, so they are resident from the start: 512 KiB here, where 65,536 lines took
/// 2 MiB of the 20 MB an idle service may use (issue 25).
pub const QUEUED_LINES: usize = 16_384;

/// Bytes the log writer gathers before it writes them out, at most (it also writes whenever
/// the queue runs empty, so a quiet server's lines are not held back).
const LOG_BUFFER_BYTES: usize = 64 * 1024;

/// The writer's count of dropped lines, once logging is set up.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Set when spans are exported: only then do RPC spans carry the `otel.*` fields, which cost
/// every log line their formatting otherwise.
static EXPORTING: OnceLock<()> = OnceLock::new();

/// Whether this process exports spans (traces are on).
pub fn exporting_spans() -> bool {
    EXPORTING.get().is_some()
}

/// Log lines dropped so far because the writer's queue was full.
pub fn dropped_lines() -> usize {
    DROPPED.get().map_or(0, ErrorCounter::dropped_lines)
}

/// Flushes the log lines and spans not yet written when the process ends; hold it until then.
#[derive(Debug, Default)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
    logs: Option<WorkerGuard>,
}

impl Telemetry {
    /// Sends what is buffered and stops the exporter, then writes the last log lines.
    pub fn shutdown(self) {
        if let Some(traces) = self.traces
            && let Err(error) = traces.shutdown()
        {
            tracing::warn!(%error, "traces not flushed at shutdown");
        }
        drop(self.logs);
    }
}

/// sqlx warns for every pooled connection an outage breaks (and every server notice about it),
/// dozens of lines a second while a database is down; Roster logs an outage once
/// (`incident`). Unless the filter says something of sqlx itself, its pool and notices speak
/// only of errors.
fn with_quiet_pool(filter: &str) -> String {
    if filter.contains("sqlx") {
        filter.to_owned()
    } else {
        format!("{filter},sqlx::pool=error,sqlx_core::pool=error,sqlx::postgres::notice=error")
    }
}

/// Whether the environment asks for traces.
fn traces_requested() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let is = |name: &str, value: &str| std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// Installs the global subscriber. Call once, first thing in `main`, inside the Tokio runtime.
/// `service` names a server, whose spans are exported if the environment asks for it
/// (`OTEL_SERVICE_NAME` wins over it); the short commands pass `None`.
pub fn init(args: &TelemetryArgs, service: Option<&'static str>) -> Result<Telemetry, ConfigError> {
    let directives = with_quiet_pool(&args.log_filter);
    let filter = || EnvFilter::try_new(&directives).map_err(|e| ConfigError::new("ROSTER_LOG", e.to_string()));
    // Colour codes only for a person at a terminal, never into files or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(true)
        .thread_name("roster-log-writer")
        // The writer thread writes every line it finds queued, then flushes: buffered, a busy
        // server's lines go out in one system call per batch instead of one each.
        .finish(std::io::BufWriter::with_capacity(LOG_BUFFER_BYTES, std::io::stderr()));
    let _ = DROPPED.set(writer.error_counter());
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![match args.log_format {
        LogFormat::Text => {
            tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi).with_filter(filter()?).boxed()
        }
        // `json-subscriber` keeps each span's fields serialized and copies them into each
        // line, where `tracing-subscriber`'s JSON format parsed and wrote them again for every
        // line and every field recorded: 15k instructions of a call refused before the
        // database where they took 27k of its 142k (README, "Measuring"). The same keys as
        // before; the current span once per line (`span`), not again in a list of open spans.
        LogFormat::Json => json_subscriber::fmt::layer()
            .with_writer(writer)
            .flatten_event(true)
            .with_span_list(false)
            .with_filter(filter()?)
            .boxed(),
    }];
    let traces = match service {
        Some(service) if traces_requested() => Some(tracer_provider(service)?),
        _ => None,
    };
    if let Some(provider) = &traces {
        let _ = EXPORTING.set(());
        let tracer = provider.tracer("roster");
        // Spans are exported at `info` whatever the log level: quieter logs keep their traces.
        let spans = EnvFilter::new("info");
        layers.push(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(spans).boxed());
    }
    // A second init (tests that boot several servers) keeps the first subscriber.
    drop(tracing_subscriber::registry().with(layers).try_init());
    Ok(Telemetry { traces, logs: Some(guard) })
}

fn tracer_provider(service: &'static str) -> Result<SdkTracerProvider, ConfigError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", e.to_string()))?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", "traces need the Tokio runtime"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(OnRuntime { inner: exporter, runtime })
        .with_resource(resource.build())
        .build())
}

/// The OTLP exporter on the server's Tokio runtime. The SDK's batch processor exports from a
/// thread of its own, where tonic's connection (hyper on Tokio) would find no runtime; each
/// export is polled inside the server's runtime context instead.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: E,
    runtime: tokio::runtime::Handle,
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        InRuntime { runtime: self.runtime.clone(), future: Box::pin(self.inner.export(batch)) }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _entered = self.runtime.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// Polls `future` with `runtime` entered.
struct InRuntime<F> {
    runtime: tokio::runtime::Handle,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _entered = self.runtime.enter();
        self.future.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlx_pool_warnings_are_quiet_unless_the_filter_names_sqlx() {
        assert_eq!(with_quiet_pool("info"), "info,sqlx::pool=error,sqlx_core::pool=error,sqlx::postgres::notice=error");
        assert_eq!(with_quiet_pool("warn,sqlx=debug"), "warn,sqlx=debug");
        assert!(EnvFilter::try_new(with_quiet_pool("roster_identity=debug,info")).is_ok());
    }
}
