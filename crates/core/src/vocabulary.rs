//! [`vocabulary!`](crate::vocabulary): closed sets of words (job operations, statuses, policy
//! types) as enums with a stable key and a display name, declared once for every crate that
//! has such a set.

/// Declares an enum with a stable kebab-case key (database, CLI filters, JSON) and a display
/// name for people. `FromStr` accepts either, ignoring case and surrounding blanks; serde
/// speaks the key.
///
/// The invocation names the enum, what the enum is called in an error, and the error variant
/// `FromStr` builds from a word that names no value: `Error::Variant { what, value, expected }`
/// (`what` a `&'static str`, `value` the word trimmed, `expected` "one of " and every key),
/// where `Error` is an error type in scope at the invocation (it displays as serde's message
/// for a word that names no value).
///
/// ```
/// #[derive(Debug, thiserror::Error)]
/// pub enum Error {
///     #[error("invalid {what} {value:?}: expected {expected}")]
///     InvalidValue { what: &'static str, value: String, expected: String },
/// }
///
/// blockvault_core::vocabulary!(
///     /// A traffic light.
///     Light, "light", Error::InvalidValue {
///         Red => "red", "Red";
///         /// Proceed with care.
///         Amber => "amber", "Amber light";
///     }
/// );
///
/// assert_eq!("Amber light".parse::<Light>().ok(), Some(Light::Amber));
/// assert_eq!(Light::Amber.key(), "amber");
/// assert_eq!(Light::Amber.to_string(), "Amber light");
/// assert!(matches!(
///     "green".parse::<Light>(),
///     Err(Error::InvalidValue { what: "light", .. })
/// ));
/// ```
#[macro_export]
macro_rules! vocabulary {
    (
        $(#[$doc:meta])*
        $name:ident, $what:literal, $error:ident :: $invalid:ident {
            $( $(#[$vdoc:meta])* $variant:ident => $key:literal, $display:literal; )+
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable key: what the catalog stores, CLI filters take and JSON shows.
            pub fn key(self) -> &'static str {
                match self {
                    $( $name::$variant => $key, )+
                }
            }

            /// The name people read (also the [`Display`](std::fmt::Display)).
            pub fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $display, )+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $error;

            fn from_str(s: &str) -> ::std::result::Result<$name, $error> {
                let s = s.trim();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.key().eq_ignore_ascii_case(s) || v.name().eq_ignore_ascii_case(s))
                    .ok_or_else(|| $error::$invalid {
                        what: $what,
                        value: s.to_owned(),
                        expected: format!(
                            "one of {}",
                            $name::ALL.iter().map(|v| v.key()).collect::<Vec<_>>().join(", ")
                        ),
                    })
            }
        }

        impl $crate::__private::serde::Serialize for $name {
            fn serialize<S: $crate::__private::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.key())
            }
        }

        impl<'de> $crate::__private::serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__private::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<$name, D::Error> {
                let s = <String as $crate::__private::serde::Deserialize>::deserialize(
                    deserializer,
                )?;
                s.parse().map_err($crate::__private::serde::de::Error::custom)
            }
        }
    };
}

/// What [`vocabulary!`](crate::vocabulary) expands to needs, reachable from any crate.
#[doc(hidden)]
pub mod __private {
    pub use serde;
}
