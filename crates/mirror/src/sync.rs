//! One mirror run: for each source, verify InRelease, read its indexes, select, download,
//! group by source version and hand each new update to the caller's [`Publish`].

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use patchday_types::Severity;
use sha2::{Digest, Sha256};

use crate::advisories::{self, Feeds};
use crate::config::{MirrorConfig, SourceConfig};
use crate::fetch::Fetch;
use crate::index::{self, BinaryPackage};
use crate::release::{self, Keyring};
use crate::select::{self, Selection};
use crate::state::{MirrorState, Progress, SourceState, StateFile};
use crate::MirrorError;

/// Where an update came from: enough to re-check it against the archive later.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpstreamEvidence {
    /// Configured source name.
    pub source_name: String,
    /// The InRelease URL.
    pub inrelease_url: String,
    /// SHA256 of that InRelease.
    pub inrelease_sha256: String,
    /// Its Date.
    pub release_date: Timestamp,
    /// Fingerprint of the archive key that signed it.
    pub signed_by: String,
    /// Index paths (under `dists/<suite>/`) and their SHA256, that list its binaries.
    pub indexes: Vec<(String, String)>,
}

/// One source version, ready to sign: all its binaries, downloaded and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirroredUpdate {
    /// Deterministic update id ([`select::update_id`]).
    pub id: String,
    /// Source package name.
    pub source: String,
    /// Source version.
    pub version: String,
    /// Every binary built from it that the indexes list, with its checked local file.
    pub binaries: Vec<(BinaryPackage, PathBuf)>,
    /// CVE ids (changelog and tracker), sorted.
    pub cves: Vec<String>,
    /// DSA/DLA ids from the changelog, sorted.
    pub advisories: Vec<String>,
    /// Severity from the tracker's urgency, when a tracker was given.
    pub severity: Option<Severity>,
    /// CVE ids of it in CISA's KEV list.
    pub known_exploited: Vec<String>,
    /// Changelog excerpt.
    pub description: String,
    /// Upstream evidence.
    pub evidence: UpstreamEvidence,
}

/// Signs updates into the catalog. One function, so it can later sign as a delegated
/// mirror role instead of the offline targets role.
#[async_trait]
pub trait Publish: Send + Sync {
    /// Whether the catalog already holds this update id.
    async fn published(&self, id: &str) -> Result<bool, MirrorError>;
    /// Signs the update into the catalog.
    async fn publish(&self, update: &MirroredUpdate) -> Result<(), MirrorError>;
}

/// What a run does.
#[derive(Debug)]
pub struct SyncOptions {
    /// State file and downloads live here.
    pub work_dir: PathBuf,
    /// Time of the run (Valid-Until checks).
    pub now: Timestamp,
    /// What to import.
    pub selection: Selection,
    /// Tracker and KEV data.
    pub feeds: Feeds,
    /// Issue 9, point 4 (closure): the fleet's installed binary packages (name →
    /// versions), against which new dependencies are judged; `None` when unknown (then
    /// only an update's own binaries count, and the archive supplies the rest).
    pub fleet_binaries: Option<crate::closure::FleetBinaries>,
    /// Issue 12, point 1: where the run's progress is kept; `None`: `state.json` in
    /// `work_dir`.
    pub progress: Option<std::sync::Arc<dyn Progress>>,
}

/// What happened to one source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceOutcome {
    /// Source name.
    pub name: String,
    /// InRelease unchanged since a complete run: nothing else was fetched.
    pub unchanged: bool,
    /// Update ids signed in this run.
    pub imported: Vec<String>,
    /// Selected source versions already in the catalog.
    pub already: usize,
    /// Bytes fetched from the archive.
    pub bytes_fetched: u64,
    /// Issue 9, point 4 (closure): source versions imported because a selected update
    /// needs them (update id, why).
    pub dependencies: Vec<(String, String)>,
    /// Issue 9, point 4 (closure): dependencies nothing satisfies (`DEB-x: x 2 needs
    /// libgone (>= 9)`); their updates were imported anyway.
    pub unsatisfiable: Vec<String>,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Per source, in configuration order.
    pub sources: Vec<SourceOutcome>,
}

