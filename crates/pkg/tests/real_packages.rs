//! Integration tests against real tools: `.deb` files built by `dpkg-deb`, hand-made
//! malformed archives, version ordering checked against `dpkg --compare-versions`, and
//! (when the archive is reachable) a genuine Debian package from `apt-get download`.
//! Tests that need a tool skip with a message when it is absent, and fail when `CI` is set
//! (`patchday_lab::require`).

// Test helpers outside #[test] functions may unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_pkg::changelog::cves_since;
use patchday_pkg::deb::{read_deb, DebPackage};
use patchday_pkg::version::compare_deb;
use patchday_pkg::PkgError;
use std::cmp::Ordering;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use patchday_lab::{require, skip_or_fail, Requirement};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const CHANGELOG: &str = "\
foo (1.2-3) bookworm-security; urgency=high

  * Fix CVE-2024-1111 and CVE-2024-22222.

 -- Alice <alice@example.org>  Tue, 02 Jan 2024 10:00:00 +0000

foo (1.2-2) bookworm; urgency=medium

  * Fix CVE-2023-0001.

 -- Alice <alice@example.org>  Mon, 01 Jan 2023 10:00:00 +0000
";

/// A package tree for `dpkg-deb --build`.
struct Tree {
    control: String,
    files: Vec<(String, Vec<u8>)>,
    symlinks: Vec<(String, String)>,
}

impl Tree {
    fn libfoo() -> Tree {
        Tree {
            control: "Package: libfoo1\nSource: foo (1.2-3)\nVersion: 1.2-3+b1\nArchitecture: amd64\nMaintainer: Alice <alice@example.org>\nInstalled-Size: 42\nDepends: libc6 (>= 2.34)\nDescription: foo library\n Longer text.\n".to_string(),
            files: vec![
                ("usr/share/doc/libfoo1/changelog.Debian.gz".to_string(), gzip(CHANGELOG.as_bytes())),
                ("usr/lib/libfoo.so.1".to_string(), vec![7u8; 5000]),
            ],
            symlinks: vec![],
        }
    }

    fn build(&self, dir: &Path, compression: &str) -> PathBuf {
        let root = dir.join(format!("root-{compression}"));
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::write(root.join("DEBIAN/control"), &self.control).unwrap();
        for (path, data) in &self.files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        for (link, target) in &self.symlinks {
            let p = root.join(link);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, p).unwrap();
        }
        let out = dir.join(format!("pkg-{compression}.deb"));
        let status = Command::new("dpkg-deb")
            .args(["--root-owner-group", &format!("-Z{compression}"), "--build"])
            .arg(&root)
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "dpkg-deb: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        out
    }
}

#[test]
fn reads_dpkg_built_packages_in_every_compression() {
    if !require(Requirement::DPKG_DEB) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for compression in ["gzip", "xz", "zstd", "none"] {
        let deb = Tree::libfoo().build(dir.path(), compression);
        let DebPackage { info, changelog } = read_deb(&deb).unwrap();
        assert_eq!(info.package, "libfoo1", "{compression}");
        assert_eq!(info.version, "1.2-3+b1");
        assert_eq!(info.architecture, "amd64");
        assert_eq!(info.source, "foo");
        // A binNMU keeps the source version it was rebuilt from.
        assert_eq!(info.source_version, "1.2-3");
        assert_eq!(info.maintainer, "Alice <alice@example.org>");
        assert_eq!(info.description, "foo library");
        assert_eq!(info.installed_size, Some(42));
        assert_eq!(info.depends, "libc6 (>= 2.34)");
        let changelog = changelog.unwrap();
        assert_eq!(changelog, CHANGELOG);
        assert_eq!(
            cves_since(&changelog, Some("1.2-2")),
            ["CVE-2024-1111", "CVE-2024-22222"]
        );
        assert_eq!(cves_since(&changelog, None).len(), 3);
    }
}

