//! Bad input gets INVALID_ARGUMENT naming the field, and changes nothing: for every licensing
//! RPC, on both backends.

mod support;

use roster_proto::licensing::v1 as pb;
use support::{TestApp, World, authed, bad_field, rid};
use tonic::{Code, Status};

on_both_backends!(
    bad_input_names_the_field_and_changes_nothing,
    hostile_bytes_in_any_field_of_any_rpc_are_refused_by_field
);

/// NUL bytes, escape sequences, a byte over each field's limit and invalid UTF-8 in every string
/// field of every licensing RPC, plus undecodable and oversize messages: each is refused
/// precisely and nothing changes.
async fn hostile_bytes_in_any_field_of_any_rpc_are_refused_by_field(app: &TestApp) {
    let w = app.seed_world().await;
    let before = footprint(app).await;
    let max = roster_platform::config::LimitArgs::default().max_message_bytes();
    let wrong = roster_testkit::hostile::refusals_that_went_wrong(
        &app.channel,
        &["roster.licensing.v1", "roster.events.v1"],
        &app.user_token(&w.owner),
        max,
    )
    .await;
    assert!(wrong.is_empty(), "hostile input not refused precisely:\n{}", wrong.join("\n"));
    assert_eq!(footprint(app).await, before, "refused requests changed nothing");
}

const NOT_AN_ID: &str = "not-an-id";

/// Rows that any accepted change would add to.
async fn footprint(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in
        ["seat_pools", "assignments", "phone_numbers", "content_items", "subscriptions", "refunds", "idempotency_keys"]
    {
        let count: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(app.db.pool()).await.expect("count");
        counts.push(count);
    }
    counts
}

