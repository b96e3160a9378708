//! SPEC R34, in the order the checks run: the caller is authenticated, then authorised from
//! current data, and only then is an earlier answer to the same request id replayed. A user
//! demoted or deactivated since their first call gets a refusal, not the stored answer, and a
//! deactivated one can no longer read the operations they started.

mod support;

use roster_proto::identity::v1 as pb;
use roster_proto::operations::v1 as ops;
use support::{TestApp, authed, invitation_code, reason, rid};
use tonic::Code;

on_both_backends!(r34_a_demoted_or_deactivated_user_neither_replays_nor_reads_their_operations);

async fn deactivate(
    app: &TestApp,
    account: &str,
    by: &str,
    user: &str,
    request_id: &str,
) -> Result<ops::Operation, tonic::Status> {
    app.users()
        .deactivate_user(authed(
            pb::DeactivateUserRequest {
                request_id: request_id.into(),
                account_id: account.into(),
                user_id: user.into(),
                validate_only: false,
            },
            &app.user_token(by),
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn expect_deactivated<T: std::fmt::Debug>(result: Result<T, tonic::Status>, case: &str) {
    let status = result.expect_err(case);
    assert_eq!((status.code(), reason(&status).as_str()), (Code::PermissionDenied, "CALLER_DEACTIVATED"), "{case}");
}

async fn r34_a_demoted_or_deactivated_user_neither_replays_nor_reads_their_operations(app: &TestApp) {
    let w = app.seed_world("replay").await;

    // The admin invites someone and deactivates the member; both succeed.
    let invite = pb::InviteUserRequest {
        request_id: rid(),
        account_id: w.account.clone(),
        email: "later@replay.example".into(),
        ..Default::default()
    };
    let invite_as_admin = || {
        let request = authed(invite.clone(), &app.user_token(&w.admin));
        async move { app.users().invite_user(request).await }
    };
    invite_as_admin().await.expect("the admin invites");
    let deactivation_id = rid();
    let operation = deactivate(app, &w.account, &w.admin, &w.member, &deactivation_id).await.expect("deactivates");
    let read = |id: String, user: &str| {
        let token = app.user_token(user);
        async move {
            let get = app
                .operations()
                .get_operation(authed(ops::GetOperationRequest { operation_id: id.clone() }, &token))
                .await;
            let watch =
                app.operations().watch_operation(authed(ops::WatchOperationRequest { operation_id: id }, &token)).await;
            (get.map(drop), watch.map(drop))
        }
    };
    let (get, watch) = read(operation.id.clone(), &w.admin).await;
    assert!(get.is_ok() && watch.is_ok(), "the starter reads their operation while active");

    // A pending invitee accepts; their operation is theirs to read.
    let invitee = app.invite(&w.account, &w.owner, "invitee@replay.example").await;
    let code = invitation_code(app, "invitee@replay.example").await;
    let accept = pb::AcceptInvitationRequest { request_id: rid(), code };
    let accept_as_invitee = || {
        let request = authed(accept.clone(), &app.user_token(&invitee.user_id));
        async move { app.users().accept_invitation(request).await }
    };
    let accepted = accept_as_invitee().await.expect("accepts").into_inner();
    assert!(accepted.done && accepted.error.is_none(), "{accepted:?}");

    // The owner demotes the admin: still active, no longer managing users, so the retry is
    // refused for the privilege, not replayed.
    app.assign_role(&w.account, &w.owner, &w.admin, "member").await.expect("demoted");
    let demoted = invite_as_admin().await.expect_err("no replay for a demoted admin");
    assert_eq!((demoted.code(), reason(&demoted).as_str()), (Code::PermissionDenied, "MISSING_PRIVILEGE"));
    // R33: the refusal is audited under the same action as the invitation it refused.
    let outcomes: Vec<String> = sqlx::query_scalar(
        "SELECT outcome FROM audit_events WHERE action = 'user.invited' AND principal = $1 ORDER BY id",
    )
    .bind(format!("user:{}", w.admin))
    .fetch_all(app.db.pool())
    .await
    .expect("audit");
    assert_eq!(outcomes, ["ok", "refused:MISSING_PRIVILEGE"]);

    // The owner deactivates both of them.
    deactivate(app, &w.account, &w.owner, &w.admin, &rid()).await.expect("admin deactivated");
    deactivate(app, &w.account, &w.owner, &invitee.user_id, &rid()).await.expect("invitee deactivated");

    // Retries with the first request ids are refused: nothing is replayed to them.
    expect_deactivated(invite_as_admin().await, "InviteUser replayed by a deactivated admin");
    expect_deactivated(
        deactivate(app, &w.account, &w.admin, &w.member, &deactivation_id).await,
        "DeactivateUser replayed by a deactivated admin",
    );
    expect_deactivated(accept_as_invitee().await, "AcceptInvitation replayed by a deactivated invitee");

    // Their operations are no longer theirs to read, as if they did not exist.
    for (id, user) in [(operation.id.clone(), &w.admin), (accepted.id.clone(), &invitee.user_id)] {
        let (get, watch) = read(id, user).await;
        assert_eq!(get.expect_err("get").code(), Code::NotFound);
        assert_eq!(watch.expect_err("watch").code(), Code::NotFound);
    }
    // The owner still reads them.
    let (get, watch) = read(operation.id, &w.owner).await;
    assert!(get.is_ok() && watch.is_ok());
}
