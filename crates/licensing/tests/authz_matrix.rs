//! SPEC R34: every licensing RPC x every kind of caller, with the status each must get. Each
//! cell runs against a fresh demo account, so one cell's success cannot hide another's
//! refusal. A guard fails when the protos gain an RPC the matrix does not cover.

mod support;

use prost::Message;
use roster_platform::auth::Principal;
use roster_proto::licensing::v1 as pb;
use roster_testkit::tokens::{Forgery, forged};
use support::{TestApp, World, authed, rid};
use tonic::{Code, Request, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Owner,
    Admin,
    Member,
    /// An admin of another account, calling on this one.
    OtherAdmin,
    Operator,
    /// Identity's saga worker.
    Identity,
    /// A service that is not identity.
    OtherService,
    NoToken,
    /// A token wrong in one way: expired, another audience, an unknown key, or a key that may
    /// not sign the principal it names.
    Forged(Forgery),
}

const CALLERS: [Caller; 8] = [
    Caller::Owner,
    Caller::Admin,
    Caller::Member,
    Caller::OtherAdmin,
    Caller::Operator,
    Caller::Identity,
    Caller::OtherService,
    Caller::NoToken,
];

/// Every caller: the ones above and a token wrong in each way.
fn callers() -> impl Iterator<Item = Caller> {
    CALLERS.into_iter().chain(Forgery::ALL.map(Caller::Forged))
}

const RPCS: [&str; 30] = [
    "LicenseService/SetSeats",
    "LicenseService/ListAuditEvents",
    "BillingService/ListMyRefunds",
    "LicenseService/ListSeats",
    "LicenseService/AssignLicense",
    "LicenseService/UnassignLicense",
    "LicenseService/ListAssignments",
    "LicenseService/AddPhoneNumber",
    "LicenseService/AttachPhoneNumber",
    "LicenseService/DetachPhoneNumber",
    "LicenseService/ListPhoneNumbers",
    "LicenseService/ReclaimLicenses",
    "LicenseService/ReclaimLicensesBatch",
    "LicenseService/RestoreLicenses",
    "LicenseService/MovePhoneLicenses",
    "ContentService/RegisterContent",
    "ContentService/ListContent",
    "ContentService/TransferContent",
    "ContentService/UndoContentTransfer",
    "ContentService/DeleteUserContent",
    "ContentService/RehomeUserContent",
    "ContentService/PreviewUserRemoval",
    "BillingService/CreateSubscription",
    "BillingService/GetBillingOverview",
    "BillingService/ListInvoices",
    "BillingService/ListRefunds",
    "BillingService/QuoteRefund",
    "BillingService/RefundSubscription",
    "Events/WatchEvents",
    "Events/ListEvents",
];

/// The expected status of `rpc` for `caller`.
fn expected(rpc: &str, caller: Caller) -> Code {
    use Caller::*;
    use Code::{NotFound, Ok, PermissionDenied as Denied, Unauthenticated};
    if matches!(caller, NoToken | Forged(_)) {
        return Unauthenticated;
    }
    let method = rpc.split('/').nth(1).expect("method");
    if method == "ListMyRefunds" {
        // A user's own refunds, whichever account they are in now: users only.
        return if matches!(caller, Owner | Admin | Member | OtherAdmin) { Ok } else { Denied };
    }
    // The event log: services and operators, and the account's own owner and admins; to
    // anyone else, whatever account they name, the same refusal.
    if matches!(method, "WatchEvents" | "ListEvents") {
        return if matches!(caller, Owner | Admin | Operator | Identity | OtherService) { Ok } else { Denied };
    }
    if caller == OtherAdmin {
        // Another account's users are strangers here: the account does not exist for them.
        return NotFound;
    }
    let allowed: &[Caller] = match method {
        // Buying: the owner, or support.
        "SetSeats" | "CreateSubscription" => &[Owner, Operator],
        // Identity's sagas read seats, holdings and content before they act.
        "ListSeats" => &[Owner, Admin, Member, Operator, Identity],
        // Managing licenses: owner and admins (manage-licenses).
        "AssignLicense" | "UnassignLicense" | "AddPhoneNumber" | "AttachPhoneNumber" | "DetachPhoneNumber" => {
            &[Owner, Admin]
        }
        "ListAssignments" | "ListPhoneNumbers" => &[Owner, Admin, Operator, Identity],
        // Saga steps: identity only.
        "ReclaimLicenses"
        | "ReclaimLicensesBatch"
        | "RestoreLicenses"
        | "MovePhoneLicenses"
        | "TransferContent"
        | "UndoContentTransfer"
        | "DeleteUserContent"
        | "RehomeUserContent"
        | "PreviewUserRemoval"
        | "RefundSubscription" => &[Identity],
        // Own content: any active member.
        "RegisterContent" => &[Owner, Admin, Member],
        // The member's content: themselves, user managers, support.
        "ListContent" => &[Owner, Admin, Member, Operator, Identity],
        // Billing: the owner (SPEC R5); identity may quote, and see the subscriptions it
        // refunds when an invitee leaves their account (R28); support may look refunds up.
        "GetBillingOverview" | "ListRefunds" => &[Owner, Identity, Operator],
        "ListInvoices" => &[Owner],
        // The audit trail: the owner, view-audit holders (admins), support, identity.
        "ListAuditEvents" => &[Owner, Admin, Operator, Identity],
        "QuoteRefund" => &[Owner, Identity],
        other => panic!("no expectation for {other}"),
    };
    if allowed.contains(&caller) { Ok } else { Denied }
}

