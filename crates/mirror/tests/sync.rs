//! Mirror runs against a signed apt archive the test builds: synthetic .debs, Packages
//! and InRelease signed with a throwaway OpenPGP key, served over HTTP on 127.0.0.1.

// Test helpers outside #[test] fns fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use patchday_lab::DebSpec;
use patchday_mirror::config::MirrorConfig;
use patchday_mirror::sync::{self, MirroredUpdate, Publish, SyncOptions};
use patchday_mirror::{advisories::Feeds, HttpFetch, MirrorError, Selection};
use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, KeyType, SecretKeyParamsBuilder, SignedPublicKey,
    SignedSecretKey,
};
use pgp::ser::Serialize as _;
use pgp::types::Password;
use sha2::{Digest, Sha256};

const SUITE: &str = "stable-security";

fn now() -> Timestamp {
    "2026-12-01T10:00:00Z".parse().unwrap()
}

fn keygen() -> SignedSecretKey {
    SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("Test Archive <archive@test.invalid>".into())
        .passphrase(None)
        .build()
        .unwrap()
        .generate(rand::thread_rng())
        .unwrap()
}

fn write_keyring(key: &SignedSecretKey, path: &Path) {
    let public = SignedPublicKey::from(key.clone());
    let mut f = std::fs::File::create(path).unwrap();
    public.to_writer(&mut f).unwrap();
}

/// Request paths (and Range headers) the archive served.
type Hits = Arc<Mutex<Vec<String>>>;

struct Archive {
    dir: tempfile::TempDir,
    key: SignedSecretKey,
    keyring: PathBuf,
    base: String,
    hits: Hits,
}

async fn record(
    axum::extract::State(hits): axum::extract::State<Hits>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    hits.lock()
        .unwrap()
        .push(format!("{}{range}", req.uri().path()));
    next.run(req).await
}

