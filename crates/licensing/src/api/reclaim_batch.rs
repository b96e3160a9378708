//! `ReclaimLicensesBatch`: the reclaim saga step for many users of one account in one
//! transaction, so a bulk removal takes the account's lock once per batch instead of once per
//! user. Each item keeps the idempotency key of its own `ReclaimLicenses` call, so a retry in
//! either form replays the first answer.

use futures_util::future::join_all;
use roster_platform::auth::Principal;
use roster_platform::idempotency::{self, Key, MAX_REQUEST_ID_LEN};
use roster_platform::status;
use roster_proto::licensing::v1 as pb;
use tonic::Status;

use super::{Api, convert, error};
use crate::app::{self, Ctx, licenses};
use crate::directory::Freshness;
use crate::domain::access::Member;
use crate::domain::model::Id;
use crate::store;

/// Most items in one batch: a batch holds the account's lock for its whole transaction.
pub const MAX_ITEMS: usize = 256;

/// The path each item's idempotency key is scoped by: that of the single call.
const RECLAIM_PATH: &str = "/roster.licensing.v1.LicenseService/ReclaimLicenses";

/// One item, checked: its key and what identity says of its user.
struct Item {
    key: Key,
    request_id: String,
    member: Result<Member, app::Error>,
}

impl Api {
    pub(super) async fn reclaim_batch(
        &self,
        who: &Principal,
        request: pb::ReclaimLicensesBatchRequest,
    ) -> Result<pb::ReclaimLicensesBatchResponse, Status> {
        let account = convert::id("account_id", &request.account_id)?;
        let checked = checked_items(who, &account, &request.items)?;
        let caller = self.caller(who, &account, Freshness::Fresh).await?;
        if let Err(refusal) = caller.may_change().and_then(|()| caller.identity()) {
            let ctx = self.ctx(who, "");
            return Err(self.refused(&ctx, &account, app::actions::LICENSES_RECLAIMED, &refusal).await);
        }
        // Identity is asked about every user at once, before the lock is taken.
        let members = join_all(checked.iter().map(|(_, user)| app::subject(&self.directory, &account, user))).await;
        let items: Vec<Item> = checked
            .into_iter()
            .zip(request.items)
            .zip(members)
            .map(|(((key, _), item), member)| Item { key, request_id: item.request_id, member })
            .collect();
        let now_ms = self.clock.now_ms();
        let mut tx = self.db.begin().await.map_err(|e| status::from_db(&e))?;
        // Under the lock no twin of an item can commit elsewhere, so each lookup below stays
        // true until this commit; an item repeating an earlier one's request id finds that
        // one's record, written in this transaction.
        store::lock_account(&mut tx, &account).await.map_err(|e| status::from_db(&e))?;
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let result = match idempotency::lookup::<pb::ReclaimLicensesResponse>(&mut tx, &item.key).await {
                Ok(Some(earlier)) => reclaimed(earlier.reclaimed.unwrap_or_default()),
                Err(reused) => refused(pb::ItemRefusal {
                    reason: "REQUEST_ID_REUSED".into(),
                    code: String::new(),
                    message: reused.message().to_owned(),
                }),
                Ok(None) => match item.member {
                    Err(app::Error::Domain(refusal)) => refused(error::item_refusal(&refusal)),
                    Err(other) => return Err(error::to_status(other)),
                    Ok(member) => {
                        let ctx = Ctx { principal: who.clone(), request_id: item.request_id, now_ms };
                        let taken = licenses::reclaim_locked(&mut tx, &ctx, &account, &member.user_id)
                            .await
                            .map_err(error::to_status)?;
                        let response =
                            pb::ReclaimLicensesResponse { reclaimed: Some(convert::license_set_to_pb(&taken)) };
                        idempotency::record(&mut tx, &item.key, &response, now_ms).await?;
                        reclaimed(response.reclaimed.unwrap_or_default())
                    }
                },
            };
            results.push(result);
        }
        tx.commit().await.map_err(|e| status::from_commit(&e))?;
        Ok(pb::ReclaimLicensesBatchResponse { results })
    }
}

fn reclaimed(set: pb::LicenseSet) -> pb::ReclaimLicensesResult {
    pb::ReclaimLicensesResult { reclaimed: Some(set), refused: None }
}

fn refused(refusal: pb::ItemRefusal) -> pb::ReclaimLicensesResult {
    pb::ReclaimLicensesResult { reclaimed: None, refused: Some(refusal) }
}

/// Each item's idempotency key (as its single call's) and user, or the first bad field. A
/// request id may come twice (a step run again while its first run still waits): the later
/// item is answered as a retry of the earlier one.
fn checked_items(who: &Principal, account: &Id, items: &[pb::ReclaimLicensesItem]) -> Result<Vec<(Key, Id)>, Status> {
    if items.is_empty() {
        return Err(status::invalid_argument("items", "name at least one user"));
    }
    if items.len() > MAX_ITEMS {
        return Err(status::invalid_argument("items", format!("at most {MAX_ITEMS} per batch; got {}", items.len())));
    }
    let principal = who.audit_name();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |name: &str| format!("items[{i}].{name}");
            if item.request_id.trim().is_empty() || item.request_id.len() > MAX_REQUEST_ID_LEN {
                let why = format!("is required, at most {MAX_REQUEST_ID_LEN} bytes, unique per change");
                return Err(status::invalid_argument(&field("request_id"), why));
            }
            let user = Id::parse(&item.user_id).map_err(|why| status::invalid_argument(&field("user_id"), why))?;
            let single = pb::ReclaimLicensesRequest {
                request_id: item.request_id.clone(),
                account_id: account.to_string(),
                user_id: item.user_id.clone(),
            };
            Ok((Key::new(&principal, RECLAIM_PATH, &item.request_id, &single)?, user))
        })
        .collect()
}
