//! The calls measured against Roster, and what they need set up, all through the API: the
//! demo's tokens, and eight more accounts (one per caller, so writes can spread across
//! accounts), each with seats, a licensed owner, a member to license and to deactivate, and
//! users with a meeting each to unlink.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use roster_e2e::{Error, authed};
use roster_platform::auth::{KeyDir, KeyScope, Principal, SignerSet};
use roster_platform::db::Database;
use roster_proto::identity::v1 as pb;
use roster_proto::licensing::v1 as lpb;
use roster_proto::operations::v1 as ops;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Clone, Copy)]
pub enum Workload {
    /// `grpc.health.v1.Health/Check`: no token, no database.
    Health,
    /// `GetAccount` with a malformed id: the token is verified, then the request is refused
    /// before any database work.
    AuthRefused,
    GetAccount,
    GetUser,
    /// Each caller's account's owner reads its member (one account per caller).
    GetUserAcrossAccounts,
    /// Invitations spread over eight accounts, one per caller.
    InviteAcrossAccounts,
    /// Every invitation into the demo account: they share its lock.
    InviteOneAccount,
    /// A license given to, then taken from, each account's member (one account per caller).
    AssignAcrossAccounts,
    /// A license taken from, then given back to, one user per caller, all in one account:
    /// they share licensing's lock on the account's seats.
    AssignOneAccount,
    /// The deactivate saga, then the reactivate saga, on each account's member.
    DeactivateReactivate,
    /// The unlink saga with the user's meetings moving to the owner; each call uses up a user.
    UnlinkWithTransfer,
}

impl Workload {
    /// Steps in each saga the workload runs; 0 for a single-transaction call.
    pub fn saga_steps(self) -> usize {
        match self {
            Self::DeactivateReactivate => 2,
            Self::UnlinkWithTransfer => 4,
            _ => 0,
        }
    }
}

/// One of the accounts the writes spread over.
struct BenchAccount {
    id: String,
    owner_id: String,
    owner_token: String,
    member_id: String,
    /// Users with a meeting each, unlinked one by one.
    leavers: Vec<String>,
}

struct Inner {
    identity: Channel,
    licensing: Channel,
    demo: HashMap<String, String>,
    accounts: Vec<BenchAccount>,
    run: u128,
    /// Runs handed out so far by [`Setup::caller`]: each run's request ids and addresses are
    /// its own, so a second run of a workload makes new changes instead of replaying the
    /// first's (a replay costs three transactions, not one).
    rounds: AtomicU64,
}

#[derive(Clone)]
pub struct Setup(Arc<Inner>);

pub const ACCOUNTS: usize = 8;

/// What setting up needs beyond the channels.
pub struct Prepare<'a> {
    pub demo: HashMap<String, String>,
    pub keys: &'a Path,
    /// Identity's database, where the invitation codes are read from the outbox the way an
    /// invitee reads their mailbox.
    pub identity_db: &'a Database,
    pub leavers_per_account: usize,
}

impl Setup {
    pub async fn new(identity: Channel, licensing: Channel, prepare: Prepare<'_>) -> Result<Self, Error> {
        let signers =
            SignerSet::load(&KeyDir { dir: prepare.keys.to_owned() }, &[KeyScope::Users], "roster", "roster")?;
        let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
        let maker = Maker {
            identity: identity.clone(),
            licensing: licensing.clone(),
            operator: prepare.demo["OPERATOR_TOKEN"].clone(),
            signers: &signers,
            db: prepare.identity_db,
            run,
        };
        let accounts =
            futures_util::future::try_join_all((0..ACCOUNTS).map(|n| maker.account(n, prepare.leavers_per_account)))
                .await?;
        Ok(Self(Arc::new(Inner { identity, licensing, demo: prepare.demo, accounts, run, rounds: AtomicU64::new(0) })))
    }

