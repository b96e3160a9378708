//! Enums stored and logged as fixed text (`"pro"`, `"large_meeting"`). The models declare them
//! with strum's derives (`IntoStaticStr`, `EnumString`, `VariantArray`, snake_case spellings);
//! [`StoredText`] gives every such enum the two calls stores and conversions use.

/// `as_str` and `from_str_opt` for any enum with strum's text derives.
pub trait StoredText: Copy + Into<&'static str> + std::str::FromStr {
    /// The stored and logged spelling.
    fn as_str(self) -> &'static str {
        self.into()
    }

    /// The variant `text` spells, if any.
    fn from_str_opt(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

impl<T: Copy + Into<&'static str> + std::str::FromStr> StoredText for T {}

#[cfg(test)]
mod tests {
    use strum::{EnumString, IntoStaticStr, VariantArray};

    use super::StoredText;

    /// A test enum.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, IntoStaticStr, EnumString, VariantArray)]
    #[strum(serialize_all = "snake_case")]
    enum Colour {
        Red,
        DarkBlue,
    }

    #[test]
    fn spellings_round_trip_and_unknown_text_is_none() {
        for colour in Colour::VARIANTS {
            assert_eq!(Colour::from_str_opt(colour.as_str()), Some(*colour));
        }
        assert_eq!(Colour::DarkBlue.as_str(), "dark_blue");
        assert_eq!(Colour::from_str_opt("green"), None);
    }
}
