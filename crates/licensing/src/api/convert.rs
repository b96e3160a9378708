//! Every conversion between licensing's protobuf messages and its domain types. Parsing into
//! domain values happens here, so use cases never see raw strings or enum numbers.

use roster_platform::status;
use roster_proto::licensing::v1 as pb;
use tonic::Status;

use crate::domain::model::{
    Assignment, ContentCounts, ContentItem, ContentKind, Currency, Id, Invoice, LicenseSet, LicenseType, PaymentMethod,
    PhoneLine, PhoneNumber, Refund, SeatPool, Subscription, SubscriptionStatus,
};
use crate::domain::proration::Proration;
use crate::store::audit::StoredEvent;

/// Longest title or plan name.
pub const MAX_TEXT_CHARS: usize = 200;

pub fn id(field: &'static str, raw: &str) -> Result<Id, Status> {
    Id::parse(raw).map_err(|message| status::invalid_argument(field, message))
}

/// An optional id: empty means none.
pub fn optional_id(field: &'static str, raw: &str) -> Result<Option<Id>, Status> {
    if raw.is_empty() { Ok(None) } else { id(field, raw).map(Some) }
}

pub fn license_type(field: &'static str, raw: i32) -> Result<LicenseType, Status> {
    optional_license_type(field, raw)?.ok_or_else(|| status::invalid_argument(field, "is required"))
}

/// `LICENSE_TYPE_UNSPECIFIED` means no filter.
pub fn optional_license_type(field: &'static str, raw: i32) -> Result<Option<LicenseType>, Status> {
    match pb::LicenseType::try_from(raw) {
        Ok(pb::LicenseType::Unspecified) => Ok(None),
        Ok(pb::LicenseType::Licensed) => Ok(Some(LicenseType::Licensed)),
        Ok(pb::LicenseType::Webinar) => Ok(Some(LicenseType::Webinar)),
        Ok(pb::LicenseType::LargeMeeting) => Ok(Some(LicenseType::LargeMeeting)),
        Ok(pb::LicenseType::Phone) => Ok(Some(LicenseType::Phone)),
        Ok(pb::LicenseType::Rooms) => Ok(Some(LicenseType::Rooms)),
        Err(_) => Err(status::invalid_argument(field, format!("{raw} is not a license type"))),
    }
}

fn license_type_to_pb(license_type: LicenseType) -> pb::LicenseType {
    match license_type {
        LicenseType::Licensed => pb::LicenseType::Licensed,
        LicenseType::Webinar => pb::LicenseType::Webinar,
        LicenseType::LargeMeeting => pb::LicenseType::LargeMeeting,
        LicenseType::Phone => pb::LicenseType::Phone,
        LicenseType::Rooms => pb::LicenseType::Rooms,
    }
}

pub fn content_kind(field: &'static str, raw: i32) -> Result<ContentKind, Status> {
    optional_content_kind(field, raw)?.ok_or_else(|| status::invalid_argument(field, "is required"))
}

pub fn optional_content_kind(field: &'static str, raw: i32) -> Result<Option<ContentKind>, Status> {
    match pb::ContentKind::try_from(raw) {
        Ok(pb::ContentKind::Unspecified) => Ok(None),
        Ok(pb::ContentKind::Meeting) => Ok(Some(ContentKind::Meeting)),
        Ok(pb::ContentKind::Webinar) => Ok(Some(ContentKind::Webinar)),
        Ok(pb::ContentKind::Event) => Ok(Some(ContentKind::Event)),
        Ok(pb::ContentKind::Recording) => Ok(Some(ContentKind::Recording)),
        Err(_) => Err(status::invalid_argument(field, format!("{raw} is not a content kind"))),
    }
}

/// At least one kind, each valid.
pub fn content_kinds(field: &'static str, raw: &[i32]) -> Result<std::collections::BTreeSet<ContentKind>, Status> {
    if raw.is_empty() {
        return Err(status::invalid_argument(field, "name at least one kind to transfer"));
    }
    raw.iter().map(|kind| content_kind(field, *kind)).collect()
}

fn content_kind_to_pb(kind: ContentKind) -> pb::ContentKind {
    match kind {
        ContentKind::Meeting => pb::ContentKind::Meeting,
        ContentKind::Webinar => pb::ContentKind::Webinar,
        ContentKind::Event => pb::ContentKind::Event,
        ContentKind::Recording => pb::ContentKind::Recording,
    }
}