    /// `n` more licensed members of a fresh account, for the bulk run: (account, the owner's
    /// token, the members), joined eight at a time.
    pub async fn licensed_account(
        identity: Channel,
        licensing: Channel,
        prepare: Prepare<'_>,
        n: usize,
    ) -> Result<(String, String, Vec<String>), Error> {
        let signers =
            SignerSet::load(&KeyDir { dir: prepare.keys.to_owned() }, &[KeyScope::Users], "roster", "roster")?;
        let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
        let maker = Maker {
            identity,
            licensing,
            operator: prepare.demo["OPERATOR_TOKEN"].clone(),
            signers: &signers,
            db: prepare.identity_db,
            run,
        };
        let account = maker.account(ACCOUNTS, 0).await?;
        maker.seats(&account.id, n + 2).await?;
        let mut members = Vec::with_capacity(n);
        let numbers: Vec<usize> = (0..n).collect();
        for batch in numbers.chunks(8) {
            let joined = futures_util::future::try_join_all(batch.iter().map(|i| {
                let email = format!("bulk-{run}-{i}@bench{ACCOUNTS}.example");
                let (maker, account) = (&maker, &account);
                async move {
                    let user = maker.join(&account.id, &account.owner_token, &email).await?;
                    maker.license(&account.id, &user, &account.owner_token).await?;
                    Ok::<_, Error>(user)
                }
            }))
            .await?;
            members.extend(joined);
        }
        Ok((account.id, account.owner_token, members))
    }

    /// A cloneable caller of `workload`, for [`crate::measure::run`]. Says on stderr which
    /// workload starts, to show progress and to time a profiler (`perf record -p`) by.
    pub fn caller(
        &self,
        workload: Workload,
    ) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Clone + Send + Sync + 'static
    {
        eprintln!("roster-bench: running {workload:?}");
        let setup = self.0.clone();
        let round = setup.rounds.fetch_add(1, Ordering::Relaxed);
        move |n| {
            let setup = setup.clone();
            Box::pin(async move { setup.call(workload, round, n).await })
        }
    }

    /// Bench account `n`'s id, its owner's token and its member's id.
    pub fn account(&self, n: usize) -> (String, String, String) {
        let account = &self.0.accounts[n % ACCOUNTS];
        (account.id.clone(), account.owner_token.clone(), account.member_id.clone())
    }

    pub fn identity(&self) -> Channel {
        self.0.identity.clone()
    }

    /// Users each caller of [`Workload::UnlinkWithTransfer`] can unlink.
    pub fn leavers_per_caller(&self) -> u64 {
        self.0.accounts.iter().map(|a| a.leavers.len() as u64).min().unwrap_or(0)
    }
}

/// Builds the bench accounts through the API.
struct Maker<'a> {
    identity: Channel,
    licensing: Channel,
    operator: String,
    signers: &'a SignerSet,
    db: &'a Database,
    run: u128,
}

