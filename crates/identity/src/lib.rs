//! The identity service: accounts, users, roles, invitations and account ownership.
//!
//! Layers, one direction of dependency: `api` (tonic handlers: decode, call a use case,
//! encode) -> `app` (use cases: one transaction each, authorisation from current data) ->
//! `sagas` (the cross-service operations: step order, compensation, calls to licensing) ->
//! `effects` (what use cases and saga steps share: the caller, audit, refusal reasons,
//! starting an operation, the local steps) -> `domain` (the SPEC rules as plain Rust) and
//! `store` (sqlx queries returning domain types). `notify` delivers the e-mail outbox,
//! `housekeeping` prunes old rows, `dev_clock` moves a development system's time; `server`
//! wires it all to a socket.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod demo;
pub mod dev_clock;
pub mod domain;
pub mod effects;
pub mod gauges;
pub mod housekeeping;
pub mod notify;
pub mod sagas;
pub mod server;
pub mod store;

pub use server::{IdentityArgs, PeerArgs, Server, Settings};
