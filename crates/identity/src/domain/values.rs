//! Validated value types. Parsing happens once, at the API edge; past it, an [`Email`] or an
//! id is known to be well formed.

use std::fmt;

/// Why a value was refused: which rule of its shape it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid(message.into())
}

/// A lower-cased e-mail address. Its syntax (RFC 5322's addr-spec, RFC 5321's part lengths)
/// is checked by the `email_address` crate; Roster then keeps to what every mail system
/// delivers and every person can type: an ASCII dot-atom before the @ (no quoted strings,
/// comments or non-ASCII letters), a host name after it ([`Domain`]), 254 characters in all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        use email_address::{EmailAddress, Error, Options};
        let text = raw.trim().to_ascii_lowercase();
        if text.is_empty() {
            return Err(invalid("is required"));
        }
        if text.len() > 254 {
            return Err(invalid("is longer than 254 characters"));
        }
        let options = Options::default().without_display_text().without_domain_literal().with_required_tld();
        let parsed = EmailAddress::parse_with_options(&text, options).map_err(|error| match error {
            Error::MissingSeparator => invalid("is not an e-mail address (no @)"),
            Error::LocalPartEmpty | Error::LocalPartTooLong => {
                invalid("has an empty or over-long part before the @ (at most 64 characters)")
            }
            other => invalid(format!("is not an e-mail address: {}", other.to_string().trim_end_matches('.'))),
        })?;
        let local = parsed.local_part();
        let dot_atom = local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        if !dot_atom {
            return Err(invalid("has characters that are not allowed before the @"));
        }
        Domain::parse(parsed.domain()).map_err(|Invalid(why)| invalid(format!("domain {why}")))?;
        Ok(Self(text))
    }

    /// Wraps an address read back from our own database: it was checked on the way in, and
    /// checking it again on every row read cost measurable CPU on every call.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the @.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }

    /// The part before the @, used as a display name when none is given.
    pub fn local_part(&self) -> &str {
        self.0.split_once('@').map(|(l, _)| l).unwrap_or_default()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A lower-cased DNS domain name such as `example.com`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Domain(String);

impl Domain {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let text = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        if text.is_empty() || text.len() > 253 {
            return Err(invalid("must be 1 to 253 characters"));
        }
        let labels: Vec<&str> = text.split('.').collect();
        if labels.len() < 2 {
            return Err(invalid("needs at least one dot"));
        }
        for label in &labels {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(invalid(format!("has an invalid label {label:?}")));
            }
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text shown to people (names): trimmed, bounded, no control characters.
pub fn display_text(raw: &str, max_chars: usize) -> Result<String, Invalid> {
    let text = raw.trim();
    if text.chars().count() > max_chars {
        return Err(invalid(format!("is longer than {max_chars} characters")));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid("contains control characters"));
    }
    Ok(text.to_owned())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7), so ids sort by creation.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7().to_string())
            }

            pub fn parse(raw: &str) -> Result<Self, Invalid> {
                if raw.is_empty() {
                    return Err(invalid("is required"));
                }
                uuid::Uuid::try_parse(raw)
                    .map(|id| Self(id.hyphenated().to_string()))
                    .map_err(|_| invalid("is not a valid id"))
            }

            /// Wraps an id read back from our own database.
            pub fn from_stored(raw: String) -> Self {
                Self(raw)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// An account (tenant).
    AccountId
);
id_type!(
    /// A user, unique across accounts.
    UserId
);
id_type!(
    /// A custom role.
    RoleId
);
id_type!(
    /// An invitation.
    InvitationId
);
id_type!(
    /// An integration record.
    IntegrationId
);
id_type!(
    /// An ownership request (SPEC R8).
    OwnershipRequestId
);
id_type!(
    /// A step-up challenge: one code sent by e-mail (SPEC R10).
    ChallengeId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse("  Alice@Example.COM ").expect("valid").as_str(), "alice@example.com");
        let email = Email::parse("bob.smith+x@mail.example.org").expect("valid");
        assert_eq!(email.domain(), "mail.example.org");
        assert_eq!(email.local_part(), "bob.smith+x");
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a b@example.com",
            "a..b@example.com",
            "a@-x.com",
            "a@x..com",
            "é@example.com",
            "\"quoted\"@example.com",
            "a(comment)@example.com",
            "a@[127.0.0.1]",
            "Alice <a@example.com>",
            ".a@example.com",
            "a.@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(Email::parse(&format!("a@{}.com", "b".repeat(250))).is_err());
    }

    #[test]
    fn ids_must_be_uuids() {
        let id = UserId::generate();
        assert_eq!(UserId::parse(id.as_str()), Ok(id));
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("123").is_err());
        assert!(UserId::parse("'; DROP TABLE users; --").is_err());
    }

    #[test]
    fn generated_ids_sort_by_creation() {
        let first = AccountId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(AccountId::generate() > first);
    }

    #[test]
    fn display_text_is_bounded() {
        assert_eq!(display_text("  Ann  ", 10), Ok("Ann".into()));
        assert!(display_text(&"x".repeat(11), 10).is_err());
        assert!(display_text("a\u{0}b", 10).is_err());
    }
}
