//! What identity tells the services that act on its changes (the event log, `roster.events.v1`):
//! one variant per event type, each with the fields its consumers need. Stored as JSON in the
//! change's transaction and turned into the API's typed payload when read.

use serde::{Deserialize, Serialize};

/// Why ownership moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnershipCause {
    /// The owner handed it over (SPEC R2).
    Transfer,
    /// An ownership request was approved, or approved itself (SPEC R8).
    Request,
    /// Support reassigned it (SPEC R11).
    Support,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    UserInvited {
        user_id: String,
        email: String,
        role: String,
    },
    /// `from_account_id`: the account the invitee left, for one who had an account.
    UserJoined {
        user_id: String,
        from_account_id: Option<String>,
    },
    UserActivated {
        user_id: String,
    },
    UserDeactivated {
        user_id: String,
    },
    UserReactivated {
        user_id: String,
    },
    UserUnlinked {
        user_id: String,
        new_account_id: String,
    },
    UserDeleted {
        user_id: String,
    },
    RoleChanged {
        user_id: String,
        role: String,
        custom_role_id: Option<String>,
    },
    EmailChanged {
        user_id: String,
        email: String,
    },
    OwnershipMoved {
        previous_owner_id: String,
        new_owner_id: String,
        cause: OwnershipCause,
    },
    SettingsChanged {
        user_id: String,
    },
}

/// Every event type identity writes, as consumers filter on them.
pub const TYPES: &[&str] = &[
    "user.invited",
    "user.joined",
    "user.activated",
    "user.deactivated",
    "user.reactivated",
    "user.unlinked",
    "user.deleted",
    "user.role_changed",
    "user.email_changed",
    "account.ownership_moved",
    "user.settings_changed",
];

impl Change {
    /// The event's type (one of [`TYPES`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UserInvited { .. } => TYPES[0],
            Self::UserJoined { .. } => TYPES[1],
            Self::UserActivated { .. } => TYPES[2],
            Self::UserDeactivated { .. } => TYPES[3],
            Self::UserReactivated { .. } => TYPES[4],
            Self::UserUnlinked { .. } => TYPES[5],
            Self::UserDeleted { .. } => TYPES[6],
            Self::RoleChanged { .. } => TYPES[7],
            Self::EmailChanged { .. } => TYPES[8],
            Self::OwnershipMoved { .. } => TYPES[9],
            Self::SettingsChanged { .. } => TYPES[10],
        }
    }

    /// What the change is about: the user, or for ownership the new owner.
    pub fn subject(&self) -> String {
        match self {
            Self::UserInvited { user_id, .. }
            | Self::UserJoined { user_id, .. }
            | Self::UserActivated { user_id }
            | Self::UserDeactivated { user_id }
            | Self::UserReactivated { user_id }
            | Self::UserUnlinked { user_id, .. }
            | Self::UserDeleted { user_id }
            | Self::RoleChanged { user_id, .. }
            | Self::EmailChanged { user_id, .. }
            | Self::SettingsChanged { user_id } => format!("user:{user_id}"),
            Self::OwnershipMoved { new_owner_id, .. } => format!("user:{new_owner_id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_names_its_type_and_round_trips() {
        let change = Change::OwnershipMoved {
            previous_owner_id: "a".into(),
            new_owner_id: "b".into(),
            cause: OwnershipCause::Support,
        };
        assert_eq!(change.kind(), "account.ownership_moved");
        assert_eq!(change.subject(), "user:b");
        let text = serde_json::to_string(&change).expect("json");
        assert_eq!(serde_json::from_str::<Change>(&text).expect("back"), change);
    }
}