pub fn phone_number(field: &'static str, raw: &str) -> Result<PhoneNumber, Status> {
    PhoneNumber::parse(raw).map_err(|message| status::invalid_argument(field, message))
}

pub fn currency(field: &'static str, raw: &str) -> Result<Currency, Status> {
    Currency::parse(raw).map_err(|message| status::invalid_argument(field, message))
}

/// Non-blank text of at most [`MAX_TEXT_CHARS`], trimmed.
pub fn text(field: &'static str, raw: &str) -> Result<String, Status> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(status::invalid_argument(field, "is required"));
    }
    if trimmed.chars().count() > MAX_TEXT_CHARS || trimmed.chars().any(char::is_control) {
        return Err(status::invalid_argument(field, format!("must be at most {MAX_TEXT_CHARS} printable characters")));
    }
    Ok(trimmed.to_owned())
}

pub fn license_set(field: &'static str, raw: Option<&pb::LicenseSet>) -> Result<LicenseSet, Status> {
    let Some(raw) = raw else { return Ok(LicenseSet::default()) };
    let types = raw.license_types.iter().map(|t| license_type(field, *t)).collect::<Result<Vec<_>, _>>()?;
    let numbers = raw.phone_numbers.iter().map(|n| phone_number(field, n)).collect::<Result<Vec<_>, _>>()?;
    Ok(LicenseSet::new(types, numbers))
}

pub fn license_set_to_pb(set: &LicenseSet) -> pb::LicenseSet {
    pb::LicenseSet {
        license_types: set.license_types.iter().map(|t| license_type_to_pb(*t) as i32).collect(),
        phone_numbers: set.phone_numbers.iter().map(|n| n.as_str().to_owned()).collect(),
    }
}

pub fn seat_pool(account: &Id, pool: &SeatPool) -> pb::SeatPool {
    pb::SeatPool {
        account_id: account.to_string(),
        license_type: license_type_to_pb(pool.license_type) as i32,
        capacity: pool.capacity,
        assigned: pool.assigned,
    }
}

pub fn assignment(assignment: &Assignment) -> pb::Assignment {
    pb::Assignment {
        account_id: assignment.account_id.to_string(),
        user_id: assignment.user_id.to_string(),
        license_type: license_type_to_pb(assignment.license_type) as i32,
        assigned_at_ms: assignment.assigned_at_ms,
    }
}

pub fn phone_line(line: &PhoneLine) -> pb::PhoneNumber {
    pb::PhoneNumber {
        account_id: line.account_id.to_string(),
        number: line.number.as_str().to_owned(),
        user_id: line.user_id.as_ref().map(ToString::to_string).unwrap_or_default(),
    }
}

pub fn content_item(item: &ContentItem) -> pb::ContentItem {
    pb::ContentItem {
        id: item.id.to_string(),
        account_id: item.account_id.to_string(),
        owner_user_id: item.owner_user_id.to_string(),
        kind: content_kind_to_pb(item.kind) as i32,
        title: item.title.clone(),
        uses_pmi: item.uses_pmi,
        created_at_ms: item.created_at_ms,
    }
}

pub fn counts(counts: &ContentCounts) -> pb::ContentCounts {
    pb::ContentCounts {
        meetings: counts.meetings,
        webinars: counts.webinars,
        events: counts.events,
        recordings: counts.recordings,
    }
}

pub fn subscription(sub: &Subscription) -> pb::Subscription {
    pb::Subscription {
        id: sub.id.to_string(),
        account_id: sub.account_id.to_string(),
        plan_name: sub.plan_name.clone(),
        price_minor: sub.price_minor,
        currency: sub.currency.as_str().to_owned(),
        period_start_ms: sub.period_start_ms,
        period_end_ms: sub.period_end_ms,
        status: match sub.status {
            SubscriptionStatus::Active => pb::SubscriptionStatus::Active,
            SubscriptionStatus::Ended => pb::SubscriptionStatus::Ended,
        } as i32,
        ended_at_ms: sub.ended_at_ms.unwrap_or_default(),
    }
}

pub fn invoice(invoice: &Invoice) -> pb::Invoice {
    pb::Invoice {
        id: invoice.id.to_string(),
        account_id: invoice.account_id.to_string(),
        subscription_id: invoice.subscription_id.to_string(),
        amount_minor: invoice.amount_minor,
        currency: invoice.currency.as_str().to_owned(),
        issued_at_ms: invoice.issued_at_ms,
    }
}

