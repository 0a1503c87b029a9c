//! The OSV advisory engine: import feeds, index them by (ecosystem, package), and
//! match installed versions against their ranges with each ecosystem's own ordering.
//!
//! Feeds: OSV JSON (one record, an array of records, or a directory of them, e.g.
//! RustSec's OSV export), the Debian security tracker's JSON (package → CVE → release →
//! status), and the CISA known-exploited catalog. Ids that name the same vulnerability
//! (`aliases`, symmetric and transitive) are joined, so a DSA, its CVE and the tracker's
//! CVE entry become one match.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Why a feed could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum AdvisoryError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not the JSON this importer expects.
    #[error("{path} is not valid {what} JSON: {source}")]
    Json {
        /// The path that failed (or `<memory>`).
        path: PathBuf,
        /// The format that was expected.
        what: &'static str,
        /// The parser's message.
        source: serde_json::Error,
    },
}

/// How versions of an ecosystem are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum VersionScheme {
    /// dpkg ordering (Debian, Ubuntu).
    Debian,
    /// rpmvercmp ordering (Red Hat family, SUSE, ...).
    Rpm,
    /// SemVer 2.0 precedence (crates.io and `SEMVER` ranges).
    Semver,
    /// Unknown ecosystem: SemVer when both sides parse, dpkg ordering otherwise.
    Generic,
}

impl VersionScheme {
    /// The ordering an OSV ecosystem string (with or without `:RELEASE`) uses.
    pub fn for_ecosystem(ecosystem: &str) -> Self {
        let base = ecosystem.split(':').next().unwrap_or(ecosystem);
        match base {
            "Debian" | "Ubuntu" | "Echo" => Self::Debian,
            "Red Hat" | "AlmaLinux" | "Rocky Linux" | "openSUSE" | "SUSE" | "Mageia"
            | "openEuler" | "Azure Linux" | "Photon OS" | "Oracle Linux" | "Fedora" => Self::Rpm,
            "crates.io" | "npm" | "Hex" | "Pub" | "Go" => Self::Semver,
            _ => Self::Generic,
        }
    }

    /// Compares two versions; strings the scheme cannot parse fall back to a total order.
    pub fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            Self::Debian => compare_deb_lenient(a, b),
            Self::Rpm => patchday_pkg::version::compare_rpm(a, b),
            Self::Semver | Self::Generic => match (parse_semver(a), parse_semver(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => compare_deb_lenient(a, b),
            },
        }
    }
}

fn compare_deb_lenient(a: &str, b: &str) -> Ordering {
    patchday_pkg::version::compare_deb(a, b).unwrap_or_else(|_| a.cmp(b))
}

/// Parses SemVer leniently: a leading `v` and missing minor/patch parts are accepted.
pub fn parse_semver(text: &str) -> Option<semver::Version> {
    let t = text.trim();
    let t = t.strip_prefix('v').unwrap_or(t);
    if let Ok(v) = semver::Version::parse(t) {
        return Some(v);
    }
    // "1.2" or "1" (optionally with a pre-release/build suffix): pad the core.
    let split = t.find(['-', '+']).unwrap_or(t.len());
    let (core, rest) = t.split_at(split);
    let dots = core.matches('.').count();
    if core.is_empty() || dots >= 2 {
        return None;
    }
    let padded = format!("{core}{}{rest}", ".0".repeat(2 - dots));
    semver::Version::parse(&padded).ok()
}

/// Severity on one scale for every feed (CVSS ratings, Debian urgencies, GHSA labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// Issue 11, point 3: one name per schema in the API document (`Severity` is the update's).
#[cfg_attr(feature = "openapi", schema(as = AdvisorySeverity))]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Debian's "unimportant": no security impact in Debian's build.
    Unimportant,
    /// Low.
    Low,
    /// Medium (CVSS medium, Debian medium, GHSA moderate).
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The lower-case label used in findings (`critical`, `high`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unimportant => "unimportant",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// Parses a label from any feed: CVSS ratings, Debian urgencies (`low**`), GHSA.
    pub fn parse(label: &str) -> Option<Self> {
        let l = label
            .trim()
            .trim_end_matches('*')
            .trim()
            .to_ascii_lowercase();
        match l.as_str() {
            "unimportant" | "negligible" | "none" => Some(Self::Unimportant),
            "low" => Some(Self::Low),
            "medium" | "moderate" => Some(Self::Medium),
            "high" | "important" => Some(Self::High),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }

    /// The rating of a CVSS base score (3.x/4.0 bands).
    pub fn from_score(score: f64) -> Self {
        if score >= 9.0 {
            Self::Critical
        } else if score >= 7.0 {
            Self::High
        } else if score >= 4.0 {
            Self::Medium
        } else if score > 0.0 {
            Self::Low
        } else {
            Self::Unimportant
        }
    }
}

/// The CVSS 3.x base score of a vector (`CVSS:3.1/AV:N/...`); None when it is not one.
///
/// CVSS 4.0 vectors get an approximation from the same metrics (the exact 4.0 score
/// needs the specification's macro-vector table); good enough to rank the plan.
pub fn cvss_base_score(vector: &str) -> Option<f64> {
    let mut parts = vector.split('/');
    let head = parts.next()?;
    let v4 = match head {
        "CVSS:3.0" | "CVSS:3.1" => false,
        "CVSS:4.0" => true,
        _ => return None,
    };
    let m: HashMap<&str, &str> = parts.filter_map(|p| p.split_once(':')).collect();
    let scope_changed = if v4 {
        ["SC", "SI", "SA"].iter().any(|k| m.get(k) == Some(&"H"))
    } else {
        m.get("S") == Some(&"C")
    };
    let av = match *m.get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        _ => 0.2,
    };
    let ac = if m.get("AC") == Some(&"H") {
        0.44
    } else {
        0.77
    };
    let pr = match *m.get("PR")? {
        "N" => 0.85,
        "L" if scope_changed => 0.68,
        "L" => 0.62,
        _ if scope_changed => 0.5,
        _ => 0.27,
    };
    let ui = if m.get("UI") == Some(&"N") {
        0.85
    } else {
        0.62
    };
    let cia = |k3: &str, k4: &str| match m.get(if v4 { k4 } else { k3 }) {
        Some(&"H") => 0.56,
        Some(&"L") => 0.22,
        _ => 0.0,
    };
    let (c, i, a) = (cia("C", "VC"), cia("I", "VI"), cia("A", "VA"));
    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if scope_changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02_f64).powi(15)
    } else {
        6.42 * iss
    };
    if impact <= 0.0 {
        return Some(0.0);
    }
    let exploitability = 8.22 * av * ac * pr * ui;
    let raw = if scope_changed {
        (1.08 * (impact + exploitability)).min(10.0)
    } else {
        (impact + exploitability).min(10.0)
    };
    // CVSS "Roundup": the smallest number with one decimal that is >= raw.
    let int = (raw * 100_000.0).round() as i64;
    Some(if int % 10_000 == 0 {
        int as f64 / 100_000.0
    } else {
        ((int / 10_000) + 1) as f64 / 10.0
    })
}

