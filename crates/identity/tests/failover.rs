//! Losing database connections (a failover, a restart, a pooler recycling them) is invisible to
//! callers on PostgreSQL: after every backend of the service is ended, reads, changes and saga
//! starts all succeed, each once, because a call that met a lost connection before COMMIT runs
//! again on a fresh one and the pool checks its other connections before use for a while.

mod support;

use roster_proto::identity::v1 as pb;
use support::{Backend, TestApp, authed, rid};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_backend_ended_at_once_is_invisible_to_callers() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else { return };
    let w = app.seed_world("failover").await;
    let owner = app.user_token(&w.owner);
    for round in 0..3 {
        // Calls a moment ago leave connections in the pool, idle for less than a second.
        app.get_user(&w.account, &w.owner, &w.member).await;
        let ended = app.terminate_database_connections().await.expect("PostgreSQL");
        assert!(ended > 0, "round {round}: the services held connections");
        let user = app
            .users()
            .get_user(authed(pb::GetUserRequest { account_id: w.account.clone(), user_id: w.member.clone() }, &owner))
            .await;
        assert!(user.is_ok(), "round {round}: a read after the backends ended: {user:?}");
        let invite = pb::InviteUserRequest {
            request_id: rid(),
            account_id: w.account.clone(),
            email: format!("after-failover-{round}@failover.example"),
            ..Default::default()
        };
        let invited = app.users().invite_user(authed(invite, &owner)).await;
        assert!(invited.is_ok(), "round {round}: a change: {invited:?}");
        app.terminate_database_connections().await;
        let integration = pb::AuthorizeIntegrationRequest {
            request_id: rid(),
            account_id: w.account.clone(),
            name: format!("Integration {round}"),
        };
        let authorized = app.accounts().authorize_integration(authed(integration, &owner)).await;
        assert!(authorized.is_ok(), "round {round}: another change: {authorized:?}");
    }
    // Each change happened once.
    let invited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE account_id = $1 AND email LIKE 'after-failover-%'")
            .bind(&w.account)
            .fetch_one(app.db.pool())
            .await
            .expect("count");
    assert_eq!(invited, 3);
    app.stop().await;
}
