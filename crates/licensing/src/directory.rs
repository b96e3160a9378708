//! Licensing's window on identity: a gRPC client of `roster.identity.v1.DirectoryService`
//! that asks who a user is in an account right now (SPEC R31, R34).
//!
//! Answers may be cached for a few seconds ([`Freshness::Cached`]) where a slightly stale
//! answer is harmless: reads of non-billing data. Every change and every billing read asks
//! identity afresh, so a demoted admin or a previous owner (SPEC R5) is refused at once.

use std::sync::Arc;
use std::time::Duration;

use roster_platform::auth::{ServiceCredentials, Signer};
use roster_platform::peer::{PeerChannel, PeerSettings, PeerUrlError};
use roster_platform::tls::ClientTls;
use roster_proto::identity::v1 as pb;
use roster_proto::identity::v1::directory_service_client::DirectoryServiceClient;
use tonic_types::StatusExt;

use crate::domain::DomainError;
use crate::domain::access::{Member, MemberStatus, Privilege};
use crate::domain::model::Id;

/// The principal name licensing presents to identity.
pub use roster_platform::auth::LICENSING_SERVICE;

/// Cached answers never outlive this, whatever is configured.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(5);

/// Entries kept at most (bounds memory under a scan of many users); the least used go first.
const MAX_CACHE_ENTRIES: u64 = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// A cached answer of at most the configured age will do.
    Cached,
    /// Ask identity now.
    Fresh,
}

/// Why identity could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Refused(#[from] DomainError),
    /// Identity is down or slow: the caller should retry (UNAVAILABLE).
    #[error("identity is unavailable: {0}")]
    Unavailable(String),
    #[error("identity answered unexpectedly: {0}")]
    Unexpected(String),
}

/// Identity's recent answers by (account, user); `moka` expires each after the TTL and bounds
/// the count.
type MemberCache = moka::sync::Cache<(Id, Id), Member>;

#[derive(Clone)]
pub struct Directory {
    client: DirectoryServiceClient<PeerChannel>,
    credentials: ServiceCredentials,
    cache: MemberCache,
    ttl: Duration,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl Directory {
    /// Asks identity at `urls` (e.g. `http://127.0.0.1:50051`; a name is spread over all its
    /// addresses, see `roster_platform::peer`); `ttl` is capped at [`MAX_CACHE_TTL`].
    pub fn new(urls: &str, signer: Arc<Signer>, ttl: Duration, tls: Option<ClientTls>) -> Result<Self, PeerUrlError> {
        let settings = PeerSettings { connect_timeout: Duration::from_secs(2), call_cap: Duration::from_secs(5), tls };
        let channel = PeerChannel::new(urls, settings)?;
        Ok(Self {
            client: DirectoryServiceClient::new(channel),
            credentials: ServiceCredentials::new(signer, LICENSING_SERVICE),
            cache: moka::sync::Cache::builder()
                .max_capacity(MAX_CACHE_ENTRIES)
                .time_to_live(ttl.min(MAX_CACHE_TTL))
                .build(),
            ttl: ttl.min(MAX_CACHE_TTL),
        })
    }

    /// A user of `account` in any status. A user of another account is `UserNotFound`.
    pub async fn member(&self, account: &Id, user: &Id, freshness: Freshness) -> Result<Member, LookupError> {
        let key = (account.clone(), user.clone());
        if freshness == Freshness::Cached
            && let Some(member) = self.cache.get(&key)
        {
            return Ok(member);
        }
        let request = self
            .credentials
            .request(pb::GetMemberRequest { account_id: account.to_string(), user_id: user.to_string() });
        let answer = self.client.clone().get_member(request).await.map_err(lookup_error)?.into_inner();
        let member = member_from_pb(account, user, &answer);
        self.cache.insert(key, member.clone());
        Ok(member)
    }

    /// The users of `account` among `users`, asked afresh in one call (and kept for cached
    /// reads); users not in the account are left out.
    pub async fn members(&self, account: &Id, users: &[Id]) -> Result<Vec<Member>, LookupError> {
        let request = self.credentials.request(pb::GetMembersRequest {
            account_id: account.to_string(),
            user_ids: users.iter().map(Id::to_string).collect(),
        });
        let answer = self.client.clone().get_members(request).await.map_err(lookup_error)?.into_inner();
        let mut members = Vec::with_capacity(answer.members.len());
        for found in &answer.members {
            let Some(user) = users.iter().find(|user| user.as_str() == found.user_id) else { continue };
            let member = member_from_pb(account, user, found);
            self.cache.insert((account.clone(), user.clone()), member.clone());
            members.push(member);
        }
        Ok(members)
    }

    /// Fails with `AccountNotFound` unless the account exists.
    pub async fn account_exists(&self, account: &Id) -> Result<(), LookupError> {
        self.lookup(account, false).await
    }

    /// Whether identity knows the account, open or closed (its records remain).
    pub async fn account_known(&self, account: &Id) -> Result<(), LookupError> {
        self.lookup(account, true).await
    }

    async fn lookup(&self, account: &Id, include_closed: bool) -> Result<(), LookupError> {
        let message = pb::LookupAccountRequest { account_id: account.to_string(), include_closed };
        self.client.clone().lookup_account(self.credentials.request(message)).await.map_err(lookup_error)?;
        Ok(())
    }
}

fn member_from_pb(account: &Id, user: &Id, answer: &pb::Member) -> Member {
    let status = match answer.status() {
        pb::UserStatus::Active => MemberStatus::Active,
        pb::UserStatus::Deactivated => MemberStatus::Deactivated,
        pb::UserStatus::Pending | pb::UserStatus::Unspecified => MemberStatus::Pending,
    };
    let privileges = answer
        .privileges()
        .filter_map(|p| match p {
            pb::Privilege::ManageUsers => Some(Privilege::ManageUsers),
            pb::Privilege::ManageLicenses => Some(Privilege::ManageLicenses),
            pb::Privilege::ViewBilling => Some(Privilege::ViewBilling),
            pb::Privilege::ViewAudit => Some(Privilege::ViewAudit),
            _ => None,
        })
        .collect();
    let is_admin = answer.role == pb::RoleKind::Admin as i32;
    Member {
        account_id: account.clone(),
        user_id: user.clone(),
        status,
        is_owner: answer.is_owner,
        is_admin,
        privileges,
    }
}

fn lookup_error(status: tonic::Status) -> LookupError {
    let reason = status.get_details_error_info().map(|info| info.reason).unwrap_or_default();
    match (status.code(), reason.as_str()) {
        (tonic::Code::NotFound, "ACCOUNT_NOT_FOUND") => DomainError::AccountNotFound.into(),
        (tonic::Code::NotFound, "USER_NOT_FOUND") => DomainError::UserNotFound.into(),
        (tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled, _) => {
            LookupError::Unavailable(status.message().to_owned())
        }
        _ => LookupError::Unexpected(format!("{:?}: {}", status.code(), status.message())),
    }
}