/// One event of an OSV range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RangeEvent {
    /// The vulnerability starts at this version (`0`: before every version).
    Introduced(String),
    /// This version fixes it.
    Fixed(String),
    /// The last affected version; later versions are not affected.
    LastAffected(String),
    /// An upper limit of the range (`*`: infinity).
    Limit(String),
}

impl RangeEvent {
    fn version(&self) -> &str {
        match self {
            Self::Introduced(v) | Self::Fixed(v) | Self::LastAffected(v) | Self::Limit(v) => v,
        }
    }
}

/// Where an advisory came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AdvisoryOrigin {
    /// An OSV record.
    Osv,
    /// The Debian security tracker's JSON.
    DebianTracker,
}

/// One imported advisory (the per-package ranges live in the index).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Advisory {
    /// The advisory's own id (`RUSTSEC-2016-0001`, `DSA-3029-1`, `CVE-2024-1234`).
    pub id: String,
    /// Ids of the same vulnerability elsewhere.
    pub aliases: Vec<String>,
    /// Upstream ids a distribution record bundles (OSV `upstream`).
    #[serde(default)]
    pub upstream: Vec<String>,
    /// One-line summary.
    pub summary: String,
    /// Severity from the record's own scores, when it has any.
    pub severity: Option<Severity>,
    /// RustSec's informational kind (`unmaintained`, `unsound`, `notice`), if any.
    pub informational: Option<String>,
    /// Which importer produced it.
    pub origin: AdvisoryOrigin,
}

/// One affected package of one advisory, ready to match.
#[derive(Clone, Debug)]
struct Affected {
    advisory: u32,
    scheme: VersionScheme,
    /// Ranges with events sorted by this scheme's order; GIT ranges are dropped.
    ranges: Vec<Vec<RangeEvent>>,
    versions: Vec<String>,
    /// Per-package severity (Debian urgency), overriding the advisory's.
    severity: Option<Severity>,
    /// Why this entry is informational even when it matches (e.g. tracker `nodsa`).
    note: Option<String>,
}

/// A KEV catalog entry that matters to the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KevEntry {
    /// CVE id.
    pub cve: String,
    /// When CISA added it (`YYYY-MM-DD`).
    pub date_added: String,
    /// CISA's remediation due date for federal agencies.
    pub due_date: String,
    /// "Known" when used in ransomware campaigns.
    pub ransomware: String,
}

/// One advisory that affects an installed version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VulnMatch {
    /// The advisory's own id (the first one imported when several aliases matched).
    pub id: String,
    /// Every id of this vulnerability (id and aliases, joined transitively), sorted.
    pub ids: Vec<String>,
    /// The records that matched this version (several when records share an alias).
    pub matched: Vec<String>,
    /// Summary of the advisory.
    pub summary: String,
    /// Highest severity known for it.
    pub severity: Option<Severity>,
    /// The lowest version that fixes it above the installed one; None when unfixed.
    pub fixed: Option<String>,
    /// One of its ids is in the CISA KEV catalog.
    pub known_exploited: bool,
    /// Why it is informational only (unmaintained crate, `nodsa`, unimportant).
    pub informational: Option<String>,
}

/// A package pinned in a `Cargo.lock`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LockedPackage {
    /// Crate name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// `source` line; None for path/workspace members.
    pub source: Option<String>,
}

impl LockedPackage {
    /// True when the crate comes from crates.io (the only crates advisories describe).
    pub fn from_crates_io(&self) -> bool {
        self.source.as_deref().is_some_and(|s| {
            s == "registry+https://github.com/rust-lang/crates.io-index"
                || s == "sparse+https://index.crates.io/"
        })
    }
}

/// Parses the `[[package]]` entries of a `Cargo.lock` (versions 1 to 4).
pub fn parse_cargo_lock(text: &str) -> Vec<LockedPackage> {
    let mut out = Vec::new();
    let mut current: Option<LockedPackage> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            if let Some(p) = current.take() {
                out.push(p);
            }
            if line == "[[package]]" {
                current = Some(LockedPackage {
                    name: String::new(),
                    version: String::new(),
                    source: None,
                });
            }
            continue;
        }
        let Some(p) = current.as_mut() else { continue };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_string();
        match key.trim() {
            "name" => p.name = value,
            "version" => p.version = value,
            "source" => p.source = Some(value),
            _ => {}
        }
    }
    if let Some(p) = current {
        out.push(p);
    }
    out.retain(|p| !p.name.is_empty() && !p.version.is_empty());
    out
}

/// Disjoint sets of ids that name the same vulnerability.
#[derive(Clone, Debug, Default)]
struct AliasSets {
    index: HashMap<String, u32>,
    parent: Vec<u32>,
    members: Vec<Vec<u32>>,
    names: Vec<String>,
}

impl AliasSets {
    fn node(&mut self, id: &str) -> u32 {
        if let Some(&n) = self.index.get(id) {
            return n;
        }
        let n = self.names.len() as u32;
        self.index.insert(id.to_string(), n);
        self.parent.push(n);
        self.members.push(vec![n]);
        self.names.push(id.to_string());
        n
    }

