//! A user's settings (SPEC R18, R21, R22): a time zone, a language, and a bounded map of their
//! own keys. Kept while the user is deactivated, moved with them on unlink (they are the
//! user's, not the account's), gone when the user is deleted.

use std::collections::BTreeMap;

/// Keys a user may set at most.
pub const MAX_ENTRIES: usize = 64;
pub const MAX_KEY_CHARS: usize = 64;
pub const MAX_VALUE_BYTES: usize = 1_024;
const MAX_TIME_ZONE_CHARS: usize = 64;
const MAX_LANGUAGE_CHARS: usize = 35;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserSettings {
    /// An IANA zone name ("Europe/Amsterdam"); empty when not set.
    pub time_zone: String,
    /// A BCP 47 tag ("fr-BE"); empty when not set.
    pub language: String,
    pub entries: BTreeMap<String, String>,
}

/// Settings as kept: `version` counts the changes (0: never set).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredSettings {
    pub settings: UserSettings,
    pub version: i64,
    pub updated_at_ms: i64,
}

/// The field that breaks a limit, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

fn violation(field: impl Into<String>, message: impl Into<String>) -> Violation {
    Violation { field: field.into(), message: message.into() }
}

impl UserSettings {
    /// Checks every part, naming the first field out of bounds.
    pub fn parse(time_zone: String, language: String, entries: Vec<(String, String)>) -> Result<Self, Violation> {
        check_time_zone(&time_zone)?;
        check_language(&language)?;
        if entries.len() > MAX_ENTRIES {
            return Err(violation("settings", format!("holds {} settings; at most {MAX_ENTRIES}", entries.len())));
        }
        let mut map = BTreeMap::new();
        for (n, (key, value)) in entries.into_iter().enumerate() {
            let key_ok = (1..=MAX_KEY_CHARS).contains(&key.len())
                && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
            if !key_ok {
                return Err(violation(
                    format!("settings[{n}].key"),
                    format!("must be 1 to {MAX_KEY_CHARS} characters from a-z, 0-9, '.', '_' and '-'"),
                ));
            }
            if value.len() > MAX_VALUE_BYTES {
                return Err(violation(
                    format!("settings[{n}].value"),
                    format!("is longer than {MAX_VALUE_BYTES} bytes"),
                ));
            }
            if map.insert(key, value).is_some() {
                return Err(violation(format!("settings[{n}].key"), "appears twice"));
            }
        }
        Ok(Self { time_zone, language, entries: map })
    }
}

/// The shape of an IANA zone name: segments of letters, digits, '_', '+' and '-' joined by
/// '/', the first starting with a letter ("UTC", "Etc/GMT+1", "America/Argentina/Salta").
/// Whether the zone exists is the reader's to decide against its own zone database.
fn check_time_zone(zone: &str) -> Result<(), Violation> {
    if zone.is_empty() {
        return Ok(());
    }
    let shaped = zone.len() <= MAX_TIME_ZONE_CHARS
        && zone.starts_with(|c: char| c.is_ascii_alphabetic())
        && zone.split('/').all(|segment| {
            !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-".contains(&b))
        });
    if shaped { Ok(()) } else { Err(violation("time_zone", "must be an IANA time zone name such as Europe/Amsterdam")) }
}

/// The shape of a BCP 47 tag: a language of 2-3 (or 5-8) letters, then subtags of 1-8 letters
/// and digits joined by '-' ("nl", "fr-BE", "zh-Hant-TW").
fn check_language(tag: &str) -> Result<(), Violation> {
    if tag.is_empty() {
        return Ok(());
    }
    let mut parts = tag.split('-');
    let language = parts.next().unwrap_or_default();
    let shaped = tag.len() <= MAX_LANGUAGE_CHARS
        && matches!(language.len(), 2 | 3 | 5..=8)
        && language.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|part| (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric()));
    if shaped { Ok(()) } else { Err(violation("language", "must be a BCP 47 language tag such as nl or fr-BE")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("key.{i}"), "v".into())).collect()
    }

    #[test]
    fn r18_settings_within_bounds_parse() {
        let parsed = UserSettings::parse("America/Argentina/Salta".into(), "zh-Hant-TW".into(), entries(MAX_ENTRIES))
            .expect("valid");
        assert_eq!(parsed.entries.len(), MAX_ENTRIES);
        assert!(UserSettings::parse("Etc/GMT+1".into(), "nl".into(), Vec::new()).is_ok());
        assert!(UserSettings::parse(String::new(), String::new(), Vec::new()).is_ok(), "nothing set");
    }

    #[test]
    fn r18_settings_out_of_bounds_name_their_field() {
        let field = |zone: &str, language: &str, entries: Vec<(String, String)>| {
            UserSettings::parse(zone.into(), language.into(), entries).expect_err("refused").field
        };
        assert_eq!(field("Europe//Paris", "", Vec::new()), "time_zone");
        assert_eq!(field("1Europe", "", Vec::new()), "time_zone");
        assert_eq!(field(&"A".repeat(65), "", Vec::new()), "time_zone");
        assert_eq!(field("", "f", Vec::new()), "language");
        assert_eq!(field("", "fr_BE", Vec::new()), "language");
        assert_eq!(field("", "", entries(MAX_ENTRIES + 1)), "settings");
        assert_eq!(field("", "", vec![("Bad Key".into(), String::new())]), "settings[0].key");
        assert_eq!(field("", "", vec![(String::new(), String::new())]), "settings[0].key");
        assert_eq!(field("", "", vec![("k".into(), "x".repeat(MAX_VALUE_BYTES + 1))]), "settings[0].value");
        assert_eq!(field("", "", vec![("k".into(), "1".into()), ("k".into(), "2".into())]), "settings[1].key");
    }
}
