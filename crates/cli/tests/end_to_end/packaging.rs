//! Issue 11, point 7, with real packages and real dpkg: the `.deb` packages built by
//! `packaging/build-debs` (cargo-deb) install into overlay hosts; the units pass
//! `systemd-analyze verify`; the server runs as its unit says (ExecStart, User=, no new
//! privileges, no capabilities: an equivalent supervisor check with `setpriv`, since an
//! overlay host has no systemd) from /etc/patchday/server.toml, the agent from
//! /etc/patchday/agent.toml; the agent enrols and patches its host. Logs written to a
//! file have no colour codes; man pages and completions are where the shells look; lintian
//! finds no error or warning in either package.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_lab::{DebSpec, Requirement};
use patchday_testkit::{scratch, text, Bins, Catalog, Host};
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A process in its own group, killed with its group when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// Builds both packages from the binaries under test (`--binaries target/debug`).
fn build_debs(out: &Path) -> (PathBuf, PathBuf) {
    let o = Command::new(workspace().join("packaging/build-debs"))
        .arg("--binaries")
        .arg(Path::new(&bins().patchday).parent().unwrap())
        .args(["--fast", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "build-debs: {}", text(&o));
    let find = |prefix: &str| {
        std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                n.starts_with(prefix) && n.ends_with(".deb")
            })
            .unwrap_or_else(|| panic!("no {prefix}*.deb in {}", out.display()))
    };
    (find("patchday_"), find("patchday-agent_"))
}

/// `dpkg-deb --contents` of a package.
fn contents(deb: &Path) -> String {
    let o = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// One `Key=` value of a unit file.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
        .trim()
        .to_string()
}

fn run_in(h: &Host, program: &str, args: &[&str]) -> std::process::Output {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    h.lab.run(Path::new(program), &args).unwrap()
}

