//! The attachment policy: one TOML file, one table per tenant, chosen by the
//! recipients' domains.
//!
//! ```toml
//! [[tenant]]
//! name = "acme"
//! domains = ["acme.example"]        # "*" makes a tenant the fallback
//! block_types = ["elf", "pe", "mach-o", "script", "java-class", "shortcut"]
//! macros = "quarantine"             # accept | quarantine | reject
//! encrypted_archives = "reject"
//! virus = "reject"                  # quarantine | reject
//! max_depth = 3                     # archives inside archives
//! max_expanded_bytes = 104857600    # all unpacked bytes of one message
//! max_entries = 1000                # files in all archives of one message
//! max_message_bytes = 52428800      # larger messages are refused unread
//! ```

use crate::content::ContentKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// What the policy does with a finding it may tolerate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Deliver.
    Accept,
    /// Keep the message in the quarantine directory; the sender sees success.
    Quarantine,
    /// Refuse at SMTP time with the reason (5xx).
    Reject,
}

/// One tenant's rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicy {
    /// The tenant's name, as the Patchday server knows it.
    pub name: String,
    /// Recipient domains this tenant's policy applies to; `*` is the fallback.
    pub domains: Vec<String>,
    /// Content kinds refused wherever they appear (also inside archives).
    #[serde(default = "default_block_types")]
    pub block_types: BTreeSet<ContentKind>,
    /// Office documents with macros (OOXML `vbaProject.bin`, OLE `VBA` storage).
    #[serde(default = "default_quarantine")]
    pub macros: Action,
    /// Archives with encrypted entries (which nobody can look into).
    #[serde(default = "default_reject")]
    pub encrypted_archives: Action,
    /// What clamd found. `accept` is refused when the file is read.
    #[serde(default = "default_reject")]
    pub virus: Action,
    /// How deep archives inside archives are opened; deeper is refused.
    #[serde(default = "default_max_depth")]
    pub max_depth: u32,
    /// All bytes unpacked from one message's archives; more is refused as a bomb.
    #[serde(default = "default_max_expanded_bytes")]
    pub max_expanded_bytes: u64,
    /// Files in all archives of one message.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// Messages larger than this are refused without being read further.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u64,
}

fn default_block_types() -> BTreeSet<ContentKind> {
    ContentKind::RUNNABLE.into_iter().collect()
}
fn default_quarantine() -> Action {
    Action::Quarantine
}
fn default_reject() -> Action {
    Action::Reject
}
fn default_max_depth() -> u32 {
    3
}
fn default_max_expanded_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_max_entries() -> u64 {
    1000
}
fn default_max_message_bytes() -> u64 {
    50 * 1024 * 1024
}

/// The whole policy file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// One table per tenant.
    pub tenant: Vec<TenantPolicy>,
}

/// A policy file that cannot be used, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read the policy file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// TOML or field errors (serde names the line and field).
    #[error("the policy file {path} is not valid: {message} (see `patchday milter --help` for an example)")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// A rule that makes no sense.
    #[error("the policy file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl Policy {
    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::parse(&text, &path.display().to_string())
    }

    /// Parses and checks policy text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| PolicyError::Parse {
            path: origin.into(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| PolicyError::Invalid {
            path: origin.into(),
            message,
        };
        if policy.tenant.is_empty() {
            return Err(invalid(
                "no [[tenant]] table: add one with a name and its recipient domains".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for t in &policy.tenant {
            if t.domains.is_empty() {
                return Err(invalid(format!(
                    "tenant {:?} lists no domains: add its recipient domains, or \"*\" for the fallback",
                    t.name
                )));
            }
            for d in &t.domains {
                if !seen.insert(d.to_ascii_lowercase()) {
                    return Err(invalid(format!(
                        "domain {d:?} is listed for more than one tenant: each domain belongs to one"
                    )));
                }
            }
            if t.virus == Action::Accept {
                return Err(invalid(format!(
                    "tenant {:?}: virus = \"accept\" is not allowed; use \"reject\" or \"quarantine\"",
                    t.name
                )));
            }
            if t.max_depth == 0 || t.max_expanded_bytes == 0 || t.max_message_bytes == 0 {
                return Err(invalid(format!(
                    "tenant {:?}: max_depth, max_expanded_bytes and max_message_bytes must be above 0",
                    t.name
                )));
            }
        }
        Ok(policy)
    }

    /// The tenant whose domains include `recipient`'s domain, else the `*` tenant.
    pub fn tenant_for(&self, recipient: &str) -> Option<&TenantPolicy> {
        let domain = recipient
            .trim_matches(|c| c == '<' || c == '>')
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        self.tenant
            .iter()
            .find(|t| t.domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)))
            .or_else(|| {
                self.tenant
                    .iter()
                    .find(|t| t.domains.iter().any(|d| d == "*"))
            })
    }

    /// The largest message any tenant accepts (the milter stops buffering beyond it).
    pub fn max_message_bytes(&self) -> u64 {
        self.tenant
            .iter()
            .map(|t| t.max_message_bytes)
            .max()
            .unwrap_or_else(default_max_message_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_chosen_by_recipient_domain_with_a_fallback() {
        let p = Policy::parse(
            r#"
            [[tenant]]
            name = "acme"
            domains = ["acme.example"]
            macros = "reject"
            [[tenant]]
            name = "rest"
            domains = ["*"]
            "#,
            "test",
        )
        .unwrap();
        assert_eq!(p.tenant_for("<Bob@ACME.example>").unwrap().name, "acme");
        assert_eq!(p.tenant_for("eve@other.example").unwrap().name, "rest");
        assert_eq!(p.tenant[0].macros, Action::Reject);
        assert_eq!(p.tenant[1].macros, Action::Quarantine);
        assert!(p.tenant[1].block_types.contains(&ContentKind::Elf));
    }

    #[test]
    fn bad_policies_say_what_to_change() {
        let e = Policy::parse("[[tenant]]\nname = \"a\"\ndomains = []\n", "p.toml").unwrap_err();
        assert!(e.to_string().contains("lists no domains"), "{e}");
        let e = Policy::parse(
            "[[tenant]]\nname = \"a\"\ndomains = [\"*\"]\nvirus = \"accept\"\n",
            "p.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not allowed"), "{e}");
        let e = Policy::parse(
            "[[tenant]]\nname = \"a\"\ndomains = [\"*\"]\nblock_types = [\"exe\"]\n",
            "p.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not valid"), "{e}");
    }
}
