//! The licensing model: license types, seats, phone numbers, licensed data and billing.

use std::fmt;

use strum::{EnumString, IntoStaticStr, VariantArray};

/// What an account buys seats of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoStaticStr, EnumString, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum LicenseType {
    Licensed,
    Webinar,
    LargeMeeting,
    Phone,
    Rooms,
}

/// Kinds of licensed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoStaticStr, EnumString, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum ContentKind {
    Meeting,
    Webinar,
    Event,
    Recording,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, IntoStaticStr, EnumString, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    Ended,
}

/// An identifier minted by identity (a UUID), checked for shape before any lookup.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(String);

impl Id {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        uuid::Uuid::parse_str(raw).map(|id| Self(id.to_string())).map_err(|_| "is not a valid id")
    }

    /// An id read back from licensing's own database.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// A new time-ordered id for licensing's own records.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone number in E.164 form: `+`, then 8 to 15 digits, the first not zero.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let digits = raw.strip_prefix('+').ok_or("must be in E.164 form, starting with +")?;
        let valid =
            (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        if valid { Ok(Self(raw.to_owned())) } else { Err("must be + followed by 8 to 15 digits, the first not 0") }
    }

    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An ISO 4217 currency code: three capital letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currency(String);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be an ISO 4217 code of three capital letters, e.g. EUR")
        }
    }

    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatPool {
    pub license_type: LicenseType,
    pub capacity: u32,
    pub assigned: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub account_id: Id,
    pub user_id: Id,
    pub license_type: LicenseType,
    pub assigned_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneLine {
    pub account_id: Id,
    pub number: PhoneNumber,
    pub user_id: Option<Id>,
}

/// Licenses and numbers taken from or given to a user; kept sorted so equal sets compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LicenseSet {
    pub license_types: Vec<LicenseType>,
    pub phone_numbers: Vec<PhoneNumber>,
}

impl LicenseSet {
    pub fn new(mut license_types: Vec<LicenseType>, mut phone_numbers: Vec<PhoneNumber>) -> Self {
        license_types.sort();
        license_types.dedup();
        phone_numbers.sort();
        phone_numbers.dedup();
        Self { license_types, phone_numbers }
    }

    pub fn is_empty(&self) -> bool {
        self.license_types.is_empty() && self.phone_numbers.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentItem {
    pub id: Id,
    pub account_id: Id,
    pub owner_user_id: Id,
    pub kind: ContentKind,
    pub title: String,
    pub uses_pmi: bool,
    pub created_at_ms: i64,
}

/// Items per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentCounts {
    pub meetings: u32,
    pub webinars: u32,
    pub events: u32,
    pub recordings: u32,
}

impl ContentCounts {
    pub fn add(&mut self, kind: ContentKind) {
        let slot = match kind {
            ContentKind::Meeting => &mut self.meetings,
            ContentKind::Webinar => &mut self.webinars,
            ContentKind::Event => &mut self.events,
            ContentKind::Recording => &mut self.recordings,
        };
        *slot += 1;
    }

    pub fn of<'a>(items: impl IntoIterator<Item = &'a ContentItem>) -> Self {
        let mut counts = Self::default();
        for item in items {
            counts.add(item.kind);
        }
        counts
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: Id,
    pub account_id: Id,
    pub plan_name: String,
    pub price_minor: i64,
    pub currency: Currency,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    pub status: SubscriptionStatus,
    pub ended_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub id: Id,
    pub account_id: Id,
    pub subscription_id: Id,
    pub amount_minor: i64,
    pub currency: Currency,
    pub issued_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: Id,
    pub account_id: Id,
    pub subscription_id: Id,
    pub amount_minor: i64,
    pub currency: Currency,
    pub unused_seconds: i64,
    pub period_seconds: i64,
    pub refunded_at_ms: i64,
    /// Who was refunded (the invitee who left the account, SPEC R28), when known.
    pub refunded_user_id: Option<Id>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMethod {
    pub brand: String,
    pub last4: String,
    pub expiry_month: u32,
    pub expiry_year: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_e164() {
        assert!(PhoneNumber::parse("+31201234567").is_ok());
        for bad in ["31201234567", "+0123456789", "+1234", "+1234567890123456", "+3120-123456", ""] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_are_three_capitals() {
        assert!(Currency::parse("EUR").is_ok());
        for bad in ["eur", "EURO", "E1R", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn license_sets_ignore_order_and_duplicates() {
        let a = LicenseSet::new(vec![LicenseType::Phone, LicenseType::Licensed, LicenseType::Phone], vec![]);
        let b = LicenseSet::new(vec![LicenseType::Licensed, LicenseType::Phone], vec![]);
        assert_eq!(a, b);
    }
}
