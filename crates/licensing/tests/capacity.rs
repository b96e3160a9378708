//! SPEC R30 under concurrency: 100 simultaneous assignments against 10 seats leave exactly 10
//! assignments, and every other call is refused with SEATS_EXHAUSTED (code 200). Runs on both
//! backends; PostgreSQL is where real parallel transactions race.

mod support;

use roster_proto::licensing::v1 as pb;
use support::{TestApp, authed, product_code, reason, rid};

on_both_backends!(r30_one_hundred_racing_assignments_fill_exactly_ten_seats);

async fn r30_one_hundred_racing_assignments_fill_exactly_ten_seats(app: &TestApp) {
    let w = app.seed_world().await;
    let users = app.add_members(&w, 100).await;
    app.set_seats(&w, pb::LicenseType::LargeMeeting, 10).await;
    let admin = app.user_token(&w.admin);
    let calls = users.iter().map(|user| {
        let mut client = app.licenses();
        let request = authed(
            pb::AssignLicenseRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: user.clone(),
                license_type: pb::LicenseType::LargeMeeting as i32,
            },
            &admin,
        );
        async move { client.assign_license(request).await }
    });
    let results = futures_util::future::join_all(calls).await;
    let granted = results.iter().filter(|r| r.is_ok()).count();
    let refusals: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(granted, 10, "exactly the purchased seats were assigned");
    for refusal in &refusals {
        assert_eq!(
            (reason(refusal), product_code(refusal)),
            ("SEATS_EXHAUSTED".into(), Some("200".into())),
            "{refusal:?}"
        );
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM assignments WHERE account_id = $1 AND license_type = 'large_meeting'")
            .bind(&w.account)
            .fetch_one(app.db.pool())
            .await
            .expect("count");
    assert_eq!(stored, 10, "the database agrees");
}