/// `patchday` against the packaged server.
fn cli(url: &str, token: &str, args: &[&str]) -> String {
    let o = Command::new(&bins().patchday)
        .args(args)
        .env("PATCHDAY_SERVER", url)
        .env("PATCHDAY_TOKEN", token)
        .output()
        .unwrap();
    assert!(o.status.success(), "patchday {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether the report (one row per host) shows `hostname` with its update installed.
fn patched(report: &serde_json::Value, hostname: &str) -> bool {
    report.as_array().is_some_and(|rows| {
        rows.iter().any(|r| {
            r["hostname"] == hostname && r["installed"] == 1 && r["status"] == "up-to-date"
        })
    })
}

#[test]
fn the_packages_install_into_a_host_their_units_run_the_server_and_the_agent_patches() {
    let _serial = patchday_testkit::serial();
    for r in [
        Requirement::Root,
        Requirement::DPKG_DEB,
        Requirement::CargoDeb,
        Requirement::Program {
            name: "dpkg-shlibdeps",
            package: "dpkg-dev",
        },
        Requirement::Program {
            name: "setpriv",
            package: "util-linux",
        },
        Requirement::Program {
            name: "systemd-analyze",
            package: "systemd",
        },
        Requirement::Program {
            name: "lintian",
            package: "lintian",
        },
    ] {
        if !patchday_lab::require(r) {
            return;
        }
    }
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let out = dir.join("debs");
    std::fs::create_dir_all(&out).unwrap();
    let (server_deb, agent_deb) = build_debs(&out);
    // Debian's own package checker: no error and no warning (the overrides shipped in
    // packaging/*/lintian-overrides say why each exception is wanted).
    let o = Command::new("lintian")
        .args(["--tag-display-limit", "0", "--fail-on", "error,warning"])
        .arg(&server_deb)
        .arg(&agent_deb)
        .output()
        .unwrap();
    assert!(o.status.success(), "lintian: {}", text(&o));
    let c = contents(&server_deb);
    for f in [
        "./usr/bin/patchday",
        "./etc/patchday/server.toml",
        "./lib/systemd/system/patchday.service",
        "./usr/share/man/man1/patchday.1",
        "./usr/share/man/man1/patchday-server.1",
        "./usr/share/bash-completion/completions/patchday",
        "./usr/share/zsh/vendor-completions/_patchday",
    ] {
        assert!(c.contains(f), "{f} missing from the patchday package:\n{c}");
    }
    let c = contents(&agent_deb);
    for f in [
        "./usr/bin/patchday-agent",
        "./etc/patchday/agent.toml",
        "./lib/systemd/system/patchday-agent.service",
        "./lib/systemd/system/patchday-agent-scan.service",
        "./usr/share/man/man1/patchday-agent.1",
        "./usr/share/bash-completion/completions/patchday-agent",
    ] {
        assert!(
            c.contains(f),
            "{f} missing from the patchday-agent package:\n{c}"
        );
    }

    // A catalog with an emergency update of a test package.
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let old = patchday_lab::build_deb(
        &DebSpec::new("pd-packaged", "1.0-1").changelog("1.0-1", "Initial release."),
        &pkgs,
    )
    .unwrap();
    let new = patchday_lab::build_deb(
        &DebSpec::new("pd-packaged", "1.0-2")
            .changelog("1.0-2", "Fix CVE-2099-7001.")
            .changelog("1.0-1", "Initial release."),
        &pkgs,
    )
    .unwrap();
    let cat = Catalog::new(&b, dir);
    let o = cat.add_deb(
        "PD-PKG-1",
        &new,
        &["--emergency", "test", "--since", "1.0-1"],
    );
    assert!(o.status.success(), "{}", text(&o));

    // Both packages install into one host: the server's user, state and config.
    let s = Host::new(&b, dir, "pkg-server");
    if !s.is_overlay() {
        return; // Host::new failed the test in CI already
    }
    s.lab.install_deb(&server_deb).unwrap();
    s.lab.install_deb(&agent_deb).unwrap();
    let stat = |h: &Host, p: &str| {
        String::from_utf8_lossy(&run_in(h, "stat", &["-c", "%U:%G %a", p]).stdout)
            .trim()
            .to_string()
    };
    assert_eq!(stat(&s, "/var/lib/patchday"), "patchday:patchday 700");
    assert_eq!(stat(&s, "/etc/patchday/server.toml"), "root:patchday 640");
    assert_eq!(stat(&s, "/var/lib/patchday-agent"), "root:root 700");
    // The installed man page is a real roff page where man looks (cargo-deb gzips it).
    let gz = s
        .lab
        .read_file(Path::new("/usr/share/man/man1/patchday-server.1.gz"))
        .expect("the server's man page is installed");
    let mut page = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut page)
        .expect("the man page is gzip");
    assert!(
        page.contains(".TH") && page.contains("patchday"),
        "not a man page: {page}"
    );

    // The units, as systemd reads them.
    let o = run_in(
        &s,
        "systemd-analyze",
        &[
            "verify",
            "/lib/systemd/system/patchday.service",
            "/lib/systemd/system/patchday-agent.service",
            "/lib/systemd/system/patchday-agent-scan.service",
        ],
    );
    assert!(o.status.success(), "systemd-analyze verify: {}", text(&o));
    let said = text(&o);
    assert!(
        !said.contains("patchday"),
        "systemd-analyze verify complains about our units: {said}"
    );

    // The shipped config, with the catalog root added; an unknown key is refused.
    s.lab
        .write_file(
            "/etc/patchday/root.json",
            &std::fs::read(cat.root()).unwrap(),
        )
        .unwrap();
    let mut toml = s.lab.read_file("/etc/patchday/server.toml").unwrap();
    toml.extend_from_slice(b"catalog_root = \"/etc/patchday/root.json\"\n");
    s.lab
        .write_file("/etc/patchday/server.toml", &toml)
        .unwrap();
    s.lab
        .write_file("/etc/patchday/typo.toml", b"lisen = \"127.0.0.1:1\"\n")
        .unwrap();
    let o = run_in(
        &s,
        "/usr/bin/patchday",
        &["server", "--config", "/etc/patchday/typo.toml"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown key \"lisen\""), "{}", text(&o));

    // The server as its unit runs it: ExecStart as User=, without new privileges or
    // capabilities (setpriv stands in for systemd). The port comes from the environment,
    // which overrides the file (other tests may hold 8470).
    let unit = String::from_utf8(
        s.lab
            .read_file("/lib/systemd/system/patchday.service")
            .unwrap(),
    )
    .unwrap();
    let user = unit_value(&unit, "User");
    assert_eq!(user, "patchday");
    assert_eq!(unit_value(&unit, "NoNewPrivileges"), "yes");
    assert_eq!(unit_value(&unit, "ProtectSystem"), "strict");
    assert_eq!(unit_value(&unit, "CapabilityBoundingSet"), "");
    let exec = unit_value(&unit, "ExecStart");
    let mut args: Vec<OsString> = [
        "--reuid",
        &user,
        "--regid",
        &user,
        "--init-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.extend(exec.split_whitespace().map(OsString::from));
    let server_log = dir.join("server.log");
    let mut child = s
        .lab
        .command(Path::new("/usr/bin/setpriv"), &args)
        .env("PATCHDAY_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&server_log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Running(child);
    let mut url = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("patchday server listening on ") {
            url = Some(u.trim().to_string());
            break;
        }
    }
    let url = url.unwrap_or_else(|| {
        panic!(
            "the packaged server did not start: {}",
            std::fs::read_to_string(&server_log).unwrap_or_default()
        )
    });
    // Written by the server (as patchday) into its state directory, per server.toml.
    let token_file = s.lab.dir().join("upper/var/lib/patchday/first-admin.token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    cli(
        &url,
        &token,
        &["catalog", "push", "--repo", cat.repo.to_str().unwrap()],
    );
    cli(&url, &token, &["tenant", "create", "acme"]);
    cli(
        &url,
        &token,
        &["group", "create", "--tenant", "acme", "web"],
    );
    let enroll = cli(
        &url,
        &token,
        &[
            "enroll-token",
            "create",
            "--tenant",
            "acme",
            "--group",
            "web",
        ],
    )
    .trim()
    .to_string();

    // The agent's host: the old package, the agent package, agent.toml naming the server.
    let a = Host::new(&b, dir, "pkg-agent");
    a.lab.install_deb(&old).unwrap();
    a.lab.install_deb(&agent_deb).unwrap();
    let mut toml = a.lab.read_file("/etc/patchday/agent.toml").unwrap();
    toml.extend_from_slice(format!("server = \"{url}\"\n").as_bytes());
    a.lab.write_file("/etc/patchday/agent.toml", &toml).unwrap();
    // Enrolment as agent.toml says: the token in the environment, once.
    let o = a
        .lab
        .command(
            Path::new("/usr/bin/patchday-agent"),
            &[
                "--config".into(),
                "/etc/patchday/agent.toml".into(),
                "--once".into(),
            ],
        )
        .env("PATCHDAY_ENROLL_TOKEN", &enroll)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(o.status.success(), "enrol: {}", text(&o));
    // Its log went to a pipe, not a terminal: no colour codes.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.is_empty() && !err.contains('\u{1b}'), "{err}");
    cli(
        &url,
        &token,
        &["approve", "--tenant", "acme", "--group", "web", "PD-PKG-1"],
    );

    // The agent as its unit runs it (root), until the server sees the update installed.
    let unit = String::from_utf8(
        a.lab
            .read_file("/lib/systemd/system/patchday-agent.service")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(unit_value(&unit, "ProtectHome"), "yes");
    assert_eq!(unit_value(&unit, "PrivateTmp"), "yes");
    let exec: Vec<String> = unit_value(&unit, "ExecStart")
        .split_whitespace()
        .map(String::from)
        .collect();
    let agent_log = dir.join("agent.log");
    let args: Vec<OsString> = exec[1..].iter().map(OsString::from).collect();
    let agent = Running(
        a.lab
            .command(Path::new(&exec[0]), &args)
            .env("RUST_LOG", "info")
            .process_group(0)
            .stdout(std::fs::File::create(&agent_log).unwrap())
            .stderr(std::fs::File::create(dir.join("agent.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let report = || -> serde_json::Value {
        serde_json::from_str(&cli(
            &url,
            &token,
            &["report", "--tenant", "acme", "--format", "json"],
        ))
        .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !patched(&report(), "pkg-agent") {
        assert!(
            std::time::Instant::now() < deadline,
            "the packaged agent did not install PD-PKG-1: {}\nagent: {}{}",
            report(),
            std::fs::read_to_string(&agent_log).unwrap_or_default(),
            std::fs::read_to_string(dir.join("agent.err")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    drop(agent);
    a.lab.kill_all().unwrap();
    assert_eq!(a.version("pd-packaged").as_deref(), Some("1.0-2"));

    // Logs into a file: no colour codes.
    drop(server);
    s.lab.kill_all().unwrap();
    let l = std::fs::read_to_string(&server_log).unwrap();
    assert!(!l.is_empty(), "the server logged nothing");
    assert!(
        !l.contains('\u{1b}'),
        "colour codes in the server's log: {l}"
    );
}
