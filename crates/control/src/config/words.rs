//! Enums whose values are fixed words, the same in every place they appear
//! (replication.toml, the control API's JSON, `tandem status`, metrics
//! labels, the CLI's options). One table per enum gives all of those, so
//! the text forms cannot drift apart; they are part of the formats.
//!
//! Hand-written rather than derived: serde's derived error for an unknown
//! variant names neither the option nor the accepted words inside the
//! control API's tagged requests, and the operator needs both.

/// Longest unknown word quoted back in an error: the input may be large.
const MAX_QUOTED_CHARS: usize = 64;

/// A word that is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {word:?} is not one of {expected}")]
pub struct UnknownWord {
    pub what: &'static str,
    pub word: String,
    pub expected: String,
}

impl UnknownWord {
    pub fn new(what: &'static str, word: &str, words: &[&str]) -> Self {
        UnknownWord {
            what,
            word: word.chars().take(MAX_QUOTED_CHARS).collect(),
            expected: words.join(", "),
        }
    }
}

/// Declares `pub enum $name` with one word per variant, and derives from
/// that table: `as_str`, `ALL`, `Display`, `FromStr` (error
/// `UnknownWord`), serde as the word, and, with the `clap` feature,
/// `clap::ValueEnum` with the same words.
macro_rules! word_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $word, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, so widths in table formats apply.
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::config::words::UnknownWord;

            fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
                match s {
                    $( $word => Ok($name::$variant), )+
                    _ => Err($crate::config::words::UnknownWord::new($what, s, &[$($word),+])),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::config::words::UnknownWord;

            fn try_from(s: String) -> std::result::Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for &'static str {
            fn from(v: $name) -> Self {
                v.as_str()
            }
        }

        #[cfg(feature = "clap")]
        impl clap::ValueEnum for $name {
            fn value_variants<'a>() -> &'a [Self] {
                Self::ALL
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(self.as_str()))
            }
        }
    };
}

pub(crate) use word_enum;
