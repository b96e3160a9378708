//! CI smoke client for a running `roster up --demo`: waits for health SERVING, lists the
//! services by reflection, and makes authenticated calls with the demo's tokens.
//!
//! Usage: roster-smoke <identity address> <licensing address> <data directory>

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use roster_e2e::{Error, authed, demo_env, list_services, wait_serving};
use roster_proto::identity::v1 as pb;
use roster_proto::licensing::v1 as lpb;

const USAGE: &str = "usage: roster-smoke <identity address> <licensing address> <data dir>";

#[tokio::main]
async fn main() {
    if let Err(error) = smoke().await {
        eprintln!("smoke test FAILED: {error}");
        std::process::exit(1);
    }
}

async fn smoke() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args.next().ok_or(USAGE)?.parse()?;
    let licensing_addr: SocketAddr = args.next().ok_or(USAGE)?.parse()?;
    let data_dir = PathBuf::from(args.next().ok_or(USAGE)?);

    let channel = wait_serving(addr, Duration::from_secs(120)).await?;
    println!("health: SERVING");
    let services = list_services(channel.clone()).await?;
    println!("reflection lists: {}", services.join(", "));
    for expected in
        ["roster.identity.v1.AccountService", "roster.identity.v1.UserService", "roster.operations.v1.Operations"]
    {
        if !services.iter().any(|s| s == expected) {
            return Err(format!("reflection does not list {expected}").into());
        }
    }
    if services.iter().any(|s| s.starts_with("roster.licensing.")) {
        return Err("identity reflection advertises licensing's services".into());
    }
    let env = demo_env(&data_dir, Duration::from_secs(30)).await?;
    let account = env.get("ACCOUNT").ok_or("demo.env has no ACCOUNT")?;
    let member_token = env.get("MEMBER_TOKEN").ok_or("demo.env has no MEMBER_TOKEN")?;
    let mut accounts = pb::account_service_client::AccountServiceClient::new(channel.clone());
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
    licensing(licensing_addr, &env).await?;
    saga(channel, &env).await?;
    println!("smoke test passed");
    Ok(())
}

/// A saga across both services: Sam accepts Acme's invitation and his subscription is refunded.
async fn saga(
    channel: tonic::transport::Channel,
    env: &std::collections::HashMap<String, String>,
) -> Result<(), Error> {
    let token = env.get("SOLO_OWNER_TOKEN").ok_or("demo.env has no SOLO_OWNER_TOKEN")?;
    let code = env.get("SOLO_INVITATION_CODE").ok_or("demo.env has no SOLO_INVITATION_CODE")?.clone();
    let operation = pb::user_service_client::UserServiceClient::new(channel)
        .accept_invitation(authed(pb::AcceptInvitationRequest { request_id: "smoke-accept".into(), code }, token))
        .await?
        .into_inner();
    let succeeded = roster_proto::operations::v1::OperationState::Succeeded as i32;
    if !operation.done || operation.state != succeeded {
        return Err(format!("the accept-invitation saga did not succeed within the call: {operation:?}").into());
    }
    println!("accept-invitation saga: {} done, refund included: {}", operation.kind, operation.result.is_some());
    Ok(())
}

/// Licensing answers over gRPC, asking identity who callers are.
async fn licensing(addr: SocketAddr, env: &std::collections::HashMap<String, String>) -> Result<(), Error> {
    let channel = wait_serving(addr, Duration::from_secs(60)).await?;
    let services = list_services(channel.clone()).await?;
    println!("licensing reflection lists: {}", services.join(", "));
    if !services.iter().any(|s| s == "roster.licensing.v1.LicenseService") {
        return Err("licensing reflection does not list LicenseService".into());
    }
    if services.iter().any(|s| s.starts_with("roster.identity.")) {
        return Err("licensing reflection advertises identity's services".into());
    }
    let get = |key: &str| env.get(key).cloned().ok_or(format!("demo.env has no {key}"));
    let (account, admin, member) = (get("ACCOUNT")?, get("ADMIN_TOKEN")?, get("MEMBER_TOKEN")?);
    let mut licenses = lpb::license_service_client::LicenseServiceClient::new(channel.clone());
    let seats = licenses
        .list_seats(authed(lpb::ListSeatsRequest { account_id: account.clone() }, &admin))
        .await?
        .into_inner()
        .seats;
    println!("ListSeats as an admin: {} license types", seats.len());
    let request = lpb::AssignLicenseRequest {
        request_id: format!("smoke-{}", std::process::id()),
        account_id: account.clone(),
        user_id: get("MEMBER_ID")?,
        license_type: lpb::LicenseType::Webinar as i32,
    };
    match licenses.assign_license(authed(request, &admin)).await {
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            println!("assigning past the webinar seats: {}", status.message());
        }
        other => return Err(format!("the demo's single webinar seat is taken; got {other:?}").into()),
    }
    let mut billing = lpb::billing_service_client::BillingServiceClient::new(channel);
    match billing.get_billing_overview(authed(lpb::GetBillingOverviewRequest { account_id: account }, &member)).await {
        Err(status) if status.code() == tonic::Code::PermissionDenied => {
            println!("billing as a member: PERMISSION_DENIED")
        }
        other => return Err(format!("a member must not read billing, got {other:?}").into()),
    }
    Ok(())
}