fn token(app: &TestApp, caller: Caller, w: &World, other: &World) -> Option<String> {
    Some(match caller {
        Caller::Owner => app.user_token(&w.owner),
        Caller::Admin => app.user_token(&w.admin),
        Caller::Member => app.user_token(&w.member),
        Caller::OtherAdmin => app.user_token(&other.admin),
        Caller::Operator => app.operator_token(),
        Caller::Identity => app.identity_token(),
        Caller::OtherService => app.token(&Principal::Service { name: support::OTHER_SERVICE.into() }),
        Caller::NoToken => return None,
        Caller::Forged(forgery) => forged(&app.signers, forgery, &w.owner),
    })
}

fn request<T>(message: T, token: &Option<String>) -> Request<T> {
    match token {
        Some(token) => authed(message, token),
        None => Request::new(message),
    }
}

fn unique_number() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("+4420{:07}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Objects some cells need that only identity or support can make: a finished transfer and a
/// subscription on the world's account.
#[derive(Clone)]
struct Fixtures {
    transfer_id: String,
    subscription_id: String,
}

async fn fixtures(app: &TestApp, w: &World) -> Fixtures {
    let transfer = app
        .content()
        .transfer_content(authed(
            pb::TransferContentRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                from_user_id: w.member.clone(),
                to_user_id: w.owner.clone(),
                kinds: vec![pb::ContentKind::Event as i32],
            },
            &app.identity_token(),
        ))
        .await
        .expect("fixture transfer")
        .into_inner();
    let subscription = app
        .billing()
        .create_subscription(authed(
            pb::CreateSubscriptionRequest {
                request_id: rid(),
                account_id: w.account.clone(),
                plan_name: "Business".into(),
                price_minor: 10_000,
                currency: "USD".into(),
                period_start_ms: support::START_MS,
                period_end_ms: support::START_MS + 30 * 86_400_000,
            },
            &app.operator_token(),
        ))
        .await
        .expect("fixture subscription")
        .into_inner();
    // The solo owner as an unlink leaves them: owner of an account of their own, with the
    // reclaim hold their removal from this account left behind (what RehomeUserContent needs).
    sqlx::query("INSERT INTO license_holds (account_id, user_id, since_ms) VALUES ($1, $2, $3)")
        .bind(&w.account)
        .bind(&w.solo_owner)
        .bind(support::START_MS)
        .execute(app.db.pool())
        .await
        .expect("fixture hold");
    Fixtures { transfer_id: transfer.transfer_id, subscription_id: subscription.id }
}

