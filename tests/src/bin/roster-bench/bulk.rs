//! `roster-bench --bulk N`: one bulk deactivation of N licensed users of one account, from the
//! `StartBulkOperation` call to the operation's end, in rows per second; and on PostgreSQL the
//! commits per row (transaction ids used in both services' databases, divided by rows).

use std::future::Future;
use std::time::{Duration, Instant};

use roster_e2e::{Error, authed};
use roster_platform::db::Database;
use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use tonic::transport::Channel;

/// The goal of the issue "Bulk deactivate, unlink and delete", on the 2-core machine.
const GOAL_ROWS_PER_S: f64 = 500.0;

pub async fn measure<'a, F, Fut>(
    identity: Channel,
    (account, owner_token, users): (String, String, Vec<String>),
    xids: Option<&'a Database>,
    used: F,
) -> Result<(), Error>
where
    F: Fn(Option<&'a Database>) -> Fut,
    Fut: Future<Output = Result<Option<i64>, sqlx::Error>>,
{
    let rows = users.len();
    let request = pb::StartBulkOperationRequest {
        request_id: format!("bench-bulk-{account}"),
        account_id: account,
        action: pb::BulkAction::Deactivate as i32,
        users: users.into_iter().map(|user| pb::BulkUser { user, ..Default::default() }).collect(),
        ..Default::default()
    };
    let before = used(xids).await?;
    eprintln!("roster-bench: running the bulk deactivation");
    let began = Instant::now();
    let mut bulk = pb::bulk_service_client::BulkServiceClient::new(identity.clone());
    let started = bulk.start_bulk_operation(authed(request, &owner_token)).await?.into_inner();
    let mut operations = ops::operations_client::OperationsClient::new(identity);
    let ended = loop {
        let get = ops::GetOperationRequest { operation_id: started.id.clone() };
        let operation = operations.get_operation(authed(get, &owner_token)).await?.into_inner();
        if operation.done {
            break operation;
        }
        // Often enough to time the end within 1 %, seldom enough that progress reads (a
        // count over the rows) do not slow what is measured.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = began.elapsed().as_secs_f64();
    let counts = ended.progress.and_then(|p| p.rows).unwrap_or_default();
    let per_row = used(xids).await?.zip(before).map(|(after, before)| (after - before) as f64 / rows.max(1) as f64);
    let rate = rows as f64 / took;
    println!(
        "bulk deactivation: {rows} rows in {took:.2} s = {rate:.0} rows/s ({} succeeded, {} failed){}; goal >= {GOAL_ROWS_PER_S:.0} rows/s: {}",
        counts.succeeded,
        counts.failed,
        per_row.map(|c| format!(", {c:.1} commits per row")).unwrap_or_default(),
        if rate >= GOAL_ROWS_PER_S { "met" } else { "NOT met" }
    );
    Ok(())
}
