//! What a test needs from the machine, and the one way a test handles its absence
//! (issue 8, "CI must prove the claims").
//!
//! On a developer's machine a missing tool skips the test with a `skipped: ...` line. In
//! CI (the `CI` environment variable is set and not empty, as `.ci/run` runs) the same
//! absence fails the test with a message naming the requirement and how `.ci/run`
//! provides it: a test that could not test anything must not pass there.
//!
//! Every test that needs root, dpkg, python-tuf, Chromium, gcc or the Debian archive
//! calls [`require`] (or [`skip_or_fail`] when it found out for itself) and returns when
//! it answers `false`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Something a test needs from the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Running as root with working overlay mounts (lab overlay hosts).
    Root,
    /// A program on `PATH`, from a Debian package.
    Program {
        /// The program, e.g. `dpkg-deb`.
        name: &'static str,
        /// The Debian package that has it, e.g. `dpkg`.
        package: &'static str,
    },
    /// python3 with python-tuf (`tuf.ngclient`) and securesystemslib importable.
    PythonTuf,
    /// A headless Chromium (`chromium`, `chromium-browser` or `google-chrome`).
    Chromium,
    /// Issue 11, point 4: a Python module python3 can import, from PyPI.
    PythonModule {
        /// The module, e.g. `prometheus_client`.
        module: &'static str,
        /// The PyPI package that has it, e.g. `prometheus-client`.
        package: &'static str,
    },
    /// cargo-deb, which builds the .deb packages (issue 11, point 7).
    CargoDeb,
    /// apt's lists of the Debian archive and the archive itself (`apt-get update`,
    /// `apt-get download`): genuine security updates.
    DebianArchive,
    /// Issue 13, point 2: network namespaces a test makes itself (`ip netns add`, veth):
    /// root and `ip` from iproute2.
    NetNs,
    /// A file a Debian package installs, e.g. Debian's archive keyring.
    File {
        /// The file.
        path: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// Issue 12, point 2: a PostgreSQL server where the test may create and drop
    /// databases, named by the URL in `PATCHDAY_TEST_POSTGRES`.
    Postgres,
    /// Issue 12, point 3: an S3-compatible object store with a bucket the tests may
    /// write to, named by the URL in `PATCHDAY_TEST_S3`.
    S3,
}

/// The variable that names a PostgreSQL server for tests (issue 12, point 2), e.g.
/// `postgres://postgres@127.0.0.1:54329/postgres`.
pub const POSTGRES_VARIABLE: &str = "PATCHDAY_TEST_POSTGRES";

/// The variable that names an S3-compatible server for tests (issue 12, point 3):
/// `http://ACCESS_KEY_ID:SECRET_ACCESS_KEY@127.0.0.1:3900/BUCKET?region=garage`.
pub const S3_VARIABLE: &str = "PATCHDAY_TEST_S3";

/// The test S3 server named in [`S3_VARIABLE`], if it is set, not empty and readable.
pub fn s3_server() -> Option<TestS3> {
    let v = std::env::var(S3_VARIABLE).ok()?;
    TestS3::parse(v.trim())
}

/// An S3-compatible server for tests, as [`S3_VARIABLE`] names it.
#[derive(Clone)]
pub struct TestS3 {
    /// `http://HOST:PORT`.
    pub endpoint: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// A bucket the tests may write to (each test under a prefix of its own).
    pub bucket: String,
    /// The region the server signs for.
    pub region: String,
}

impl std::fmt::Debug for TestS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestS3")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl TestS3 {
    /// Reads `SCHEME://KEY:SECRET@HOST:PORT/BUCKET?region=REGION`.
    pub fn parse(v: &str) -> Option<Self> {
        let (scheme, rest) = v.split_once("://")?;
        let (auth, rest) = rest.split_once('@')?;
        let (key, secret) = auth.split_once(':')?;
        let (host, rest) = rest.split_once('/')?;
        let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
        let region = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("region="))
            .unwrap_or("us-east-1");
        (!bucket.is_empty() && !key.is_empty()).then(|| TestS3 {
            endpoint: format!("{scheme}://{host}"),
            access_key_id: key.into(),
            secret_access_key: secret.into(),
            bucket: bucket.trim_end_matches('/').into(),
            region: region.into(),
        })
    }
}

/// The URL in [`POSTGRES_VARIABLE`], if it is set and not empty.
pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_VARIABLE)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

