//! `patchday demo` on the real Debian security archive (issue 9, "Real parts and tests").
//!
//! The overlay hosts are copies of this machine, so they start with its genuine pending
//! security updates. The demo enrols them, mirrors what they need from the security
//! archive as the delegated `mirror` role (what `patchday mirror run --as mirror` does:
//! InRelease checked against Debian's archive keyring, the index against InRelease, each
//! package against the index, all binaries of a source version in one update), approves
//! the newest version of each source, and the agents install them. dpkg and apt then
//! judge each host. Packages are kept in a cache between runs ([`CachingFetch`]); the
//! InRelease and the index are fetched fresh every time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::Context;
use async_trait::async_trait;
use patchday_lab::HostKind;
use patchday_mirror::fetch::{Downloaded, Fetched};
use patchday_mirror::sync::{self, MirroredUpdate, Publish, SyncOptions};
use patchday_mirror::{advisories::Feeds, Fetch, HttpFetch, MirrorConfig, MirrorError, Selection};
use patchday_pkg::version::compare_deb;
use patchday_trust::Expiries;
use patchday_types::api::Decision;
use patchday_types::{Severity, UpdateId};
use sha2::{Digest, Sha256};
use url::Url;

use super::{
    agent_program, decide_everywhere, enrol, finish, fleet, install_and_reboot, now,
    report_verdict, start_server, train_month, DemoArgs, Fleet, Say,
};
use crate::catalog::DelegatedSigner;
use patchday_publish::mirror::{describe, CatalogPublisher, PublishSettings};

/// The archive the demo follows unless `--archive-uri` names another.
pub const DEFAULT_ARCHIVE: &str = "http://security.debian.org/debian-security";
/// Debian's archive keyring (package debian-archive-keyring), pinned for the archive.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The delegated role the demo's mirror signs as.
const ROLE: &str = "mirror";
/// Steps of the demo on this path.
pub const STEPS: usize = 12;
/// How long the archive has to answer the first request.
const PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The archive source the demo follows, once it answered.
pub struct ArchiveSource {
    cfg: MirrorConfig,
    /// Binary packages the mirror leaves out, and why.
    excluded: String,
    codename: String,
    inrelease: Url,
}

/// This machine's release codename, when it is Debian.
fn debian_codename() -> Result<String, String> {
    let text = std::fs::read_to_string("/etc/os-release")
        .map_err(|e| format!("cannot read /etc/os-release: {e}"))?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_owned())
    };
    match (field("ID").as_deref(), field("VERSION_CODENAME")) {
        (Some("debian"), Some(c)) if !c.is_empty() => Ok(c),
        (id, _) => Err(format!(
            "this machine is {} with no Debian release codename, so the Debian security archive has nothing for it",
            id.unwrap_or("not Debian")
        )),
    }
}

/// Whether the security archive for this machine's release answers, with Debian's keyring
/// at hand; `Err` says why not (the demo then falls back).
pub async fn probe(args: &DemoArgs) -> Result<ArchiveSource, String> {
    if !Path::new(DEBIAN_KEYRING).is_file() {
        return Err(format!(
            "Debian's archive keyring {DEBIAN_KEYRING} is missing: apt-get install debian-archive-keyring"
        ));
    }
    let codename = debian_codename()?;
    let arch = std::process::Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .ok_or("dpkg --print-architecture failed")?;
    let mut exclude = vec!["*-dbg", "*-dbgsym"];
    let mut excluded = "debug symbols (*-dbg, *-dbgsym)".to_owned();
    if !has_kernel_package() {
        exclude.extend(KERNEL_BUILDS);
        excluded.push_str(&format!(
            ", and kernel builds, headers, sources and docs ({}): this machine has no kernel package installed (a container), so neither have its copies",
            KERNEL_BUILDS.join(", ")
        ));
    }
    let text = format!(
        "[[source]]\nname = \"debian-security\"\nuri = {uri:?}\nsuite = \"{codename}-security\"\ncomponents = [\"main\"]\narchitectures = [{arch:?}]\nkeyring = {DEBIAN_KEYRING:?}\nexclude = {exclude:?}\n",
        uri = args.archive_uri
    );
    let cfg = MirrorConfig::parse(&text).map_err(|e| format!("--archive-uri: {e}"))?;
    let inrelease = cfg.sources[0].inrelease_url().map_err(|e| e.to_string())?;
    let fetch = HttpFetch::new().map_err(|e| e.to_string())?;
    match tokio::time::timeout(PROBE_LIMIT, fetch.get(&inrelease, 0)).await {
        Ok(Ok(_)) => Ok(ArchiveSource {
            cfg,
            excluded,
            codename,
            inrelease,
        }),
        Ok(Err(e)) => Err(format!("the Debian security archive did not answer: {e}")),
        Err(_) => Err(format!(
            "the Debian security archive did not answer {inrelease} within {}s",
            PROBE_LIMIT.as_secs()
        )),
    }
}

