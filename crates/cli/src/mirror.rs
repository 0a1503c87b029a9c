//! `patchday mirror run`: follows apt archives into the catalog (issue 9, point 1).
//!
//! The archive work (verification, selection, download, grouping) is `patchday-mirror`'s;
//! this module chooses what to import, and signs each update with the same path as
//! `patchday catalog add-deb` ([`CatalogPublisher`]).

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context;
use async_trait::async_trait;
use patchday_mirror::sync::{self, MirroredUpdate, Publish, SyncOptions};
use patchday_mirror::{advisories::Feeds, HttpFetch, MirrorConfig, MirrorError, Selection};
use patchday_trust::KeyPaths;
use patchday_types::{PayloadKind, PayloadRef, Release, Severity, UpdateId, YearMonth};

use crate::api::Conn;
use crate::catalog::{add_update, UpdateContent, UpdateOptions};

/// Mirror commands.
#[derive(clap::Subcommand)]
pub enum MirrorCmd {
    /// Follows the configured apt sources once: verifies each InRelease against its pinned
    /// keyring, imports new source versions (all their binaries as one update) and signs
    /// them into the catalog. Push the catalog afterwards.
    ///
    /// Example: patchday mirror run --config mirror.toml --repo ~/catalog --keys ~/patchday-keys --server https://patchday:8470
    Run(RunArgs),
}

/// `patchday mirror run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Mirror configuration (TOML with [[source]] tables).
    #[arg(long)]
    config: PathBuf,
    /// Catalog directory.
    #[arg(long)]
    repo: PathBuf,
    /// Key directory (signs the updates).
    #[arg(long)]
    keys: PathBuf,
    /// Import only these source or binary packages (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "all")]
    packages: Vec<String>,
    /// Import every package the sources list.
    #[arg(long)]
    all: bool,
    /// A dpkg status file (e.g. /var/lib/dpkg/status): newer versions of the source
    /// packages it lists as installed (one host, or a benchmark, without a server).
    #[arg(long, conflicts_with_all = ["all", "packages"])]
    dpkg_status: Option<PathBuf>,
    /// Server to read the fleet's installed source packages from (the default selection:
    /// newer versions of source packages installed on at least one enrolled host).
    #[arg(long, env = "PATCHDAY_SERVER")]
    server: Option<String>,
    /// Operator token for --server.
    #[arg(long, env = "PATCHDAY_TOKEN", hide_env_values = true)]
    token: Option<patchday_types::Secret>,
    /// The server's CA certificate (PEM).
    #[arg(long, env = "PATCHDAY_CA")]
    ca: Option<PathBuf>,
    /// State and downloads [default: REPO/mirror].
    #[arg(long)]
    work: Option<PathBuf>,
    /// Debian security tracker JSON: severity from its urgency, more CVE ids.
    #[arg(long)]
    debian_tracker: Option<PathBuf>,
    /// CISA KEV JSON: known-exploited updates go to the emergency lane as critical.
    #[arg(long)]
    kev: Option<PathBuf>,
    /// Release codename for the tracker [default: the first source's suite without
    /// its `-security`/`-updates` suffix].
    #[arg(long)]
    codename: Option<String>,
    /// Release train of imported updates (YYYY-MM) [default: this month].
    #[arg(long)]
    train: Option<YearMonth>,
    /// Severity when no tracker rates an update.
    #[arg(long, default_value = "important")]
    severity: Severity,
    /// Publish for this tenant only (repeatable; default: every tenant).
    #[arg(long = "tenant")]
    tenants: Vec<String>,
    /// Sign as this delegated role (`patchday catalog delegate --role mirror`) with
    /// --key-file, so the offline targets key can stay offline; update ids then start
    /// with the role (`mirror-DEB-...`), inside its delegated paths.
    #[arg(long = "as", requires = "key_files")]
    as_role: Option<String>,
    /// The delegated role's key file (repeatable).
    #[arg(long = "key-file")]
    key_files: Vec<PathBuf>,
}

/// Runs a mirror command; `now` is the time of the run.
pub async fn run(cmd: MirrorCmd, now: jiff::Timestamp) -> anyhow::Result<i32> {
    match cmd {
        MirrorCmd::Run(a) => run_once(a, now).await,
    }
}

async fn selection(a: &RunArgs) -> anyhow::Result<Selection> {
    if !a.packages.is_empty() {
        return Ok(Selection::Packages(
            a.packages.iter().map(|p| p.trim().to_owned()).collect(),
        ));
    }
    if a.all {
        return Ok(Selection::All);
    }
    if let Some(path) = &a.dpkg_status {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the dpkg status file {}", path.display()))?;
        let mut sources: std::collections::BTreeMap<String, BTreeSet<String>> =
            std::collections::BTreeMap::new();
        for p in patchday_pkg::status::parse_status(&text) {
            sources
                .entry(p.source)
                .or_default()
                .insert(p.source_version);
        }
        return Ok(Selection::Installed(sources));
    }
    let Some(server) = &a.server else {
        anyhow::bail!(
            "say what to import: --server URL (with --token) for what the fleet has installed, --dpkg-status FILE, --packages a,b, or --all"
        );
    };
    let conn = Conn {
        server: Some(server.clone()),
        token: a.token.clone(),
        ca: a.ca.clone(),
        ..Conn::default()
    };
    let fleet = conn.api()?.fleet_source_packages().await?;
    if fleet.hosts == 0 {
        eprintln!("note: no enrolled host has reported an inventory yet; nothing to select");
    }
    Ok(Selection::Installed(fleet.sources))
}