impl Requirement {
    /// `gcc`, from Debian's `gcc` package.
    pub const GCC: Requirement = Requirement::Program {
        name: "gcc",
        package: "gcc",
    };
    /// `dpkg-deb`, from Debian's `dpkg` package.
    pub const DPKG_DEB: Requirement = Requirement::Program {
        name: "dpkg-deb",
        package: "dpkg",
    };
    /// `dpkg`, from Debian's `dpkg` package.
    pub const DPKG: Requirement = Requirement::Program {
        name: "dpkg",
        package: "dpkg",
    };
    /// `apt-get`, from Debian's `apt` package.
    pub const APT_GET: Requirement = Requirement::Program {
        name: "apt-get",
        package: "apt",
    };
    /// Issue 13, point 2: `nft`, from Debian's `nftables` package (host firewall baselines).
    pub const NFT: Requirement = Requirement::Program {
        name: "nft",
        package: "nftables",
    };
    /// Debian's archive keyring, from `debian-archive-keyring`.
    pub const DEBIAN_KEYRING: Requirement = Requirement::File {
        path: "/usr/share/keyrings/debian-archive-keyring.gpg",
        package: "debian-archive-keyring",
    };
    /// Issue 14, point 4: Postfix (`postfix`, its daemons and `sendmail`), from Debian's
    /// `postfix` package; the milter tests start a throwaway instance.
    pub const POSTFIX: Requirement = Requirement::File {
        path: "/usr/sbin/postfix",
        package: "postfix",
    };
    /// Issue 14, point 4: ClamAV's scanning daemon, from Debian's `clamav-daemon`
    /// package; the milter tests start their own with their own signatures.
    pub const CLAMD: Requirement = Requirement::File {
        path: "/usr/sbin/clamd",
        package: "clamav-daemon",
    };

    /// Issue 14, point 2: nginx with `auth_request`, from Debian's `nginx` package; the
    /// gate tests start their own instance on 127.0.0.1 (never the system service).
    pub const NGINX: Requirement = Requirement::File {
        path: "/usr/sbin/nginx",
        package: "nginx",
    };

    /// aiosmtpd: a real SMTP server for the notification tests (issue 11, point 5).
    pub const PYTHON_SMTP: Requirement = Requirement::PythonModule {
        module: "aiosmtpd.controller",
        package: "aiosmtpd",
    };

    /// Prometheus's Python client, whose parser reads `/metrics` in the tests.
    pub const PROMETHEUS_CLIENT: Requirement = Requirement::PythonModule {
        module: "prometheus_client",
        package: "prometheus-client",
    };

    /// What is needed, in words.
    pub fn describe(&self) -> String {
        match self {
            Requirement::Root => "root with overlay mounts (lab overlay hosts)".into(),
            Requirement::Program { name, package } => {
                format!("the program `{name}` (Debian package {package})")
            }
            Requirement::PythonTuf => "python3 with python-tuf and securesystemslib".into(),
            Requirement::Chromium => "a headless Chromium".into(),
            Requirement::PythonModule { module, package } => {
                format!("python3 with the module {module} (PyPI package {package})")
            }
            Requirement::CargoDeb => "cargo-deb (`cargo deb`)".into(),
            Requirement::DebianArchive => {
                "apt lists of the Debian archive with a genuine security update, and the archive"
                    .into()
            }
            Requirement::File { path, package } => {
                format!("the file {path} (Debian package {package})")
            }
            Requirement::Postgres => format!(
                "a PostgreSQL server where tests may create databases, named in {POSTGRES_VARIABLE}"
            ),
            Requirement::NetNs => {
                "root and `ip netns` (Debian package iproute2) for network namespaces".into()
            }
            Requirement::S3 => format!(
                "an S3-compatible object store with a writable bucket, named in {S3_VARIABLE}"
            ),
        }
    }

    /// How `.ci/run` provides it (and how a developer can).
    pub fn how_ci_provides(&self) -> String {
        match self {
            Requirement::Root => {
                "CI runs .ci/run as root; run the tests as root (overlay hosts mount an overlay of /)"
                    .into()
            }
            Requirement::Program { package, .. } | Requirement::File { package, .. } => {
                format!("`.ci/run` installs it with `apt-get install -y {package}`")
            }
            Requirement::PythonTuf => {
                "`.ci/run` installs it with `python3 -m pip install tuf securesystemslib[crypto]`"
                    .into()
            }
            Requirement::Chromium => "`.ci/run` installs it with `apt-get install -y chromium`".into(),
            Requirement::PythonModule { package, .. } => {
                format!("`.ci/run` installs it with `python3 -m pip install {package}`")
            }
            Requirement::CargoDeb => {
                "`.ci/run` installs it with `cargo install --locked cargo-deb`".into()
            }
            Requirement::DebianArchive => {
                "`.ci/run` runs `apt-get update` first and needs the Debian archive to answer".into()
            }
            Requirement::Postgres => format!(
                "`.ci/run` installs Debian's `postgresql`, starts a throwaway cluster on 127.0.0.1 \
                 and exports {POSTGRES_VARIABLE}; by hand: \
                 {POSTGRES_VARIABLE}=postgres://USER@HOST:PORT/postgres (a role that may CREATE DATABASE)"
            ),
            Requirement::NetNs => {
                "CI runs .ci/run as root and installs it with `apt-get install -y iproute2`".into()
            }
            Requirement::S3 => format!(
                "`.ci/run` builds Garage (`cargo install garage`), starts a single-node server \
                 on 127.0.0.1 with `.ci/s3-server start DIR` and exports {S3_VARIABLE}; by hand: \
                 {S3_VARIABLE}=\"$(.ci/s3-server start /tmp/s3)\""
            ),
        }
    }