impl Archive {
    async fn start() -> Archive {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("archive");
        std::fs::create_dir_all(root.join("pool/main")).unwrap();
        let key = keygen();
        let keyring = dir.path().join("archive-keyring.gpg");
        write_keyring(&key, &keyring);
        let hits: Hits = Arc::default();
        let app = axum::Router::new()
            .fallback_service(tower_http::services::ServeDir::new(&root))
            .layer(axum::middleware::from_fn_with_state(hits.clone(), record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Archive {
            dir,
            key,
            keyring,
            base: format!("http://{addr}/"),
            hits,
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    fn add(&self, spec: &DebSpec) -> PathBuf {
        patchday_lab::build_deb(spec, &self.root().join("pool/main")).unwrap()
    }

    /// Writes Packages(.gz), Release and a signed InRelease listing every .deb in the pool.
    fn publish(&self, date: Timestamp, valid_until: Timestamp) {
        let mut packages = String::new();
        let pool = self.root().join("pool/main");
        let mut debs: Vec<_> = std::fs::read_dir(&pool)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .collect();
        debs.sort();
        for p in debs {
            let info = patchday_pkg::deb::read_deb(&p).unwrap().info;
            let bytes = std::fs::read(&p).unwrap();
            packages.push_str(&format!(
                "Package: {}\nVersion: {}\nArchitecture: {}\nSource: {} ({})\nFilename: pool/main/{}\nSize: {}\nSHA256: {}\nDescription: test\n\n",
                info.package,
                info.version,
                info.architecture,
                info.source,
                info.source_version,
                p.file_name().unwrap().to_str().unwrap(),
                bytes.len(),
                hex::encode(Sha256::digest(&bytes)),
            ));
        }
        let bin = self.root().join(format!("dists/{SUITE}/main/binary-amd64"));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("Packages"), &packages).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(packages.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        std::fs::write(bin.join("Packages.gz"), &gz).unwrap();
        let fmt = |t: Timestamp| t.strftime("%a, %d %b %Y %H:%M:%S UTC").to_string();
        let mut release = format!(
            "Origin: Test\nLabel: Test-Security\nSuite: {SUITE}\nCodename: bookworm-security\nDate: {}\nValid-Until: {}\nArchitectures: amd64\nComponents: main\nSHA256:\n",
            fmt(date),
            fmt(valid_until)
        );
        for (name, bytes) in [
            ("main/binary-amd64/Packages", packages.as_bytes()),
            ("main/binary-amd64/Packages.gz", &gz[..]),
        ] {
            release.push_str(&format!(
                " {} {} {name}\n",
                hex::encode(Sha256::digest(bytes)),
                bytes.len()
            ));
        }
        let dists = self.root().join(format!("dists/{SUITE}"));
        std::fs::write(dists.join("Release"), &release).unwrap();
        let signed = CleartextSignedMessage::sign(
            rand::thread_rng(),
            &release,
            &self.key.primary_key,
            &Password::empty(),
        )
        .unwrap();
        let armored = signed.to_armored_string(ArmorOptions::default()).unwrap();
        std::fs::write(dists.join("InRelease"), armored).unwrap();
    }

    fn config(&self, keyring: &Path) -> MirrorConfig {
        MirrorConfig::parse(&format!(
            "[[source]]\nname = \"test-security\"\nuri = \"{}\"\nsuite = \"{SUITE}\"\ncomponents = [\"main\"]\narchitectures = [\"amd64\"]\nkeyring = \"{}\"\n",
            self.base,
            keyring.display()
        ))
        .unwrap()
    }

    fn take_hits(&self) -> Vec<String> {
        std::mem::take(&mut *self.hits.lock().unwrap())
    }
}

/// Records what a run would sign, like the catalog would.
#[derive(Default)]
struct Recorder {
    signed: Mutex<Vec<MirroredUpdate>>,
}

#[async_trait]
impl Publish for Recorder {
    async fn published(&self, id: &str) -> Result<bool, MirrorError> {
        Ok(self.signed.lock().unwrap().iter().any(|u| u.id == id))
    }
    async fn publish(&self, update: &MirroredUpdate) -> Result<(), MirrorError> {
        for (_, path) in &update.binaries {
            assert!(path.exists(), "{} handed over but missing", path.display());
        }
        self.signed.lock().unwrap().push(update.clone());
        Ok(())
    }
}

impl Recorder {
    fn ids(&self) -> Vec<String> {
        self.signed
            .lock()
            .unwrap()
            .iter()
            .map(|u| u.id.clone())
            .collect()
    }
}

fn libfoo(name: &str, arch: &str) -> DebSpec {
    DebSpec::new(name, "1.2-1+deb12u1")
        .architecture(arch)
        .source("libfoo", "1.2-1+deb12u1")
        .changelog(
            "1.2-1+deb12u1",
            "Security upload (DSA-5999-1): fix CVE-2026-1111 and CVE-2026-2222.",
        )
        .changelog("1.2-1", "Fix CVE-2025-0001.")
}

/// An archive with three binaries of libfoo and one of bar, published now.
async fn standard_archive() -> Archive {
    let a = Archive::start().await;
    a.add(&libfoo("libfoo1", "amd64"));
    a.add(&libfoo("libfoo-dev", "amd64"));
    a.add(&libfoo("libfoo-doc", "all"));
    a.add(&DebSpec::new("bar", "2.0-1").changelog("2.0-1", "New upstream release."));
    a.publish(
        now() - SignedDuration::from_hours(1),
        now() + SignedDuration::from_hours(24 * 7),
    );
    a
}

fn options(work: &Path, selection: Selection) -> SyncOptions {
    SyncOptions {
        work_dir: work.to_path_buf(),
        now: now(),
        selection,
        feeds: Feeds::default(),
        fleet_binaries: None,
        progress: None,
    }
}

#[tokio::test]
async fn first_sync_groups_sibling_binaries_into_one_update() {
    let a = standard_archive().await;
    let work = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let report = sync::run(
        &a.config(&a.keyring),
        &HttpFetch::new().unwrap(),
        &rec,
        &options(work.path(), Selection::All),
    )
    .await
    .unwrap();
    assert_eq!(report.sources[0].imported, rec.ids());
    let signed = rec.signed.lock().unwrap();
    assert_eq!(signed.len(), 2, "one update per source version");
    let foo = signed.iter().find(|u| u.source == "libfoo").unwrap();
    assert_eq!(foo.id, "DEB-libfoo-1.2-1_pdeb12u1");
    let names: Vec<_> = foo
        .binaries
        .iter()
        .map(|(b, _)| b.package.as_str())
        .collect();
    assert_eq!(names, ["libfoo-dev", "libfoo-doc", "libfoo1"]);
    assert_eq!(foo.cves, ["CVE-2026-1111", "CVE-2026-2222"]);
    assert_eq!(foo.advisories, ["DSA-5999-1"]);
    assert_eq!(foo.evidence.indexes[0].0, "main/binary-amd64/Packages.gz");
    assert_eq!(foo.evidence.signed_by.len(), 40);
}

#[tokio::test]
async fn second_run_with_nothing_new_fetches_only_inrelease() {
    let a = standard_archive().await;
    let work = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let cfg = a.config(&a.keyring);
    let fetch = HttpFetch::new().unwrap();
    sync::run(&cfg, &fetch, &rec, &options(work.path(), Selection::All))
        .await
        .unwrap();
    assert!(a.take_hits().len() > 1);
    let again = sync::run(&cfg, &fetch, &rec, &options(work.path(), Selection::All))
        .await
        .unwrap();
    assert_eq!(a.take_hits(), [format!("/dists/{SUITE}/InRelease")]);
    assert!(again.sources[0].unchanged);
    assert!(again.sources[0].imported.is_empty());
    assert_eq!(rec.ids().len(), 2);

    // A new source version in a newer InRelease is imported alone.
    a.add(&DebSpec::new("bar", "2.0-2").changelog("2.0-2", "Fix CVE-2026-3333."));
    a.publish(now(), now() + SignedDuration::from_hours(24 * 7));
    let third = sync::run(&cfg, &fetch, &rec, &options(work.path(), Selection::All))
        .await
        .unwrap();
    assert_eq!(third.sources[0].imported, ["DEB-bar-2.0-2"]);
    assert_eq!(third.sources[0].already, 2);
}

#[tokio::test]
async fn tampered_index_is_refused() {
    let a = standard_archive().await;
    let gz = a
        .root()
        .join(format!("dists/{SUITE}/main/binary-amd64/Packages.gz"));
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b"Package: evil\nVersion: 9\nArchitecture: all\nFilename: pool/main/evil.deb\nSize: 1\nSHA256: 00\n")
        .unwrap();
    std::fs::write(&gz, e.finish().unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let err = sync::run(
        &a.config(&a.keyring),
        &HttpFetch::new().unwrap(),
        &rec,
        &options(work.path(), Selection::All),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MirrorError::TamperedIndex { .. }), "{err}");
    assert!(rec.ids().is_empty());
}

#[tokio::test]
async fn tampered_deb_is_refused_and_deleted() {
    let a = standard_archive().await;
    let deb = a.root().join("pool/main/bar_2.0-1_all.deb");
    let mut bytes = std::fs::read(&deb).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&deb, bytes).unwrap();
    let work = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let err = sync::run(
        &a.config(&a.keyring),
        &HttpFetch::new().unwrap(),
        &rec,
        &options(
            work.path(),
            Selection::Packages(BTreeSet::from(["bar".into()])),
        ),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MirrorError::TamperedDeb { .. }), "{err}");
    assert!(rec.ids().is_empty());
    let left: Vec<_> = std::fs::read_dir(work.path().join("downloads"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "the tampered file is not kept");
}

#[tokio::test]
async fn wrong_archive_key_is_refused() {
    let a = standard_archive().await;
    let other = a.dir.path().join("other-keyring.gpg");
    write_keyring(&keygen(), &other);
    let work = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let err = sync::run(
        &a.config(&other),
        &HttpFetch::new().unwrap(),
        &rec,
        &options(work.path(), Selection::All),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MirrorError::BadSignature { .. }), "{err}");
    assert_eq!(a.take_hits(), [format!("/dists/{SUITE}/InRelease")]);
}

#[tokio::test]
async fn replayed_older_inrelease_is_refused() {
    let a = standard_archive().await;
    let inrelease = a.root().join(format!("dists/{SUITE}/InRelease"));
    let old = std::fs::read(&inrelease).unwrap();
    let old_packages = a.root().join(format!("dists/{SUITE}/main/binary-amd64"));
    let old_idx: Vec<_> = ["Packages", "Packages.gz"]
        .iter()
        .map(|n| std::fs::read(old_packages.join(n)).unwrap())
        .collect();
    a.add(&DebSpec::new("bar", "2.0-2"));
    a.publish(now(), now() + SignedDuration::from_hours(24 * 7));
    let work = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let cfg = a.config(&a.keyring);
    let fetch = HttpFetch::new().unwrap();
    sync::run(&cfg, &fetch, &rec, &options(work.path(), Selection::All))
        .await
        .unwrap();
    // The attacker serves the older, validly signed InRelease (and its indexes).
    std::fs::write(&inrelease, old).unwrap();
    for (n, b) in ["Packages", "Packages.gz"].iter().zip(old_idx) {
        std::fs::write(old_packages.join(n), b).unwrap();
    }
    let err = sync::run(&cfg, &fetch, &rec, &options(work.path(), Selection::All))
        .await
        .unwrap_err();
    assert!(matches!(err, MirrorError::Replayed { .. }), "{err}");
}

#[tokio::test]
async fn expired_inrelease_is_refused() {
    let a = standard_archive().await;
    a.publish(
        now() - SignedDuration::from_hours(24 * 30),
        now() - SignedDuration::from_hours(24 * 23),
    );
    let work = tempfile::tempdir().unwrap();
    let err = sync::run(
        &a.config(&a.keyring),
        &HttpFetch::new().unwrap(),
        &Recorder::default(),
        &options(work.path(), Selection::All),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MirrorError::Expired { .. }), "{err}");
}