#[test]
fn source_without_version_and_missing_changelog() {
    if !require(Requirement::DPKG_DEB) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut tree = Tree::libfoo();
    tree.control = "Package: foo-tools\nSource: foo\nVersion: 2:1.0-1\nArchitecture: all\nMaintainer: A <a@example.org>\nDescription: tools\n".into();
    tree.files = vec![("usr/bin/foo".into(), b"#!/bin/sh\n".to_vec())];
    let p = read_deb(&tree.build(dir.path(), "gzip")).unwrap();
    assert_eq!(p.info.source, "foo");
    assert_eq!(p.info.source_version, "2:1.0-1");
    assert_eq!(p.info.installed_size, None);
    assert_eq!(p.changelog, None);

    tree.control = "Package: bar\nVersion: 3.0\nArchitecture: all\nMaintainer: A <a@example.org>\nDescription: native\n".into();
    let native_log = "bar (3.0) unstable; urgency=low\n\n  * CVE-2022-0002.\n\n -- A <a@example.org>  Mon, 01 Jan 2022 10:00:00 +0000\n";
    tree.files = vec![(
        "usr/share/doc/bar/changelog.gz".into(),
        gzip(native_log.as_bytes()),
    )];
    let p = read_deb(&tree.build(dir.path(), "xz")).unwrap();
    assert_eq!(
        (p.info.source.as_str(), p.info.source_version.as_str()),
        ("bar", "3.0")
    );
    assert_eq!(p.changelog.as_deref(), Some(native_log));
}

#[test]
fn doc_dir_symlinked_to_another_package_gives_no_changelog() {
    if !require(Requirement::DPKG_DEB) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut tree = Tree::libfoo();
    tree.control = tree
        .control
        .replace("Package: libfoo1", "Package: libfoo-dev");
    tree.files = vec![("usr/include/foo.h".into(), b"int foo(void);\n".to_vec())];
    tree.symlinks = vec![("usr/share/doc/libfoo-dev".into(), "libfoo1".into())];
    let p = read_deb(&tree.build(dir.path(), "zstd")).unwrap();
    assert_eq!(p.info.package, "libfoo-dev");
    assert_eq!(p.changelog, None);
}

fn expect_err(path: &Path, want: impl Fn(&PkgError) -> bool, label: &str) {
    match read_deb(path) {
        Ok(p) => panic!("{label}: expected an error, got {p:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(want(&e), "{label}: unexpected error {e:?}");
            assert!(msg.contains(&path.display().to_string()), "{label}: {msg}");
        }
    }
}

#[test]
fn malformed_files_give_clear_errors() {
    if !require(Requirement::DPKG_DEB) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(Tree::libfoo().build(dir.path(), "xz")).unwrap();
    let bad = dir.path().join("bad.deb");

    std::fs::write(&bad, b"").unwrap();
    expect_err(
        &bad,
        |e| matches!(e, PkgError::NotDebPackage { .. }),
        "empty",
    );
    let msg = read_deb(&bad).unwrap_err().to_string();
    assert!(msg.contains("ar magic missing"), "{msg}");

    let mut flipped = good.clone();
    flipped[0] ^= 0xff;
    std::fs::write(&bad, &flipped).unwrap();
    expect_err(
        &bad,
        |e| matches!(e, PkgError::NotDebPackage { .. }),
        "flipped magic",
    );

    std::fs::write(&bad, &good[..good.len() - 1]).unwrap();
    expect_err(
        &bad,
        |e| matches!(e, PkgError::Truncated { .. }),
        "one byte short",
    );
    let msg = read_deb(&bad).unwrap_err().to_string();
    assert!(
        msg.contains("truncated") && msg.contains("data.tar.xz"),
        "{msg}"
    );

    // Every prefix fails cleanly (no panic, no success).
    for cut in (0..good.len()).step_by(37) {
        std::fs::write(&bad, &good[..cut]).unwrap();
        assert!(read_deb(&bad).is_err(), "prefix of {cut} bytes");
    }
    // Flipping bytes anywhere never panics; most flips are errors.
    for at in (8..good.len()).step_by(53) {
        let mut damaged = good.clone();
        damaged[at] ^= 0x5a;
        std::fs::write(&bad, &damaged).unwrap();
        let _ = read_deb(&bad);
    }
    expect_err(
        &dir.path().join("does-not-exist.deb"),
        |e| matches!(e, PkgError::Io { .. }),
        "missing file",
    );
}

