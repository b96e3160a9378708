//! Use cases: each runs inside one transaction, takes its account's lock before it changes
//! anything, checks the caller (resolved from identity's current data by [`resolve_caller`])
//! and writes the change together with its audit record (SPEC R33).
//!
//! Identity is asked *before* the transaction opens, so no database connection is held while
//! waiting on the network (SQLite has only one).

pub mod actions;
pub mod audit_trail;
pub mod billing;
pub mod content;
pub mod licenses;

use roster_platform::auth::Principal;

use crate::directory::{Directory, Freshness, LookupError};
use roster_platform::event_log::NewEvent;
use roster_platform::folded;

use crate::domain::DomainError;
use crate::domain::access::{Caller, IDENTITY_SERVICE, Member};
use crate::domain::events::Change;
use crate::domain::model::Id;
use crate::store::{self, Conn};

/// Who is calling, for which request, at what time.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub principal: Principal,
    /// The client's request id; empty for reads.
    pub request_id: String,
    pub now_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Identity(LookupError),
}

impl From<LookupError> for Error {
    fn from(error: LookupError) -> Self {
        match error {
            LookupError::Refused(refusal) => Self::Domain(refusal),
            other => Self::Identity(other),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The caller as identity describes them in `account` right now (or within the cache age for
/// [`Freshness::Cached`]). Users of other accounts and unknown accounts read as "account not
/// found", so nothing leaks (SPEC R34).
pub async fn resolve_caller(
    directory: &Directory,
    principal: &Principal,
    account: &Id,
    freshness: Freshness,
) -> Result<Caller> {
    match principal {
        Principal::User { user_id } => {
            let user = Id::parse(user_id).map_err(|_| DomainError::AccountNotFound)?;
            match directory.member(account, &user, freshness).await {
                Ok(member) => Ok(Caller::Member(member)),
                Err(LookupError::Refused(DomainError::UserNotFound)) => Err(DomainError::AccountNotFound.into()),
                Err(other) => Err(other.into()),
            }
        }
        Principal::Operator { name } => {
            directory.account_exists(account).await?;
            Ok(Caller::Operator(name.clone()))
        }
        // Identity is where accounts live; asking it whether its own saga's account exists
        // would also refuse the account an invitee just left (closed, yet still owed a
        // refund, SPEC R28).
        Principal::Service { name } if name == IDENTITY_SERVICE => Ok(Caller::Identity),
        Principal::Service { name } => Ok(Caller::OtherService(name.clone())),
    }
}

/// [`resolve_caller`] for reads of what an account keeps after it closes (its billing):
/// operators are admitted for a closed account too, since support answers questions about
/// it; anyone else is resolved as usual.
pub async fn resolve_record_reader(directory: &Directory, principal: &Principal, account: &Id) -> Result<Caller> {
    match principal {
        Principal::Operator { name } => {
            directory.account_known(account).await?;
            Ok(Caller::Operator(name.clone()))
        }
        _ => resolve_caller(directory, principal, account, Freshness::Fresh).await,
    }
}

/// A user of `account` who is to hold or receive something, asked afresh (SPEC R31).
pub async fn subject(directory: &Directory, account: &Id, user: &Id) -> Result<Member> {
    Ok(directory.member(account, user, Freshness::Fresh).await?)
}

/// Appends a successful change to the audit trail, in the change's transaction.
pub async fn audit(
    tx: &mut Conn,
    ctx: &Ctx,
    account: &Id,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<()> {
    let (principal, details) = (ctx.principal.audit_name(), details.to_string());
    let event = audit_event(ctx, account, &principal, action, target, "ok", &details);
    folded::write_last(tx, |write| store::audit::insert_into(write, &event)).await?;
    Ok(())
}

/// Appends `change` to the event log in the change's own transaction, so the event is in the
/// log exactly when the change committed. A saga step's event names its operation, which the
/// step's request id carries (`wf:<operation>:<step>:<direction>`).
pub async fn emit(tx: &mut Conn, ctx: &Ctx, account: &Id, change: Change) -> Result<()> {
    let payload = serde_json::to_string(&change).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    let operation_id = match (&ctx.principal, ctx.request_id.strip_prefix("wf:")) {
        (Principal::Service { name }, Some(rest)) if name == IDENTITY_SERVICE => {
            rest.split(':').next().unwrap_or_default().to_owned()
        }
        _ => String::new(),
    };
    let event = NewEvent {
        at_ms: ctx.now_ms,
        account_id: account.to_string(),
        subject: change.subject(account.as_str()),
        kind: change.kind(),
        request_id: ctx.request_id.clone(),
        operation_id,
        principal: ctx.principal.audit_name(),
        payload,
    };
    folded::write_last(tx, |write| roster_platform::event_log::store::append_into(write, &event)).await?;
    Ok(())
}

/// Records a refused change once the change has rolled back, on a connection of its own.
pub async fn audit_refusal(tx: &mut Conn, ctx: &Ctx, account: &Id, action: &str, reason: &str) -> Result<()> {
    let (principal, outcome) = (ctx.principal.audit_name(), format!("refused:{reason}"));
    store::audit::insert(tx, &audit_event(ctx, account, &principal, action, "", &outcome, "{}")).await?;
    Ok(())
}

fn audit_event<'a>(
    ctx: &'a Ctx,
    account: &'a Id,
    principal: &'a str,
    action: &'a str,
    target: &'a str,
    outcome: &'a str,
    details_json: &'a str,
) -> store::audit::AuditEvent<'a> {
    store::audit::AuditEvent {
        account_id: account.as_str(),
        principal,
        action,
        target,
        outcome,
        request_id: &ctx.request_id,
        details_json,
        at_ms: ctx.now_ms,
    }
}