#[tokio::test]
async fn package_list_selects_only_named_sources() {
    let a = standard_archive().await;
    let work = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    // A binary name selects its whole source version.
    sync::run(
        &a.config(&a.keyring),
        &HttpFetch::new().unwrap(),
        &rec,
        &options(
            work.path(),
            Selection::Packages(BTreeSet::from(["libfoo-doc".into()])),
        ),
    )
    .await
    .unwrap();
    assert_eq!(rec.ids(), ["DEB-libfoo-1.2-1_pdeb12u1"]);
    assert_eq!(rec.signed.lock().unwrap()[0].binaries.len(), 3);
    let hits = a.take_hits();
    assert!(
        !hits.iter().any(|h| h.contains("bar_")),
        "bar was not downloaded: {hits:?}"
    );
}

#[tokio::test]
async fn fleet_selection_takes_newer_versions_of_installed_sources() {
    let a = standard_archive().await;
    let work = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let installed = BTreeMap::from([
        ("libfoo".to_string(), BTreeSet::from(["1.2-1".to_string()])),
        ("bar".to_string(), BTreeSet::from(["2.0-1".to_string()])),
    ]);
    sync::run(
        &a.config(&a.keyring),
        &HttpFetch::new().unwrap(),
        &rec,
        &options(work.path(), Selection::Installed(installed)),
    )
    .await
    .unwrap();
    assert_eq!(rec.ids(), ["DEB-libfoo-1.2-1_pdeb12u1"]);
    // Changelog entries newer than the installed version count.
    assert_eq!(
        rec.signed.lock().unwrap()[0].cves,
        ["CVE-2026-1111", "CVE-2026-2222"]
    );
}