async fn call(app: &TestApp, rpc: &str, w: &World, fx: &Fixtures, t: &Option<String>) -> Result<(), Status> {
    let account = w.account.clone();
    let method = rpc.split('/').nth(1).expect("method");
    let (mut licenses, mut content, mut billing) = (app.licenses(), app.content(), app.billing());
    match method {
        "SetSeats" => licenses
            .set_seats(request(
                pb::SetSeatsRequest {
                    request_id: rid(),
                    account_id: account,
                    license_type: pb::LicenseType::Rooms as i32,
                    capacity: 4,
                },
                t,
            ))
            .await
            .map(drop),
        "ListSeats" => licenses.list_seats(request(pb::ListSeatsRequest { account_id: account }, t)).await.map(drop),
        "AssignLicense" => licenses
            .assign_license(request(
                pb::AssignLicenseRequest {
                    request_id: rid(),
                    account_id: account,
                    user_id: w.member.clone(),
                    license_type: pb::LicenseType::Phone as i32,
                },
                t,
            ))
            .await
            .map(drop),
        "UnassignLicense" => licenses
            .unassign_license(request(
                pb::UnassignLicenseRequest {
                    request_id: rid(),
                    account_id: account,
                    user_id: w.member.clone(),
                    license_type: pb::LicenseType::Licensed as i32,
                },
                t,
            ))
            .await
            .map(drop),
        "ListAssignments" => licenses
            .list_assignments(request(pb::ListAssignmentsRequest { account_id: account, ..Default::default() }, t))
            .await
            .map(drop),
        "AddPhoneNumber" => licenses
            .add_phone_number(request(
                pb::AddPhoneNumberRequest { request_id: rid(), account_id: account, number: unique_number() },
                t,
            ))
            .await
            .map(drop),
        "AttachPhoneNumber" => {
            let free = w.demo_free_number();
            licenses
                .attach_phone_number(request(
                    pb::AttachPhoneNumberRequest {
                        request_id: rid(),
                        account_id: account,
                        number: free,
                        user_id: w.owner.clone(),
                    },
                    t,
                ))
                .await
                .map(drop)
        }
        "DetachPhoneNumber" => licenses
            .detach_phone_number(request(
                pb::DetachPhoneNumberRequest { request_id: rid(), account_id: account, number: w.phone.clone() },
                t,
            ))
            .await
            .map(drop),
        "ListPhoneNumbers" => {
            licenses.list_phone_numbers(request(pb::ListPhoneNumbersRequest { account_id: account }, t)).await.map(drop)
        }
        "ReclaimLicenses" => licenses
            .reclaim_licenses(request(
                pb::ReclaimLicensesRequest { request_id: rid(), account_id: account, user_id: w.member.clone() },
                t,
            ))
            .await
            .map(drop),
        "ReclaimLicensesBatch" => licenses
            .reclaim_licenses_batch(request(
                pb::ReclaimLicensesBatchRequest {
                    account_id: account,
                    items: vec![pb::ReclaimLicensesItem { request_id: rid(), user_id: w.member.clone() }],
                },
                t,
            ))
            .await
            .map(drop),
        "RestoreLicenses" => licenses
            .restore_licenses(request(
                pb::RestoreLicensesRequest {
                    request_id: rid(),
                    account_id: account,
                    user_id: w.member.clone(),
                    licenses: Some(pb::LicenseSet::default()),
                },
                t,
            ))
            .await
            .map(drop),
        "MovePhoneLicenses" => licenses
            .move_phone_licenses(request(
                pb::MovePhoneLicensesRequest {
                    request_id: rid(),
                    account_id: account,
                    from_user_id: w.owner.clone(),
                    to_user_id: w.admin.clone(),
                },
                t,
            ))
            .await
            .map(drop),
        "RegisterContent" => content
            .register_content(request(
                pb::RegisterContentRequest {
                    request_id: rid(),
                    account_id: account,
                    kind: pb::ContentKind::Meeting as i32,
                    title: "Stand-up".into(),
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        "ListContent" => content
            .list_content(request(
                pb::ListContentRequest { account_id: account, owner_user_id: w.member.clone(), ..Default::default() },
                t,
            ))
            .await
            .map(drop),
        "TransferContent" => content
            .transfer_content(request(
                pb::TransferContentRequest {
                    request_id: rid(),
                    account_id: account,
                    from_user_id: w.member.clone(),
                    to_user_id: w.admin.clone(),
                    kinds: vec![pb::ContentKind::Meeting as i32],
                },
                t,
            ))
            .await
            .map(drop),
        "UndoContentTransfer" => content
            .undo_content_transfer(request(
                pb::UndoContentTransferRequest {
                    request_id: rid(),
                    account_id: account,
                    transfer_id: fx.transfer_id.clone(),
                },
                t,
            ))
            .await
            .map(drop),
        "DeleteUserContent" => content
            .delete_user_content(request(
                // The deactivated user: their deactivation reclaimed their licenses here.
                pb::DeleteUserContentRequest { request_id: rid(), account_id: account, user_id: w.deactivated.clone() },
                t,
            ))
            .await
            .map(drop),
        "RehomeUserContent" => content
            .rehome_user_content(request(
                pb::RehomeUserContentRequest {
                    request_id: rid(),
                    account_id: account,
                    user_id: w.solo_owner.clone(),
                    new_account_id: w.solo_account.clone(),
                },
                t,
            ))
            .await
            .map(drop),
        "PreviewUserRemoval" => content
            .preview_user_removal(request(
                pb::PreviewUserRemovalRequest { account_id: account, user_id: w.member.clone(), ..Default::default() },
                t,
            ))
            .await
            .map(drop),
        "CreateSubscription" => billing
            .create_subscription(request(
                pb::CreateSubscriptionRequest {
                    request_id: rid(),
                    account_id: account,
                    plan_name: "Pro".into(),
                    price_minor: 1_500,
                    currency: "EUR".into(),
                    period_start_ms: support::START_MS,
                    period_end_ms: support::START_MS + 86_400_000,
                },
                t,
            ))
            .await
            .map(drop),
        "GetBillingOverview" => billing
            .get_billing_overview(request(pb::GetBillingOverviewRequest { account_id: account }, t))
            .await
            .map(drop),
        "ListInvoices" => billing
            .list_invoices(request(pb::ListInvoicesRequest { account_id: account, ..Default::default() }, t))
            .await
            .map(drop),
        "ListRefunds" => billing
            .list_refunds(request(pb::ListRefundsRequest { account_id: account, ..Default::default() }, t))
            .await
            .map(drop),
        "ListMyRefunds" => billing.list_my_refunds(request(pb::ListMyRefundsRequest::default(), t)).await.map(drop),
        "WatchEvents" | "ListEvents" => {
            use roster_proto::events::v1 as ev;
            let filter = Some(ev::EventFilter { account_ids: vec![account], types: Vec::new() });
            let mut client = ev::events_client::EventsClient::new(app.channel.clone());
            if rpc.ends_with("ListEvents") {
                client.list_events(request(ev::ListEventsRequest { filter, ..Default::default() }, t)).await.map(drop)
            } else {
                client.watch_events(request(ev::WatchEventsRequest { filter, ..Default::default() }, t)).await.map(drop)
            }
        }
        "ListAuditEvents" => app
            .licenses()
            .list_audit_events(request(pb::ListAuditEventsRequest { account_id: account, ..Default::default() }, t))
            .await
            .map(drop),
        "QuoteRefund" => billing
            .quote_refund(request(
                pb::QuoteRefundRequest { account_id: account, subscription_id: fx.subscription_id.clone() },
                t,
            ))
            .await
            .map(drop),
        "RefundSubscription" => billing
            .refund_subscription(request(
                pb::RefundSubscriptionRequest {
                    request_id: rid(),
                    account_id: account,
                    subscription_id: fx.subscription_id.clone(),
                    ..Default::default()
                },
                t,
            ))
            .await
            .map(drop),
        other => panic!("the matrix has no call for {other}"),
    }
}

trait FreeNumber {
    fn demo_free_number(&self) -> String;
}

impl FreeNumber for World {
    /// The demo's second number, which nobody holds.
    fn demo_free_number(&self) -> String {
        let serial: u64 = self.phone.trim_start_matches("+3120").parse().expect("test number");
        format!("+3120{:07}", serial + 1)
    }
}

on_both_backends!(
    r34_every_licensing_rpc_checks_the_caller,
    r33_every_refused_change_is_audited_at_once_and_stalls_no_other_account,
);

/// The RPCs that change something and audit their refusals: those whose request carries a
/// `request_id`, and the batched reclaim, whose items do.
fn changes() -> Vec<&'static str> {
    let descriptors = prost_types::FileDescriptorSet::decode(roster_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let keyed: Vec<String> = descriptors
        .file
        .iter()
        .filter(|file| file.package() == "roster.licensing.v1")
        .flat_map(|file| file.message_type.iter().map(move |m| (file.package(), m)))
        .filter(|(_, message)| message.field.iter().any(|f| f.name() == "request_id"))
        .map(|(package, message)| format!(".{package}.{}", message.name()))
        .collect();
    let descriptors = &descriptors;
    RPCS.into_iter()
        .filter(|rpc| {
            *rpc == "LicenseService/ReclaimLicensesBatch"
                || descriptors.file.iter().flat_map(|f| f.service.iter()).any(|service| {
                    service.method.iter().any(|m| {
                        format!("{}/{}", service.name(), m.name()) == *rpc && keyed.iter().any(|k| k == m.input_type())
                    })
                })
        })
        .collect()
}

/// SPEC R33 with R34: every change refused to a caller (the first of a member, an operator, an
/// admin and another account's admin that the matrix refuses) answers at once, leaves its
/// `refused:` record, and never holds the database meanwhile: another account's writes, made
/// over and over while it runs, each answer well within a second or two.
async fn r33_every_refused_change_is_audited_at_once_and_stalls_no_other_account(app: &TestApp) {
    let other = app.seed_world().await;
    let bystander = app.seed_world().await;
    let generous = std::time::Duration::from_secs(5);
    let mut failures = Vec::new();
    let rpcs = changes();
    assert!(rpcs.len() >= 15, "every change RPC is covered: {rpcs:?}");
    for rpc in rpcs {
        let refused_caller = [Caller::Member, Caller::Operator, Caller::Admin, Caller::OtherAdmin]
            .into_iter()
            .find(|caller| !matches!(expected(rpc, *caller), Code::Ok | Code::Unauthenticated));
        let Some(caller) = refused_caller else { continue };
        let world = app.seed_world().await;
        let fx = fixtures(app, &world).await;
        let principal = match caller {
            Caller::Member => format!("user:{}", world.member),
            Caller::Admin => format!("user:{}", world.admin),
            Caller::OtherAdmin => format!("user:{}", other.admin),
            _ => "operator:support".to_owned(),
        };
        let refusals = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM audit_events WHERE principal = $1 AND outcome LIKE 'refused:%'",
            )
            .bind(&principal)
            .fetch_one(app.db.pool())
            .await
            .expect("audit")
        };
        let before = refusals().await;
        let stop = tokio::sync::watch::channel(false);
        let writes = {
            let (mut stopped, account, owner) = (stop.1.clone(), bystander.account.clone(), bystander.owner.clone());
            let mut client = app.content();
            let token = app.user_token(&owner);
            tokio::spawn(async move {
                let mut slowest = std::time::Duration::ZERO;
                while !*stopped.borrow_and_update() {
                    let started = std::time::Instant::now();
                    let request = pb::RegisterContentRequest {
                        request_id: rid(),
                        account_id: account.clone(),
                        kind: pb::ContentKind::Meeting as i32,
                        title: "Bystander".into(),
                        ..Default::default()
                    };
                    client.register_content(authed(request, &token)).await.expect("the bystander's write");
                    slowest = slowest.max(started.elapsed());
                }
                slowest
            })
        };
        let token = token(app, caller, &world, &other);
        let started = std::time::Instant::now();
        let got = call(app, rpc, &world, &fx, &token).await;
        let took = started.elapsed();
        let _ = stop.0.send(true);
        let slowest_write = writes.await.expect("writes");
        if got.is_ok() {
            failures.push(format!("{rpc} as {caller:?} was not refused"));
            continue;
        }
        if took > generous || slowest_write > generous {
            failures.push(format!(
                "{rpc} as {caller:?}: answered in {took:?}, another account's write took {slowest_write:?}"
            ));
        }
        if refusals().await != before + 1 {
            failures.push(format!("{rpc} as {caller:?}: no refused record for {principal}"));
        }
    }
    assert!(
        failures.is_empty(),
        "refusals that were slow, stalled others or went unrecorded:\n{}",
        failures.join("\n")
    );
}

async fn r34_every_licensing_rpc_checks_the_caller(app: &TestApp) {
    let other = app.seed_world().await;
    let shared = app.seed_world().await;
    let shared_fixtures = Fixtures { transfer_id: rid(), subscription_id: rid() };
    let mut failures = Vec::new();
    for rpc in RPCS {
        for caller in callers() {
            let unauthenticated = matches!(caller, Caller::NoToken | Caller::Forged(_));
            // Unauthenticated cells never reach a handler, so they can share one account.
            let (world, fx) = if unauthenticated {
                (shared.clone(), shared_fixtures.clone())
            } else {
                let world = app.seed_world().await;
                let fx = fixtures(app, &world).await;
                (world, fx)
            };
            let token = token(app, caller, &world, &other);
            let answer = call(app, rpc, &world, &fx, &token).await;
            let got = answer.as_ref().map_or_else(|status| status.code(), |()| Code::Ok);
            let want = expected(rpc, caller);
            if got != want {
                failures.push(format!("{rpc} as {caller:?}: got {got:?}, want {want:?}"));
            } else if let (Caller::Forged(forgery), Err(status)) = (caller, &answer)
                && support::reason(status) != forgery.reason()
            {
                failures.push(format!("{rpc} as {caller:?}: refused for {}", support::reason(status)));
            }
        }
    }
    assert!(failures.is_empty(), "authorisation matrix mismatches:\n{}", failures.join("\n"));
}

#[test]
fn the_matrix_covers_every_licensing_rpc() {
    let descriptors = prost_types::FileDescriptorSet::decode(roster_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut declared: Vec<String> = descriptors
        .file
        .iter()
        .filter(|file| matches!(file.package(), "roster.licensing.v1" | "roster.events.v1"))
        .flat_map(|file| file.service.iter())
        .flat_map(|service| service.method.iter().map(move |m| format!("{}/{}", service.name(), m.name())))
        .collect();
    declared.sort();
    let mut covered: Vec<String> = RPCS.iter().map(|s| s.to_string()).collect();
    covered.sort();
    assert_eq!(declared, covered, "add new RPCs to the authorisation matrix");
}
