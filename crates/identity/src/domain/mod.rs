//! The identity rules as plain Rust: value types that can only hold valid data, the model,
//! which role grants what, and the checks SPEC R1-R3, R7-R11, R15-R20, R26-R29 impose. Nothing
//! here knows about gRPC or SQL; most unit tests live here, named after the rule they check.

pub mod addresses;
pub mod auto_delete;
pub mod bulk;
pub mod error;
pub mod events;
#[cfg(test)]
mod fixtures;
pub mod model;
pub mod ownership_requests;
pub mod privileges;
pub mod rules;
pub mod settings;
pub mod step_up;
pub mod values;

pub use error::DomainError;