#[tokio::test]
async fn interrupted_download_resumes_with_a_range_request() {
    let a = standard_archive().await;
    let work = tempfile::tempdir().unwrap();
    let deb = a.root().join("pool/main/bar_2.0-1_all.deb");
    let bytes = std::fs::read(&deb).unwrap();
    let sha = hex::encode(Sha256::digest(&bytes));
    let downloads = work.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let half = bytes.len() / 2;
    std::fs::write(
        downloads.join(format!("{}_bar_2.0-1_all.deb.part", &sha[..16])),
        &bytes[..half],
    )
    .unwrap();
    let rec = Recorder::default();
    sync::run(
        &a.config(&a.keyring),
        &HttpFetch::new().unwrap(),
        &rec,
        &options(
            work.path(),
            Selection::Packages(BTreeSet::from(["bar".into()])),
        ),
    )
    .await
    .unwrap();
    assert_eq!(rec.ids(), ["DEB-bar-2.0-1"]);
    let hits = a.take_hits();
    assert!(
        hits.contains(&format!("/pool/main/bar_2.0-1_all.deb bytes={half}-")),
        "{hits:?}"
    );
}

#[tokio::test]
async fn tracker_urgency_and_kev_rate_the_update() {
    let a = standard_archive().await;
    let work = tempfile::tempdir().unwrap();
    let tracker = work.path().join("tracker.json");
    std::fs::write(
        &tracker,
        r#"{"libfoo": {"CVE-2026-1111": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "1.2-1+deb12u1", "urgency": "high"}}},
                       "CVE-2026-4444": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "1.2-1+deb12u1", "urgency": "low"}}}}}"#,
    )
    .unwrap();
    let kev = work.path().join("kev.json");
    std::fs::write(
        &kev,
        r#"{"vulnerabilities": [{"cveID": "CVE-2026-2222", "dateAdded": "2026-11-01", "dueDate": "2026-11-22", "knownRansomwareCampaignUse": "Unknown"}]}"#,
    )
    .unwrap();
    let rec = Recorder::default();
    let mut opts = options(
        work.path(),
        Selection::Packages(BTreeSet::from(["libfoo".into()])),
    );
    opts.feeds = Feeds::load(Some(&tracker), Some(&kev), "bookworm").unwrap();
    sync::run(
        &a.config(&a.keyring),
        &HttpFetch::new().unwrap(),
        &rec,
        &opts,
    )
    .await
    .unwrap();
    let u = rec.signed.lock().unwrap()[0].clone();
    assert_eq!(u.severity, Some(patchday_types::Severity::Important));
    assert_eq!(u.known_exploited, ["CVE-2026-2222"]);
    assert_eq!(u.cves, ["CVE-2026-1111", "CVE-2026-2222", "CVE-2026-4444"]);
}