/// Writes an ar archive by hand, for packages dpkg-deb refuses to build.
fn ar(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            100644,
            data.len()
        );
        assert_eq!(header.len(), 60);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

const CONTROL: &[u8] = b"Package: hand\nVersion: 1.0-1\nArchitecture: all\nDescription: x\n";

fn write(dir: &Path, name: &str, bytes: Vec<u8>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn hand_made_archives() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let control_gz = gzip(&tar_of(&[("./control", CONTROL)]));
    let data_gz = gzip(&tar_of(&[(
        "./usr/share/doc/hand/changelog.Debian.gz",
        &gzip(CHANGELOG.as_bytes()),
    )]));
    let bin = b"2.0\n".to_vec();

    let ok = write(
        d,
        "ok.deb",
        ar(&[
            ("debian-binary", bin.clone()),
            ("control.tar.gz", control_gz.clone()),
            ("data.tar.gz", data_gz.clone()),
        ]),
    );
    let p = read_deb(&ok).unwrap();
    assert_eq!(p.info.package, "hand");
    assert_eq!(p.changelog.as_deref(), Some(CHANGELOG));

    // Members starting with '_' are skipped, as dpkg does; GNU-style "name/" works.
    let extra = write(
        d,
        "extra.deb",
        ar(&[
            ("debian-binary/", bin.clone()),
            ("_extra", b"x".to_vec()),
            ("control.tar.gz", control_gz.clone()),
            ("data.tar.gz", data_gz.clone()),
        ]),
    );
    assert!(read_deb(&extra).is_ok());

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "format3",
            ar(&[
                ("debian-binary", b"3.0\n".to_vec()),
                ("control.tar.gz", control_gz.clone()),
                ("data.tar.gz", data_gz.clone()),
            ]),
            "debian-binary says \"3.0\"",
        ),
        (
            "nobinary",
            ar(&[("control.tar.gz", control_gz.clone())]),
            "expected debian-binary",
        ),
        (
            "nodata",
            ar(&[
                ("debian-binary", bin.clone()),
                ("control.tar.gz", control_gz.clone()),
            ]),
            "no data.tar",
        ),
        (
            "nocontrolmember",
            ar(&[("debian-binary", bin.clone())]),
            "no control.tar",
        ),
        (
            "lz4",
            ar(&[
                ("debian-binary", bin.clone()),
                ("control.tar.lz4", vec![1, 2, 3]),
            ]),
            "unsupported compression",
        ),
        (
            "nocontrolfile",
            ar(&[
                ("debian-binary", bin.clone()),
                ("control.tar.gz", gzip(&tar_of(&[("./md5sums", b"")]))),
                ("data.tar.gz", data_gz.clone()),
            ]),
            "no control file",
        ),
        (
            "garbagecontrol",
            ar(&[
                ("debian-binary", bin.clone()),
                (
                    "control.tar.gz",
                    gzip(&tar_of(&[("./control", b"\x00\x01\x02 garbage\xff\n")])),
                ),
                ("data.tar.gz", data_gz.clone()),
            ]),
            "bad control file",
        ),
        (
            "badgzip",
            ar(&[
                ("debian-binary", bin.clone()),
                (
                    "control.tar.gz",
                    b"\x1f\x8b\x08\x00garbage-garbage-garbage".to_vec(),
                ),
                ("data.tar.gz", data_gz.clone()),
            ]),
            "cannot unpack control.tar.gz",
        ),
        (
            "badsize",
            {
                let mut v = ar(&[("debian-binary", bin.clone())]);
                v[8 + 48..8 + 58].copy_from_slice(b"12x4      ");
                v
            },
            "not a number",
        ),
        (
            "badfmag",
            {
                let mut v = ar(&[("debian-binary", bin.clone())]);
                v[8 + 58] = b'X';
                v
            },
            "end marker",
        ),
        (
            "huge-announced",
            {
                let mut v = ar(&[("debian-binary", bin.clone())]);
                v[8 + 48..8 + 58].copy_from_slice(b"9999999999");
                v
            },
            "announces 9999999999 bytes",
        ),
    ];
    for (name, bytes, want) in cases {
        let p = write(d, &format!("{name}.deb"), bytes);
        let msg = read_deb(&p)
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string());
        assert!(msg.contains(want), "{name}: {msg:?} lacks {want:?}");
    }
}

