//! Licensing's event log (issue 27): license, phone and saga changes are in it with their
//! cause, and who may read it is asked of identity afresh (SPEC R34).

mod support;

use roster_proto::events::v1 as ev;
use roster_proto::licensing::v1 as pb;
use support::{OTHER_SERVICE, TestApp, authed, bad_field, reason, rid};
use tonic::Code;

on_both_backends!(license_changes_are_in_the_log_with_their_cause, readers_are_services_operators_owners_and_admins);

fn list(account: Option<&str>) -> ev::ListEventsRequest {
    let filter = account.map(|a| ev::EventFilter { account_ids: vec![a.to_owned()], types: Vec::new() });
    ev::ListEventsRequest { filter, page_size: 500, ..Default::default() }
}

async fn license_changes_are_in_the_log_with_their_cause(app: &TestApp) {
    let w = app.seed_world().await;
    let owner = app.user_token(&w.owner);
    let change = |license_type: pb::LicenseType| (w.account.clone(), w.member.clone(), license_type as i32);
    let (account_id, user_id, license_type) = change(pb::LicenseType::Phone);
    app.licenses()
        .assign_license(authed(
            pb::AssignLicenseRequest { request_id: rid(), account_id, user_id, license_type },
            &owner,
        ))
        .await
        .expect("assign");
    let (account_id, user_id, license_type) = change(pb::LicenseType::Licensed);
    app.licenses()
        .unassign_license(authed(
            pb::UnassignLicenseRequest { request_id: rid(), account_id, user_id, license_type },
            &owner,
        ))
        .await
        .expect("unassign");
    roster_testkit::events_settled(&app.db).await;
    let mut events = ev::events_client::EventsClient::new(app.channel.clone());
    let page =
        events.list_events(authed(list(Some(&w.account)), &app.operator_token())).await.expect("list").into_inner();
    let kinds: Vec<&str> = page.events.iter().map(|e| e.r#type.as_str()).collect();
    assert!(!page.more);
    // Seeding deactivated a member: the saga's reclaim came first, named by its operation.
    let reclaim = page.events.first().expect("the deactivation's reclaim");
    assert_eq!(reclaim.r#type, "license.reclaimed", "{kinds:?}");
    assert!(!reclaim.operation_id.is_empty(), "a saga step names its operation");
    assert_eq!(reclaim.principal, "service:identity");
    assert_eq!(&kinds[1..], ["license.assigned", "license.reclaimed"]);
    let assigned = &page.events[1];
    assert!(matches!(
        &assigned.payload,
        Some(ev::event::Payload::LicenseAssigned(ev::LicenseAssigned { user_id, license_type }))
            if *user_id == w.member && *license_type == pb::LicenseType::Phone as i32
    ));
    assert!(assigned.operation_id.is_empty() && !assigned.request_id.is_empty());
    let unassigned = &page.events[2];
    assert!(matches!(
        &unassigned.payload,
        Some(ev::event::Payload::LicensesReclaimed(ev::LicensesReclaimed { licenses: Some(set), .. }))
            if set.license_types == [pb::LicenseType::Licensed as i32]
    ));
}

async fn readers_are_services_operators_owners_and_admins(app: &TestApp) {
    let w = app.seed_world().await;
    let mut events = ev::events_client::EventsClient::new(app.channel.clone());
    for token in [
        app.user_token(&w.owner),
        app.user_token(&w.admin),
        app.operator_token(),
        app.token(&roster_platform::auth::Principal::Service { name: OTHER_SERVICE.into() }),
    ] {
        let page = events.list_events(authed(list(Some(&w.account)), &token)).await.expect("may read").into_inner();
        assert!(page.events.iter().all(|e| e.account_id == w.account));
    }
    let unnamed = events.list_events(authed(list(None), &app.user_token(&w.admin))).await.expect_err("no account");
    assert_eq!(unnamed.code(), Code::InvalidArgument);
    assert_eq!(bad_field(&unnamed).as_deref(), Some("filter.account_ids"));
    for (who, account) in [(&w.admin, &w.solo_account), (&w.member, &w.account), (&w.admin, &rid())] {
        let refused = events.list_events(authed(list(Some(account)), &app.user_token(who))).await.expect_err("refused");
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        assert_eq!(reason(&refused), "OWNER_OR_ADMIN_ONLY");
    }
}
