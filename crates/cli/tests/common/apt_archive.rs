//! A signed apt archive built and served by a test (issue 9): a pool of `.deb`s, a
//! `Packages.gz` listing them (with their `Depends`), an `InRelease` signed by a fresh
//! OpenPGP key, served on 127.0.0.1. Shared by the mirror and dependency-closure tests
//! (`#[path = "common/apt_archive.rs"] mod apt_archive;`).

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use patchday_lab::DebSpec;
use patchday_testkit::Catalog;
use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, KeyType, SecretKeyParamsBuilder, SignedPublicKey,
};
use pgp::ser::Serialize as _;
use pgp::types::Password;
use sha2::{Digest, Sha256};

/// The suite the archive publishes.
pub const SUITE: &str = "bookworm-security";

/// Builds `dir/archive` (pool, Packages.gz, InRelease signed by a fresh key), writes the
/// public key to `dir/archive-keyring.gpg`, serves the archive on 127.0.0.1 and returns
/// its URL.
pub fn signed_archive(dir: &Path, debs: &[DebSpec]) -> String {
    let root = dir.join("archive");
    let pool = root.join("pool/main");
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
    let bin = root.join(format!("dists/{SUITE}/main/binary-amd64"));
    std::fs::create_dir_all(&bin).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(packages.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    std::fs::write(bin.join("Packages.gz"), &gz).unwrap();
    let now = wall_clock();
    let fmt = |t: jiff::Timestamp| t.strftime("%a, %d %b %Y %H:%M:%S UTC").to_string();
    let release = format!(
        "Suite: {SUITE}\nCodename: bookworm-security\nDate: {}\nValid-Until: {}\nSHA256:\n {} {} main/binary-amd64/Packages.gz\n",
        fmt(now - jiff::SignedDuration::from_hours(1)),
        fmt(now + jiff::SignedDuration::from_hours(24 * 7)),
        hex::encode(Sha256::digest(&gz)),
        gz.len()
    );
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
    let signed = CleartextSignedMessage::sign(
        rand::thread_rng(),
        &release,
        &key.primary_key,
        &Password::empty(),
    )
    .unwrap();
    std::fs::write(
        root.join(format!("dists/{SUITE}/InRelease")),
        signed.to_armored_string(ArmorOptions::default()).unwrap(),
    )
    .unwrap();
    let mut f = std::fs::File::create(dir.join("archive-keyring.gpg")).unwrap();
    SignedPublicKey::from(key).to_writer(&mut f).unwrap();

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let app =
                axum::Router::new().fallback_service(tower_http::services::ServeDir::new(root));
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{addr}/")
}

/// Release dates relative to the wall clock, which the CLI under test reads.
#[allow(clippy::disallowed_methods)]
pub fn wall_clock() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Writes `dir/mirror.toml` naming the archive at `url`.
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

/// `patchday mirror run` with `dir/mirror.toml` into `cat`, with `extra` arguments.
pub fn mirror_run(cat: &Catalog, dir: &Path, extra: &[&str]) -> Output {
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
