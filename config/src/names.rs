//! Operator-facing enums declared once, from one table of names.
//!
//! [`named_enum!`] turns a table (`Variant = "name" ("hint")`) into the
//! enum, [`Named`] (the table, `as_str`, the parser), `Display`,
//! `FromStr` and serde, so the configuration, the persisted chain, the
//! API mappings and the messages that list the accepted values all read
//! the same names: adding a value is one line of the table.

use std::fmt::Write as _;

/// A value that is not in an enum's table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not {what}: use {choices}")]
pub struct UnknownName {
    /// What the enum is, with its article ("a failure action").
    pub what: &'static str,
    /// The text given.
    pub value: String,
    /// The accepted names, quoted, with their hints: `"bypass" (fail open)
    /// or "drop" (fail closed)`.
    pub choices: String,
}

/// An enum whose values have operator-facing names (see the module doc).
pub trait Named: Sized + Copy + PartialEq + 'static {
    /// What the enum is, with its article, for messages ("an XDP mode").
    const WHAT: &'static str;
    /// Every value with its name and a short hint (empty: none), in the
    /// order messages list them.
    const TABLE: &'static [(Self, &'static str, &'static str)];

    /// The value's name.
    fn name(self) -> &'static str {
        Self::TABLE.iter().find(|e| e.0 == self).map_or("", |e| e.1)
    }

    /// The value named `s` (exactly: names are lowercase).
    fn from_name(s: &str) -> Result<Self, UnknownName> {
        Self::TABLE
            .iter()
            .find(|e| e.1 == s)
            .map(|e| e.0)
            .ok_or_else(|| UnknownName {
                what: Self::WHAT,
                value: s.to_string(),
                choices: choices(Self::TABLE.iter().map(|e| (e.1, e.2))),
            })
    }
}

/// `"a" (hint), "b" or "c"`: the accepted names for a message.
pub fn choices<'a>(names: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> String {
    let n = names.len();
    let mut out = String::new();
    for (i, (name, hint)) in names.enumerate() {
        if i > 0 {
            out.push_str(if i + 1 == n { " or " } else { ", " });
        }
        let _ = write!(out, "{name:?}");
        if !hint.is_empty() {
            let _ = write!(out, " ({hint})");
        }
    }
    out
}

/// The hint of a table row: the literal, or none.
macro_rules! name_hint {
    () => {
        ""
    };
    ($hint:literal) => {
        $hint
    };
}

/// Declares an enum from a table of names (see the module doc):
///
/// ```ignore
/// named_enum! {
///     /// What happens to a hop's traffic while the hop is down.
///     pub enum FailureAction: "a failure action" {
///         Bypass = "bypass" ("fail open"),
///         Drop = "drop" ("fail closed"),
///     }
/// }
/// ```
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $what:literal {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $text:literal $(($hint:literal))?
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $crate::names::Named for $name {
            const WHAT: &'static str = $what;
            const TABLE: &'static [(Self, &'static str, &'static str)] =
                &[$(($name::$variant, $text, name_hint!($($hint)?)),)+];
        }

        impl $name {
            /// Every value, in the order of the table.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The value at `i` in the table: for an enum without explicit
            /// discriminants, the inverse of `value as usize` (a value kept
            /// in an atomic as its `repr(u8)` comes back through this).
            pub const fn from_index(i: usize) -> Option<$name> {
                if i < Self::ALL.len() {
                    Some(Self::ALL[i])
                } else {
                    None
                }
            }

            /// The name as written in the configuration, the API's JSON
            /// and the logs.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::names::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$name as $crate::names::Named>::from_name(s)
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    named_enum! {
        /// A test enum.
        enum Colour: "a colour" {
            Red = "red" ("warm"),
            Green = "green",
            Blue = "blue" ("cold"),
        }
    }

    #[test]
    fn one_table_gives_names_parser_display_serde_and_message() {
        for &c in Colour::ALL {
            assert_eq!(c.as_str(), c.name());
            assert_eq!(c.to_string().parse::<Colour>(), Ok(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("{:?}", c.as_str()));
            assert_eq!(serde_json::from_str::<Colour>(&json).unwrap(), c);
        }
        for (i, &c) in Colour::ALL.iter().enumerate() {
            assert_eq!(Colour::from_index(c as usize), Some(c));
            assert_eq!(c as usize, i);
        }
        assert_eq!(Colour::from_index(Colour::ALL.len()), None);
        let e = "Red".parse::<Colour>().unwrap_err();
        assert_eq!(
            e.to_string(),
            r#""Red" is not a colour: use "red" (warm), "green" or "blue" (cold)"#
        );
        let e = serde_json::from_str::<Colour>("\"pink\"").unwrap_err();
        assert!(e.to_string().contains("\"pink\" is not a colour"), "{e}");
    }
}
