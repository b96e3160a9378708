//! Use cases: each runs inside the caller's transaction, locks the account it changes, loads
//! the caller from current data (SPEC R34), applies the domain rules, then writes the change,
//! its audit record (R33) and any e-mails (R35) so they commit together. A use case that
//! needs licensing starts a saga (`sagas`) in that same transaction; what use cases share with
//! saga steps lives below both, in `effects`.

pub mod accounts;
pub mod auto_delete;
pub mod bulk;
pub mod directory;
pub mod dry_run;
pub mod emails;
pub mod events;
pub mod invitations;
pub mod operations;
pub mod ownership_requests;
pub mod roles;
pub mod secrets;
pub mod settings;
pub mod step_up;
pub mod users;
