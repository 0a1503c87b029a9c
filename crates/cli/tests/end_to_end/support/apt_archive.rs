//! A signed apt archive the tests build themselves and serve on 127.0.0.1 (issue 9):
//! a pool, `Packages.gz`, and `InRelease` signed by a throwaway OpenPGP key whose public
//! half is the keyring the mirror configuration pins. It can publish again (a new
//! source version appears), with a later `Date` each time.

// Not every part is used by the tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use patchday_lab::DebSpec;
use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, KeyType, SecretKeyParamsBuilder, SignedPublicKey,
    SignedSecretKey,
};
use pgp::ser::Serialize as _;
use pgp::types::Password;
use sha2::{Digest, Sha256};

/// The suite every test archive serves.
pub const SUITE: &str = "bookworm-security";

/// A served archive.
pub struct AptArchive {
    /// Its files.
    pub root: PathBuf,
    /// Its URL.
    pub url: String,
    key: SignedSecretKey,
    published: i64,
}

impl AptArchive {
    /// Serves an empty archive from `dir/archive` with a fresh key, written to
    /// `dir/archive-keyring.gpg`.
    pub fn serve(dir: &Path) -> AptArchive {
        let root = dir.join("archive");
        std::fs::create_dir_all(&root).unwrap();
        let key = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id("Test Archive <archive@test.invalid>".into())
            .passphrase(None)
            .build()
            .unwrap()
            .generate(rand::thread_rng())
            .unwrap();
        let mut f = std::fs::File::create(dir.join("archive-keyring.gpg")).unwrap();
        SignedPublicKey::from(key.clone())
            .to_writer(&mut f)
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let served = root.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new()
                    .fallback_service(tower_http::services::ServeDir::new(served));
                axum::serve(l, app).await.unwrap();
            });
        });
        AptArchive {
            root,
            url: format!("http://{addr}/"),
            key,
            published: 0,
        }
    }

    /// The index the archive serves.
    pub fn packages_gz(&self) -> PathBuf {
        self.root
            .join(format!("dists/{SUITE}/main/binary-amd64/Packages.gz"))
    }

    /// Builds `debs` into the pool and publishes exactly them: `Packages.gz` and a newly
    /// signed `InRelease`, dated later than the previous one.
    pub fn publish(&mut self, debs: &[DebSpec]) {
        self.publish_tampered(debs, <[u8]>::to_vec);
    }

    /// Like [`AptArchive::publish`], but serves `tamper(index)` in place of the index
    /// the new InRelease lists (written before the InRelease, so no client ever sees the
    /// genuine pair); returns the genuine index.
    pub fn publish_tampered(
        &mut self,
        debs: &[DebSpec],
        tamper: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Vec<u8> {
        let pool = self.root.join("pool/main");
        std::fs::create_dir_all(&pool).unwrap();
        let mut packages = String::new();
        for spec in debs {
            let p = patchday_lab::build_deb(spec, &pool).unwrap();
            let info = patchday_pkg::deb::read_deb(&p).unwrap().info;
            let bytes = std::fs::read(&p).unwrap();
            // Issue 9, point 4: the mirror reads dependencies from the index.
            let depends = match info.depends.as_str() {
                "" => String::new(),
                d => format!("Depends: {d}\n"),
            };
            packages.push_str(&format!(
                "Package: {}\nVersion: {}\nArchitecture: {}\nSource: {} ({})\n{depends}Filename: pool/main/{}\nSize: {}\nSHA256: {}\n\n",
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
        let index = self.packages_gz();
        std::fs::create_dir_all(index.parent().unwrap()).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(packages.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        std::fs::write(&index, tamper(&gz)).unwrap();
        self.published += 1;
        let now = wall_clock();
        let fmt = |t: jiff::Timestamp| t.strftime("%a, %d %b %Y %H:%M:%S UTC").to_string();
        let date = now - jiff::SignedDuration::from_hours(2)
            + jiff::SignedDuration::from_mins(self.published);
        let release = format!(
            "Suite: {SUITE}\nCodename: bookworm-security\nDate: {}\nValid-Until: {}\nSHA256:\n {} {} main/binary-amd64/Packages.gz\n",
            fmt(date),
            fmt(now + jiff::SignedDuration::from_hours(24 * 7)),
            hex::encode(Sha256::digest(&gz)),
            gz.len()
        );
        let signed = CleartextSignedMessage::sign(
            rand::thread_rng(),
            &release,
            &self.key.primary_key,
            &Password::empty(),
        )
        .unwrap();
        // Renamed into place: a client reads the old InRelease or the new one.
        let path = self.root.join(format!("dists/{SUITE}/InRelease"));
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            signed.to_armored_string(ArmorOptions::default()).unwrap(),
        )
        .unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        gz
    }
}

/// Release dates relative to the wall clock, which the binaries under test read.
#[allow(clippy::disallowed_methods)]
pub fn wall_clock() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// `dir/mirror.toml` following the archive at `url` with the pinned `archive-keyring.gpg`.
pub fn write_config(dir: &Path, url: &str) -> PathBuf {
    let p = dir.join("mirror.toml");
    std::fs::write(
        &p,
        format!(
            "[[source]]\nname = \"test-security\"\nuri = \"{url}\"\nsuite = \"{SUITE}\"\ncomponents = [\"main\"]\narchitectures = [\"amd64\"]\nkeyring = \"archive-keyring.gpg\"\n"
        ),
    )
    .unwrap();
    p
}

/// Binaries of source `libfoo` at `version`, with a DSA and a CVE in the changelog.
pub fn libfoo(name: &str, version: &str, arch: &str) -> DebSpec {
    DebSpec::new(name, version)
        .architecture(arch)
        .source("libfoo", version)
        .changelog(version, "Security upload (DSA-5999-1): fix CVE-2026-1111.")
        .changelog("1.2-1", "Initial release.")
}

/// Delegates the `mirror` role of `cat` to a new key (`patchday catalog delegate`, with
/// `patchday keys generate` in `dir/mirror-keys`) and returns the role's key file.
pub fn delegate_mirror_role(cat: &patchday_testkit::Catalog, dir: &Path) -> PathBuf {
    let mirror_keys = dir.join("mirror-keys");
    let patchday = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_patchday"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            patchday_testkit::text(&o)
        );
    };
    patchday(&["keys", "generate", "--keys", mirror_keys.to_str().unwrap()]);
    let key = mirror_keys.join("targets.pem");
    patchday(&[
        "catalog",
        "delegate",
        "--keys",
        cat.keys.to_str().unwrap(),
        "--repo",
        cat.repo.to_str().unwrap(),
        "--role",
        "mirror",
        "--key-file",
        key.to_str().unwrap(),
    ]);
    key
}

/// `patchday mirror run` with `dir/mirror.toml` into `cat`'s catalog, with `extra`
/// arguments.
pub fn mirror_run(cat: &patchday_testkit::Catalog, dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(["mirror", "run", "--config"])
        .arg(dir.join("mirror.toml"))
        .arg("--repo")
        .arg(&cat.repo)
        .arg("--keys")
        .arg(&cat.keys)
        .args(extra)
        .env_remove("PATCHDAY_SERVER")
        .env_remove("PATCHDAY_TOKEN")
        .output()
        .unwrap()
}

/// Last month (`YYYY-MM`): a train whose patch day has passed, so its updates can be
/// approved now.
pub fn last_month() -> String {
    wall_clock()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .checked_sub(jiff::Span::new().months(1))
        .unwrap()
        .strftime("%Y-%m")
        .to_string()
}
