//! Real dpkg, real overlay mounts, real Debian packages. Overlay tests skip (with a message) when not root,
//! and fail when `CI` is set (`patchday_lab::require`).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers outside #[test] fns

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use patchday_lab::{
    best_kind, build_deb, cleanup_stale, download_real_update, find_real_update, require,
    skip_or_fail, DebSpec, HostKind, LabError, LabHost, Requirement,
    DEFAULT_REAL_UPDATE_CANDIDATES,
};

/// A base dir on the root file system (an overlay of / cannot see other mounts such as a tmpfs /tmp).
fn base() -> tempfile::TempDir {
    fs::create_dir_all("/var/tmp").expect("/var/tmp");
    tempfile::Builder::new()
        .prefix("patchday-lab-test-")
        .tempdir_in("/var/tmp")
        .expect("tempdir")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn overlay_host(base: &Path, name: &str) -> Option<LabHost> {
    if !require(Requirement::Root) {
        return None;
    }
    Some(LabHost::create(base, name, HostKind::Overlay).expect("create overlay host"))
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn sh(host: &LabHost, script: &str) -> std::process::Output {
    host.run(Path::new("/bin/sh"), &args(&["-c", script]))
        .expect("run sh in host")
}

fn real_dpkg_has(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", package])
        .stderr(Stdio::null())
        .status()
        .expect("dpkg-query")
        .success()
}

/// Mount points in this test process's namespace that mention `needle`.
fn my_mounts_mentioning(needle: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn overlay_host_installs_for_real_and_leaves_the_machine_alone() {
    let base = base();
    let started = Instant::now();
    let Some(host) = overlay_host(base.path(), "lab-install") else {
        return;
    };
    let out = sh(&host, "hostname; cat /etc/hostname");
    eprintln!(
        "create an overlay host + run one command in it: {:?}",
        started.elapsed()
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "lab-install\nlab-install\n"
    );
    let debs = base.path().join("debs");
    let pkg = "patchday-lab-test-hello";
    let deb = build_deb(
        &DebSpec::new(pkg, "1.0-1")
            .file(
                "/usr/share/patchday-lab-test/hello.txt",
                b"hello\n".to_vec(),
                0o644,
            )
            .reboot_required(true),
        &debs,
    )
    .expect("build");

    let started = Instant::now();
    let out = sh(&host, "true");
    eprintln!("one more command in the same host: {:?}", started.elapsed());
    assert!(out.status.success(), "{out:?}");

    host.install_deb(&deb).expect("dpkg -i inside");
    assert_eq!(
        host.dpkg_version(pkg).expect("query"),
        Some("1.0-1".to_string())
    );
    assert_eq!(
        host.read_file("/usr/share/patchday-lab-test/hello.txt")
            .expect("read"),
        b"hello\n"
    );
    assert!(
        !real_dpkg_has(pkg),
        "the real machine's dpkg must not know {pkg}"
    );
    assert!(
        !Path::new("/usr/share/patchday-lab-test").exists(),
        "the real / must be untouched"
    );

    // The postinst asked for a reboot inside the host only; a simulated reboot clears it.
    assert_eq!(
        host.read_file("/run/reboot-required.pkgs").expect("pkgs"),
        format!("{pkg}\n").as_bytes()
    );
    host.reboot().expect("reboot");
    assert!(!host.file_exists("/run/reboot-required").expect("exists"));

    // An upgrade whose postinst fails leaves the package not "install ok installed", with dpkg's message.
    let bad = build_deb(&DebSpec::new(pkg, "1.0-2").fail_postinst(true), &debs).expect("build");
    let err = host.install_deb(&bad).expect_err("postinst fails");
    assert!(
        matches!(&err, LabError::CommandFailed { detail, .. } if detail.contains("failing on purpose")),
        "{err}"
    );
    assert_eq!(host.dpkg_version(pkg).expect("query"), None);

    // State persists across commands, and a reopened host sees it too.
    let out = sh(&host, "echo one > /etc/patchday-lab-state");
    assert!(out.status.success(), "{out:?}");
    let host = LabHost::open(base.path(), host.name()).expect("reopen");
    assert_eq!(
        String::from_utf8_lossy(&sh(&host, "cat /etc/patchday-lab-state").stdout),
        "one\n"
    );
    assert!(!Path::new("/etc/patchday-lab-state").exists());
    host.write_file("/opt/lab/written.txt", b"via write_file")
        .expect("write");
    assert_eq!(
        host.read_file("/opt/lab/written.txt").expect("read"),
        b"via write_file"
    );
    assert!(matches!(
        host.read_file("/nonexistent/x"),
        Err(LabError::FileMissing { .. })
    ));

    assert!(matches!(
        LabHost::create(base.path(), "lab-install", HostKind::Overlay),
        Err(LabError::HostExists { .. })
    ));
    let dir = host.dir().to_path_buf();
    host.destroy().expect("destroy");
    assert!(!dir.exists());
}

#[test]
fn killing_a_command_inside_a_host_leaves_no_mounts() {
    let base = base();
    let Some(host) = overlay_host(base.path(), "lab-kill") else {
        return;
    };
    let mut child = host
        .command(
            Path::new("/bin/sh"),
            &args(&["-c", "touch /run/started; exec sleep 60"]),
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let started = host.dir().join("run/started");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.exists() {
        assert!(
            Instant::now() < deadline,
            "command never started inside the host"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let dir = host.dir().to_string_lossy().into_owned();
    assert!(
        my_mounts_mentioning(&dir).is_empty(),
        "mounts leaked while running"
    );
    let pid = child.id();
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(my_mounts_mentioning(&dir).is_empty(), "mounts left behind");
    assert!(
        my_mounts_mentioning("patchday-lab-lab-kill").is_empty(),
        "overlay left behind"
    );
    host.destroy().expect("destroy");
}

#[test]
fn sandbox_host_installs_with_dpkg_root() {
    let base = base();
    let host =
        LabHost::create(base.path(), "lab-sandbox", HostKind::Sandbox).expect("create sandbox");
    let root = host.root_dir().expect("sandbox has a root").to_path_buf();
    let pkg = "patchday-lab-test-sandboxed";
    let deb = build_deb(
        &DebSpec::new(pkg, "2.0-1")
            .file("/usr/lib/patchday-lab/x", b"x".to_vec(), 0o755)
            .reboot_required(true),
        &base.path().join("debs"),
    )
    .expect("build");
    let real_reboot = Path::new("/run/reboot-required.pkgs").exists();
    host.install_deb(&deb).expect("dpkg --root -i");
    assert_eq!(
        host.dpkg_version(pkg).expect("query"),
        Some("2.0-1".to_string())
    );
    assert!(root.join("usr/lib/patchday-lab/x").is_file());
    assert_eq!(
        host.read_file("/run/reboot-required.pkgs").expect("pkgs"),
        format!("{pkg}\n").as_bytes()
    );
    assert_eq!(
        Path::new("/run/reboot-required.pkgs").exists(),
        real_reboot,
        "postinst must honour DPKG_ROOT"
    );
    assert!(!real_dpkg_has(pkg));

    // What an agent would run: dpkg with the host's options.
    let mut a = host.dpkg_args();
    a.extend(args(&["-r", pkg]));
    let out = host.run(Path::new("dpkg"), &a).expect("dpkg -r");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(host.dpkg_version(pkg).expect("query"), None);
    host.destroy().expect("destroy");
}

#[test]
fn build_deb_reads_back_with_dpkg_deb() {
    let out_dir = base();
    let spec = DebSpec::new("libpatchday-demo1", "1:1.4-2")
        .architecture("amd64")
        .source("patchday-demo", "1:1.4-2")
        .depends("libc6 (>= 2.36)")
        .file(
            "/usr/lib/x86_64-linux-gnu/libpatchday-demo.so.1",
            vec![0u8; 3000],
            0o644,
        )
        .changelog("1:1.4-1", "Initial release.")
        .changelog("1:1.4-2", "Fix CVE-2026-1111 and CVE-2026-2222.");
    let deb = build_deb(&spec, out_dir.path()).expect("build");
    assert_eq!(
        deb.file_name().and_then(|n| n.to_str()),
        Some("libpatchday-demo1_1.4-2_amd64.deb")
    );
    let field = |name: &str| {
        let out = Command::new("dpkg-deb")
            .arg("-f")
            .arg(&deb)
            .arg(name)
            .output()
            .expect("dpkg-deb -f");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(field("Package"), "libpatchday-demo1");
    assert_eq!(field("Version"), "1:1.4-2");
    assert_eq!(field("Architecture"), "amd64");
    assert_eq!(field("Source"), "patchday-demo");
    assert_eq!(field("Depends"), "libc6 (>= 2.36)");
    assert_eq!(field("Installed-Size"), "4");

    let changelog = Command::new("sh")
        .arg("-c")
        .arg(r#"dpkg-deb --fsys-tarfile "$1" | tar -xOf - ./usr/share/doc/libpatchday-demo1/changelog.Debian.gz | gzip -dc"#)
        .arg("sh")
        .arg(&deb)
        .output()
        .expect("extract changelog");
    assert!(changelog.status.success(), "{changelog:?}");
    let text = String::from_utf8_lossy(&changelog.stdout);
    assert!(
        text.starts_with("patchday-demo (1:1.4-2) unstable-security; urgency=high\n"),
        "{text}"
    );
    assert!(
        text.find("CVE-2026-1111").expect("cve") < text.find("(1:1.4-1)").expect("older entry")
    );
    assert!(text.ends_with("+0000\n"), "{text}");

    let listing = Command::new("sh")
        .arg("-c")
        .arg(r#"dpkg-deb --fsys-tarfile "$1" | tar -tvf - ./usr/lib/x86_64-linux-gnu/libpatchday-demo.so.1"#)
        .arg("sh")
        .arg(&deb)
        .output()
        .expect("list");
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("root/root"),
        "{listing:?}"
    );
}

#[test]
fn best_kind_prefers_overlay_as_root() {
    let (kind, why) = best_kind();
    eprintln!("best_kind: {kind:?} ({why})");
    assert_eq!(kind == HostKind::Overlay, is_root(), "{why}");
}

#[test]
fn cleanup_stale_removes_hosts_of_dead_processes_only() {
    let base = base();
    let live = LabHost::create(base.path(), "lab-live", HostKind::Sandbox).expect("create");
    // Forge a host owned by a process that has exited.
    let dead = base.path().join("lab-dead");
    fs::create_dir(&dead).expect("mkdir");
    fs::write(
        dead.join("lab-host.json"),
        r#"{"name":"lab-dead","kind":"sandbox","owner":{"pid":1,"start":1}}"#,
    )
    .expect("meta");
    fs::create_dir(base.path().join("not-a-host")).expect("mkdir");
    fs::write(base.path().join("not-a-host/keep.txt"), "x").expect("write");
    assert_eq!(
        cleanup_stale(base.path()).expect("cleanup"),
        vec!["lab-dead".to_string()]
    );
    assert!(live.dir().exists());
    assert!(base.path().join("not-a-host/keep.txt").exists());
    live.destroy().expect("destroy");
}

#[test]
fn real_security_update_installs_in_an_overlay_host() {
    let update = match find_real_update(DEFAULT_REAL_UPDATE_CANDIDATES) {
        Ok(Some(update)) => update,
        Ok(None) => {
            skip_or_fail(
                Requirement::DebianArchive,
                "no candidate has a newer version in the -security suite of apt's lists",
            );
            return;
        }
        Err(e) if e.is_unavailable() => {
            skip_or_fail(Requirement::DebianArchive, &e.to_string());
            return;
        }
        Err(e) => panic!("{e}"),
    };
    eprintln!("real update: {update:?}");
    let base = base();
    let dest: PathBuf = base.path().join("debs");
    let (old, new) = match download_real_update(&update, &dest) {
        Ok(pair) => pair,
        Err(e) if e.is_unavailable() => {
            skip_or_fail(Requirement::DebianArchive, &e.to_string());
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let version = |deb: &Path| {
        let out = Command::new("dpkg-deb")
            .arg("-f")
            .arg(deb)
            .arg("Version")
            .output()
            .expect("dpkg-deb");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(version(&old), update.old_version);
    assert_eq!(version(&new), update.new_version);
    let changelog = Command::new("sh")
        .arg("-c")
        .arg(r#"dpkg-deb --fsys-tarfile "$1" | tar -xOf - --wildcards './usr/share/doc/*/changelog.Debian.gz' | gzip -dc | head -40"#)
        .arg("sh")
        .arg(&new)
        .output()
        .expect("changelog");
    let text = String::from_utf8_lossy(&changelog.stdout);
    assert!(
        text.contains(&format!("({})", update.new_version)),
        "{text}"
    );
    assert!(
        text.contains("CVE-"),
        "a security update's changelog names CVEs:\n{text}"
    );

    let Some(host) = overlay_host(base.path(), "lab-real") else {
        return;
    };
    host.install_deb(&old)
        .expect("install old (a downgrade inside the host is fine)");
    assert_eq!(
        host.dpkg_version(&update.package).expect("query"),
        Some(update.old_version.clone())
    );
    host.install_deb(&new).expect("install the security update");
    assert_eq!(
        host.dpkg_version(&update.package).expect("query"),
        Some(update.new_version.clone())
    );
    host.destroy().expect("destroy");
}
