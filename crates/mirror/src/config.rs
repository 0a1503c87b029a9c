//! The mirror configuration: which apt sources to follow, each with its pinned keyring.
//!
//! ```toml
//! [[source]]
//! name = "debian-security"
//! uri = "http://deb.debian.org/debian-security"
//! suite = "bookworm-security"
//! components = ["main"]
//! architectures = ["amd64"]
//! keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
//! exclude = ["*-dbg"]
//! ```
//!
//! A top-level `retain = "90d"` (before the first `[[source]]`) drops from the catalog,
//! at the end of each run, the mirrored updates superseded for longer than that (issue
//! 10, point 7; default 180 days, `"off"` keeps them forever).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::MirrorError;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The apt sources, in order.
    #[serde(rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// Issue 10, point 7: how long a mirrored update stays in the catalog after a newer
    /// one superseded it (`90d`, `12w`, or `off`); absent: the publisher's default.
    #[serde(default)]
    pub retain: Option<String>,
}

/// One apt source (like a `deb` line of sources.list, plus the key that must sign it).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A short name for state and messages, e.g. `debian-security`.
    pub name: String,
    /// Archive root, e.g. `http://deb.debian.org/debian-security`.
    pub uri: Url,
    /// Suite, e.g. `bookworm-security`.
    pub suite: String,
    /// Components, e.g. `["main"]`.
    pub components: Vec<String>,
    /// Architectures, e.g. `["amd64"]` (each index also lists `all` packages).
    pub architectures: Vec<String>,
    /// The OpenPGP keyring (binary or armored) whose keys may sign this source's InRelease.
    pub keyring: PathBuf,
    /// Binary packages never to import, by name with `*` wildcards, e.g.
    /// `["*-dbg", "*-dbgsym"]` (kernel debug symbols are gigabytes).
    #[serde(default)]
    pub exclude: Vec<String>,
}

impl MirrorConfig {
    /// Reads a TOML configuration; relative keyring paths are taken from the file's folder.
    pub fn load(path: &Path) -> Result<Self, MirrorError> {
        let text = std::fs::read_to_string(path).map_err(|e| MirrorError::Config {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let mut cfg = Self::parse(&text).map_err(|detail| MirrorError::Config {
            path: path.to_path_buf(),
            detail,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for s in &mut cfg.sources {
            if s.keyring.is_relative() {
                s.keyring = base.join(&s.keyring);
            }
        }
        Ok(cfg)
    }

    /// Parses configuration text and checks it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg: MirrorConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(r) = cfg.retain.as_deref().filter(|r| !retention_is_off(r)) {
            parse_retention(r)?;
        }
        if cfg.sources.is_empty() {
            return Err("no [[source]] given: name at least one apt source".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &cfg.sources {
            if !patchday_types::ids::is_slug(&s.name) {
                return Err(format!(
                    "source name {:?}: use letters, digits, '.', '_', '-'",
                    s.name
                ));
            }
            if !names.insert(s.name.as_str()) {
                return Err(format!("source name {:?} is used twice", s.name));
            }
            let safe = |x: &str| {
                !x.is_empty()
                    && !x.contains("..")
                    && x.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
            };
            if !safe(&s.suite) {
                return Err(format!(
                    "source {}: suite {:?} is not a suite name",
                    s.name, s.suite
                ));
            }
            if s.components.is_empty() || s.architectures.is_empty() {
                return Err(format!(
                    "source {}: give at least one component and one architecture",
                    s.name
                ));
            }
            for x in s.components.iter().chain(&s.architectures) {
                if !safe(x) || x.contains('/') && s.architectures.contains(x) {
                    return Err(format!(
                        "source {}: {x:?} is not a component/architecture name",
                        s.name
                    ));
                }
            }
            if !matches!(s.uri.scheme(), "http" | "https") {
                return Err(format!("source {}: uri must be http or https", s.name));
            }
        }
        Ok(cfg)
    }
}

impl MirrorConfig {
    /// The `retain` setting as a duration (checked by [`MirrorConfig::parse`]); `None`
    /// when absent or `off`.
    pub fn retention(&self) -> Option<jiff::SignedDuration> {
        self.retain
            .as_deref()
            .filter(|r| !retention_is_off(r))
            .and_then(|r| parse_retention(r).ok())
    }
}

/// `retain = "off"` (or `"never"`): superseded updates stay forever.
pub fn retention_is_off(s: &str) -> bool {
    matches!(s.trim(), "off" | "never")
}

/// A retention such as `90d`, `12w` or `36h` (days and weeks of 24 hours).
pub fn parse_retention(s: &str) -> Result<jiff::SignedDuration, String> {
    let bad = || format!("retain = {s:?}: give a duration such as \"90d\", \"12w\" or \"36h\"");
    let span: jiff::Span = s.trim().parse().map_err(|_| bad())?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| bad())?;
    if d.is_negative() {
        return Err(bad());
    }
    Ok(d)
}

impl SourceConfig {
    /// URL of a file under the archive root (`dists/...` or a pool path).
    pub fn url(&self, path: &str) -> Result<Url, MirrorError> {
        let mut base = self.uri.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(path).map_err(|e| MirrorError::Fetch {
            url: format!("{}{path}", self.uri),
            detail: e.to_string(),
        })
    }

    /// Whether `package` matches one of the `exclude` patterns.
    pub fn excludes(&self, package: &str) -> bool {
        self.exclude.iter().any(|p| glob_match(p, package))
    }

    /// URL of the suite's InRelease.
    pub fn inrelease_url(&self) -> Result<Url, MirrorError> {
        self.url(&format!("dists/{}/InRelease", self.suite))
    }
}

/// Shell-style (`*`, `?`, `[a-z]`), case-sensitive as package names are.
fn glob_match(pattern: &str, name: &str) -> bool {
    patchday_types::glob::matches(pattern, name, patchday_types::glob::Case::Sensitive)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn retention_parses_days_and_weeks_and_refuses_nonsense() {
        use super::parse_retention;
        assert_eq!(parse_retention("90d").unwrap().as_secs(), 90 * 86_400);
        assert_eq!(parse_retention("2w").unwrap().as_secs(), 14 * 86_400);
        assert_eq!(parse_retention("0s").unwrap().as_secs(), 0);
        assert!(parse_retention("soon").is_err());
        assert!(parse_retention("-5d").is_err());
        let cfg = super::MirrorConfig::parse(
            "retain = \"nope\"\n[[source]]\nname = \"a\"\nuri = \"http://x/\"\nsuite = \"s\"\ncomponents = [\"main\"]\narchitectures = [\"amd64\"]\nkeyring = \"k\"\n",
        );
        assert!(cfg.unwrap_err().contains("retain"));
    }

    #[test]
    fn exclude_globs() {
        assert!(glob_match("*-dbg", "linux-image-6.1.0-28-amd64-dbg"));
        assert!(!glob_match("*-dbg", "linux-image-6.1.0-28-amd64"));
        assert!(glob_match("linux-image-*-rt-*", "linux-image-6.1-rt-amd64"));
        assert!(glob_match("zlib1g", "zlib1g"));
        assert!(!glob_match("zlib1g", "zlib1g-dev"));
        assert!(!glob_match("a*a", "a"));
    }
}