async fn run_once(a: RunArgs, now: jiff::Timestamp) -> anyhow::Result<i32> {
    let cfg = MirrorConfig::load(&a.config)?;
    let codename = a.codename.clone().unwrap_or_else(|| {
        let suite = cfg.sources.first().map(|s| s.suite.as_str()).unwrap_or("");
        suite.split(['-', '/']).next().unwrap_or(suite).to_owned()
    });
    let feeds = Feeds::load(a.debian_tracker.as_deref(), a.kev.as_deref(), &codename)?;
    let selection = selection(&a).await?;
    let month = match a.train {
        Some(m) => m,
        None => {
            let d = now.to_zoned(jiff::tz::TimeZone::UTC).date();
            YearMonth {
                year: d.year(),
                month: d.month(),
            }
        }
    };
    let publisher = CatalogPublisher::open(&a, month, now).await?;
    let work = a.work.clone().unwrap_or_else(|| a.repo.join("mirror"));
    let opts = SyncOptions {
        work_dir: work,
        now,
        selection,
        feeds,
    };
    let report = sync::run(&cfg, &HttpFetch::new()?, &publisher, &opts)
        .await
        .context("mirror run stopped (a rerun resumes where it stopped)")?;
    let mut imported = 0;
    for s in &report.sources {
        if s.unchanged {
            println!("{}: unchanged since the last run", s.name);
            continue;
        }
        imported += s.imported.len();
        println!(
            "{}: signed {} update(s), {} already in the catalog, {} bytes fetched",
            s.name,
            s.imported.len(),
            s.already,
            s.bytes_fetched
        );
        for id in &s.imported {
            println!("  {id}");
        }
    }
    if imported > 0 {
        println!(
            "push the catalog: patchday catalog push --repo {}",
            a.repo.display()
        );
    }
    Ok(0)
}

/// Signs mirrored updates into the catalog with the offline keys, through the same
/// `add_update` as `patchday catalog add-deb`. The one place to change to sign as a
/// delegated mirror role.
pub struct CatalogPublisher {
    keys: KeyPaths,
    repo: PathBuf,
    month: YearMonth,
    severity: Severity,
    tenants: Vec<String>,
    existing: BTreeSet<String>,
    now: jiff::Timestamp,
    /// Issue 9, point 2: the delegated role that signs, if not the offline targets key.
    role: Option<crate::catalog::DelegatedSigner>,
}

impl CatalogPublisher {
    async fn open(a: &RunArgs, month: YearMonth, now: jiff::Timestamp) -> anyhow::Result<Self> {
        let existing = patchday_trust::catalog_targets(&a.repo)
            .await
            .with_context(|| {
                format!(
                    "reading the catalog in {} (create it with `patchday catalog init`)",
                    a.repo.display()
                )
            })?
            .into_keys()
            .collect();
        Ok(CatalogPublisher {
            keys: KeyPaths::in_dir(&a.keys),
            repo: a.repo.clone(),
            month,
            severity: a.severity,
            tenants: a.tenants.clone(),
            existing,
            now,
            role: a.as_role.as_ref().map(|r| crate::catalog::DelegatedSigner {
                role: r.clone(),
                key_files: a.key_files.clone(),
            }),
        })
    }
}

/// The upstream evidence as the update document signs it: the InRelease (URL, sha256,
/// signing key) and the first index that lists the update's binaries (all of them are in
/// the description).
fn signed_evidence(e: &patchday_mirror::UpstreamEvidence) -> patchday_types::UpstreamEvidence {
    let (index_path, index_sha256) = e.indexes.first().cloned().unwrap_or_default();
    patchday_types::UpstreamEvidence {
        in_release_url: e.inrelease_url.clone(),
        in_release_sha256: e.inrelease_sha256.clone(),
        index_path,
        index_sha256,
        archive_key_fingerprint: e.signed_by.clone(),
    }
}

impl CatalogPublisher {
    /// The update id as signed: a delegated role's updates carry its name first, so that
    /// their documents (`update-mirror-*`) lie inside the role's paths.
    fn signed_id(&self, id: &str) -> String {
        match &self.role {
            Some(r) => format!("{}-{id}", r.role),
            None => id.to_owned(),
        }
    }
}