/// Debian's own keyring carries user-id certifications by keys it does not hold; they
/// must not make the keyring unusable (only subkey bindings matter for signing).
#[test]
fn debian_archive_keyring_with_third_party_certifications_loads() {
    if !patchday_lab::require(patchday_lab::Requirement::DEBIAN_KEYRING) {
        return;
    }
    let path = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
    let k = patchday_mirror::release::Keyring::load(path, "debian").unwrap();
    assert!(!k.fingerprints().is_empty());
}

/// The genuine bookworm-security InRelease verifies against Debian's keyring, when the
/// archive answers (outside CI a missing archive or keyring skips with a message; in CI it
/// fails).
#[tokio::test]
async fn genuine_debian_security_inrelease_verifies() {
    if !patchday_lab::require(patchday_lab::Requirement::DEBIAN_KEYRING) {
        return;
    }
    let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
    let cfg = MirrorConfig::parse(&format!(
        "[[source]]\nname = \"debian-security\"\nuri = \"http://deb.debian.org/debian-security\"\nsuite = \"bookworm-security\"\ncomponents = [\"main\"]\narchitectures = [\"amd64\"]\nkeyring = \"{}\"\n",
        keyring.display()
    ))
    .unwrap();
    let url = cfg.sources[0].inrelease_url().unwrap();
    let fetch = HttpFetch::new().unwrap();
    let raw = match patchday_mirror::Fetch::get(&fetch, &url, 0).await {
        Ok(f) => f.bytes,
        Err(e) => {
            patchday_lab::skip_or_fail(
                patchday_lab::Requirement::DebianArchive,
                &format!("the security archive did not answer: {e}"),
            );
            return;
        }
    };
    let ring = patchday_mirror::release::Keyring::load(keyring, "debian-security").unwrap();
    let rel =
        patchday_mirror::release::verify_inrelease(&raw, &ring, keyring, url.as_str()).unwrap();
    assert!(rel.packages_index("main", "amd64").is_some());
    // And a foreign key refuses it.
    let other = tempfile::tempdir().unwrap();
    let other_ring = other.path().join("k.gpg");
    write_keyring(&keygen(), &other_ring);
    let ring = patchday_mirror::release::Keyring::load(&other_ring, "x").unwrap();
    let err = patchday_mirror::release::verify_inrelease(&raw, &ring, &other_ring, url.as_str())
        .unwrap_err();
    assert!(matches!(err, MirrorError::BadSignature { .. }), "{err}");
}

/// A validly signed InRelease of another suite (an older release's, say) served in place
/// of the configured one.
#[tokio::test]
async fn inrelease_of_another_suite_is_refused() {
    let a = standard_archive().await;
    let dists = a.root().join(format!("dists/{SUITE}"));
    let release = std::fs::read_to_string(dists.join("Release"))
        .unwrap()
        .replace("Suite: stable-security", "Suite: oldstable-security")
        .replace("Codename: bookworm-security", "Codename: bullseye-security");
    let signed = CleartextSignedMessage::sign(
        rand::thread_rng(),
        &release,
        &a.key.primary_key,
        &Password::empty(),
    )
    .unwrap();
    std::fs::write(
        dists.join("InRelease"),
        signed.to_armored_string(ArmorOptions::default()).unwrap(),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let err = sync::run(
        &a.config(&a.keyring),
        &HttpFetch::new().unwrap(),
        &Recorder::default(),
        &options(work.path(), Selection::All),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MirrorError::WrongSuite { .. }), "{err}");
}

// ---- Issue 9, point 2: re-checking an update against its upstream evidence ----

