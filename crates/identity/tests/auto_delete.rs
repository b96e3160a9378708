//! SPEC R20 on SQLite and PostgreSQL with the manual clock: deactivated users are deleted N
//! days after deactivation by the delete saga, also those deactivated before the setting was
//! turned on (a week after it, at the earliest); the user managers are told a week ahead;
//! reactivating the user or turning the setting off cancels the deletion.

mod support;

use std::time::Duration;

use roster_proto::identity::v1 as pb;
use support::{TestApp, World, authed, reason, rid};

on_both_backends!(
    r20_users_deactivated_before_the_setting_are_told_about_then_deleted_a_week_later,
    r20_a_user_deactivated_after_the_setting_is_deleted_n_days_later,
    r20_reactivating_or_turning_the_setting_off_cancels_the_deletion,
);

const DAY_MS: i64 = 24 * 3_600_000;

async fn set(app: &TestApp, w: &World, days: u32, notify: bool) {
    app.accounts()
        .update_account(authed(
            pb::UpdateAccountRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                settings: Some(pb::AccountSettings {
                    auto_delete_deactivated_after_days: days,
                    notify_admins_before_auto_delete: notify,
                }),
                ..Default::default()
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("update the setting");
}

async fn exists(app: &TestApp, w: &World, user: &str) -> bool {
    let found = app
        .users()
        .get_user(authed(
            pb::GetUserRequest { account_id: w.account.clone(), user_id: user.into() },
            &app.user_token(&w.owner),
        ))
        .await;
    match found {
        Ok(_) => true,
        Err(status) if reason(&status) == "USER_NOT_FOUND" => false,
        Err(status) => panic!("{status:?}"),
    }
}

/// Lets the sweep (every 500 ms in tests) and the saga worker run.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1_200)).await;
}

async fn until_gone(app: &TestApp, w: &World, user: &str) {
    for _ in 0..200 {
        if !exists(app, w, user).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("user {user} was not deleted in 10 s");
}

async fn notices(app: &TestApp, w: &World, who: &str) -> Vec<String> {
    app.mails(&w.email_of(who), "auto_delete_notice").await
}

async fn deactivate(app: &TestApp, w: &World, user: &str) {
    app.users()
        .deactivate_user(authed(
            pb::DeactivateUserRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: user.into(),
                validate_only: false,
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("deactivate");
}

async fn r20_users_deactivated_before_the_setting_are_told_about_then_deleted_a_week_later(app: &TestApp) {
    let w = app.seed_world("before").await;
    app.clock.advance_ms(40 * DAY_MS);
    set(app, &w, 30, true).await;
    settle().await;
    for who in ["owner", "admin"] {
        let told = notices(app, &w, who).await;
        assert_eq!(told.len(), 1, "{who} is told once");
        assert!(told[0].contains("gone@") && told[0].contains("GMT"), "{}", told[0]);
    }
    assert!(notices(app, &w, "member").await.is_empty(), "members do not see the setting");
    assert!(exists(app, &w, &w.deactivated).await, "the due date passed long ago, yet nobody is deleted at once");

    app.clock.advance_ms(7 * DAY_MS - 60_000);
    settle().await;
    assert!(exists(app, &w, &w.deactivated).await, "not before the week is up");
    app.clock.advance_ms(60_000);
    until_gone(app, &w, &w.deactivated).await;
    let principal: String = sqlx::query_scalar(
        "SELECT principal FROM audit_events WHERE action = 'user.deleted' AND target = $1 AND outcome = 'ok'",
    )
    .bind(format!("user:{}", w.deactivated))
    .fetch_one(app.db.pool())
    .await
    .expect("the deletion is audited");
    assert_eq!(principal, "service:identity", "done by the system");
    assert_eq!(notices(app, &w, "owner").await.len(), 1, "one notice per deletion");
    assert!(exists(app, &w, &w.member).await && exists(app, &w, &w.admin).await, "active users stay");
}

async fn r20_a_user_deactivated_after_the_setting_is_deleted_n_days_later(app: &TestApp) {
    let w = app.seed_world("after").await;
    set(app, &w, 10, true).await;
    app.clock.advance_ms(DAY_MS);
    deactivate(app, &w, &w.member).await;
    let told_about = |bodies: Vec<String>| bodies.iter().filter(|b| b.contains("member@")).count();
    app.clock.advance_ms(3 * DAY_MS - 60_000);
    settle().await;
    assert_eq!(told_about(notices(app, &w, "owner").await), 0, "not told before a week ahead");
    app.clock.advance_ms(60_000);
    settle().await;
    assert_eq!(told_about(notices(app, &w, "owner").await), 1, "told a week ahead");
    app.clock.advance_ms(7 * DAY_MS - 60_000);
    settle().await;
    assert!(exists(app, &w, &w.member).await, "not before ten days");
    app.clock.advance_ms(60_000);
    until_gone(app, &w, &w.member).await;
}

async fn r20_reactivating_or_turning_the_setting_off_cancels_the_deletion(app: &TestApp) {
    let w = app.seed_world("cancel").await;
    deactivate(app, &w, &w.member).await;
    set(app, &w, 10, true).await;
    app.clock.advance_ms(5 * DAY_MS);
    settle().await;
    assert_eq!(notices(app, &w, "owner").await.len(), 2, "told about both");
    app.users()
        .reactivate_user(authed(
            pb::ReactivateUserRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                user_id: w.deactivated.clone(),
                restore_licenses: false,
            },
            &app.user_token(&w.owner),
        ))
        .await
        .expect("reactivate");
    app.clock.advance_ms(4 * DAY_MS);
    set(app, &w, 0, true).await;
    app.clock.advance_ms(30 * DAY_MS);
    settle().await;
    assert!(exists(app, &w, &w.deactivated).await, "reactivated: kept");
    assert!(exists(app, &w, &w.member).await, "the setting was turned off: kept");
    let deletions: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE account_id = $1 AND action = 'user.auto_delete_started'",
    )
    .bind(&w.account)
    .fetch_one(app.db.pool())
    .await
    .expect("count");
    assert_eq!(deletions, 0);
}
