//! The calls measured against Roster, and what they need set up: the demo's tokens, and eight
//! more accounts (made through the API) so that writes can spread across accounts.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use roster_e2e::{Error, authed};
use roster_platform::auth::{KeyDir, KeyScope, Principal, SignerSet};
use roster_proto::identity::v1 as pb;
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
    /// Invitations spread over eight accounts, one per caller.
    InviteAcrossAccounts,
    /// Every invitation into the demo account: writes serialise on its row lock.
    InviteOneAccount,
}

struct Inner {
    channel: Channel,
    demo: HashMap<String, String>,
    /// (account id, its owner's token), one per caller of the across-accounts workload.
    accounts: Vec<(String, String)>,
    run: u128,
}

#[derive(Clone)]
pub struct Setup(Arc<Inner>);

const ACCOUNTS: usize = 8;

impl Setup {
    pub async fn new(channel: Channel, demo: HashMap<String, String>, keys: &Path) -> Result<Self, Error> {
        let signers = SignerSet::load(&KeyDir { dir: keys.to_owned() }, &[KeyScope::Users], "roster", "roster")?;
        let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
        let mut accounts = Vec::with_capacity(ACCOUNTS);
        let mut client = pb::account_service_client::AccountServiceClient::new(channel.clone());
        for n in 0..ACCOUNTS {
            let request = pb::CreateAccountRequest {
                request_id: format!("bench-account-{run}-{n}"),
                name: format!("Bench {n}"),
                plan: pb::Plan::Pro as i32,
                owner_email: format!("owner-{run}-{n}@bench{n}.example"),
                ..Default::default()
            };
            let account = client.create_account(authed(request, &demo["OPERATOR_TOKEN"])).await?.into_inner();
            let owner = account.owner.ok_or("a new account has an owner")?.user_id;
            let token = signers.mint(&Principal::User { user_id: owner }, now_s(), 3_600);
            accounts.push((account.id, token));
        }
        Ok(Self(Arc::new(Inner { channel, demo, accounts, run })))
    }

    /// A cloneable caller of `workload`, for [`crate::measure::run`].
    pub fn caller(
        &self,
        workload: Workload,
    ) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Clone + Send + Sync + 'static
    {
        let setup = self.0.clone();
        move |n| {
            let setup = setup.clone();
            Box::pin(async move { setup.call(workload, n).await.map_err(|status| status.to_string()) })
        }
    }
}

impl Inner {
    async fn call(&self, workload: Workload, n: u64) -> Result<(), tonic::Status> {
        let demo = &self.demo;
        let accounts = || pb::account_service_client::AccountServiceClient::new(self.channel.clone());
        let users = || pb::user_service_client::UserServiceClient::new(self.channel.clone());
        match workload {
            Workload::Health => HealthClient::new(self.channel.clone())
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
            Workload::InviteAcrossAccounts | Workload::InviteOneAccount => {
                let (account, token) = match workload {
                    Workload::InviteAcrossAccounts => {
                        let (account, token) = &self.accounts[(n / 1_000_000_000) as usize % ACCOUNTS];
                        (account.clone(), token.as_str())
                    }
                    _ => (demo["ACCOUNT"].clone(), demo["OWNER_TOKEN"].as_str()),
                };
                let request = pb::InviteUserRequest {
                    request_id: format!("bench-{workload:?}-{}-{n}", self.run),
                    account_id: account,
                    email: format!("{workload:?}-{}-{n}@bench.example", self.run).to_ascii_lowercase(),
                    ..Default::default()
                };
                users().invite_user(authed(request, token)).await.map(drop)
            }
        }
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