    fn find(&self, mut n: u32) -> u32 {
        while self.parent[n as usize] != n {
            n = self.parent[n as usize];
        }
        n
    }

    fn union(&mut self, a: &str, b: &str) {
        let (na, nb) = (self.node(a), self.node(b));
        let (ra, rb) = (self.find(na), self.find(nb));
        if ra == rb {
            return;
        }
        // Union by size keeps `find` short without path compression (so it takes &self).
        let (big, small) = if self.members[ra as usize].len() >= self.members[rb as usize].len() {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[small as usize] = big;
        let moved = std::mem::take(&mut self.members[small as usize]);
        self.members[big as usize].extend(moved);
    }

    fn root_of(&self, id: &str) -> Option<u32> {
        self.index.get(id).map(|&n| self.find(n))
    }

    fn group<'a>(&'a self, id: &'a str) -> Vec<&'a str> {
        match self.root_of(id) {
            Some(r) => self.members[r as usize]
                .iter()
                .map(|&m| self.names[m as usize].as_str())
                .collect(),
            None => vec![id],
        }
    }
}

/// Counts of what an import brought in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportStats {
    /// Advisories imported.
    pub advisories: usize,
    /// Withdrawn advisories skipped.
    pub withdrawn: usize,
    /// (package, release) entries the tracker says were never affected.
    pub not_affected: usize,
}

impl std::ops::AddAssign for ImportStats {
    fn add_assign(&mut self, o: Self) {
        self.advisories += o.advisories;
        self.withdrawn += o.withdrawn;
        self.not_affected += o.not_affected;
    }
}

/// All imported advisories, indexed by (ecosystem, package).
#[derive(Clone, Debug, Default)]
pub struct AdvisoryDb {
    advisories: Vec<Advisory>,
    /// ecosystem (as written, e.g. `Debian:12`) -> package -> affected entries.
    index: HashMap<String, HashMap<String, Vec<Affected>>>,
    aliases: AliasSets,
    kev: HashMap<String, KevEntry>,
}

