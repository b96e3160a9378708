//! Dry runs (`validate_only`), licensing's half: what the saga of a call identity has checked
//! (`app::dry_run`) would reclaim, move and leave, asked of licensing, which changes nothing
//! for it. The answer has the shape of the saga's own result, with `validate_only: true`, so
//! a caller reads a dry run and the real run the same way.

use serde_json::{Value, json};

use super::licensing::{Answer, Licensing, counts_json, license_set_json};
use super::{lifecycle, removal};
use crate::app::dry_run::Checked;
use crate::domain::bulk::BulkAction;

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
