//! Serving a service: the tonic server with the authentication and limit layers, health
//! (`grpc.health.v1`) and reflection (v1 and v1alpha), and graceful shutdown.
//!
//! Shutdown order: the signal arrives, health turns NOT_SERVING (load balancers stop routing),
//! the listener closes and in-flight RPCs drain, bounded by the grace period; then the caller
//! stops its background workers and closes the database.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::auth::{AuthLayer, Verifier};
use crate::config::LimitArgs;

/// What a service hands over to be served.
#[derive(Debug)]
pub struct ServiceSet {
    /// Fully qualified names of the gRPC services, for health.
    pub names: Vec<&'static str>,
    pub routes: Routes,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Reflection serves our protos, health, and the google.rpc error details, so `grpcurl` can
/// decode `ErrorInfo`, `BadRequest` and `PreconditionFailure` in refusals.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(roster_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

async fn set_all(reporter: &HealthReporter, names: &[&'static str], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in names {
        reporter.set_service_status(*name, status).await;
    }
}

/// Serves `services` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    services: ServiceSet,
    verifier: Arc<Verifier>,
    limits: &LimitArgs,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let routes = services.routes.add_service(health).add_service(reflection_v1).add_service(reflection_v1alpha);

    set_all(&reporter, &services.names, ServingStatus::Serving).await;
    let draining = Arc::new(Notify::new());
    let draining_signal = draining.clone();
    let names = services.names.clone();
    let health_reporter = reporter.clone();
    let on_shutdown = async move {
        shutdown.await;
        tracing::info!("shutdown requested: health NOT_SERVING, draining in-flight RPCs");
        set_all(&health_reporter, &names, ServingStatus::NotServing).await;
        draining_signal.notify_one();
    };

    let server = Server::builder()
        .timeout(limits.request_timeout())
        .layer(AuthLayer::new(verifier))
        .layer(GlobalConcurrencyLimitLayer::new(usize::try_from(limits.concurrency_limit).unwrap_or(usize::MAX)))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming(listener), on_shutdown);
    tokio::pin!(server);
    let grace = limits.shutdown_grace();
    tokio::select! {
        result = &mut server => result?,
        () = async { draining.notified().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; abandoning RPCs still running");
        }
    }
    Ok(())
}

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