    /// Whether this machine has it. `DebianArchive` is only known by trying: it counts as
    /// present here, and the test reports its absence with [`skip_or_fail`].
    pub fn is_met(&self) -> bool {
        match self {
            Requirement::Root => crate::best_kind().0 == crate::HostKind::Overlay,
            Requirement::Program { name, .. } => find_program(&[name]).is_some(),
            Requirement::PythonTuf => Command::new("python3")
                .args(["-c", "import tuf.ngclient, securesystemslib.signer"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            Requirement::Chromium => chromium().is_some(),
            Requirement::PythonModule { module, .. } => Command::new("python3")
                .args(["-c", &format!("import {module}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            Requirement::CargoDeb => find_program(&["cargo-deb"]).is_some(),
            Requirement::DebianArchive => true,
            Requirement::NetNs => {
                find_program(&["ip"]).is_some()
                    && Command::new("id")
                        .arg("-u")
                        .output()
                        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            }
            Requirement::File { path, .. } => std::path::Path::new(path).exists(),
            Requirement::Postgres => postgres_url().is_some(),
            Requirement::S3 => s3_server().is_some(),
        }
    }
}

/// Whether this is a CI run: the `CI` environment variable is set and not empty.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// `true` when the machine meets `requirement`; otherwise [`skip_or_fail`] (so `false`
/// outside CI, and a failed test in CI).
pub fn require(requirement: Requirement) -> bool {
    if requirement.is_met() {
        return true;
    }
    skip_or_fail(requirement, "");
    false
}

/// The requirement is missing (`detail` says what the test saw, may be empty): in CI the
/// test fails here with a message naming it and how `.ci/run` provides it; elsewhere it
/// prints `skipped: ...` and the caller returns.
#[allow(clippy::panic)] // test support: failing the calling test is its job
pub fn skip_or_fail(requirement: Requirement, detail: &str) {
    match verdict(requirement, detail, in_ci()) {
        Ok(skipped) => eprintln!("{skipped}"),
        Err(failure) => panic!("{failure}"),
    }
}

/// `Err(failure message)` in CI, `Ok("skipped: ...")` elsewhere.
fn verdict(requirement: Requirement, detail: &str, ci: bool) -> Result<String, String> {
    let what = requirement.describe();
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    let how = requirement.how_ci_provides();
    if ci {
        Err(format!(
            "CI is set and this test needs {what}, which is missing{detail}: {how}; \
             a test that cannot run must not pass in CI"
        ))
    } else {
        Ok(format!(
            "skipped: needs {what}, which is missing{detail}; {how}"
        ))
    }
}

/// The first of `names` found as an executable file on `PATH`.
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| is_executable(p))
}

/// The headless Chromium on `PATH`, if any.
pub fn chromium() -> Option<PathBuf> {
    find_program(&["chromium", "chromium-browser", "google-chrome"])
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_itself_and_how_ci_installs_it() {
        let r = Requirement::Program {
            name: "patchday-no-such-program",
            package: "patchday-nothing",
        };
        assert!(!r.is_met());
        assert_eq!(
            r.how_ci_provides(),
            "`.ci/run` installs it with `apt-get install -y patchday-nothing`"
        );
        let failure = verdict(r, "looked on PATH", true).unwrap_err();
        assert_eq!(
            failure,
            "CI is set and this test needs the program `patchday-no-such-program` (Debian \
             package patchday-nothing), which is missing (looked on PATH): `.ci/run` installs \
             it with `apt-get install -y patchday-nothing`; a test that cannot run must not \
             pass in CI"
        );
        let skipped = verdict(r, "", false).unwrap();
        assert!(
            skipped.starts_with("skipped: needs the program"),
            "{skipped}"
        );
    }

    #[test]
    fn a_missing_requirement_fails_the_test_when_ci_is_set() {
        if !in_ci() {
            return; // the CI branch itself is checked through `verdict` above
        }
        let r = Requirement::Program {
            name: "patchday-no-such-program",
            package: "patchday-nothing",
        };
        assert!(std::panic::catch_unwind(|| require(r)).is_err());
    }

    #[test]
    fn sh_is_found_on_path() {
        assert!(find_program(&["sh"]).is_some());
        assert!(Requirement::Program {
            name: "sh",
            package: "dash"
        }
        .is_met());
    }
}