pub fn refund(refund: &Refund) -> pb::Refund {
    pb::Refund {
        id: refund.id.to_string(),
        account_id: refund.account_id.to_string(),
        subscription_id: refund.subscription_id.to_string(),
        amount_minor: refund.amount_minor,
        currency: refund.currency.as_str().to_owned(),
        unused_seconds: refund.unused_seconds,
        period_seconds: refund.period_seconds,
        refunded_at_ms: refund.refunded_at_ms,
        refunded_user_id: refund.refunded_user_id.as_ref().map(ToString::to_string).unwrap_or_default(),
    }
}

pub fn quote(sub: &Subscription, proration: &Proration, now_ms: i64) -> pb::RefundQuote {
    pb::RefundQuote {
        subscription_id: sub.id.to_string(),
        amount_minor: proration.amount_minor,
        currency: sub.currency.as_str().to_owned(),
        unused_seconds: proration.unused_seconds,
        period_seconds: proration.period_seconds,
        quoted_at_ms: now_ms,
    }
}

pub fn payment_method(method: &PaymentMethod) -> pb::PaymentMethodSummary {
    pb::PaymentMethodSummary {
        brand: method.brand.clone(),
        last4: method.last4.clone(),
        expiry_month: method.expiry_month,
        expiry_year: method.expiry_year,
    }
}

pub fn audit_event(event: &StoredEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        id: event.id.clone(),
        account_id: event.account_id.clone(),
        principal: event.principal.clone(),
        action: event.action.clone(),
        target: event.target.clone(),
        outcome: event.outcome.clone(),
        request_id: event.request_id.clone(),
        details_json: event.details_json.clone(),
        at_ms: event.at_ms,
    }
}

/// A stored licensing event's payload as the API's typed payload (see `domain::events`).
pub fn event_payload(
    event: &roster_platform::event_log::StoredEvent,
) -> Result<roster_proto::events::v1::event::Payload, String> {
    use roster_platform::stored_text::StoredText as _;
    use roster_proto::events::v1 as ev;
    use roster_proto::events::v1::event::Payload;

    use crate::domain::events::{Change, Licenses};
    let change: Change = serde_json::from_str(&event.payload).map_err(|e| e.to_string())?;
    let license_type = |text: &str| {
        LicenseType::from_str_opt(text)
            .map(|t| license_type_to_pb(t) as i32)
            .ok_or_else(|| format!("unknown license type {text:?}"))
    };
    let set = |licenses: Licenses| -> Result<pb::LicenseSet, String> {
        Ok(pb::LicenseSet {
            license_types: licenses.license_types.iter().map(|t| license_type(t)).collect::<Result<_, _>>()?,
            phone_numbers: licenses.phone_numbers,
        })
    };
    Ok(match change {
        Change::LicenseAssigned { user_id, license_type: kind } => {
            Payload::LicenseAssigned(ev::LicenseAssigned { user_id, license_type: license_type(&kind)? })
        }
        Change::LicensesReclaimed { user_id, licenses } => {
            Payload::LicensesReclaimed(ev::LicensesReclaimed { user_id, licenses: Some(set(licenses)?) })
        }
        Change::LicensesRestored { user_id, licenses } => {
            Payload::LicensesRestored(ev::LicensesRestored { user_id, licenses: Some(set(licenses)?) })
        }
        Change::PhoneNumberMoved { number, from_user_id, to_user_id } => {
            Payload::PhoneNumberMoved(ev::PhoneNumberMoved {
                number,
                from_user_id: from_user_id.unwrap_or_default(),
                to_user_id: to_user_id.unwrap_or_default(),
            })
        }
        Change::ContentTransferred { from_user_id, to_user_id, items } => {
            Payload::ContentTransferred(ev::ContentTransferred { from_user_id, to_user_id, items })
        }
        Change::ContentDeleted { user_id, items } => Payload::ContentDeleted(ev::ContentDeleted { user_id, items }),
        Change::RefundMade { refund_id, amount_minor, currency } => {
            Payload::RefundMade(ev::RefundMade { refund_id, amount_minor, currency })
        }
        Change::AccountClosed => Payload::AccountClosed(ev::AccountClosed {}),
    })
}