async fn cases(app: &TestApp, w: &World) -> Vec<(&'static str, &'static str, Result<(), Status>)> {
    let owner = app.user_token(&w.owner);
    let service = app.identity_token();
    let a = || w.account.clone();
    let phone = pb::LicenseType::Phone as i32;
    let (mut l, mut c, mut b) = (app.licenses(), app.content(), app.billing());
    vec![
        (
            "SetSeats",
            "license_type",
            l.set_seats(authed(
                pb::SetSeatsRequest { request_id: rid(), account_id: a(), license_type: 0, capacity: 1 },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "SetSeats",
            "capacity",
            l.set_seats(authed(
                pb::SetSeatsRequest { request_id: rid(), account_id: a(), license_type: phone, capacity: 1_000_001 },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "SetSeats",
            "request_id",
            l.set_seats(authed(
                pb::SetSeatsRequest { request_id: String::new(), account_id: a(), license_type: phone, capacity: 3 },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "ListSeats",
            "account_id",
            l.list_seats(authed(pb::ListSeatsRequest { account_id: NOT_AN_ID.into() }, &owner)).await.map(drop),
        ),
        (
            "AssignLicense",
            "user_id",
            l.assign_license(authed(
                pb::AssignLicenseRequest {
                    request_id: rid(),
                    account_id: a(),
                    user_id: NOT_AN_ID.into(),
                    license_type: phone,
                },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "AssignLicense",
            "license_type",
            l.assign_license(authed(
                pb::AssignLicenseRequest {
                    request_id: rid(),
                    account_id: a(),
                    user_id: w.member.clone(),
                    license_type: 99,
                },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "UnassignLicense",
            "license_type",
            l.unassign_license(authed(
                pb::UnassignLicenseRequest {
                    request_id: rid(),
                    account_id: a(),
                    user_id: w.member.clone(),
                    license_type: 0,
                },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "ListAssignments",
            "page_size",
            l.list_assignments(authed(
                pb::ListAssignmentsRequest { account_id: a(), page_size: -1, ..Default::default() },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "ListAssignments",
            "user_id",
            l.list_assignments(authed(
                pb::ListAssignmentsRequest { account_id: a(), user_id: NOT_AN_ID.into(), ..Default::default() },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "AddPhoneNumber",
            "number",
            l.add_phone_number(authed(
                pb::AddPhoneNumberRequest { request_id: rid(), account_id: a(), number: "020 123 4567".into() },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "AttachPhoneNumber",
            "number",
            l.attach_phone_number(authed(
                pb::AttachPhoneNumberRequest {
                    request_id: rid(),
                    account_id: a(),
                    number: "+0".into(),
                    user_id: w.owner.clone(),
                },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "DetachPhoneNumber",
            "number",
            l.detach_phone_number(authed(
                pb::DetachPhoneNumberRequest { request_id: rid(), account_id: a(), number: String::new() },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "ListPhoneNumbers",
            "account_id",
            l.list_phone_numbers(authed(pb::ListPhoneNumbersRequest { account_id: String::new() }, &owner))
                .await
                .map(drop),
        ),
        (
            "ReclaimLicenses",
            "user_id",
            l.reclaim_licenses(authed(
                pb::ReclaimLicensesRequest { request_id: rid(), account_id: a(), user_id: NOT_AN_ID.into() },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "ReclaimLicensesBatch",
            "items",
            l.reclaim_licenses_batch(authed(
                pb::ReclaimLicensesBatchRequest { account_id: a(), items: vec![] },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "ReclaimLicensesBatch",
            "items",
            l.reclaim_licenses_batch(authed(
                pb::ReclaimLicensesBatchRequest {
                    account_id: a(),
                    items: (0..257)
                        .map(|_| pb::ReclaimLicensesItem { request_id: rid(), user_id: w.member.clone() })
                        .collect(),
                },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "ReclaimLicensesBatch",
            "items[1].user_id",
            l.reclaim_licenses_batch(authed(
                pb::ReclaimLicensesBatchRequest {
                    account_id: a(),
                    items: vec![
                        pb::ReclaimLicensesItem { request_id: rid(), user_id: w.member.clone() },
                        pb::ReclaimLicensesItem { request_id: rid(), user_id: NOT_AN_ID.into() },
                    ],
                },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "ReclaimLicensesBatch",
            "items[1].request_id",
            l.reclaim_licenses_batch(authed(
                pb::ReclaimLicensesBatchRequest {
                    account_id: a(),
                    items: vec![
                        pb::ReclaimLicensesItem { request_id: rid(), user_id: w.member.clone() },
                        pb::ReclaimLicensesItem { request_id: " ".into(), user_id: w.admin.clone() },
                    ],
                },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "PreviewUserRemoval",
            "user_id",
            c.preview_user_removal(authed(
                pb::PreviewUserRemovalRequest { account_id: a(), user_id: NOT_AN_ID.into(), ..Default::default() },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "PreviewUserRemoval",
            "to_user_id",
            c.preview_user_removal(authed(
                pb::PreviewUserRemovalRequest {
                    account_id: a(),
                    user_id: w.member.clone(),
                    to_user_id: NOT_AN_ID.into(),
                    kinds: vec![pb::ContentKind::Meeting as i32],
                },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "PreviewUserRemoval",
            "kinds",
            c.preview_user_removal(authed(
                pb::PreviewUserRemovalRequest {
                    account_id: a(),
                    user_id: w.member.clone(),
                    to_user_id: w.admin.clone(),
                    kinds: vec![],
                },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "PreviewUserRemoval",
            "kinds",
            c.preview_user_removal(authed(
                pb::PreviewUserRemovalRequest {
                    account_id: a(),
                    user_id: w.member.clone(),
                    kinds: vec![pb::ContentKind::Meeting as i32],
                    ..Default::default()
                },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "RestoreLicenses",
            "licenses",
            l.restore_licenses(authed(
                pb::RestoreLicensesRequest {
                    request_id: rid(),
                    account_id: a(),
                    user_id: w.member.clone(),
                    licenses: Some(pb::LicenseSet { license_types: vec![0], phone_numbers: vec![] }),
                },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "MovePhoneLicenses",
            "to_user_id",
            l.move_phone_licenses(authed(
                pb::MovePhoneLicensesRequest {
                    request_id: rid(),
                    account_id: a(),
                    from_user_id: w.owner.clone(),
                    to_user_id: w.owner.clone(),
                },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "RegisterContent",
            "title",
            c.register_content(authed(
                pb::RegisterContentRequest {
                    request_id: rid(),
                    account_id: a(),
                    kind: pb::ContentKind::Event as i32,
                    title: " ".into(),
                    ..Default::default()
                },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "RegisterContent",
            "uses_pmi",
            c.register_content(authed(
                pb::RegisterContentRequest {
                    request_id: rid(),
                    account_id: a(),
                    kind: pb::ContentKind::Recording as i32,
                    title: "Demo".into(),
                    uses_pmi: true,
                    ..Default::default()
                },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "ListContent",
            "owner_user_id",
            c.list_content(authed(
                pb::ListContentRequest { account_id: a(), owner_user_id: String::new(), ..Default::default() },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "TransferContent",
            "kinds",
            c.transfer_content(authed(
                pb::TransferContentRequest {
                    request_id: rid(),
                    account_id: a(),
                    from_user_id: w.member.clone(),
                    to_user_id: w.admin.clone(),
                    kinds: vec![],
                },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "UndoContentTransfer",
            "transfer_id",
            c.undo_content_transfer(authed(
                pb::UndoContentTransferRequest { request_id: rid(), account_id: a(), transfer_id: NOT_AN_ID.into() },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "DeleteUserContent",
            "user_id",
            c.delete_user_content(authed(
                pb::DeleteUserContentRequest { request_id: rid(), account_id: a(), user_id: String::new() },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "RehomeUserContent",
            "new_account_id",
            c.rehome_user_content(authed(
                pb::RehomeUserContentRequest {
                    request_id: rid(),
                    account_id: a(),
                    user_id: a(),
                    new_account_id: NOT_AN_ID.into(),
                },
                &service,
            ))
            .await
            .map(drop),
        ),
        (
            "CreateSubscription",
            "currency",
            b.create_subscription(authed(
                pb::CreateSubscriptionRequest {
                    request_id: rid(),
                    account_id: a(),
                    plan_name: "Pro".into(),
                    price_minor: 100,
                    currency: "eur".into(),
                    period_start_ms: 0,
                    period_end_ms: 86_400_000,
                },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "CreateSubscription",
            "price_minor",
            b.create_subscription(authed(
                pb::CreateSubscriptionRequest {
                    request_id: rid(),
                    account_id: a(),
                    plan_name: "Pro".into(),
                    price_minor: 0,
                    currency: "EUR".into(),
                    period_start_ms: 0,
                    period_end_ms: 86_400_000,
                },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "CreateSubscription",
            "period_end_ms",
            b.create_subscription(authed(
                pb::CreateSubscriptionRequest {
                    request_id: rid(),
                    account_id: a(),
                    plan_name: "Pro".into(),
                    price_minor: 100,
                    currency: "EUR".into(),
                    period_start_ms: 5_000,
                    period_end_ms: 5_500,
                },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "GetBillingOverview",
            "account_id",
            b.get_billing_overview(authed(pb::GetBillingOverviewRequest { account_id: NOT_AN_ID.into() }, &owner))
                .await
                .map(drop),
        ),
        (
            "ListInvoices",
            "page_token",
            b.list_invoices(authed(
                pb::ListInvoicesRequest { account_id: a(), page_token: "forged".into(), ..Default::default() },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "ListRefunds",
            "page_size",
            b.list_refunds(authed(
                pb::ListRefundsRequest { account_id: a(), page_size: 10_000, ..Default::default() },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "ListMyRefunds",
            "page_token",
            b.list_my_refunds(authed(
                pb::ListMyRefundsRequest { page_token: "p1.zz".into(), ..Default::default() },
                &owner,
            ))
            .await
            .map(drop),
        ),
        (
            "ListAuditEvents",
            "account_id",
            app.licenses()
                .list_audit_events(authed(
                    pb::ListAuditEventsRequest { account_id: NOT_AN_ID.into(), ..Default::default() },
                    &owner,
                ))
                .await
                .map(drop),
        ),
        (
            "RefundSubscription",
            "beneficiary_user_id",
            b.refund_subscription(authed(
                pb::RefundSubscriptionRequest {
                    request_id: rid(),
                    account_id: a(),
                    subscription_id: uuid::Uuid::now_v7().to_string(),
                    beneficiary_user_id: NOT_AN_ID.into(),
                },
                &app.identity_token(),
            ))
            .await
            .map(drop),
        ),
        (
            "QuoteRefund",
            "subscription_id",
            b.quote_refund(authed(pb::QuoteRefundRequest { account_id: a(), subscription_id: String::new() }, &owner))
                .await
                .map(drop),
        ),
        (
            "RefundSubscription",
            "subscription_id",
            b.refund_subscription(authed(
                pb::RefundSubscriptionRequest {
                    request_id: rid(),
                    account_id: a(),
                    subscription_id: NOT_AN_ID.into(),
                    ..Default::default()
                },
                &service,
            ))
            .await
            .map(drop),
        ),
    ]
}

async fn bad_input_names_the_field_and_changes_nothing(app: &TestApp) {
    let w = app.seed_world().await;
    let before = footprint(app).await;
    let mut failures = Vec::new();
    for (rpc, field, result) in cases(app, &w).await {
        match result {
            Err(status) if status.code() == Code::InvalidArgument && bad_field(&status).as_deref() == Some(field) => {}
            other => failures.push(format!("{rpc} with a bad {field}: {other:?}")),
        }
    }
    assert!(failures.is_empty(), "bad input not refused precisely:\n{}", failures.join("\n"));
    assert_eq!(footprint(app).await, before, "refused requests changed nothing");
}
