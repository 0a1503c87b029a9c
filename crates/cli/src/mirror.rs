//! `patchday mirror run`: follows apt archives into the catalog (issue 9, point 1).
//!
//! The archive work (verification, selection, download, grouping) is `patchday-mirror`'s;
//! this module chooses what to import; `patchday-publish` runs it and signs each update
//! with the same path as `patchday catalog add-deb` (shared with the server's
//! `--mirror-every` schedule).

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context;
use patchday_mirror::{HttpFetch, Selection};
use patchday_publish::mirror::{run_job, MirrorJob, PublishSettings};
use patchday_publish::DelegatedSigner;
use patchday_trust::KeyPaths;
use patchday_types::{Severity, YearMonth};

use crate::api::Conn;

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
    /// Drop from the catalog the mirrored updates superseded longer ago than this (90d,
    /// 12w), or `off` [default: the configuration's `retain`, else 180d].
    #[arg(long, value_parser = parse_retain)]
    retain: Option<Retain>,
}

/// `--retain`: a duration, or `off`.
#[derive(Clone, Copy, Debug)]
struct Retain(Option<jiff::SignedDuration>);

fn parse_retain(s: &str) -> Result<Retain, String> {
    if patchday_mirror::config::retention_is_off(s) {
        return Ok(Retain(None));
    }
    patchday_mirror::config::parse_retention(s).map(|d| Retain(Some(d)))
}

/// Runs a mirror command; `now` is the time of the run.
pub async fn run(cmd: MirrorCmd, now: jiff::Timestamp) -> anyhow::Result<i32> {
    match cmd {
        MirrorCmd::Run(a) => run_once(a, now).await,
    }
}

/// What to import, and (issue 9, point 4) the fleet's installed binaries when known.
type Chosen = (Selection, Option<patchday_mirror::closure::FleetBinaries>);

async fn selection(a: &RunArgs) -> anyhow::Result<Chosen> {
    if !a.packages.is_empty() {
        return Ok((
            Selection::Packages(a.packages.iter().map(|p| p.trim().to_owned()).collect()),
            None,
        ));
    }
    if a.all {
        return Ok((Selection::All, None));
    }
    if let Some(path) = &a.dpkg_status {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the dpkg status file {}", path.display()))?;
        let mut sources: std::collections::BTreeMap<String, BTreeSet<String>> =
            std::collections::BTreeMap::new();
        let mut binaries = patchday_mirror::closure::FleetBinaries::new();
        for p in patchday_pkg::status::parse_status(&text) {
            binaries.entry(p.name).or_default().insert(p.version);
            sources
                .entry(p.source)
                .or_default()
                .insert(p.source_version);
        }
        return Ok((Selection::Installed(sources), Some(binaries)));
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
    Ok((Selection::Installed(fleet.sources), Some(fleet.binaries)))
}

async fn run_once(a: RunArgs, now: jiff::Timestamp) -> anyhow::Result<i32> {
    let (selection, fleet_binaries) = selection(&a).await?;
    let job = MirrorJob {
        config: a.config.clone(),
        work: a.work.clone(),
        debian_tracker: a.debian_tracker.clone(),
        kev: a.kev.clone(),
        codename: a.codename.clone(),
        train: a.train,
        publish: PublishSettings {
            keys: KeyPaths::in_dir(&a.keys),
            repo: a.repo.clone(),
            severity: a.severity,
            tenants: a.tenants.clone(),
            role: a.as_role.as_ref().map(|r| DelegatedSigner {
                role: r.clone(),
                key_files: a.key_files.clone(),
            }),
        },
        retain: a.retain.map(|r| r.0),
    };
    let report = run_job(
        &job,
        selection,
        fleet_binaries,
        &HttpFetch::new()?,
        None,
        now,
    )
    .await?;
    let mut imported = 0;
    for s in &report.sync.sources {
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
            println!("  {}", job.publish.signed_id(id));
        }
        // Issue 9, point 4 (closure).
        for (id, why) in &s.dependencies {
            println!("  dependency {id}: {why}");
        }
        for m in &s.unsatisfiable {
            println!("  warning: {m}, which neither the fleet nor the archive has; imported anyway, agents refuse it until the dependency is published");
        }
    }
    // Issue 10, point 7.
    let pruned = report.pruned.as_ref().map_or(0, |p| p.dropped.len());
    if let Some(p) = report.pruned.as_ref().filter(|p| !p.dropped.is_empty()) {
        for line in p.lines() {
            println!("{line}");
        }
    }
    if imported > 0 || pruned > 0 {
        println!(
            "push the catalog: patchday catalog push --repo {}",
            a.repo.display()
        );
    }
    Ok(0)
}

// ---- Issue 9, point 2: `patchday catalog verify-upstream` ----

