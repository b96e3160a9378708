//! The licensing service: purchased seats, license assignment and reclaim, phone numbers, the
//! licensed data users own, individual subscriptions and refunds.
//!
//! Layers, one direction of dependency: `api` (tonic handlers: decode, ask identity who is
//! calling, call a use case, encode) -> `app` (use cases: one transaction each) -> `domain`
//! (the SPEC rules as plain Rust) and `store` (sqlx queries returning domain types).
//! `directory` is the client of identity's internal lookups; `housekeeping` prunes old
//! idempotency records; `server` wires it all to a socket.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod demo;
pub mod directory;
pub mod domain;
pub mod housekeeping;
pub mod server;
pub mod store;

pub use server::{LicensingArgs, Server, Settings};
