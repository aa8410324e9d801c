use std::fmt;

/// What can go wrong reading a policy: a value it does not allow, a file that is not a policy
/// file, or a word that names none of a vocabulary's values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("policy: {0}")]
    Invalid(#[from] PolicyError),

    /// The file is not TOML, or not the policy file's keys ([`Policy::from_toml`]).
    ///
    /// [`Policy::from_toml`]: crate::Policy::from_toml
    #[error("policy file: {message}")]
    File { message: String },

    /// A word that names none of a vocabulary's values ([`PolicyType`](crate::PolicyType)).
    #[error("invalid {what} {value:?}: expected {expected}")]
    InvalidValue {
        what: &'static str,
        value: String,
        expected: String,
    },
}

/// A policy value that is not allowed. The message names the field (as the TOML file and the
/// CLI flags spell it), the value and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value} is not allowed: {allowed}")]
pub struct PolicyError {
    pub field: String,
    pub value: String,
    pub allowed: String,
}

impl PolicyError {
    pub(crate) fn new(
        field: impl Into<String>,
        value: impl fmt::Display,
        allowed: impl Into<String>,
    ) -> PolicyError {
        PolicyError {
            field: field.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
