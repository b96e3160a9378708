//! `roster-bench --noisy N`: one busy account beside a quiet one. The quiet account B reads a
//! user and invites at a steady, modest pace; its 99th-percentile latencies are measured first
//! with account A idle, then while A runs a bulk deactivation of N users and eight callers invite
//! into A as fast as they can. Each busy p99 is printed over the idle one beside the goal (at
//! most 2x): one tenant must not slow another.

use std::time::{Duration, Instant};

use roster_e2e::{Error, authed};
use roster_platform::db::Database;
use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use tonic::transport::Channel;

use crate::measure::{self, Figures, Load, Server};
use crate::workloads::{Setup, Workload};

/// How much slower B's p99 may be while A is busy.
const GOAL_RATIO: f64 = 2.0;
/// B's steady pace: reads and invitations per second.
const QUIET_READS_PER_S: f64 = 100.0;
const QUIET_INVITES_PER_S: f64 = 20.0;
/// Callers inviting into A, flat out.
const NOISY_INVITERS: usize = 8;

/// B's reads and invitations over `seconds`, measured side by side.
async fn quiet(server: &Server, setup: &Setup, seconds: u64) -> (Figures, Figures) {
    // One caller each: the caller numbered 0 works in bench account 0, which is B.
    let reads = Load { pace: Some(QUIET_READS_PER_S), ..Load::flat_out(1, seconds) };
    let invites = Load { pace: Some(QUIET_INVITES_PER_S), ..Load::flat_out(1, seconds) };
    tokio::join!(
        measure::run(server, reads, setup.caller(Workload::GetUserAcrossAccounts)),
        measure::run(server, invites, setup.caller(Workload::InviteAcrossAccounts)),
    )
}

/// A's invitations, flat out from [`NOISY_INVITERS`] callers.
fn noisy_invite(
    identity: Channel,
    account: String,
    token: String,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
+ Clone
+ Send
+ Sync
+ 'static {
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    move |n| {
        let (identity, account, token) = (identity.clone(), account.clone(), token.clone());
        Box::pin(async move {
            let request = pb::InviteUserRequest {
                request_id: format!("noisy-{run}-{n}"),
                account_id: account,
                email: format!("noisy-{run}-{n}@busy.example"),
                ..Default::default()
            };
            pb::user_service_client::UserServiceClient::new(identity)
                .invite_user(authed(request, &token))
                .await
                .map(drop)
                .map_err(|status| status.to_string())
        })
    }
}

/// Waits until setting up has settled: the invitation e-mails it queued are all sent.
async fn settled(identity_db: &Database) -> Result<(), Error> {
    let began = Instant::now();
    loop {
        let unsent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE sent_at_ms IS NULL")
            .fetch_one(identity_db.pool())
            .await?;
        if unsent == 0 || began.elapsed() > Duration::from_secs(300) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn measure(
    server: &Server,
    identity: Channel,
    identity_db: &Database,
    setup: &Setup,
    (account, owner_token, users): (String, String, Vec<String>),
    seconds: u64,
) -> Result<(), Error> {
    settled(identity_db).await?;
    eprintln!("roster-bench: account B alone");
    let (idle_reads, idle_invites) = quiet(server, setup, seconds).await;

    eprintln!(
        "roster-bench: account B beside A's bulk deactivation of {} users and {NOISY_INVITERS} inviters",
        users.len()
    );
    let rows = users.len();
    let bulk = pb::StartBulkOperationRequest {
        request_id: format!("noisy-bulk-{account}"),
        account_id: account.clone(),
        action: pb::BulkAction::Deactivate as i32,
        users: users.into_iter().map(|user| pb::BulkUser { user, ..Default::default() }).collect(),
        ..Default::default()
    };
    let began = Instant::now();
    let started = pb::bulk_service_client::BulkServiceClient::new(identity.clone())
        .start_bulk_operation(authed(bulk, &owner_token))
        .await?
        .into_inner();
    let inviting = measure::run(
        server,
        Load::flat_out(NOISY_INVITERS, seconds),
        noisy_invite(identity.clone(), account.clone(), owner_token.clone()),
    );
    let ((busy_reads, busy_invites), noisy) = tokio::join!(quiet(server, setup, seconds), inviting);
    let mut operations = ops::operations_client::OperationsClient::new(identity);
    let rows_done = loop {
        let get = ops::GetOperationRequest { operation_id: started.id.clone() };
        let operation = operations.get_operation(authed(get, &owner_token)).await?.into_inner();
        let done = operation.progress.and_then(|p| p.rows).map_or(0, |r| r.done);
        if operation.done || began.elapsed() > Duration::from_secs(600) {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "\nnoisy neighbour: account A ran a bulk deactivation of {rows} users ({rows_done} done in {:.1} s) and \
         {NOISY_INVITERS} callers invited into it ({:.0}/s) while B read and invited at {QUIET_READS_PER_S:.0}/s and \
         {QUIET_INVITES_PER_S:.0}/s",
        began.elapsed().as_secs_f64(),
        noisy.rps
    );
    println!("  {:<24} {:>10} {:>10} {:>7} {:>8}", "account B's call", "p99 alone", "p99 busy", "ratio", "goal");
    for (name, idle, busy) in [("GetUser", idle_reads, busy_reads), ("InviteUser", idle_invites, busy_invites)] {
        let ratio = busy.p99.as_secs_f64() / idle.p99.as_secs_f64().max(1e-6);
        let verdict = if ratio <= GOAL_RATIO { "met" } else { "NOT met" };
        println!(
            "  {name:<24} {:>10.2?} {:>10.2?} {ratio:>7.2} {:>8} {verdict}",
            idle.p99,
            busy.p99,
            format!("<={GOAL_RATIO:.1}")
        );
        for figures in [&idle, &busy] {
            if figures.errors > 0 {
                println!("    {} of {} calls failed: {}", figures.errors, figures.calls, figures.first_error);
            }
        }
    }
    Ok(())
}