/// Every way an update can differ from the upstream evidence it records is named, and a
/// genuine one verifies, also from the kept copies once the archive has moved on.
#[tokio::test]
async fn upstream_evidence_verifies_and_every_difference_is_named() {
    use patchday_mirror::release::Keyring;
    use patchday_mirror::upstream::{verify, Discrepancy, SignedPayload};
    let a = standard_archive().await;
    let work = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let fetch = HttpFetch::new().unwrap();
    sync::run(
        &a.config(&a.keyring),
        &fetch,
        &rec,
        &options(work.path(), Selection::All),
    )
    .await
    .unwrap();
    let foo = rec
        .signed
        .lock()
        .unwrap()
        .iter()
        .find(|u| u.source == "libfoo")
        .cloned()
        .unwrap();
    let evidence = patchday_types::UpstreamEvidence {
        in_release_url: foo.evidence.inrelease_url.clone(),
        in_release_sha256: foo.evidence.inrelease_sha256.clone(),
        index_path: foo.evidence.indexes[0].0.clone(),
        index_sha256: foo.evidence.indexes[0].1.clone(),
        archive_key_fingerprint: foo.evidence.signed_by.clone(),
    };
    let payloads: Vec<SignedPayload> = foo
        .binaries
        .iter()
        .map(|(b, _)| SignedPayload {
            target: format!("mirror~{}", b.package),
            package: b.package.clone(),
            version: b.version.clone(),
            architecture: b.architecture.clone(),
            sha256: b.sha256.clone(),
            length: b.size,
        })
        .collect();
    let keyring = Keyring::load(&a.keyring, "test-security").unwrap();
    let check = |e: patchday_types::UpstreamEvidence, p: Vec<SignedPayload>| {
        let keyring = &keyring;
        let fetch = &fetch;
        let a = &a;
        let work = work.path().to_path_buf();
        async move { verify(&e, &p, (keyring, &a.keyring), fetch, &work).await }
    };
    assert_eq!(check(evidence.clone(), payloads.clone()).await, []);

    let other_key = evidence
        .archive_key_fingerprint
        .replace(|c: char| c != '0', "0");
    let found = check(
        patchday_types::UpstreamEvidence {
            archive_key_fingerprint: other_key.clone(),
            ..evidence.clone()
        },
        payloads.clone(),
    )
    .await;
    assert_eq!(
        found,
        [Discrepancy::ArchiveKey {
            recorded: other_key,
            actual: evidence.archive_key_fingerprint.clone()
        }]
    );

    let found = check(
        patchday_types::UpstreamEvidence {
            index_sha256: "00".repeat(32),
            ..evidence.clone()
        },
        payloads.clone(),
    )
    .await;
    assert!(
        matches!(&found[..], [Discrepancy::IndexHash { .. }]),
        "{found:?}"
    );

    let mut swapped = payloads.clone();
    swapped[0].sha256 = "11".repeat(32);
    swapped[1].version = "9.9-9".into();
    let found = check(evidence.clone(), swapped.clone()).await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        matches!(&found[0], Discrepancy::PayloadHash { target, .. } if *target == swapped[0].target),
        "{found:?}"
    );
    assert!(
        matches!(&found[1], Discrepancy::PayloadNotListed { version, .. } if version == "9.9-9"),
        "{found:?}"
    );

    // Another archive's key in place of the pinned one.
    let foreign = work.path().join("foreign.gpg");
    write_keyring(&keygen(), &foreign);
    let foreign_ring = Keyring::load(&foreign, "test-security").unwrap();
    let found = verify(
        &evidence,
        &payloads,
        (&foreign_ring, &foreign),
        &fetch,
        work.path(),
    )
    .await;
    assert!(
        matches!(&found[..], [Discrepancy::Signature(_)]),
        "{found:?}"
    );

    // The archive moves on: the kept copies still verify; an InRelease nobody kept cannot.
    a.add(&DebSpec::new("bar", "2.0-2"));
    a.publish(now(), now() + SignedDuration::from_hours(24 * 7));
    assert_eq!(check(evidence.clone(), payloads.clone()).await, []);
    let found = check(
        patchday_types::UpstreamEvidence {
            in_release_sha256: "22".repeat(32),
            ..evidence.clone()
        },
        payloads.clone(),
    )
    .await;
    assert!(
        matches!(&found[..], [Discrepancy::InReleaseUnavailable { .. }]),
        "{found:?}"
    );
}
