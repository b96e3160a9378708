//! CI smoke client for a running `roster up --demo`: waits for health SERVING, lists the
//! services by reflection, and makes authenticated calls with the demo's tokens.
//!
//! Usage: roster-smoke <identity address> <data directory>

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use roster_e2e::{Error, authed, demo_env, list_services, wait_serving};
use roster_proto::identity::v1 as pb;

#[tokio::main]
async fn main() {
    if let Err(error) = smoke().await {
        eprintln!("smoke test FAILED: {error}");
        std::process::exit(1);
    }
}

async fn smoke() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args.next().ok_or("usage: roster-smoke <address> <data dir>")?.parse()?;
    let data_dir = PathBuf::from(args.next().ok_or("usage: roster-smoke <address> <data dir>")?);

    let channel = wait_serving(addr, Duration::from_secs(120)).await?;
    println!("health: SERVING");
    let services = list_services(channel.clone()).await?;
    println!("reflection lists: {}", services.join(", "));
    for expected in
        ["roster.identity.v1.AccountService", "roster.identity.v1.UserService", "roster.identity.v1.RoleService"]
    {
        if !services.iter().any(|s| s == expected) {
            return Err(format!("reflection does not list {expected}").into());
        }
    }
    let env = demo_env(&data_dir, Duration::from_secs(30)).await?;
    let account = env.get("ACCOUNT").ok_or("demo.env has no ACCOUNT")?;
    let member_token = env.get("MEMBER_TOKEN").ok_or("demo.env has no MEMBER_TOKEN")?;
    let mut accounts = pb::account_service_client::AccountServiceClient::new(channel);
    let shown = accounts
        .get_account(authed(pb::GetAccountRequest { account_id: account.clone() }, member_token))
        .await?
        .into_inner();
    let owner = shown.owner.ok_or("GetAccount shows no owner")?;
    println!("GetAccount as a member: {} is owned by {}", shown.name, owner.email);
    let refused = accounts.get_account(pb::GetAccountRequest { account_id: account.clone() }).await;
    match refused {
        Err(status) if status.code() == tonic::Code::Unauthenticated => println!("without a token: UNAUTHENTICATED"),
        other => return Err(format!("a call without a token must be refused, got {other:?}").into()),
    }
    println!("smoke test passed");
    Ok(())
}
