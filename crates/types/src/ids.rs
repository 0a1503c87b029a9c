//! Typed identifiers. Every id is a short slug so that it is safe in URLs, file
//! names and log lines; parsing rejects anything else.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a string is not a valid id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {kind} {value:?}: use 1-64 characters from a-z, A-Z, 0-9, '.', '_', '-' and ':', starting with a letter or digit")]
pub struct IdError {
    /// Which kind of id was being parsed.
    pub kind: &'static str,
    /// The rejected input.
    pub value: String,
}

/// Checks the slug rule shared by all ids.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

macro_rules! slug_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates an id.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                if is_slug(&s) {
                    Ok(Self(s))
                } else {
                    Err(IdError { kind: $kind, value: s })
                }
            }
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

slug_id!(
    /// One customer's estate.
    TenantId,
    "tenant id"
);
slug_id!(
    /// A named set of hosts inside a tenant.
    GroupId,
    "group id"
);
slug_id!(
    /// One managed machine.
    HostId,
    "host id"
);
slug_id!(
    /// One advisory in the catalog, for example `PD-2026-0001`.
    UpdateId,
    "update id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(TenantId::new("acme").is_ok());
        assert!(UpdateId::new("DSA-5800-1").is_ok());
        assert!(TenantId::new("").is_err());
        assert!(TenantId::new("../etc").is_err());
        assert!(TenantId::new("a b").is_err());
        assert!(TenantId::new("x".repeat(65)).is_err());
        let e = GroupId::new("-x").unwrap_err();
        assert!(e.to_string().contains("group id"));
    }

    #[test]
    fn serde_validates() {
        let ok: Result<HostId, _> = serde_json::from_str("\"h-1\"");
        assert!(ok.is_ok());
        let bad: Result<HostId, _> = serde_json::from_str("\"h/1\"");
        assert!(bad.is_err());
    }
}