/// `patchday catalog verify-upstream`.
#[derive(clap::Args)]
pub struct VerifyUpstreamArgs {
    /// Catalog directory (verified against its first root before anything is read).
    #[arg(long)]
    repo: PathBuf,
    /// Mirror configuration: each update's InRelease is checked with the keyring its
    /// source pins.
    #[arg(long)]
    config: PathBuf,
    /// Only this update.
    #[arg(long, conflicts_with = "all")]
    update: Option<patchday_types::UpdateId>,
    /// Every mirrored update (the default).
    #[arg(long)]
    all: bool,
    /// The mirror's work directory, where it kept the InRelease and index files it
    /// verified [default: REPO/mirror].
    #[arg(long)]
    work: Option<PathBuf>,
    /// The delegated role the mirror signs as: its updates (`ROLE-*`) must record
    /// upstream evidence.
    #[arg(long, default_value = "mirror")]
    role: String,
}

/// Re-checks mirrored updates against the upstream evidence signed into their documents;
/// 0 when every one verified, 1 when any differs or cannot be re-checked.
pub async fn verify_upstream(a: VerifyUpstreamArgs, now: jiff::Timestamp) -> anyhow::Result<i32> {
    use patchday_mirror::upstream::{self, SignedPayload};
    use patchday_types::{TargetCustom, UpdateDocument};
    let cfg = patchday_mirror::MirrorConfig::load(&a.config)?;
    let meta = a.repo.join("metadata");
    let targets_dir = a.repo.join("targets");
    let datastore = tempfile::tempdir()?;
    // The metadata whole; of the target files only the update documents are read (each
    // checked against its signed hash): payloads are compared by their signed hashes, so
    // a copy made by `catalog pull` (no payloads) is checked as well (issue 12, point 1).
    let catalog =
        patchday_trust::verify_metadata_at(&meta.join("1.root.json"), datastore.path(), &meta, now)
            .await
            .with_context(|| format!("verifying the catalog in {}", a.repo.display()))?;
    let work = a.work.clone().unwrap_or_else(|| a.repo.join("mirror"));
    let fetch = HttpFetch::new()?;
    let (mut verified, mut failed, mut seen) = (0usize, 0usize, false);
    for info in catalog.targets.values() {
        let Ok(TargetCustom::Update { id }) = serde_json::from_value(info.custom.clone()) else {
            continue;
        };
        if a.update.as_ref().is_some_and(|u| u != &id) {
            continue;
        }
        seen = true;
        let name = UpdateDocument::target_name(&id);
        let doc: UpdateDocument = serde_json::from_slice(
            &patchday_trust::read_verified_target(&catalog, &targets_dir, &name).await?,
        )
        .with_context(|| format!("update document {name} is not valid"))?;
        let Some(evidence) = &doc.upstream else {
            // Anything the mirror role signed came from an archive; a mirror-role update
            // without evidence is what a stolen mirror key would sign.
            if id.as_str().starts_with(&format!("{}-", a.role)) {
                println!(
                    "{id}: MISMATCH\n  - signed by the {} role but records no upstream evidence",
                    a.role
                );
                failed += 1;
            } else if a.update.is_some() {
                println!(
                    "{id}: records no upstream evidence (it was not mirrored from an archive)"
                );
                failed += 1;
            }
            continue;
        };
        let source = cfg.sources.iter().find(|s| {
            s.inrelease_url()
                .is_ok_and(|u| u.as_str() == evidence.in_release_url)
        });
        let Some(source) = source else {
            println!(
                "{id}: MISMATCH\n  - no source in {} has the InRelease URL it records ({}): no pinned keyring to check it with",
                a.config.display(),
                evidence.in_release_url
            );
            failed += 1;
            continue;
        };
        let keyring = patchday_mirror::release::Keyring::load(&source.keyring, &source.name)?;
        let mut payloads = Vec::new();
        for p in &doc.payloads {
            let t = catalog.target(&p.target)?;
            payloads.push(SignedPayload {
                target: p.target.clone(),
                package: p.package.clone(),
                version: p.version.clone(),
                architecture: p.architecture.clone(),
                sha256: t.sha256.clone(),
                length: t.length,
            });
        }
        let found = upstream::verify(
            evidence,
            &payloads,
            (&keyring, &source.keyring),
            &fetch,
            &work,
        )
        .await;
        if found.is_empty() {
            println!("{id}: verified ({} payload(s))", payloads.len());
            verified += 1;
        } else {
            println!("{id}: MISMATCH");
            for d in &found {
                println!("  - {d}");
            }
            failed += 1;
        }
    }
    if let Some(u) = &a.update {
        anyhow::ensure!(
            seen,
            "the catalog in {} has no update {u}",
            a.repo.display()
        );
    }
    println!("verify-upstream: {verified} verified, {failed} differ or cannot be re-checked");
    Ok(if failed == 0 { 0 } else { 1 })
}