/// Runs the mirror once over every configured source.
pub async fn run(
    cfg: &MirrorConfig,
    fetch: &dyn Fetch,
    publish: &dyn Publish,
    opts: &SyncOptions,
) -> Result<SyncReport, MirrorError> {
    let downloads = opts.work_dir.join("downloads");
    std::fs::create_dir_all(&downloads).map_err(|e| MirrorError::io(&downloads, e))?;
    let file;
    let progress: &dyn Progress = match &opts.progress {
        Some(p) => p.as_ref(),
        None => {
            file = StateFile(opts.work_dir.clone());
            &file
        }
    };
    let mut state = progress.load().await?;
    let mut report = SyncReport::default();
    for source in &cfg.sources {
        let out = sync_source(source, fetch, publish, opts, progress, &mut state).await?;
        report.sources.push(out);
    }
    Ok(report)
}

fn selection_digest(sel: &Selection) -> String {
    hex::encode(Sha256::digest(format!("{sel:?}")))
}

async fn sync_source(
    source: &SourceConfig,
    fetch: &dyn Fetch,
    publish: &dyn Publish,
    opts: &SyncOptions,
    progress: &dyn Progress,
    state: &mut MirrorState,
) -> Result<SourceOutcome, MirrorError> {
    let mut out = SourceOutcome {
        name: source.name.clone(),
        ..Default::default()
    };
    let keyring = Keyring::load(&source.keyring, &source.name)?;
    let url = source.inrelease_url()?;
    let raw = fetch.get(&url, 0).await?.bytes;
    out.bytes_fetched += raw.len() as u64;
    let inrelease_sha256 = index::sha256_hex(&raw);
    let rel = release::verify_inrelease(&raw, &keyring, &source.keyring, url.as_str())?;
    let seen = state.sources.get(&source.name).map(|s| s.date);
    rel.check_fresh(&source.suite, seen, opts.now, url.as_str())?;
    // Issue 9, point 2: `catalog verify-upstream` re-checks against this copy once the
    // archive has moved on.
    crate::upstream::keep(&opts.work_dir, &inrelease_sha256, &raw)?;
    let digest = selection_digest(&opts.selection);
    if let Some(s) = state.sources.get(&source.name) {
        if s.complete && s.inrelease_sha256 == inrelease_sha256 && s.selection == digest {
            out.unchanged = true;
            return Ok(out);
        }
    }
    state.sources.insert(
        source.name.clone(),
        SourceState {
            inrelease_sha256: inrelease_sha256.clone(),
            date: rel.date,
            complete: false,
            selection: digest.clone(),
        },
    );
    progress.save(state).await?;

    // Indexes, each checked against InRelease before it is decompressed.
    let mut binaries = Vec::new();
    let mut indexes = Vec::new();
    for component in &source.components {
        for arch in &source.architectures {
            let (path, entry) =
                rel.packages_index(component, arch)
                    .ok_or_else(|| MirrorError::NoIndex {
                        url: url.to_string(),
                        component: component.clone(),
                        architecture: arch.clone(),
                    })?;
            let iurl = source.url(&format!("dists/{}/{path}", source.suite))?;
            let bytes = fetch.get(&iurl, 0).await?.bytes;
            out.bytes_fetched += bytes.len() as u64;
            let actual = index::sha256_hex(&bytes);
            if actual != entry.sha256 || bytes.len() as u64 != entry.size {
                return Err(MirrorError::TamperedIndex {
                    url: iurl.to_string(),
                    expected: format!("{} ({} bytes)", entry.sha256, entry.size),
                    actual: format!("{actual} ({} bytes)", bytes.len()),
                });
            }
            crate::upstream::keep(&opts.work_dir, &actual, &bytes)?;
            let text = index::decompress(&path, &bytes, iurl.as_str())?;
            binaries.extend(
                index::parse_packages(&text, iurl.as_str())?
                    .into_iter()
                    .filter(|b| !source.excludes(&b.package)),
            );
            indexes.push((path, actual));
        }
    }

    let groups = select::group_by_source(binaries);
    let mut todo = Vec::new();
    let mut selected = Vec::new();
    for ((src, ver), bins) in &groups {
        if !opts.selection.wants(src, ver, bins) {
            continue;
        }
        selected.push((src.clone(), ver.clone()));
        let id = select::update_id(src, ver);
        if state.imported.contains(&id) || publish.published(&id).await? {
            state.imported.insert(id);
            out.already += 1;
            continue;
        }
        todo.push((id, src.clone(), ver.clone(), bins.clone()));
    }
    // Issue 9, point 4 (closure): what the selected updates need that the fleet lacks.
    let native = source
        .architectures
        .first()
        .map(String::as_str)
        .unwrap_or("amd64");
    let closure = crate::closure::dependency_closure(
        &groups,
        &selected,
        opts.fleet_binaries.as_ref(),
        native,
    );
    out.unsatisfiable = closure.unsatisfiable;
    for ((src, ver), why) in closure.added {
        let id = select::update_id(&src, &ver);
        out.dependencies.push((id.clone(), why));
        if state.imported.contains(&id) || publish.published(&id).await? {
            state.imported.insert(id);
            continue;
        }
        if let Some(bins) = groups.get(&(src.clone(), ver.clone())) {
            todo.push((id, src, ver, bins.clone()));
        }
    }

    let total: u64 = todo.iter().flat_map(|t| &t.3).map(|b| b.size).sum();
    let bar = ProgressBar::new(total).with_message(source.name.clone());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {wide_msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let downloads = opts.work_dir.join("downloads");
    for (id, src, ver, bins) in todo {
        let mut files = Vec::new();
        for b in &bins {
            let (path, fetched) = download(source, fetch, b, &downloads).await?;
            out.bytes_fetched += fetched;
            bar.inc(b.size);
            files.push((b.clone(), path));
        }
        let previous = opts.selection.oldest_installed(&src).map(str::to_owned);
        let mut facts = advisories::ChangelogFacts::default();
        for (_, path) in &files {
            let pkg = patchday_pkg::deb::read_deb(path).map_err(|e| MirrorError::Package {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            if let Some(log) = pkg.changelog {
                facts = advisories::from_changelog(&log, previous.as_deref());
                break;
            }
        }
        let rating = opts
            .feeds
            .rate(&src, &ver, previous.as_deref(), &facts.cves);
        let mut cves = facts.cves;
        for c in &rating.tracker_cves {
            if !cves.contains(c) {
                cves.push(c.clone());
            }
        }
        cves.sort();
        let update = MirroredUpdate {
            id: id.clone(),
            source: src,
            version: ver,
            binaries: files,
            cves,
            advisories: facts.advisories,
            severity: rating.severity,
            known_exploited: rating.known_exploited,
            description: facts.text,
            evidence: UpstreamEvidence {
                source_name: source.name.clone(),
                inrelease_url: url.to_string(),
                inrelease_sha256: inrelease_sha256.clone(),
                release_date: rel.date,
                signed_by: rel.signed_by.clone(),
                indexes: indexes.clone(),
            },
        };
        bar.set_message(format!("{} signing {id}", source.name));
        publish.publish(&update).await?;
        // The catalog holds its own copy now.
        for (_, path) in &update.binaries {
            let _ = std::fs::remove_file(path);
        }
        state.imported.insert(id.clone());
        progress.save(state).await?;
        out.imported.push(id);
    }
    bar.finish_and_clear();
    if let Some(s) = state.sources.get_mut(&source.name) {
        s.complete = true;
    }
    progress.save(state).await?;
    Ok(out)
}

/// Downloads one package into `dir`, continuing a partial download, and checks it
/// against the index. Returns the file and the bytes fetched.
async fn download(
    source: &SourceConfig,
    fetch: &dyn Fetch,
    b: &BinaryPackage,
    dir: &Path,
) -> Result<(PathBuf, u64), MirrorError> {
    let base = b.filename.rsplit('/').next().unwrap_or(&b.filename);
    // Pool names are unique per archive; the hash prefix keeps two sources apart.
    let name = format!("{}_{base}", &b.sha256[..b.sha256.len().min(16)]);
    let done = dir.join(&name);
    let part = dir.join(format!("{name}.part"));
    let url = source.url(&b.filename)?;
    let mismatch = |actual: String| MirrorError::TamperedDeb {
        url: url.to_string(),
        expected: format!("{} ({} bytes)", b.sha256, b.size),
        actual,
    };
    if done.exists() {
        if file_sha256(&done)? == (b.sha256.clone(), b.size) {
            return Ok((done, 0));
        }
        std::fs::remove_file(&done).map_err(|e| MirrorError::io(&done, e))?;
    }
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let have = if have >= b.size { 0 } else { have };
    let got = fetch.download(&url, have, &part).await?;
    let (actual, len) = file_sha256(&part)?;
    if actual != b.sha256 || len != b.size {
        let _ = std::fs::remove_file(&part);
        return Err(mismatch(format!("{actual} ({len} bytes)")));
    }
    std::fs::rename(&part, &done).map_err(|e| MirrorError::io(&done, e))?;
    Ok((done, got.bytes))
}

/// SHA256 (lower-case hex) and length of a file, read in chunks.
fn file_sha256(path: &Path) -> Result<(String, u64), MirrorError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| MirrorError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| MirrorError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex::encode(h.finalize()), len))
}
