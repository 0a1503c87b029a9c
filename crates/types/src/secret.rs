//! A secret (token, credential) that never prints (issue 8, finding 9): its `Debug`
//! shows `Secret(<redacted>)` and it has no `Display`, so it cannot reach a log or an
//! error message by accident. Read it with [`Secret::expose`] where it is sent.

use serde::{Deserialize, Serialize};

/// A secret string.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself, to send or hash; never to print.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_in_debug_output() {
        let s = Secret::new("pd_0123456789abcdef");
        let shown = format!("{s:?} {:?}", Some(s.clone()));
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert_eq!(s.expose(), "pd_0123456789abcdef");
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            "\"pd_0123456789abcdef\""
        );
    }
}