#[test]
fn decompression_bombs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = b"2.0\n".to_vec();
    let control_gz = gzip(&tar_of(&[("./control", CONTROL)]));

    // A control file of 17 MiB (compresses to a few KiB).
    let mut big_control = CONTROL.to_vec();
    big_control.extend(std::iter::repeat_n(b'#', 17 << 20));
    let bomb = write(
        d,
        "control-bomb.deb",
        ar(&[
            ("debian-binary", bin.clone()),
            (
                "control.tar.gz",
                gzip(&tar_of(&[("./control", &big_control)])),
            ),
            ("data.tar.gz", gzip(&tar_of(&[]))),
        ]),
    );
    let e = read_deb(&bomb).unwrap_err();
    assert!(matches!(e, PkgError::TooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains("decompression bomb"), "{e}");

    // A changelog that inflates past the changelog limit.
    let mut log = CHANGELOG.as_bytes().to_vec();
    log.extend(std::iter::repeat_n(b' ', 17 << 20));
    let log_gz = gzip(&log);
    let bomb = write(
        d,
        "changelog-bomb.deb",
        ar(&[
            ("debian-binary", bin.clone()),
            ("control.tar.gz", control_gz),
            (
                "data.tar.gz",
                gzip(&tar_of(&[(
                    "./usr/share/doc/hand/changelog.Debian.gz",
                    &log_gz,
                )])),
            ),
        ]),
    );
    let e = read_deb(&bomb).unwrap_err();
    assert!(matches!(e, PkgError::TooLarge { .. }), "{e:?}");
}

/// Version strings that exercise every rule of dpkg's ordering.
const EDGE_VERSIONS: &[&str] = &[
    "0",
    "1",
    "01",
    "1.0",
    "1.00",
    "1.0.0",
    "1.0-0",
    "1.0-1",
    "1.0-1.1",
    "1.0-01",
    "1:1.0",
    "0:1.0",
    "2:0.1",
    "10:1",
    "1.0~rc1",
    "1.0~rc1-1",
    "1.0~~",
    "1.0~",
    "1.0~a",
    "1.0+",
    "1.0+b1",
    "1.0-1+b1",
    "1.0-1+deb12u1",
    "1.0-1~deb12u1",
    "1.0-1~bpo12+1",
    "1.0.",
    "1.0a",
    "1.0A",
    "1.0z",
    "1.0Z",
    "1.0+dfsg",
    "1.0+dfsg-1",
    "1.0~dfsg",
    "1.0:1",
    "1:1.0:1",
    "1a",
    "1b",
    "1.a",
    "1+a",
    "1~a",
    "1-a",
    "1-b",
    "1-1a",
    "1-1~",
    "1-1+",
    "1-1.",
    "9",
    "10",
    "99",
    "100",
    "4294967296",
    "18446744073709551616",
    "1.18446744073709551616",
    "2.30",
    "2.3",
    "2.3-0",
    "a",
    "1_0",
    "1.0-1_1",
    " 1.0",
    "1.0 ",
    "1.0 1",
    "",
    "1:",
    ":1",
    "1.0-",
    "-1",
    "x:1",
    "99999999999:1",
    "1:1-1-1",
];