/// Kernel packages a machine without a kernel package never installs; the demo's mirror
/// leaves them out then (the kernel's source version alone is ~370 MB of them per version).
const KERNEL_BUILDS: [&str; 4] = [
    "linux-image-*",
    "linux-headers-*",
    "linux-source-*",
    "linux-doc-*",
];

/// Whether this machine has a Debian kernel image installed.
fn has_kernel_package() -> bool {
    std::process::Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${db:Status-Abbrev} ${Package}\n",
            "linux-image-*",
        ])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("ii "))
        })
        .unwrap_or(true)
}

/// The package cache: `--archive-cache`, else `$XDG_CACHE_HOME/patchday/archive`, else
/// `~/.cache/patchday/archive`.
fn cache_dir(args: &DemoArgs) -> PathBuf {
    if let Some(d) = &args.archive_cache {
        return d.clone();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("patchday/archive")
}

/// Fetches through the network, keeping pool files (`.../pool/...`, immutable in an apt
/// archive) in a cache directory. The cache needs no trust: the sync checks every package
/// against the signed index, whichever way it came.
pub struct CachingFetch {
    inner: HttpFetch,
    dir: PathBuf,
    /// Bytes served from the cache.
    served: AtomicU64,
    /// Cache entries this run used.
    used: Mutex<BTreeSet<String>>,
}

impl CachingFetch {
    /// A cache in `dir` (created).
    pub fn new(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the package cache {}", dir.display()))?;
        Ok(CachingFetch {
            inner: HttpFetch::new()?,
            dir,
            served: AtomicU64::new(0),
            used: Mutex::new(BTreeSet::new()),
        })
    }

    /// The cache entry of a pool file's URL: a hash of the URL (two archives never share
    /// an entry) and the file's own name.
    fn entry(url: &Url) -> Option<String> {
        if !url.path().contains("/pool/") {
            return None;
        }
        let base = url.path().rsplit('/').next().filter(|b| !b.is_empty())?;
        let h = hex::encode(Sha256::digest(url.as_str().as_bytes()));
        Some(format!("{}_{base}", &h[..16]))
    }

    /// Removes the entry of `url` (the sync found it did not match the signed index).
    pub fn forget(&self, url: &str) {
        if let Some(name) = Url::parse(url).ok().as_ref().and_then(Self::entry) {
            let _ = std::fs::remove_file(self.dir.join(name));
        }
    }

    /// Removes entries this run did not use (superseded versions): the cache holds what
    /// the archive offers the fleet today, not its history.
    pub fn prune(&self) -> anyhow::Result<()> {
        let used = self
            .used
            .lock()
            .map_err(|_| anyhow::anyhow!("the cache's record of used entries is poisoned"))?;
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !used.contains(&name) && e.file_type()?.is_file() {
                std::fs::remove_file(e.path())?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Fetch for CachingFetch {
    async fn get(&self, url: &Url, from: u64) -> Result<Fetched, MirrorError> {
        self.inner.get(url, from).await
    }

    async fn download(&self, url: &Url, from: u64, to: &Path) -> Result<Downloaded, MirrorError> {
        let Some(name) = Self::entry(url) else {
            return self.inner.download(url, from, to).await;
        };
        if let Ok(mut used) = self.used.lock() {
            used.insert(name.clone());
        }
        let cached = self.dir.join(&name);
        let mut fetched = 0;
        if !cached.is_file() {
            // A partial entry from an interrupted run resumes.
            let part = self.dir.join(format!("{name}.part"));
            let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
            fetched = self.inner.download(url, have, &part).await?.bytes;
            std::fs::rename(&part, &cached).map_err(|source| MirrorError::Io {
                path: cached.clone(),
                source,
            })?;
        } else {
            let len = std::fs::metadata(&cached).map(|m| m.len()).unwrap_or(0);
            self.served.fetch_add(len, Ordering::Relaxed);
        }
        // A hard link when the cache is on the same file system (the sync removes its copy
        // once signed, never writes into it); else a copy.
        let _ = std::fs::remove_file(to);
        if std::fs::hard_link(&cached, to).is_err() {
            std::fs::copy(&cached, to).map_err(|source| MirrorError::Io {
                path: to.to_path_buf(),
                source,
            })?;
        }
        Ok(Downloaded {
            bytes: fetched,
            ranged: false,
        })
    }
}

/// One mirrored update as the demo approves and checks it.
struct Mirrored {
    id: UpdateId,
    source: String,
    version: String,
    title: String,
    /// Each binary.
    binaries: Vec<Binary>,
}

/// One binary of a mirrored update.
struct Binary {
    package: String,
    version: String,
    architecture: String,
}

/// Signs through [`CatalogPublisher`] and remembers what it signed.
struct Recorder {
    inner: CatalogPublisher,
    settings: PublishSettings,
    signed: Mutex<Vec<Mirrored>>,
}

#[async_trait]
impl Publish for Recorder {
    async fn published(&self, id: &str) -> Result<bool, MirrorError> {
        self.inner.published(id).await
    }

    async fn publish(&self, u: &MirroredUpdate) -> Result<(), MirrorError> {
        self.inner.publish(u).await?;
        let fail = |detail: String| MirrorError::Publish {
            id: u.id.clone(),
            detail,
        };
        let id = UpdateId::new(self.settings.signed_id(&u.id)).map_err(|e| fail(e.to_string()))?;
        let m = Mirrored {
            id,
            source: u.source.clone(),
            version: u.version.clone(),
            title: describe(u).0,
            binaries: u
                .binaries
                .iter()
                .map(|(b, _)| Binary {
                    package: b.package.clone(),
                    version: b.version.clone(),
                    architecture: b.architecture.clone(),
                })
                .collect(),
        };
        self.signed
            .lock()
            .map_err(|_| fail("the demo's record of signed updates is poisoned".into()))?
            .push(m);
        Ok(())
    }
}

/// The demo on the real archive; returns the exit code.
pub async fn run(
    args: &DemoArgs,
    dir: &Path,
    say: &mut Say,
    kind: HostKind,
    source: ArchiveSource,
) -> anyhow::Result<i32> {
    let now = now();
    let month = train_month(now)?;
    say.step(&format!(
        "archive: {} answered; this demo ships the genuine pending security updates of this machine (Debian {}), mirrored from it, leaving out {}",
        source.inrelease, source.codename, source.excluded
    ));

    // Catalog: offline keys, and a delegation of the mirror's paths to the mirror's key.
    let keys = patchday_trust::generate_keyset(
        &dir.join("keys"),
        patchday_trust::DEFAULT_ROOT_KEYS,
        patchday_trust::DEFAULT_ROOT_THRESHOLD,
    )?;
    let mirror_keys = patchday_trust::generate_keys(&dir.join("mirror-keys"))?;
    let repo = dir.join("catalog");
    patchday_trust::init_catalog(&keys, &repo, now, &Expiries::default()).await?;
    crate::catalog::delegate(
        &keys,
        &repo,
        ROLE,
        &[],
        std::slice::from_ref(&mirror_keys.targets),
        1,
        now,
    )
    .await?;
    say.step(&format!(
        "catalog: TUF repository signed with offline keys; the offline targets key delegates {} to the online mirror role and its own key",
        crate::catalog::default_role_paths(ROLE).join(" and ")
    ));

    let (api, url, server_task) = start_server(dir, &keys, &repo).await?;
    api.push_catalog(crate::catalog::pack(&repo)?.path())
        .await?;
    say.step(&format!(
        "server on {url}: catalog (no updates yet) verified against the pinned root and accepted"
    ));

    let (plan, hosts) = fleet(&api, args, kind, dir, |_| Ok(())).await?;
    let before = hosts
        .first()
        .map(|(_, h, _)| h.installed_packages())
        .transpose()?
        .unwrap_or_default();
    say.step(&format!(
        "fleet: {} hosts in 2 tenants, each an overlay copy of this machine ({} packages installed, its pending security updates included)",
        hosts.len(),
        before.len()
    ));
    let agent = agent_program()?;
    enrol(&api, &plan, &hosts, &agent, &url).await?;
    say.step("agents enrolled and reported their dpkg inventory");

    // Mirror what the fleet has installed, as the delegated mirror role.
    let installed = api.fleet_source_packages().await?;
    let settings = PublishSettings {
        keys: keys.clone(),
        repo: repo.clone(),
        severity: Severity::Important,
        tenants: Vec::new(),
        role: Some(DelegatedSigner {
            role: ROLE.into(),
            key_files: vec![mirror_keys.targets.clone()],
        }),
    };
    let recorder = Recorder {
        inner: CatalogPublisher::open(settings.clone(), month, now).await?,
        settings,
        signed: Mutex::new(Vec::new()),
    };
    let cache = CachingFetch::new(cache_dir(args))?;
    let opts = SyncOptions {
        work_dir: dir.join("mirror"),
        now,
        selection: Selection::Installed(installed.sources),
        feeds: Feeds::load(None, None, &source.codename)?,
        fleet_binaries: Some(installed.binaries),
        progress: None,
    };
    let outcome = match sync::run(&source.cfg, &cache, &recorder, &opts).await {
        Ok(r) => r,
        Err(e) => {
            if let MirrorError::TamperedDeb { url, .. } = &e {
                cache.forget(url);
            }
            server_task.abort();
            return Err(anyhow::Error::new(e).context(
                "the mirror run failed (a package that did not match the signed index was removed from the cache; run the demo again)",
            ));
        }
    };
    cache.prune()?;
    let fetched: u64 = outcome.sources.iter().map(|s| s.bytes_fetched).sum();
    let mut signed = recorder
        .signed
        .into_inner()
        .map_err(|_| anyhow::anyhow!("the demo's record of signed updates is poisoned"))?;
    signed.sort_by(|a, b| a.id.cmp(&b.id));
    say.step(&format!(
        "mirror: InRelease verified against Debian's archive keyring, the index against InRelease, each package against the index; {} updates ({} binaries, every binary of a source version in one update) signed as the delegated {ROLE} role; {} MB from the archive, {} MB from the cache {}",
        signed.len(),
        signed.iter().map(|m| m.binaries.len()).sum::<usize>(),
        fetched / 1_000_000,
        cache.served.load(Ordering::Relaxed) / 1_000_000,
        cache.dir.display()
    ));

    let tar = crate::catalog::pack(&repo)?;
    let st = api.push_catalog(tar.path()).await?;
    drop(tar);
    say.step(&format!(
        "catalog pushed: the server verified the mirror role's signatures through the delegation ({} updates)",
        st.updates
    ));
    summary(&api.report(None).await?);

    // Approve the newest version of each source; an older one is then installed too
    // (the host has a newer version), so it needs no decision.
    let mut newest: BTreeMap<&str, &Mirrored> = BTreeMap::new();
    for m in &signed {
        let keep = newest
            .get(m.source.as_str())
            .is_none_or(|n| compare_deb(&m.version, &n.version).is_ok_and(|o| o.is_gt()));
        if keep {
            newest.insert(&m.source, m);
        }
    }
    let mut approved = Vec::new();
    for m in newest.values() {
        println!("      approve {}: {}", m.id, m.title);
        decide_everywhere(&api, &m.id, Decision::Approve, None).await?;
        approved.push(*m);
    }
    // A binary that pre-depends on a sibling's new version (pam's libpam-modules on
    // libpam-modules-bin) is fine: the agent gives the sibling an earlier dpkg run.
    say.step(&format!(
        "approved the newest version of each of {} source packages for every group (train {month})",
        approved.len()
    ));

    install_and_reboot(&hosts, &agent, &url, say)?;

    // dpkg and apt judge each host.
    let truthful = judge(&hosts, &before, approved.iter().copied())?;
    let report = api.report(None).await?;
    summary(&report);
    let verdict = report_verdict(&report, truthful);
    finish(verdict, say, server_task, hosts, args.keep)
}

/// One line per host: where it stands and how many updates are in which state.
fn summary(report: &patchday_types::api::ComplianceReport) {
    println!();
    for h in &report.hosts {
        let mut states: BTreeMap<String, usize> = BTreeMap::new();
        for r in report.rows.iter().filter(|r| r.host == h.host) {
            if r.state != patchday_types::UpdateState::NotApplicable {
                *states.entry(r.state.to_string()).or_default() += 1;
            }
        }
        let states: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
        println!(
            "      {}/{}: {} ({}){}",
            h.tenant,
            h.hostname,
            h.compliance,
            if states.is_empty() {
                "no update applies".into()
            } else {
                states.join(", ")
            },
            h.dpkg_broken
                .as_deref()
                .map(|b| format!("; dpkg broken: {b}"))
                .unwrap_or_default()
        );
    }
    println!();
}

/// Each host: every binary of an approved update that it had installed is now at the
/// update's version or newer (dpkg-query), `dpkg --audit` finds nothing and `apt-get
/// check` no unmet dependency. Prints what it found; true when all agree.
fn judge<'a>(
    hosts: &Fleet,
    before: &BTreeMap<String, String>,
    approved: impl Iterator<Item = &'a Mirrored>,
) -> anyhow::Result<bool> {
    // (name:arch, new version, source) of every binary the hosts had in an older version.
    let mut wanted = Vec::new();
    for m in approved {
        for b in &m.binaries {
            let key = format!("{}:{}", b.package, b.architecture);
            if let Some(old) = before.get(&key) {
                if compare_deb(old, &b.version).is_ok_and(|o| o.is_lt()) {
                    wanted.push((key, b.version.clone(), m.source.clone()));
                }
            }
        }
    }
    let sources: BTreeSet<&str> = wanted.iter().map(|w| w.2.as_str()).collect();
    let mut all = true;
    for (_, host, _) in hosts {
        let now = host.installed_packages()?;
        let behind: Vec<String> = wanted
            .iter()
            .filter(|(k, v, _)| {
                !now.get(k)
                    .is_some_and(|have| compare_deb(have, v).is_ok_and(|o| o.is_ge()))
            })
            .map(|(k, v, _)| format!("{k} at {:?}, expected {v}", now.get(k)))
            .collect();
        let health = host.dpkg_health()?;
        if behind.is_empty() && health.is_clean() {
            println!(
                "      {}: dpkg has all {} upgraded binary packages of {} source packages; dpkg --audit and apt-get check find nothing",
                host.name(),
                wanted.len(),
                sources.len()
            );
            continue;
        }
        all = false;
        for b in &behind {
            println!("      {}: dpkg reports {b}", host.name());
        }
        if !health.audit.trim().is_empty() {
            println!(
                "      {}: dpkg --audit: {}",
                host.name(),
                health.audit.trim()
            );
        }
        if let Some(a) = &health.apt_check {
            println!("      {}: apt-get check: {a}", host.name());
        }
    }
    Ok(all)
}