impl Maker<'_> {
    fn token(&self, user_id: &str) -> String {
        self.signers.mint(&Principal::User { user_id: user_id.to_owned() }, now_s(), 3_600)
    }

    async fn account(&self, n: usize, leavers: usize) -> Result<BenchAccount, Error> {
        let run = self.run;
        let request = pb::CreateAccountRequest {
            request_id: format!("bench-account-{run}-{n}"),
            name: format!("Bench {n}"),
            plan: pb::Plan::Pro as i32,
            owner_email: format!("owner-{run}-{n}@bench{n}.example"),
            ..Default::default()
        };
        let mut accounts = pb::account_service_client::AccountServiceClient::new(self.identity.clone());
        let account = accounts.create_account(authed(request, &self.operator)).await?.into_inner();
        let owner = account.owner.ok_or("a new account has an owner")?.user_id;
        let owner_token = self.token(&owner);
        let seats = lpb::SetSeatsRequest {
            request_id: format!("bench-seats-{run}-{n}"),
            account_id: account.id.clone(),
            license_type: lpb::LicenseType::Licensed as i32,
            capacity: 1_000,
        };
        let mut licenses = lpb::license_service_client::LicenseServiceClient::new(self.licensing.clone());
        licenses.set_seats(authed(seats, &self.operator)).await?;
        // The owner receives unlinked users' meetings, which needs a license.
        self.license(&account.id, &owner, &owner_token).await?;
        let member_id = self.join(&account.id, &owner_token, &format!("member-{run}@bench{n}.example")).await?;
        let mut leaving = Vec::with_capacity(leavers);
        let mut content = lpb::content_service_client::ContentServiceClient::new(self.licensing.clone());
        for i in 0..leavers {
            let user = self.join(&account.id, &owner_token, &format!("leaver-{run}-{i}@bench{n}.example")).await?;
            self.license(&account.id, &user, &owner_token).await?;
            let meeting = lpb::RegisterContentRequest {
                request_id: format!("bench-meeting-{user}"),
                account_id: account.id.clone(),
                owner_user_id: user.clone(),
                kind: lpb::ContentKind::Meeting as i32,
                title: format!("Meeting of leaver {i}"),
                uses_pmi: false,
            };
            content.register_content(authed(meeting, &owner_token)).await?;
            leaving.push(user);
        }
        Ok(BenchAccount { id: account.id, owner_id: owner, owner_token, member_id, leavers: leaving })
    }

    async fn seats(&self, account: &str, capacity: usize) -> Result<(), Error> {
        let seats = lpb::SetSeatsRequest {
            request_id: format!("bench-seats-{account}-{capacity}"),
            account_id: account.to_owned(),
            license_type: lpb::LicenseType::Licensed as i32,
            capacity: u32::try_from(capacity)?,
        };
        let mut licenses = lpb::license_service_client::LicenseServiceClient::new(self.licensing.clone());
        licenses.set_seats(authed(seats, &self.operator)).await?;
        Ok(())
    }

    async fn license(&self, account: &str, user: &str, token: &str) -> Result<(), Error> {
        let request = lpb::AssignLicenseRequest {
            request_id: format!("bench-license-{user}"),
            account_id: account.to_owned(),
            user_id: user.to_owned(),
            license_type: lpb::LicenseType::Licensed as i32,
        };
        let mut licenses = lpb::license_service_client::LicenseServiceClient::new(self.licensing.clone());
        licenses.assign_license(authed(request, token)).await?;
        Ok(())
    }

    /// Invites `email` as the owner and accepts with the code from the e-mail; the new user's id.
    async fn join(&self, account: &str, owner_token: &str, email: &str) -> Result<String, Error> {
        let mut users = pb::user_service_client::UserServiceClient::new(self.identity.clone());
        let invite = pb::InviteUserRequest {
            request_id: format!("bench-invite-{email}"),
            account_id: account.to_owned(),
            email: email.to_owned(),
            ..Default::default()
        };
        let invitation = users.invite_user(authed(invite, owner_token)).await?.into_inner();
        let body: String =
            sqlx::query_scalar("SELECT body FROM outbox WHERE recipient = $1 AND kind = 'invitation' LIMIT 1")
                .bind(email)
                .fetch_one(self.db.pool())
                .await?;
        let code = body.lines().find_map(|line| line.strip_prefix("Invitation code: ")).ok_or("no code")?;
        let accept = pb::AcceptInvitationRequest { request_id: format!("bench-accept-{email}"), code: code.to_owned() };
        let accepted = users.accept_invitation(authed(accept, &self.token(&invitation.user_id))).await?.into_inner();
        succeeded(&accepted)?;
        Ok(invitation.user_id)
    }
}

/// The saga ended well within the RPC's own wait; anything else counts as a failed call.
fn succeeded(operation: &ops::Operation) -> Result<(), String> {
    if operation.state == ops::OperationState::Succeeded as i32 {
        Ok(())
    } else {
        Err(format!("operation {} ended {:?}: {:?}", operation.kind, operation.state(), operation.error))
    }
}