/// The signed document's text for a mirrored update: title and description.
pub fn describe(u: &MirroredUpdate) -> (String, String) {
    let mut ids: Vec<String> = u.advisories.clone();
    if !u.cves.is_empty() {
        ids.push(format!(
            "{} CVE{}",
            u.cves.len(),
            if u.cves.len() == 1 { "" } else { "s" }
        ));
    }
    let kind = if u.cves.is_empty() && u.advisories.is_empty() {
        "update"
    } else {
        "security update"
    };
    let title = if ids.is_empty() {
        format!("{} {} {kind}", u.source, u.version)
    } else {
        format!("{} {} {kind} ({})", u.source, u.version, ids.join(", "))
    };
    let mut d = String::new();
    if !u.advisories.is_empty() {
        d.push_str(&format!("Advisories: {}\n", u.advisories.join(", ")));
    }
    if !u.known_exploited.is_empty() {
        d.push_str(&format!(
            "Known exploited (CISA KEV): {}\n",
            u.known_exploited.join(", ")
        ));
    }
    let e = &u.evidence;
    d.push_str(&format!(
        "Upstream: {} (sha256 {}, Date {}, signed by {})\n",
        e.inrelease_url, e.inrelease_sha256, e.release_date, e.signed_by
    ));
    for (path, sha) in &e.indexes {
        d.push_str(&format!("Index: {path} (sha256 {sha})\n"));
    }
    d.push('\n');
    d.push_str(&u.description);
    (title, d)
}

fn file_version(v: &str) -> &str {
    v.split_once(':').map(|(_, r)| r).unwrap_or(v)
}

#[async_trait]
impl Publish for CatalogPublisher {
    async fn published(&self, id: &str) -> Result<bool, MirrorError> {
        let id = UpdateId::new(self.signed_id(id)).map_err(|e| MirrorError::Publish {
            id: id.to_owned(),
            detail: e.to_string(),
        })?;
        Ok(self
            .existing
            .contains(&patchday_types::UpdateDocument::target_name(&id)))
    }

    async fn publish(&self, u: &MirroredUpdate) -> Result<(), MirrorError> {
        let fail = |detail: String| MirrorError::Publish {
            id: u.id.clone(),
            detail,
        };
        let id = UpdateId::new(self.signed_id(&u.id)).map_err(|e| fail(e.to_string()))?;
        let (title, description) = describe(u);
        let payloads = u
            .binaries
            .iter()
            .map(|(b, _)| PayloadRef {
                target: format!(
                    "{}_{}_{}.deb",
                    b.package,
                    file_version(&b.version),
                    b.architecture
                ),
                kind: PayloadKind::Deb,
                package: b.package.clone(),
                version: b.version.clone(),
                architecture: b.architecture.clone(),
                source: b.source.clone(),
                source_version: b.source_version.clone(),
            })
            .collect();
        let content = UpdateContent {
            files: u.binaries.iter().map(|(_, p)| p.clone()).collect(),
            payloads,
            cves: u.cves.clone(),
            description,
        };
        let release = if u.known_exploited.is_empty() {
            Release::Train { month: self.month }
        } else {
            Release::Emergency {
                reason: format!(
                    "known exploited (CISA KEV): {}",
                    u.known_exploited.join(", ")
                ),
            }
        };
        let severity = if u.known_exploited.is_empty() {
            u.severity.unwrap_or(self.severity)
        } else {
            Severity::Critical
        };
        let opts = UpdateOptions {
            id,
            title: Some(title),
            product: None,
            classification: None,
            severity,
            release,
            supersedes: Vec::new(),
            since: None,
            tenants: self.tenants.clone(),
            role: self.role.clone(),
            upstream: Some(signed_evidence(&u.evidence)),
        };
        add_update(&self.keys, &self.repo, content, &opts, self.now)
            .await
            .map_err(|e| fail(format!("{e:#}")))?;
        Ok(())
    }
}

// ---- archive (issue 9, real-archive demo): a publisher and a run without RunArgs ----

impl CatalogPublisher {
    /// A publisher that signs into the catalog `repo` as the delegated `role` (or with the
    /// offline targets key in `keys` when `None`), for callers without command-line
    /// arguments (`patchday demo`).
    pub async fn for_catalog(
        keys: &std::path::Path,
        repo: &std::path::Path,
        month: YearMonth,
        severity: Severity,
        role: Option<crate::catalog::DelegatedSigner>,
        now: jiff::Timestamp,
    ) -> anyhow::Result<Self> {
        let existing = patchday_trust::catalog_targets(repo)
            .await
            .with_context(|| format!("reading the catalog in {}", repo.display()))?
            .into_keys()
            .collect();
        Ok(CatalogPublisher {
            keys: KeyPaths::in_dir(keys),
            repo: repo.to_path_buf(),
            month,
            severity,
            tenants: Vec::new(),
            existing,
            now,
            role,
        })
    }

    /// The id `update` is signed under (a delegated role's name first).
    pub fn signed_update_id(&self, update: &str) -> String {
        self.signed_id(update)
    }
}
