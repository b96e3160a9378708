//! Licensing forgets request ids only after identity can no longer re-send them: the
//! retention comes from the same saga retry settings identity retries with.

mod support;

use std::time::Duration;

use roster_licensing::housekeeping::prune;
use roster_platform::saga_retry::SagaRetry;
use roster_proto::licensing::v1 as pb;
use support::{TestApp, authed, rid};

on_both_backends!(idempotency_records_outlast_the_saga_retry_horizon_then_go);

async fn records(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys").fetch_one(app.db.pool()).await.expect("count")
}

async fn idempotency_records_outlast_the_saga_retry_horizon_then_go(app: &TestApp) {
    let w = app.seed_world().await;
    app.set_seats(&w, pb::LicenseType::LargeMeeting, 1).await;
    let request = pb::AssignLicenseRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        user_id: w.admin.clone(),
        license_type: pb::LicenseType::LargeMeeting as i32,
    };
    app.licenses().assign_license(authed(request, &app.user_token(&w.admin))).await.expect("assign");
    let newest: i64 = sqlx::query_scalar("SELECT MAX(created_at_ms) FROM idempotency_keys")
        .fetch_one(app.db.pool())
        .await
        .expect("newest");
    let kept = records(app).await;
    assert!(kept >= 2, "the seat change and the assignment were recorded");

    // A window of ten days: identity may re-send a step's request for that long, plus one
    // backoff cap and one lease, so the record must survive all of it.
    let long = SagaRetry { window: Duration::from_secs(10 * 86_400), ..SagaRetry::default() };
    let horizon = long.horizon().as_millis() as i64;
    assert_eq!(prune(&app.db, &long, newest + horizon).await.expect("prune"), 0, "within the horizon");
    assert_eq!(records(app).await, kept);

    let retention = long.idempotency_retention().as_millis() as i64;
    assert!(retention >= horizon);
    assert_eq!(prune(&app.db, &long, newest + retention).await.expect("prune"), 0, "at the retention's end");
    assert_eq!(prune(&app.db, &long, newest + retention + 1).await.expect("prune") as i64, kept, "after it");
    assert_eq!(records(app).await, 0);
}
