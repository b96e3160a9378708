//! What licensing tells the services that act on its changes (the event log,
//! `roster.events.v1`): one variant per event type. Stored as JSON in the change's transaction
//! and turned into the API's typed payload when read.

use serde::{Deserialize, Serialize};

use roster_platform::stored_text::StoredText;

use super::model::{ContentCounts, LicenseSet};

/// Licenses and numbers, as stored in an event.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Licenses {
    pub license_types: Vec<String>,
    pub phone_numbers: Vec<String>,
}

impl From<&LicenseSet> for Licenses {
    fn from(set: &LicenseSet) -> Self {
        Self {
            license_types: set.license_types.iter().map(|t| t.as_str().to_owned()).collect(),
            phone_numbers: set.phone_numbers.iter().map(|n| n.as_str().to_owned()).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    LicenseAssigned {
        user_id: String,
        license_type: String,
    },
    LicensesReclaimed {
        user_id: String,
        licenses: Licenses,
    },
    LicensesRestored {
        user_id: String,
        licenses: Licenses,
    },
    /// `None`: nobody (a number attached from, or detached to, the pool).
    PhoneNumberMoved {
        number: String,
        from_user_id: Option<String>,
        to_user_id: Option<String>,
    },
    ContentTransferred {
        from_user_id: String,
        to_user_id: String,
        items: u32,
    },
    ContentDeleted {
        user_id: String,
        items: u32,
    },
    RefundMade {
        refund_id: String,
        amount_minor: i64,
        currency: String,
    },
    AccountClosed,
}

/// Every event type licensing writes, as consumers filter on them.
pub const TYPES: &[&str] = &[
    "license.assigned",
    "license.reclaimed",
    "license.restored",
    "phone_number.moved",
    "content.transferred",
    "content.deleted",
    "refund.made",
    "account.closed",
];

impl Change {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::LicenseAssigned { .. } => TYPES[0],
            Self::LicensesReclaimed { .. } => TYPES[1],
            Self::LicensesRestored { .. } => TYPES[2],
            Self::PhoneNumberMoved { .. } => TYPES[3],
            Self::ContentTransferred { .. } => TYPES[4],
            Self::ContentDeleted { .. } => TYPES[5],
            Self::RefundMade { .. } => TYPES[6],
            Self::AccountClosed => TYPES[7],
        }
    }

    /// What the change is about; `account` for account-wide changes.
    pub fn subject(&self, account: &str) -> String {
        match self {
            Self::LicenseAssigned { user_id, .. }
            | Self::LicensesReclaimed { user_id, .. }
            | Self::LicensesRestored { user_id, .. }
            | Self::ContentDeleted { user_id, .. } => format!("user:{user_id}"),
            Self::ContentTransferred { from_user_id, .. } => format!("user:{from_user_id}"),
            Self::PhoneNumberMoved { number, .. } => format!("phone:{number}"),
            Self::RefundMade { refund_id, .. } => format!("refund:{refund_id}"),
            Self::AccountClosed => format!("account:{account}"),
        }
    }
}

/// Items in a count of licensed data.
pub fn items(counts: &ContentCounts) -> u32 {
    counts.meetings + counts.webinars + counts.events + counts.recordings
}
