//! `text_enum!`: a fieldless enum stored and logged as fixed text (`"pro"`, `"phone"`), with
//! `ALL`, `as_str` and `from_str_opt`. Both services' models declare their enums with it.

/// Declares `pub enum $name` with the given variants and their stored spellings.
#[macro_export]
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and logged spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn from_str_opt(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::text_enum!(
        /// A test enum.
        Colour { Red => "red", Dark => "dark_blue" }
    );

    #[test]
    fn spellings_round_trip_and_unknown_text_is_none() {
        for colour in Colour::ALL {
            assert_eq!(Colour::from_str_opt(colour.as_str()), Some(*colour));
        }
        assert_eq!(Colour::Dark.as_str(), "dark_blue");
        assert_eq!(Colour::from_str_opt("green"), None);
    }
}
