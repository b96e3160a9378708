//! Licensing's rules as plain Rust (no tonic, no sqlx): the model, who may do what, seat
//! capacity, content transfer rules and refund proration.

pub mod access;
pub mod error;
pub mod events;
pub mod model;
pub mod proration;
pub mod seats;
pub mod transfer;

pub use error::DomainError;