impl Inner {
    async fn call(&self, workload: Workload, round: u64, n: u64) -> Result<(), String> {
        let demo = &self.demo;
        let accounts = || pb::account_service_client::AccountServiceClient::new(self.identity.clone());
        let users = || pb::user_service_client::UserServiceClient::new(self.identity.clone());
        let licenses = || lpb::license_service_client::LicenseServiceClient::new(self.licensing.clone());
        let (caller, count) = ((n / 1_000_000_000) as usize, (n % 1_000_000_000) as usize);
        let mine = &self.accounts[caller % ACCOUNTS];
        let request_id = format!("bench-{workload:?}-{}-{round}-{n}", self.run);
        let done = match workload {
            Workload::Health => HealthClient::new(self.identity.clone())
                .check(HealthCheckRequest { service: String::new() })
                .await
                .map(drop),
            Workload::AuthRefused => {
                let request = pb::GetAccountRequest { account_id: "not-an-id".into() };
                match accounts().get_account(authed(request, &demo["MEMBER_TOKEN"])).await {
                    Err(status) if status.code() == tonic::Code::InvalidArgument => Ok(()),
                    other => other.map(drop),
                }
            }
            Workload::GetAccount => {
                let request = pb::GetAccountRequest { account_id: demo["ACCOUNT"].clone() };
                accounts().get_account(authed(request, &demo["MEMBER_TOKEN"])).await.map(drop)
            }
            Workload::GetUser => {
                let request =
                    pb::GetUserRequest { account_id: demo["ACCOUNT"].clone(), user_id: demo["ADMIN_ID"].clone() };
                users().get_user(authed(request, &demo["MEMBER_TOKEN"])).await.map(drop)
            }
            Workload::GetUserAcrossAccounts => {
                let request = pb::GetUserRequest { account_id: mine.id.clone(), user_id: mine.member_id.clone() };
                users().get_user(authed(request, &mine.owner_token)).await.map(drop)
            }
            Workload::InviteAcrossAccounts | Workload::InviteOneAccount => {
                let (account, token) = match workload {
                    Workload::InviteAcrossAccounts => (mine.id.clone(), mine.owner_token.as_str()),
                    _ => (demo["ACCOUNT"].clone(), demo["OWNER_TOKEN"].as_str()),
                };
                let request = pb::InviteUserRequest {
                    email: format!("{workload:?}-{}-{round}-{n}@bench.example", self.run).to_ascii_lowercase(),
                    request_id,
                    account_id: account,
                    ..Default::default()
                };
                users().invite_user(authed(request, token)).await.map(drop)
            }
            Workload::AssignAcrossAccounts | Workload::AssignOneAccount => {
                let (account, user_id, first_assigns) = match workload {
                    Workload::AssignAcrossAccounts => (mine, mine.member_id.clone(), 0),
                    // The leavers were given a license when they were set up.
                    _ => {
                        let shared = &self.accounts[0];
                        (shared, shared.leavers.get(caller).ok_or("too few users to license")?.clone(), 1)
                    }
                };
                let account_id = account.id.clone();
                let license_type = lpb::LicenseType::Licensed as i32;
                if count % 2 == first_assigns {
                    let request = lpb::AssignLicenseRequest { request_id, account_id, user_id, license_type };
                    licenses().assign_license(authed(request, &account.owner_token)).await.map(drop)
                } else {
                    let request = lpb::UnassignLicenseRequest { request_id, account_id, user_id, license_type };
                    licenses().unassign_license(authed(request, &account.owner_token)).await.map(drop)
                }
            }
            Workload::DeactivateReactivate => {
                let (account_id, user_id) = (mine.id.clone(), mine.member_id.clone());
                let operation = if count % 2 == 0 {
                    let request = pb::DeactivateUserRequest { request_id, account_id, user_id, validate_only: false };
                    users().deactivate_user(authed(request, &mine.owner_token)).await
                } else {
                    let request =
                        pb::ReactivateUserRequest { request_id, account_id, user_id, restore_licenses: false };
                    users().reactivate_user(authed(request, &mine.owner_token)).await
                };
                return succeeded(&operation.map_err(|status| status.to_string())?.into_inner());
            }
            Workload::UnlinkWithTransfer => {
                let user_id = mine.leavers.get(count).ok_or("no user left to unlink")?.clone();
                let request = pb::UnlinkUserRequest {
                    request_id,
                    account_id: mine.id.clone(),
                    user_id,
                    transfer: Some(pb::ContentTransfer {
                        target_user_id: mine.owner_id.clone(),
                        meetings: true,
                        ..Default::default()
                    }),
                    validate_only: false,
                };
                let operation = users()
                    .unlink_user(authed(request, &mine.owner_token))
                    .await
                    .map_err(|status| status.to_string())?;
                return succeeded(&operation.into_inner());
            }
        };
        done.map_err(|status| status.to_string())
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