/// `dpkg --compare-versions a OP b` where OP is the relation we computed; one spawn per pair.
/// Returns dpkg's exit status (0 true, 1 false, 2 bad syntax).
fn dpkg_says(a: &str, op: &str, b: &str) -> i32 {
    Command::new("dpkg")
        .args(["--compare-versions", a, op, b])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

fn status_versions() -> Vec<String> {
    let text = std::fs::read_to_string("/var/lib/dpkg/status").unwrap_or_default();
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Version: "))
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn compare_deb_agrees_with_dpkg() {
    if !require(Requirement::DPKG) {
        return;
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    let edges: Vec<String> = EDGE_VERSIONS.iter().map(|s| s.to_string()).collect();
    // Each edge case against a spread of others (stride keeps the count near 300).
    for (i, a) in edges.iter().enumerate() {
        for k in [1, 2, 3, 5] {
            pairs.push((a.clone(), edges[(i + k) % edges.len()].clone()));
        }
    }
    // Real versions: neighbours in sorted order are often close, which is where bugs hide.
    let real = status_versions();
    for w in real.windows(2).step_by(3).take(150) {
        pairs.push((w[0].clone(), w[1].clone()));
    }
    for (i, v) in real.iter().enumerate().step_by(17) {
        pairs.push((v.clone(), edges[i % edges.len()].clone()));
    }
    // dpkg's command line reads "" as "no version" (lower than any); our API rejects it.
    pairs.retain(|(a, b)| !a.is_empty() && !b.is_empty());
    let mut disagreements = Vec::new();
    for (a, b) in &pairs {
        let (op, want) = match compare_deb(a, b) {
            Ok(Ordering::Less) => ("lt", 0),
            Ok(Ordering::Equal) => ("eq", 0),
            Ok(Ordering::Greater) => ("gt", 0),
            Err(_) => ("lt", 2),
        };
        let got = dpkg_says(a, op, b);
        if got != want {
            disagreements.push(format!(
                "{a:?} {op} {b:?}: dpkg exit {got}, expected {want}"
            ));
        }
    }
    assert!(pairs.len() >= 300, "only {} pairs", pairs.len());
    assert!(
        disagreements.is_empty(),
        "{} of {} pairs disagree:\n{}",
        disagreements.len(),
        pairs.len(),
        disagreements.join("\n")
    );
}

#[test]
fn differs_from_debversion_only_where_dpkg_sides_with_us() {
    // debversion is the crate the brief suggested. It orders an absent number before a
    // zero ("1.0." < "1.0.0", "1a" < "1a0") where dpkg treats both as equal; wherever the
    // two disagree, dpkg must side with us.
    let mut pool: Vec<String> = EDGE_VERSIONS.iter().map(|s| s.to_string()).collect();
    pool.extend(status_versions().into_iter().take(200));
    let mut differ = Vec::new();
    for a in &pool {
        let Ok(da) = a.parse::<debversion::Version>() else {
            continue;
        };
        for b in &pool {
            let Ok(db) = b.parse::<debversion::Version>() else {
                continue;
            };
            let Ok(ours) = compare_deb(a, b) else {
                continue;
            };
            if ours != da.cmp(&db) {
                differ.push((a.clone(), b.clone(), ours));
            }
        }
    }
    assert!(
        differ.iter().any(|(a, b, _)| a == "1.0.0" && b == "1.0."),
        "the known debversion divergence is gone"
    );
    if !require(Requirement::DPKG) {
        return;
    }
    for (a, b, ours) in differ.iter().take(40) {
        let op = match ours {
            Ordering::Less => "lt",
            Ordering::Equal => "eq",
            Ordering::Greater => "gt",
        };
        assert_eq!(
            dpkg_says(a, op, b),
            0,
            "dpkg disagrees with us on {a:?} {op} {b:?}"
        );
    }
}

/// A genuine Debian security update, when the archive is reachable (skips otherwise).
#[test]
fn genuine_debian_package_from_the_archive() {
    if !require(Requirement::APT_GET) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .args(["60", "apt-get", "download", "-q", "libexpat1"])
        .current_dir(dir.path())
        .output();
    let debs: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .map(|it| {
            it.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "deb"))
                .collect()
        })
        .unwrap_or_default();
    let Some(deb) = debs.first() else {
        let detail = format!(
            "apt-get download libexpat1 failed: {:?}",
            out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        );
        skip_or_fail(Requirement::DebianArchive, &detail);
        return;
    };
    let p = read_deb(deb).unwrap();
    assert_eq!(p.info.package, "libexpat1");
    assert_eq!(p.info.source, "expat");
    let log = p.changelog.expect("libexpat1 ships changelog.Debian.gz");
    let entries = patchday_pkg::changelog::parse(&log);
    assert!(entries.len() > 10);
    assert_eq!(entries[0].version, p.info.source_version);
    let all = cves_since(&log, None);
    assert!(all.len() > 5, "{all:?}");
    // The newest entry's CVEs are a subset of everything newer than the entry before it.
    let newest = cves_since(&log, Some(&entries[1].version));
    assert!(newest.iter().all(|c| all.contains(c)));
}
