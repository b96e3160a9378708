//! Identity's client of licensing: the saga step RPCs and the reads sagas decide by. Calls
//! carry identity's service token and a deadline well inside the workflow lease; answers map
//! to step outcomes (a lost connection is transient, a refusal is a business refusal).

use std::sync::Arc;
use std::time::Duration;

use roster_platform::auth::{ServiceCredentials, Signer};
use roster_proto::licensing::v1 as pb;
use roster_proto::licensing::v1::billing_service_client::BillingServiceClient;
use roster_proto::licensing::v1::content_service_client::ContentServiceClient;
use roster_proto::licensing::v1::license_service_client::LicenseServiceClient;

pub use super::answers::Answer;
use super::answers::step_error;
use super::reclaim_batch::ReclaimBatcher;
use crate::domain::rules::PhoneHoldings;
use roster_platform::peer::{PeerChannel, PeerSettings, PeerUrlError};
use roster_platform::tls::ClientTls;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The principal name identity presents to licensing; licensing runs saga steps for it only.
pub use roster_platform::auth::IDENTITY_SERVICE;

/// The longest a call may take (less when the RPC making it has less left). The workflow
/// lease (30 s by default) must outlast it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Which content goes to whom: kinds as "meeting", "webinar", "event", "recording".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferSpec {
    pub target_user_id: String,
    pub kinds: Vec<String>,
}

impl TransferSpec {
    pub fn kinds(&self) -> Vec<pb::ContentKind> {
        self.kinds
            .iter()
            .filter_map(|k| pb::ContentKind::from_str_name(&format!("CONTENT_KIND_{}", k.to_ascii_uppercase())))
            .collect()
    }
}

#[derive(Clone)]
pub struct Licensing {
    licenses: LicenseServiceClient<PeerChannel>,
    content: ContentServiceClient<PeerChannel>,
    billing: BillingServiceClient<PeerChannel>,
    credentials: ServiceCredentials,
    reclaims: ReclaimBatcher,
}

impl std::fmt::Debug for Licensing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Licensing").finish_non_exhaustive()
    }
}