// --- OSV wire format (only the fields we use) ---

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct OsvRecord {
    id: String,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    upstream: Vec<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    severity: Vec<OsvSeverity>,
    #[serde(default)]
    affected: Vec<OsvAffected>,
    #[serde(default)]
    database_specific: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct OsvSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct OsvAffected {
    #[serde(default)]
    package: Option<OsvPackage>,
    #[serde(default)]
    severity: Vec<OsvSeverity>,
    #[serde(default)]
    ranges: Vec<OsvRange>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    database_specific: Option<serde_json::Value>,
    #[serde(default)]
    ecosystem_specific: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct OsvPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct OsvRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
enum OsvDocument {
    Many(Vec<OsvRecord>),
    One(Box<OsvRecord>),
}

fn severity_of(
    scores: &[OsvSeverity],
    db_specific: Option<&serde_json::Value>,
) -> Option<Severity> {
    let from_scores = scores
        .iter()
        .filter_map(|s| match s.kind.as_str() {
            "CVSS_V3" | "CVSS_V4" => cvss_base_score(&s.score).map(Severity::from_score),
            "Ubuntu" => Severity::parse(&s.score),
            _ => None,
        })
        .max();
    let from_label = db_specific
        .and_then(|d| d.get("severity"))
        .and_then(|s| s.as_str())
        .and_then(Severity::parse);
    from_scores.or(from_label)
}

fn sort_events(scheme: VersionScheme, events: &mut [RangeEvent]) {
    events.sort_by(|a, b| {
        let zero = |e: &RangeEvent| matches!(e, RangeEvent::Introduced(v) if v == "0");
        match (zero(a), zero(b)) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            _ => scheme.compare(a.version(), b.version()),
        }
    });
}

impl AdvisoryDb {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of advisories imported.
    pub fn len(&self) -> usize {
        self.advisories.len()
    }

    /// True when nothing has been imported.
    pub fn is_empty(&self) -> bool {
        self.advisories.is_empty()
    }

    /// Number of CVEs marked known-exploited.
    pub fn known_exploited_count(&self) -> usize {
        self.kev.len()
    }

    /// The imported advisories.
    pub fn advisories(&self) -> &[Advisory] {
        &self.advisories
    }

    /// Imports an OSV JSON file, or every `*.json` file below a directory.
    pub fn import_osv_path(&mut self, path: &Path) -> Result<ImportStats, AdvisoryError> {
        let mut stats = ImportStats::default();
        let meta = std::fs::metadata(path).map_err(|source| AdvisoryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if meta.is_dir() {
            let mut files = Vec::new();
            collect_json_files(path, &mut files)?;
            files.sort();
            for f in files {
                stats += self.import_osv_file(&f)?;
            }
        } else {
            stats += self.import_osv_file(path)?;
        }
        Ok(stats)
    }

    fn import_osv_file(&mut self, path: &Path) -> Result<ImportStats, AdvisoryError> {
        let bytes = std::fs::read(path).map_err(|source| AdvisoryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.import_osv_bytes(&bytes)
            .map_err(|source| AdvisoryError::Json {
                path: path.to_path_buf(),
                what: "OSV",
                source,
            })
    }

    /// Imports OSV JSON text: one record or an array of records.
    pub fn import_osv_str(&mut self, text: &str) -> Result<ImportStats, AdvisoryError> {
        self.import_osv_bytes(text.as_bytes())
            .map_err(|source| AdvisoryError::Json {
                path: PathBuf::from("<memory>"),
                what: "OSV",
                source,
            })
    }

    fn import_osv_bytes(&mut self, bytes: &[u8]) -> Result<ImportStats, serde_json::Error> {
        let records = match serde_json::from_slice::<OsvDocument>(bytes)? {
            OsvDocument::Many(v) => v,
            OsvDocument::One(r) => vec![*r],
        };
        let mut stats = ImportStats::default();
        for r in records {
            if r.withdrawn.is_some() {
                stats.withdrawn += 1;
                continue;
            }
            self.add_osv_record(r);
            stats.advisories += 1;
        }
        Ok(stats)
    }

    fn add_osv_record(&mut self, r: OsvRecord) {
        let informational = r
            .affected
            .iter()
            .filter_map(|a| a.database_specific.as_ref())
            .chain(r.database_specific.as_ref())
            .filter_map(|d| d.get("informational").and_then(|v| v.as_str()))
            .map(str::to_string)
            .next();
        let severity = severity_of(&r.severity, r.database_specific.as_ref()).or_else(|| {
            r.affected
                .iter()
                .filter_map(|a| {
                    let cvss = a
                        .database_specific
                        .as_ref()
                        .and_then(|d| d.get("cvss"))
                        .and_then(|v| v.as_str())
                        .and_then(cvss_base_score)
                        .map(Severity::from_score);
                    severity_of(&a.severity, a.ecosystem_specific.as_ref()).or(cvss)
                })
                .max()
        });
        let summary = r
            .summary
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| {
                r.details
                    .as_deref()
                    .and_then(|d| d.lines().map(str::trim).find(|l| !l.is_empty()))
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let idx = self.advisories.len() as u32;
        self.aliases.node(&r.id);
        for a in &r.aliases {
            self.aliases.union(&r.id, a);
        }
        // A distribution record about exactly one upstream vulnerability
        // (`DEBIAN-CVE-2024-1234` → `CVE-2024-1234`) is that vulnerability; one that
        // bundles several (a DSA) is not joined, its upstream ids are only listed.
        if let [only] = r.upstream.as_slice() {
            self.aliases.union(&r.id, only);
        }
        for a in r.affected {
            let Some(pkg) = a.package else { continue };
            let scheme = VersionScheme::for_ecosystem(&pkg.ecosystem);
            let mut ranges = Vec::new();
            for range in a.ranges {
                let range_scheme = match range.kind.as_str() {
                    "SEMVER" => VersionScheme::Semver,
                    "ECOSYSTEM" => scheme,
                    _ => continue, // GIT: needs the commit graph; `versions` covers it.
                };
                let mut events: Vec<RangeEvent> = range
                    .events
                    .into_iter()
                    .filter_map(|e| {
                        let (k, v) = e.into_iter().next()?;
                        Some(match k.as_str() {
                            "introduced" => RangeEvent::Introduced(v),
                            "fixed" => RangeEvent::Fixed(v),
                            "last_affected" => RangeEvent::LastAffected(v),
                            "limit" => RangeEvent::Limit(v),
                            _ => return None,
                        })
                    })
                    .collect();
                sort_events(range_scheme, &mut events);
                ranges.push((range_scheme, events));
            }
            // All ranges of one entry share one scheme in practice; keep the entry's.
            let entry_scheme = ranges.first().map(|(s, _)| *s).unwrap_or(scheme);
            let entry = Affected {
                advisory: idx,
                scheme: entry_scheme,
                ranges: ranges.into_iter().map(|(_, e)| e).collect(),
                versions: a.versions,
                severity: severity_of(&a.severity, None),
                note: None,
            };
            self.index
                .entry(pkg.ecosystem)
                .or_default()
                .entry(pkg.name)
                .or_default()
                .push(entry);
        }
        self.advisories.push(Advisory {
            id: r.id,
            aliases: r.aliases,
            upstream: r.upstream,
            summary,
            severity,
            informational,
            origin: AdvisoryOrigin::Osv,
        });
    }

    /// Imports a Debian security tracker JSON file.
    ///
    /// `releases` maps a codename (`bookworm`) to the OSV release (`12`); see
    /// [`debian_releases`] for Debian's own list. Codenames it does not know are skipped.
    pub fn import_debian_tracker_path(
        &mut self,
        path: &Path,
        releases: &BTreeMap<String, String>,
    ) -> Result<ImportStats, AdvisoryError> {
        let bytes = std::fs::read(path).map_err(|source| AdvisoryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.import_debian_tracker_bytes(&bytes, releases)
            .map_err(|source| AdvisoryError::Json {
                path: path.to_path_buf(),
                what: "Debian security tracker",
                source,
            })
    }

    /// Imports Debian security tracker JSON text (see [`Self::import_debian_tracker_path`]).
    pub fn import_debian_tracker_str(
        &mut self,
        text: &str,
        releases: &BTreeMap<String, String>,
    ) -> Result<ImportStats, AdvisoryError> {
        self.import_debian_tracker_bytes(text.as_bytes(), releases)
            .map_err(|source| AdvisoryError::Json {
                path: PathBuf::from("<memory>"),
                what: "Debian security tracker",
                source,
            })
    }

    fn import_debian_tracker_bytes(
        &mut self,
        bytes: &[u8],
        releases: &BTreeMap<String, String>,
    ) -> Result<ImportStats, serde_json::Error> {
        let tracker: BTreeMap<String, BTreeMap<String, TrackerIssue>> =
            serde_json::from_slice(bytes)?;
        let mut stats = ImportStats::default();
        // One advisory per issue id across packages; ranges are per (release, package).
        let mut by_id: HashMap<String, u32> = HashMap::new();
        for (package, issues) in tracker {
            for (issue_id, issue) in issues {
                for (codename, rel) in &issue.releases {
                    let Some(number) = releases.get(codename) else {
                        continue;
                    };
                    let fixed = rel.fixed_version.as_deref().filter(|v| !v.is_empty());
                    if fixed == Some("0") {
                        // "0": this release never shipped a vulnerable version.
                        stats.not_affected += 1;
                        continue;
                    }
                    let status = rel.status.as_deref().unwrap_or("");
                    if status == "resolved" && fixed.is_none() {
                        stats.not_affected += 1;
                        continue;
                    }
                    let idx = match by_id.get(&issue_id) {
                        Some(&i) => i,
                        None => {
                            let i = self.advisories.len() as u32;
                            self.aliases.node(&issue_id);
                            self.advisories.push(Advisory {
                                id: issue_id.clone(),
                                aliases: Vec::new(),
                                upstream: Vec::new(),
                                summary: issue
                                    .description
                                    .clone()
                                    .unwrap_or_default()
                                    .lines()
                                    .next()
                                    .unwrap_or_default()
                                    .to_string(),
                                severity: None,
                                informational: None,
                                origin: AdvisoryOrigin::DebianTracker,
                            });
                            by_id.insert(issue_id.clone(), i);
                            stats.advisories += 1;
                            i
                        }
                    };
                    let mut events = vec![RangeEvent::Introduced("0".into())];
                    if let Some(f) = fixed {
                        events.push(RangeEvent::Fixed(f.to_string()));
                    }
                    let urgency = rel.urgency.as_deref().unwrap_or("");
                    let severity = Severity::parse(urgency);
                    let note = if severity == Some(Severity::Unimportant) {
                        Some("Debian rates it unimportant".to_string())
                    } else if urgency == "end-of-life" {
                        Some("Debian no longer supports this package in this release".into())
                    } else if let Some(reason) = rel.nodsa.as_deref() {
                        let why = rel.nodsa_reason.as_deref().unwrap_or("minor issue");
                        Some(format!("no DSA planned ({why}): {reason}"))
                    } else {
                        None
                    };
                    self.index
                        .entry(format!("Debian:{number}"))
                        .or_default()
                        .entry(package.clone())
                        .or_default()
                        .push(Affected {
                            advisory: idx,
                            scheme: VersionScheme::Debian,
                            ranges: vec![events],
                            versions: Vec::new(),
                            severity,
                            note,
                        });
                }
            }
        }
        Ok(stats)
    }

    /// Imports a CISA KEV catalog JSON file.
    pub fn import_kev_path(&mut self, path: &Path) -> Result<usize, AdvisoryError> {
        let bytes = std::fs::read(path).map_err(|source| AdvisoryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.import_kev_bytes(&bytes)
            .map_err(|source| AdvisoryError::Json {
                path: path.to_path_buf(),
                what: "CISA KEV",
                source,
            })
    }

    /// Imports CISA KEV catalog JSON text; returns how many CVEs it lists.
    pub fn import_kev_str(&mut self, text: &str) -> Result<usize, AdvisoryError> {
        self.import_kev_bytes(text.as_bytes())
            .map_err(|source| AdvisoryError::Json {
                path: PathBuf::from("<memory>"),
                what: "CISA KEV",
                source,
            })
    }

    fn import_kev_bytes(&mut self, bytes: &[u8]) -> Result<usize, serde_json::Error> {
        let catalog: KevCatalog = serde_json::from_slice(bytes)?;
        let n = catalog.vulnerabilities.len();
        for v in catalog.vulnerabilities {
            self.kev.insert(
                v.cve_id.clone(),
                KevEntry {
                    cve: v.cve_id,
                    date_added: v.date_added,
                    due_date: v.due_date,
                    ransomware: v.known_ransomware_campaign_use,
                },
            );
        }
        Ok(n)
    }

    /// The KEV entry of any id of this vulnerability (aliases included).
    pub fn known_exploited(&self, id: &str) -> Option<&KevEntry> {
        self.aliases
            .group(id)
            .into_iter()
            .find_map(|i| self.kev.get(i))
            .or_else(|| self.kev.get(id))
    }

    /// Every id joined with `id` through aliases (itself included), sorted.
    pub fn alias_group(&self, id: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .aliases
            .group(id)
            .into_iter()
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    /// The ecosystems with data for this exact name or its unscoped base.
    fn entries<'a>(&'a self, ecosystem: &str, package: &str) -> impl Iterator<Item = &'a Affected> {
        let base = ecosystem.split(':').next().unwrap_or(ecosystem);
        let scoped = self.index.get(ecosystem).and_then(|m| m.get(package));
        let unscoped = if base != ecosystem {
            self.index.get(base).and_then(|m| m.get(package))
        } else {
            None
        };
        scoped.into_iter().chain(unscoped).flatten()
    }

    /// True when any advisory names this package in this ecosystem (cheap pre-check).
    pub fn has_package(&self, ecosystem: &str, package: &str) -> bool {
        self.entries(ecosystem, package).next().is_some()
    }

    /// Advisories affecting `package` at `version` in `ecosystem` (e.g. `Debian:12`,
    /// which also consults unscoped `Debian` records). Aliases are joined: one match
    /// per vulnerability, with every id, the highest severity and the lowest fix.
    pub fn matches(&self, ecosystem: &str, package: &str, version: &str) -> Vec<VulnMatch> {
        let mut by_group: BTreeMap<u32, VulnMatch> = BTreeMap::new();
        let mut order: Vec<u32> = Vec::new();
        for entry in self.entries(ecosystem, package) {
            let Some(fixed) = entry_affects(entry, version) else {
                continue;
            };
            let adv = &self.advisories[entry.advisory as usize];
            let root = self
                .aliases
                .root_of(&adv.id)
                .unwrap_or(u32::MAX - entry.advisory);
            let severity = entry.severity.or(adv.severity);
            let informational = entry.note.clone().or_else(|| {
                adv.informational
                    .as_ref()
                    .map(|k| format!("informational advisory ({k})"))
            });
            match by_group.get_mut(&root) {
                Some(m) => {
                    if !m.matched.contains(&adv.id) {
                        m.matched.push(adv.id.clone());
                    }
                    m.severity = m.severity.max(severity);
                    m.fixed = match (m.fixed.take(), fixed) {
                        (Some(a), Some(b)) => {
                            Some(if entry.scheme.compare(&a, &b) == Ordering::Greater {
                                b
                            } else {
                                a
                            })
                        }
                        // One source says unfixed, another names a fix: the fix wins.
                        (a, b) => a.or(b),
                    };
                    // Informational only while every source says so.
                    if informational.is_none() {
                        m.informational = None;
                    }
                    if m.summary.is_empty() {
                        m.summary = adv.summary.clone();
                    }
                }
                None => {
                    let mut ids = self.alias_group(&adv.id);
                    if adv.upstream.len() > 1 {
                        ids.extend(adv.upstream.iter().cloned());
                        ids.sort();
                        ids.dedup();
                    }
                    let known_exploited = ids.iter().any(|i| self.kev.contains_key(i));
                    order.push(root);
                    by_group.insert(
                        root,
                        VulnMatch {
                            id: adv.id.clone(),
                            ids,
                            matched: vec![adv.id.clone()],
                            summary: adv.summary.clone(),
                            severity,
                            fixed,
                            known_exploited,
                            informational,
                        },
                    );
                }
            }
        }
        order
            .into_iter()
            .filter_map(|r| by_group.remove(&r))
            .collect()
    }

    /// Advisories for the crates.io packages of a `Cargo.lock`: (package, match) pairs.
    pub fn scan_cargo_lock(&self, text: &str) -> Vec<(LockedPackage, VulnMatch)> {
        let mut out = Vec::new();
        for p in parse_cargo_lock(text) {
            if !p.from_crates_io() {
                continue;
            }
            for m in self.matches("crates.io", &p.name, &p.version) {
                out.push((p.clone(), m));
            }
        }
        out
    }

    /// Every distinct ecosystem string present in the index.
    pub fn ecosystems(&self) -> BTreeSet<&str> {
        self.index.keys().map(String::as_str).collect()
    }
}

/// Whether `entry` affects `version`: None when not, Some(fix) when it does (fix None: no
/// fixed version above it).
fn entry_affects(entry: &Affected, version: &str) -> Option<Option<String>> {
    if entry.versions.iter().any(|v| v == version) {
        // Listed explicitly; look for a fix in the ranges all the same.
        return Some(range_match(entry, version).flatten());
    }
    range_match(entry, version)
}

fn range_match(entry: &Affected, version: &str) -> Option<Option<String>> {
    let scheme = entry.scheme;
    for events in &entry.ranges {
        let limits: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                RangeEvent::Limit(l) => Some(l.as_str()),
                _ => None,
            })
            .collect();
        if !limits.is_empty()
            && !limits
                .iter()
                .any(|l| l.contains('*') || scheme.compare(version, l) == Ordering::Less)
        {
            continue;
        }
        let mut vulnerable = false;
        let mut fix: Option<&str> = None;
        for e in events {
            match e {
                RangeEvent::Introduced(v) => {
                    if v == "0" || scheme.compare(version, v) != Ordering::Less {
                        vulnerable = true;
                        fix = None;
                    } else {
                        break; // sorted: every later event is above `version` too
                    }
                }
                RangeEvent::Fixed(v) => {
                    if scheme.compare(version, v) != Ordering::Less {
                        vulnerable = false;
                    } else {
                        if vulnerable {
                            fix = Some(v);
                        }
                        break;
                    }
                }
                RangeEvent::LastAffected(v) => {
                    if scheme.compare(version, v) == Ordering::Greater {
                        vulnerable = false;
                    } else {
                        break;
                    }
                }
                RangeEvent::Limit(_) => {}
            }
        }
        if vulnerable {
            return Some(fix.map(str::to_string));
        }
    }
    None
}

fn collect_json_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), AdvisoryError> {
    let rd = std::fs::read_dir(dir).map_err(|source| AdvisoryError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in rd {
        let e = e.map_err(|source| AdvisoryError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let p = e.path();
        let ft = e.file_type().map_err(|source| AdvisoryError::Io {
            path: p.clone(),
            source,
        })?;
        if ft.is_dir() {
            collect_json_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct TrackerIssue {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    releases: BTreeMap<String, TrackerRelease>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct TrackerRelease {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    urgency: Option<String>,
    #[serde(default)]
    nodsa: Option<String>,
    #[serde(default)]
    nodsa_reason: Option<String>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
struct KevCatalog {
    vulnerabilities: Vec<KevRecord>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
struct KevRecord {
    #[serde(rename = "cveID")]
    cve_id: String,
    #[serde(default)]
    date_added: String,
    #[serde(default)]
    due_date: String,
    #[serde(default)]
    known_ransomware_campaign_use: String,
}

/// Debian's codenames and their OSV release names (`bookworm` → `12`, `sid` → `sid`).
///
/// A fallback for when no distro-info CSV is at hand; `checks::DistroInfo` gives the
/// same map from the CSV, including releases newer than this list.
pub fn debian_releases() -> BTreeMap<String, String> {
    [
        ("wheezy", "7"),
        ("jessie", "8"),
        ("stretch", "9"),
        ("buster", "10"),
        ("bullseye", "11"),
        ("bookworm", "12"),
        ("trixie", "13"),
        ("forky", "14"),
        ("duke", "15"),
        ("sid", "sid"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

/// The OSV ecosystem strings for a host's os-release, most specific first.
pub fn host_ecosystems(os: &patchday_types::OsRelease) -> Vec<String> {
    let id = os.id.to_ascii_lowercase();
    let name = match id.as_str() {
        "debian" => "Debian",
        "ubuntu" => "Ubuntu",
        "almalinux" => "AlmaLinux",
        "rocky" => "Rocky Linux",
        "rhel" => "Red Hat",
        "opensuse" | "opensuse-leap" => "openSUSE",
        "sles" => "SUSE",
        "alpine" => "Alpine",
        _ => return vec![os.id.clone()],
    };
    let release = if os.version_id.is_empty() {
        // Debian testing/unstable have no VERSION_ID; OSV calls them by series.
        if os.version_codename.is_empty() {
            "sid".to_string()
        } else {
            os.version_codename.clone()
        }
    } else if name == "Debian" {
        // Debian's VERSION_ID is the major release ("12"), as OSV wants.
        os.version_id
            .split('.')
            .next()
            .unwrap_or_default()
            .to_string()
    } else if name == "Alpine" {
        let mut parts = os.version_id.split('.');
        format!(
            "v{}.{}",
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default()
        )
    } else {
        os.version_id.clone()
    };
    let mut v = vec![format!("{name}:{release}")];
    if name == "Ubuntu" {
        v.push(format!("{name}:{release}:LTS"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB_OSV: &str = r#"[
      {"id": "DSA-5001-1", "aliases": ["CVE-2024-0001"], "summary": "openssl - security update",
       "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.15-1~deb12u1"}]}]}]},
      {"id": "DSA-5002-1", "aliases": ["CVE-2024-0002"], "withdrawn": "2024-02-01T00:00:00Z",
       "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]},
      {"id": "DSA-5003-1", "summary": "epoch test",
       "affected": [{"package": {"ecosystem": "Debian", "name": "openssh"},
         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1:9.0p1-1"}, {"fixed": "1:9.2p1-2+deb12u5"}]}]}]}
    ]"#;

    const CRATES_OSV: &str = r#"[
      {"id": "RUSTSEC-2099-0001", "aliases": ["CVE-2099-1111", "GHSA-aaaa-bbbb-cccc"],
       "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
       "affected": [{"package": {"ecosystem": "crates.io", "name": "demo"},
         "ranges": [{"type": "SEMVER", "events": [{"introduced": "0.0.0-0"}, {"fixed": "0.9.0"},
                                                  {"introduced": "1.0.0"}, {"fixed": "1.2.3"}]}]}]},
      {"id": "RUSTSEC-2099-0002",
       "affected": [{"package": {"ecosystem": "crates.io", "name": "demo"},
         "database_specific": {"informational": "unmaintained"},
         "ranges": [{"type": "SEMVER", "events": [{"introduced": "0.0.0-0"}]}]}]},
      {"id": "RUSTSEC-2099-0003",
       "affected": [{"package": {"ecosystem": "crates.io", "name": "other"},
         "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"last_affected": "1.4.0"}]}],
         "versions": ["0.3.1"]}]}
    ]"#;

    const RPM_OSV: &str = r#"{"id": "RLSA-2099:0001", "affected": [{"package": {"ecosystem": "Rocky Linux:9", "name": "curl"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "7.76.1-26.el9_3.2"}]}]}]}"#;

    fn db() -> AdvisoryDb {
        let mut db = AdvisoryDb::new();
        let s = db.import_osv_str(DEB_OSV).unwrap();
        assert_eq!(s.advisories, 2);
        assert_eq!(s.withdrawn, 1);
        db.import_osv_str(CRATES_OSV).unwrap();
        db.import_osv_str(RPM_OSV).unwrap();
        db
    }

    #[test]
    fn debian_ranges_use_dpkg_order_and_release_scope() {
        let db = db();
        let m = db.matches("Debian:12", "openssl", "3.0.14-1~deb12u2");
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].id, "DSA-5001-1");
        assert_eq!(m[0].fixed.as_deref(), Some("3.0.15-1~deb12u1"));
        // `~` sorts before everything: 3.0.15-1~deb12u1 < 3.0.15-1, so -1 is fixed.
        assert!(db.matches("Debian:12", "openssl", "3.0.15-1").is_empty());
        assert!(db
            .matches("Debian:12", "openssl", "3.0.15-1~deb12u1")
            .is_empty());
        // Another release is not matched by a Debian:12 record.
        assert!(db
            .matches("Debian:11", "openssl", "1.1.1w-0+deb11u1")
            .is_empty());
        // Unscoped `Debian` applies to every release; epochs order first.
        assert_eq!(
            db.matches("Debian:12", "openssh", "1:9.2p1-2+deb12u3")
                .len(),
            1
        );
        assert!(db
            .matches("Debian:12", "openssh", "1:9.2p1-2+deb12u5")
            .is_empty());
        assert!(db.matches("Debian:12", "openssh", "1:8.4p1-5").is_empty());
    }

    #[test]
    fn withdrawn_is_ignored() {
        let db = db();
        assert!(db.matches("Debian:12", "openssl", "3.0.16-1").is_empty());
        assert!(db.advisories().iter().all(|a| a.id != "DSA-5002-1"));
    }

    #[test]
    fn semver_ranges_and_versions_lists() {
        let db = db();
        let ids = |v: &str| -> Vec<String> {
            db.matches("crates.io", "demo", v)
                .into_iter()
                .map(|m| m.id)
                .collect()
        };
        assert_eq!(ids("0.8.9"), vec!["RUSTSEC-2099-0001", "RUSTSEC-2099-0002"]);
        assert_eq!(ids("0.9.0"), vec!["RUSTSEC-2099-0002"]);
        assert_eq!(ids("1.2.2"), vec!["RUSTSEC-2099-0001", "RUSTSEC-2099-0002"]);
        assert_eq!(ids("1.10.0"), vec!["RUSTSEC-2099-0002"]);
        let m = db.matches("crates.io", "demo", "1.0.0-rc.1");
        // A pre-release of 1.0.0 is below 1.0.0 and above 0.9.0: not in either range.
        assert_eq!(m.len(), 1);
        let m = &db.matches("crates.io", "demo", "1.1.0")[0];
        assert_eq!(m.fixed.as_deref(), Some("1.2.3"));
        assert_eq!(m.severity, Some(Severity::Critical));
        assert_eq!(
            m.ids,
            vec!["CVE-2099-1111", "GHSA-aaaa-bbbb-cccc", "RUSTSEC-2099-0001"]
        );
        let info = &db.matches("crates.io", "demo", "1.1.0")[1];
        assert!(info
            .informational
            .as_deref()
            .unwrap_or("")
            .contains("unmaintained"));
        // last_affected is inclusive; versions lists match exactly.
        assert_eq!(db.matches("crates.io", "other", "1.4.0").len(), 1);
        assert_eq!(db.matches("crates.io", "other", "1.4.0")[0].fixed, None);
        assert!(db.matches("crates.io", "other", "1.4.1").is_empty());
        assert_eq!(db.matches("crates.io", "other", "0.3.1").len(), 1);
        assert!(db.matches("crates.io", "other", "0.3.2").is_empty());
    }

    #[test]
    fn rpm_ranges_use_rpm_order() {
        let db = db();
        assert_eq!(
            db.matches("Rocky Linux:9", "curl", "7.76.1-26.el9_3.1")
                .len(),
            1
        );
        // rpm: el9_3.10 > el9_3.2 numerically (a string compare would say otherwise).
        assert!(db
            .matches("Rocky Linux:9", "curl", "7.76.1-26.el9_3.10")
            .is_empty());
        assert!(db
            .matches("Rocky Linux:8", "curl", "7.76.1-26.el9_3.1")
            .is_empty());
    }

    #[test]
    fn limit_events_bound_a_range() {
        let mut db = AdvisoryDb::new();
        db.import_osv_str(
            r#"{"id": "X-1", "affected": [{"package": {"ecosystem": "crates.io", "name": "lim"},
              "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"limit": "2.0.0"}]}]}]}"#,
        )
        .unwrap();
        assert_eq!(db.matches("crates.io", "lim", "1.5.0").len(), 1);
        assert!(db.matches("crates.io", "lim", "2.0.0").is_empty());
        assert!(db.matches("crates.io", "lim", "0.9.0").is_empty());
    }

    const TRACKER: &str = r#"{
      "openssl": {
        "CVE-2024-0001": {"description": "overflow", "releases": {
          "bookworm": {"status": "resolved", "fixed_version": "3.0.15-1~deb12u1", "urgency": "high"},
          "bullseye": {"status": "resolved", "fixed_version": "0", "urgency": "unimportant"}}},
        "CVE-2024-0009": {"releases": {
          "bookworm": {"status": "open", "urgency": "unimportant"}}},
        "CVE-2024-0010": {"releases": {
          "bookworm": {"status": "open", "urgency": "low", "nodsa": "Minor issue", "nodsa_reason": "postponed"}}}
      }
    }"#;

    #[test]
    fn debian_tracker_joins_aliases_and_kev() {
        let mut db = db();
        let s = db
            .import_debian_tracker_str(TRACKER, &debian_releases())
            .unwrap();
        assert_eq!(s.not_affected, 1);
        db.import_kev_str(r#"{"vulnerabilities": [{"cveID": "CVE-2024-0001", "dateAdded": "2024-05-01", "dueDate": "2024-05-22", "knownRansomwareCampaignUse": "Known"}]}"#).unwrap();
        let m = db.matches("Debian:12", "openssl", "3.0.14-1~deb12u2");
        // DSA-5001-1 and the tracker's CVE-2024-0001 are one vulnerability.
        assert_eq!(m.len(), 3, "{m:?}");
        let joined = m
            .iter()
            .find(|x| x.ids.contains(&"CVE-2024-0001".to_string()))
            .unwrap();
        assert_eq!(joined.ids, vec!["CVE-2024-0001", "DSA-5001-1"]);
        assert!(joined.known_exploited);
        assert_eq!(joined.matched, vec!["DSA-5001-1", "CVE-2024-0001"]);
        assert_eq!(joined.severity, Some(Severity::High));
        assert_eq!(joined.fixed.as_deref(), Some("3.0.15-1~deb12u1"));
        assert!(db.known_exploited("DSA-5001-1").is_some());
        let unimportant = m.iter().find(|x| x.id == "CVE-2024-0009").unwrap();
        assert_eq!(unimportant.fixed, None);
        assert!(unimportant.informational.is_some());
        let nodsa = m.iter().find(|x| x.id == "CVE-2024-0010").unwrap();
        assert!(nodsa
            .informational
            .as_deref()
            .unwrap_or("")
            .contains("postponed"));
        // bullseye: fixed_version "0" means never affected.
        assert!(db
            .matches("Debian:11", "openssl", "1.1.1n-0+deb11u1")
            .is_empty());
    }

    #[test]
    fn upstream_ids_join_single_and_list_bundles() {
        let mut db = AdvisoryDb::new();
        db.import_osv_str(
            r#"[{"id": "DEBIAN-CVE-2099-7", "upstream": ["CVE-2099-7"],
                 "affected": [{"package": {"ecosystem": "Debian:12", "name": "xz-utils"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.4.1-1"}]}]}]},
                {"id": "DSA-9-1", "upstream": ["CVE-2099-8", "CVE-2099-9"],
                 "affected": [{"package": {"ecosystem": "Debian:12", "name": "xz-utils"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.4.1-1"}]}]}]}]"#,
        )
        .unwrap();
        db.import_debian_tracker_str(
            r#"{"xz-utils": {"CVE-2099-7": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "5.4.1-1", "urgency": "high"}}}}}"#,
            &debian_releases(),
        )
        .unwrap();
        db.import_kev_str(r#"{"vulnerabilities": [{"cveID": "CVE-2099-9"}]}"#)
            .unwrap();
        let m = db.matches("Debian:12", "xz-utils", "5.4.0-1");
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[0].ids, vec!["CVE-2099-7", "DEBIAN-CVE-2099-7"]);
        assert_eq!(m[0].severity, Some(Severity::High));
        assert_eq!(m[1].ids, vec!["CVE-2099-8", "CVE-2099-9", "DSA-9-1"]);
        assert!(m[1].known_exploited);
    }

    #[test]
    fn cvss_scores_match_the_calculator() {
        let s = |v| cvss_base_score(v).unwrap();
        assert_eq!(s("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"), 9.8);
        assert_eq!(s("CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H"), 8.1);
        assert_eq!(s("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"), 6.1);
        assert_eq!(s("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:H"), 5.5);
        assert_eq!(s("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"), 0.0);
        assert!(cvss_base_score("AV:N/AC:L/Au:N/C:P/I:P/A:P").is_none());
    }

    #[test]
    fn cargo_lock_parsing_skips_path_crates() {
        let lock = "version = 4\n\n[[package]]\nname = \"demo\"\nversion = \"1.1.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"ab\"\n\n[[package]]\nname = \"mine\"\nversion = \"0.1.0\"\ndependencies = [\n \"demo\",\n]\n";
        let pkgs = parse_cargo_lock(lock);
        assert_eq!(pkgs.len(), 2);
        let db = db();
        let hits = db.scan_cargo_lock(lock);
        assert_eq!(hits.len(), 2);
        assert!(hits.iter().all(|(p, _)| p.name == "demo"));
    }

    #[test]
    fn host_ecosystem_names() {
        let os = patchday_types::OsRelease {
            id: "debian".into(),
            version_id: "12".into(),
            version_codename: "bookworm".into(),
            pretty_name: String::new(),
        };
        assert_eq!(host_ecosystems(&os), vec!["Debian:12"]);
    }

    #[test]
    fn lenient_semver() {
        assert_eq!(parse_semver("1.2").unwrap(), semver::Version::new(1, 2, 0));
        assert_eq!(parse_semver("v3").unwrap(), semver::Version::new(3, 0, 0));
        assert!(parse_semver("1.2.3.4").is_none());
    }
}
