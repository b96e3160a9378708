//! Dry runs (`validate_only`): identity's checks of one user's removal as its saga's start
//! would make them ([`check_as`], for the single call in `app::dry_run` and each bulk row), and
//! licensing's half, what the saga would reclaim, move and leave, asked of licensing, which
//! changes nothing for it. The answer has the shape of the saga's own result, with `validate_only: true`, so
//! a caller reads a dry run and the real run the same way.

use roster_workflow::Engine;
use serde_json::{Value, json};

use super::licensing::TransferSpec;
use super::licensing::{Answer, Licensing, counts_json, license_set_json};
use super::removal::{Mode, TransferRequest};
use super::{lifecycle, removal};
use crate::domain::DomainError;
use crate::domain::bulk::BulkAction;
use crate::domain::model::User;
use crate::domain::privileges::Actor;
use crate::domain::rules;
use crate::domain::values::{AccountId, UserId};
use crate::effects;
use crate::store::Conn;

/// A call identity would let start: what licensing is then asked to preview.
#[derive(Debug, Clone)]
pub struct Checked {
    pub action: BulkAction,
    pub account: AccountId,
    pub user: UserId,
    pub transfer: Option<TransferSpec>,
}

/// The checks of `action` by `actor` on `target`, in the order the real call makes them: its
/// rules, then the saga's start, which is refused while another operation works on the user.
pub async fn check_as(
    conn: &mut Conn,
    engine: &Engine,
    action: BulkAction,
    actor: &Actor,
    account: &AccountId,
    target: &User,
    transfer: Option<TransferRequest>,
) -> effects::Result<Checked> {
    let transfer = match action {
        BulkAction::Deactivate => {
            rules::check_deactivation(actor, target)?;
            None
        }
        BulkAction::Unlink => removal::check_removal_as(conn, Mode::Unlink, actor, account, target, transfer).await?,
        BulkAction::Delete => removal::check_removal_as(conn, Mode::Delete, actor, account, target, transfer).await?,
    };
    if let Some(operation_id) = engine.running_on(conn, target.id.as_str()).await? {
        return Err(DomainError::OperationInProgress { operation_id }.into());
    }
    Ok(Checked { action, account: account.clone(), user: target.id.clone(), transfer })
}

/// The result the saga would end with; licensing's refusal (a target without the license
/// for a kind, 300) as the saga would meet it.
pub async fn preview(licensing: &Licensing, checked: &Checked) -> Answer<Value> {
    let (account, user) = (checked.account.as_str(), checked.user.as_str());
    let preview = licensing.preview_removal(account, user, checked.transfer.as_ref()).await?;
    let mut result = json!({
        "validate_only": true,
        "user_id": user,
        "reclaimed": license_set_json(&preview.licenses.unwrap_or_default()),
    });
    let remaining = counts_json(&preview.remaining.unwrap_or_default());
    let transferred = match &checked.transfer {
        Some(_) => counts_json(&preview.transferred.unwrap_or_default()),
        None => Value::Null,
    };
    match checked.action {
        BulkAction::Deactivate => {}
        BulkAction::Unlink => {
            result["transferred"] = transferred;
            result["rehomed"] = remaining;
        }
        BulkAction::Delete => {
            result["transferred"] = transferred;
            result["deleted"] = remaining;
        }
    }
    Ok(result)
}

/// The kind of the single-user operation `action` starts.
pub fn operation_kind(action: BulkAction) -> &'static str {
    match action {
        BulkAction::Deactivate => lifecycle::DEACTIVATE,
        BulkAction::Unlink => removal::UNLINK,
        BulkAction::Delete => removal::DELETE,
    }
}