impl Licensing {
    /// Calls licensing at `urls` (e.g. `http://127.0.0.1:50052`; a name is spread over all its
    /// addresses, see `roster_platform::peer`), and starts the reclaim batching task (so: inside
    /// the Tokio runtime).
    pub fn new(urls: &str, signer: Arc<Signer>, tls: Option<ClientTls>) -> Result<Self, PeerUrlError> {
        let settings = PeerSettings { connect_timeout: Duration::from_secs(2), call_cap: CALL_TIMEOUT, tls };
        let channel = PeerChannel::new(urls, settings)?;
        let licenses = LicenseServiceClient::new(channel.clone());
        let credentials = ServiceCredentials::new(signer, IDENTITY_SERVICE);
        Ok(Self {
            reclaims: ReclaimBatcher::spawn(licenses.clone(), credentials.clone()),
            licenses,
            content: ContentServiceClient::new(channel.clone()),
            billing: BillingServiceClient::new(channel),
            credentials,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.credentials.request(message)
    }

    /// Takes every license and number from `user`; sent together with the reclaims other
    /// sagas of the account make at the same time (see `reclaim_batch`).
    pub async fn reclaim(&self, request_id: String, account: &str, user: &str) -> Answer<pb::LicenseSet> {
        self.reclaims.reclaim(request_id, account, user).await
    }

    pub async fn restore(
        &self,
        request_id: String,
        account: &str,
        user: &str,
        licenses: pb::LicenseSet,
    ) -> Answer<pb::RestoreLicensesResponse> {
        let request = pb::RestoreLicensesRequest {
            request_id,
            account_id: account.into(),
            user_id: user.into(),
            licenses: Some(licenses),
        };
        Ok(self.licenses.clone().restore_licenses(self.request(request)).await.map_err(step_error)?.into_inner())
    }

    pub async fn move_phone(&self, request_id: String, account: &str, from: &str, to: &str) -> Answer<pb::LicenseSet> {
        let request = pb::MovePhoneLicensesRequest {
            request_id,
            account_id: account.into(),
            from_user_id: from.into(),
            to_user_id: to.into(),
        };
        let answer = self.licenses.clone().move_phone_licenses(self.request(request)).await.map_err(step_error)?;
        Ok(answer.into_inner().moved.unwrap_or_default())
    }

    pub async fn transfer_content(
        &self,
        request_id: String,
        account: &str,
        from: &str,
        to: &str,
        kinds: Vec<pb::ContentKind>,
    ) -> Answer<pb::TransferContentResponse> {
        let request = pb::TransferContentRequest {
            request_id,
            account_id: account.into(),
            from_user_id: from.into(),
            to_user_id: to.into(),
            kinds: kinds.into_iter().map(|k| k as i32).collect(),
        };
        Ok(self.content.clone().transfer_content(self.request(request)).await.map_err(step_error)?.into_inner())
    }

    pub async fn undo_transfer(&self, request_id: String, account: &str, transfer: &str) -> Answer<pb::ContentCounts> {
        let request =
            pb::UndoContentTransferRequest { request_id, account_id: account.into(), transfer_id: transfer.into() };
        let answer = self.content.clone().undo_content_transfer(self.request(request)).await.map_err(step_error)?;
        Ok(answer.into_inner().returned.unwrap_or_default())
    }

    pub async fn delete_content(&self, request_id: String, account: &str, user: &str) -> Answer<pb::ContentCounts> {
        let request = pb::DeleteUserContentRequest { request_id, account_id: account.into(), user_id: user.into() };
        let answer = self.content.clone().delete_user_content(self.request(request)).await.map_err(step_error)?;
        Ok(answer.into_inner().deleted.unwrap_or_default())
    }

    pub async fn rehome_content(
        &self,
        request_id: String,
        account: &str,
        user: &str,
        new_account: &str,
    ) -> Answer<pb::ContentCounts> {
        let request = pb::RehomeUserContentRequest {
            request_id,
            account_id: account.into(),
            user_id: user.into(),
            new_account_id: new_account.into(),
        };
        let answer = self.content.clone().rehome_user_content(self.request(request)).await.map_err(step_error)?;
        Ok(answer.into_inner().moved.unwrap_or_default())
    }

    /// What removing `user` would reclaim, move to the transfer's target and leave with them;
    /// refused as the transfer itself would be. Licensing changes nothing for it.
    pub async fn preview_removal(
        &self,
        account: &str,
        user: &str,
        transfer: Option<&TransferSpec>,
    ) -> Answer<pb::UserRemovalPreview> {
        let request = pb::PreviewUserRemovalRequest {
            account_id: account.into(),
            user_id: user.into(),
            to_user_id: transfer.map(|t| t.target_user_id.clone()).unwrap_or_default(),
            kinds: transfer.map(|t| t.kinds().into_iter().map(|k| k as i32).collect()).unwrap_or_default(),
        };
        Ok(self.content.clone().preview_user_removal(self.request(request)).await.map_err(step_error)?.into_inner())
    }

    /// Refunds `subscription` of `account` to `beneficiary`, the user who paid for it.
    pub async fn refund(
        &self,
        request_id: String,
        account: &str,
        subscription: &str,
        beneficiary: &str,
    ) -> Answer<pb::Refund> {
        let request = pb::RefundSubscriptionRequest {
            request_id,
            account_id: account.into(),
            subscription_id: subscription.into(),
            beneficiary_user_id: beneficiary.into(),
        };
        Ok(self.billing.clone().refund_subscription(self.request(request)).await.map_err(step_error)?.into_inner())
    }

    pub async fn subscriptions(&self, account: &str) -> Answer<Vec<pb::Subscription>> {
        let request = pb::GetBillingOverviewRequest { account_id: account.into() };
        let answer = self.billing.clone().get_billing_overview(self.request(request)).await.map_err(step_error)?;
        Ok(answer.into_inner().subscriptions)
    }

    pub async fn seats(&self, account: &str) -> Answer<Vec<pb::SeatPool>> {
        let request = pb::ListSeatsRequest { account_id: account.into() };
        Ok(self.licenses.clone().list_seats(self.request(request)).await.map_err(step_error)?.into_inner().seats)
    }

    /// What one user holds: license types and attached phone numbers.
    /// What the owner's phone licenses and numbers are, and whether the new owner holds a phone
    /// license: what SPEC R4 decides on, read fresh from licensing.
    pub async fn phone_holdings(&self, account: &str, owner: &str, new_owner: &str) -> Answer<PhoneHoldings> {
        let held = self.holdings(account, owner).await?;
        let target = self.holdings(account, new_owner).await?;
        let phone = pb::LicenseType::Phone as i32;
        Ok(PhoneHoldings {
            owner_has_phone_license: held.license_types.contains(&phone),
            owner_numbers: held.phone_numbers,
            new_owner_has_phone_license: target.license_types.contains(&phone),
        })
    }

    pub async fn holdings(&self, account: &str, user: &str) -> Answer<pb::LicenseSet> {
        let request = pb::ListAssignmentsRequest {
            account_id: account.into(),
            user_id: user.into(),
            page_size: 100,
            ..Default::default()
        };
        let assignments =
            self.licenses.clone().list_assignments(self.request(request)).await.map_err(step_error)?.into_inner();
        let request = pb::ListPhoneNumbersRequest { account_id: account.into() };
        let numbers =
            self.licenses.clone().list_phone_numbers(self.request(request)).await.map_err(step_error)?.into_inner();
        Ok(pb::LicenseSet {
            license_types: assignments.assignments.iter().map(|a| a.license_type).collect(),
            phone_numbers: numbers.phone_numbers.into_iter().filter(|n| n.user_id == user).map(|n| n.number).collect(),
        })
    }
}

/// The lower-case name of a license type ("licensed", "phone"), as results show it.
fn license_name(value: i32) -> String {
    pb::LicenseType::try_from(value)
        .map(|t| t.as_str_name().trim_start_matches("LICENSE_TYPE_").to_ascii_lowercase())
        .unwrap_or_else(|_| value.to_string())
}

/// A license set as workflow data and operation results show it.
pub fn license_set_json(set: &pb::LicenseSet) -> Value {
    json!({
        "license_types": set.license_types.iter().map(|t| license_name(*t)).collect::<Vec<_>>(),
        "phone_numbers": set.phone_numbers,
    })
}

/// Reads back [`license_set_json`]; unknown names are dropped (they cannot be restored).
pub fn license_set_pb(value: &Value) -> pb::LicenseSet {
    let names = value["license_types"].as_array().cloned().unwrap_or_default();
    let numbers = value["phone_numbers"].as_array().cloned().unwrap_or_default();
    pb::LicenseSet {
        license_types: names
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|n| pb::LicenseType::from_str_name(&format!("LICENSE_TYPE_{}", n.to_ascii_uppercase())))
            .map(|t| t as i32)
            .collect(),
        phone_numbers: numbers.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
    }
}

pub fn counts_json(counts: &pb::ContentCounts) -> Value {
    json!({
        "meetings": counts.meetings,
        "webinars": counts.webinars,
        "events": counts.events,
        "recordings": counts.recordings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn license_sets_survive_the_round_trip_through_workflow_data() {
        let set = pb::LicenseSet {
            license_types: vec![pb::LicenseType::Licensed as i32, pb::LicenseType::Phone as i32],
            phone_numbers: vec!["+31201234567".into()],
        };
        let stored = license_set_json(&set);
        assert_eq!(stored["license_types"], json!(["licensed", "phone"]));
        assert_eq!(license_set_pb(&stored), set);
    }
}
