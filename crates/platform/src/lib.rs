//! Server plumbing shared by the Roster services: configuration, telemetry, authentication,
//! error mapping, databases and migrations, idempotency, pagination, the clock, and serving
//! with health, reflection, limits and graceful shutdown.
#![forbid(unsafe_code)]

pub mod auth;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod db;
pub mod deadline;
pub mod event_log;
pub mod fair;
pub mod folded;
pub mod idempotency;
pub mod ids;
pub mod incident;
pub mod metrics;
pub mod pagination;
pub mod peer;
pub mod periodic;
pub mod rerun;
pub mod rpc_log;
pub mod saga_retry;
pub mod server;
pub mod status;
pub mod stored_text;
pub mod telemetry;
pub mod tls;
pub mod traces;
pub mod transport;
pub mod watched_body;
