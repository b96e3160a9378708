//! Reading licensing's audit trail (SPEC R33): what changed in an account's seats, licenses,
//! phone numbers, content and billing, and what was refused.

use super::Result;
use crate::domain::access::{Caller, Privilege};
use crate::domain::model::Id;
use crate::store::Conn;
use crate::store::audit::{self, StoredEvent};

/// Newest first: the owner, holders of the view-audit privilege, operators and identity.
pub async fn list(
    tx: &mut Conn,
    caller: &Caller,
    account: &Id,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<StoredEvent>> {
    if !matches!(caller, Caller::Member(member) if member.is_owner && member.is_active()) {
        caller.reader_with(Privilege::ViewAudit)?;
    }
    Ok(audit::list(tx, account.as_str(), before, limit).await?)
}
