//! Test harness for Patchday's integration tests: runs the real binaries (the
//! `patchday` server and CLI, `patchday-agent` inside lab hosts) against a server on
//! `127.0.0.1:0`, with catalogs signed by real keys.
//!
//! Everything here panics with a message on failure, which is what a test wants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// What a test needs from the machine: skipped outside CI, a failure in CI (issue 8).
pub use patchday_lab::{require, skip_or_fail, Requirement};
use patchday_lab::{HostKind, LabHost};
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Issue 12: with `PATCHDAY_TEST_ENGINES=postgres+s3` every server of the suite runs on
/// PostgreSQL ([`patchday_lab::POSTGRES_VARIABLE`]) and an S3-compatible store
/// ([`patchday_lab::S3_VARIABLE`]) instead of its data directory's SQLite file and
/// payload directory: the same integration tests on both deployment shapes. Unset or
/// `sqlite`: the default shape.
pub const ENGINES_VARIABLE: &str = "PATCHDAY_TEST_ENGINES";

/// Whether this run puts every server on PostgreSQL and S3 ([`ENGINES_VARIABLE`]).
pub fn on_postgres_and_s3() -> bool {
    std::env::var(ENGINES_VARIABLE).is_ok_and(|v| v.trim() == "postgres+s3")
}

thread_local! {
    /// Set by [`on_the_data_directory`] for the test running on this thread.
    static DATA_DIRECTORY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// For a test about the default shape's own files (the data directory's SQLite file or
/// payload directory, which it renames, corrupts, fills or copies): the servers this
/// test starts (on this thread; libtest runs each test on a thread of its own) keep the
/// data directory even when the run puts servers on PostgreSQL and S3, so the test runs
/// whole in both passes. `other_shape` says where that shape's own version is tested.
pub fn on_the_data_directory(other_shape: &str) {
    if on_postgres_and_s3() {
        eprintln!("this test's servers keep the data directory (its files are the subject); PostgreSQL+S3: {other_shape}");
    }
    DATA_DIRECTORY.with(|d| d.set(true));
}

/// The engine flags of a server in `dir` (its data in `data`): none in the default shape
/// or when the test chose an engine itself; else a database and a bucket prefix of its
/// own, named after its data directory, so a restart of the same server finds its data
/// again.
fn engine_flags(dir: &Path, data: &Path, extra: &[&str]) -> Vec<String> {
    if !on_postgres_and_s3()
        || DATA_DIRECTORY.with(|d| d.get())
        || extra
            .iter()
            .any(|a| *a == "--database" || *a == "--content")
    {
        return Vec::new();
    }
    let (Some(pg), Some(s3)) = (patchday_lab::postgres_url(), patchday_lab::s3_server()) else {
        panic!(
            "{ENGINES_VARIABLE}=postgres+s3 needs {} and {} (.ci/run starts both)",
            patchday_lab::POSTGRES_VARIABLE,
            patchday_lab::S3_VARIABLE
        );
    };
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    let name = format!("pd_e2e_{:016x}", h.finish());
    let created = Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", &pg, "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .expect("psql (Debian's postgresql-client)");
    let err = String::from_utf8_lossy(&created.stderr);
    assert!(
        created.status.success() || err.contains("already exists"),
        "creating database {name}: {err}"
    );
    // The server URL with the database's name in place of its path.
    let (base, query) = pg.split_once('?').unwrap_or((&pg, ""));
    let root = base.rsplit_once('/').map_or(base, |(r, _)| r);
    let mut url = format!("{root}/{name}");
    if !query.is_empty() {
        url = format!("{url}?{query}");
    }
    std::fs::create_dir_all(dir).expect("server directory");
    let mut flags = vec!["--database".into(), url];
    flags.extend(s3_flags(&s3, &format!("e2e/{name}"), dir));
    flags
}

/// The `patchday server` flags for `prefix` in the test bucket (the secret in a 0600
/// file in `dir`).
pub fn s3_flags(s3: &patchday_lab::TestS3, prefix: &str, dir: &Path) -> Vec<String> {
    let secret = dir.join("s3-secret");
    std::fs::write(&secret, &s3.secret_access_key).expect("s3 secret");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    vec![
        "--content".into(),
        format!("s3://{}/{prefix}", s3.bucket),
        "--content-endpoint".into(),
        s3.endpoint.clone(),
        "--content-region".into(),
        s3.region.clone(),
        "--content-access-key-id".into(),
        s3.access_key_id.clone(),
        "--content-secret-file".into(),
        secret.display().to_string(),
    ]
}

/// Where the workspace's binaries are: next to the `patchday` binary under test.
pub fn bin(name: &str, patchday: &str) -> PathBuf {
    let p = Path::new(patchday).with_file_name(name);
    assert!(
        p.exists(),
        "{} is not built: run the tests with `cargo test --workspace` (it builds every binary)",
        p.display()
    );
    p
}

/// Text of an output, for assertions and messages.
/// dpkg's native architecture on this machine (what agents report in their inventory).
pub fn native_architecture() -> String {
    let o = std::process::Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .expect("dpkg --print-architecture");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The binaries under test.
#[derive(Clone, Debug)]
pub struct Bins {
    /// `patchday`.
    pub patchday: PathBuf,
    /// `patchday-agent`.
    pub agent: PathBuf,
}

impl Bins {
    /// From the `CARGO_BIN_EXE_patchday` path of the calling test.
    pub fn new(patchday: &str) -> Self {
        Self {
            patchday: PathBuf::from(patchday),
            agent: bin("patchday-agent", patchday),
        }
    }
}

/// A running `patchday server` on 127.0.0.1 with an admin token.
pub struct Server {
    /// Base URL.
    pub url: String,
    /// The first provider-admin token.
    pub admin: String,
    /// Data directory.
    pub data: PathBuf,
    /// The `--content …` flags the harness gave it ([`ENGINES_VARIABLE`]), for offline
    /// commands on its data (`server scrub`); empty in the default shape.
    pub content_args: Vec<String>,
    bins: Bins,
    child: Child,
}

impl Server {
    /// Starts a server pinning `catalog_root`, in `dir/server`.
    pub fn start(bins: &Bins, dir: &Path, catalog_root: &Path) -> Server {
        Self::start_with(bins, dir, catalog_root, &[])
    }

    /// Like [`Server::start`], with extra `patchday server` arguments.
    pub fn start_with(bins: &Bins, dir: &Path, catalog_root: &Path, extra: &[&str]) -> Server {
        let cmd = Command::new(&bins.patchday);
        Self::launch(bins, dir, catalog_root, extra, cmd, None)
    }

    /// Runs `cmd` (`patchday` or a wrapper of it) as `patchday server` in `dir/server`
    /// with `extra` arguments, its stderr into `log` (or nowhere), and waits for its
    /// address.
    fn launch(
        bins: &Bins,
        dir: &Path,
        catalog_root: &Path,
        extra: &[&str],
        mut cmd: Command,
        log: Option<&Path>,
    ) -> Server {
        let data = dir.join("server");
        let token_file = dir.join("admin-token");
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("server log"),
            ),
            None => Stdio::null(),
        };
        let engines = engine_flags(dir, &data, extra);
        let content_args = match engines.iter().position(|a| a == "--content") {
            Some(i) => engines[i..].to_vec(),
            None => Vec::new(),
        };
        cmd.arg("server").arg("--data").arg(&data);
        // Issue 10, point 6 (push): a restart may ask for the port it had.
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.arg("--catalog-root")
            .arg(catalog_root)
            .arg("--admin-token-file")
            .arg(&token_file)
            .args(&engines)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().expect("start patchday server");
        let out = child.stdout.take().expect("stdout");
        let mut url = None;
        for line in BufReader::new(out).lines() {
            let line = line.expect("server stdout");
            if let Some(u) = line.strip_prefix("patchday server listening on ") {
                url = Some(u.trim().to_string());
                break;
            }
        }
        let url = url.unwrap_or_else(|| match log {
            Some(path) => panic!(
                "server did not print its address; its log: {}",
                std::fs::read_to_string(path).unwrap_or_default()
            ),
            None => panic!("server did not print its address"),
        });
        let admin = std::fs::read_to_string(&token_file).expect("admin token file");
        Server {
            url,
            admin,
            data,
            content_args,
            bins: bins.clone(),
            child,
        }
    }

    /// Stops this server and starts it again on the same data directory (on a new
    /// port) with `extra` arguments.
    pub fn restart_with(&mut self, dir: &Path, catalog_root: &Path, extra: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let bins = self.bins.clone();
        *self = Self::start_with(&bins, dir, catalog_root, extra);
    }

    /// Issue 10, point 6 (push): stops this server (as a crash or an upgrade would).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Issue 10, point 6 (push): starts this stopped server again on the same data
    /// directory and the same port, so agents find it where they left it.
    pub fn start_again_on_same_port(&mut self, dir: &Path, catalog_root: &Path, extra: &[&str]) {
        self.stop();
        let listen = self
            .url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string();
        let mut args = vec!["--listen", listen.as_str()];
        args.extend_from_slice(extra);
        let bins = self.bins.clone();
        *self = Self::start_with(&bins, dir, catalog_root, &args);
    }

    /// Runs a `patchday` CLI command against this server with `token`.
    pub fn cli_as(&self, token: &str, args: &[&str]) -> Output {
        let mut c = Command::new(&self.bins.patchday);
        let ca = self.data.join("tls/ca.pem");
        if ca.exists() {
            c.env("PATCHDAY_CA", ca);
        }
        c.args(args)
            .env("PATCHDAY_SERVER", &self.url)
            .env("PATCHDAY_TOKEN", token)
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", "/nonexistent")
            .output()
            .expect("run patchday")
    }

    /// Runs a CLI command as the admin and asserts success; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let o = self.cli_as(&self.admin, args);
        assert!(o.status.success(), "patchday {args:?} failed: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `GET path` with a bearer token (or none); returns (status, body).
    pub fn http_get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "-", "-w", "\n%{http_code}"]);
        let ca = self.data.join("tls/ca.pem");
        if ca.exists() {
            c.arg("--cacert").arg(ca);
        }
        if let Some(t) = token {
            c.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
        let o = c.arg(format!("{}{path}", self.url)).output().expect("curl");
        status_and_body(&o)
    }

    /// The compliance report as JSON rows.
    pub fn report_rows(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["report", "--by", "detail", "--format", "json"]);
        serde_json::from_str(&out).expect("report json")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A catalog with keys, signed through the real CLI.
pub struct Catalog {
    /// Key directory.
    pub keys: PathBuf,
    /// Repository directory.
    pub repo: PathBuf,
    bins: Bins,
}

impl Catalog {
    /// Generates keys and an empty catalog in `dir`.
    pub fn new(bins: &Bins, dir: &Path) -> Catalog {
        let c = Catalog {
            keys: dir.join("keys"),
            repo: dir.join("catalog"),
            bins: bins.clone(),
        };
        c.run(&["keys", "generate", "--keys", c.keys.to_str().unwrap()]);
        c.run(&[
            "catalog",
            "init",
            "--keys",
            c.keys.to_str().unwrap(),
            "--repo",
            c.repo.to_str().unwrap(),
        ]);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let o = Command::new(&self.bins.patchday)
            .args(args)
            .output()
            .expect("run patchday");
        assert!(o.status.success(), "patchday {args:?} failed: {}", text(&o));
        o
    }

    /// The root to pin.
    pub fn root(&self) -> PathBuf {
        self.repo.join("metadata/1.root.json")
    }

    /// `patchday catalog add-deb` with extra args; returns the output (not asserted).
    pub fn add_deb(&self, id: &str, deb: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "catalog",
            "add-deb",
            "--keys",
            self.keys.to_str().unwrap(),
            "--repo",
            self.repo.to_str().unwrap(),
            "--id",
            id,
        ];
        args.extend_from_slice(extra);
        args.push(deb.to_str().unwrap());
        Command::new(&self.bins.patchday)
            .args(&args)
            .output()
            .expect("run patchday")
    }

    /// Adds an emergency-lane update made of one deb, asserting success.
    pub fn add_emergency(&self, id: &str, deb: &Path) {
        let o = self.add_deb(id, deb, &["--emergency", "test"]);
        assert!(o.status.success(), "add-deb failed: {}", text(&o));
    }
}

/// A lab host with an agent.
pub struct Host {
    /// The lab host.
    pub lab: LabHost,
    bins: Bins,
}

impl Host {
    /// Creates an overlay host (or a sandbox when overlays are unavailable) in `dir/hosts`.
    pub fn new(bins: &Bins, dir: &Path, name: &str) -> Host {
        let (kind, why) = patchday_lab::best_kind();
        // Issue 8: in CI a sandbox host in place of an overlay host would test less than
        // the test claims (the real machine untouched, os-release); fail instead.
        if kind != HostKind::Overlay && patchday_lab::require::in_ci() {
            skip_or_fail(Requirement::Root, &why);
        }
        let base = dir.join("hosts");
        std::fs::create_dir_all(&base).unwrap();
        Host {
            lab: LabHost::create(&base, name, kind).expect("create lab host"),
            bins: bins.clone(),
        }
    }

    /// A `dpkg --root` sandbox host, also where overlays work: its agent reads an image,
    /// so its facts change only when the test changes them (issue 12, point 7).
    pub fn sandbox(bins: &Bins, dir: &Path, name: &str) -> Host {
        let base = dir.join("hosts");
        std::fs::create_dir_all(&base).unwrap();
        Host {
            lab: LabHost::create(&base, name, HostKind::Sandbox).expect("create sandbox host"),
            bins: bins.clone(),
        }
    }

    /// Whether this host is an overlay of the real system.
    pub fn is_overlay(&self) -> bool {
        self.lab.kind() == HostKind::Overlay
    }

    /// The agent command for one run (`--once`), not yet started.
    pub fn agent_command(&self, server: &str, enroll: Option<&str>, extra: &[&str]) -> Command {
        let mut args: Vec<OsString> = vec!["--once".into()];
        args.extend(extra.iter().map(OsString::from));
        self.agent_daemon_command(server, enroll, &args)
    }

    /// Issue 10, point 6 (push): the agent command without `--once` (the daemon that
    /// runs until it is killed; start it in its own process group), not yet started.
    pub fn agent_daemon_command(
        &self,
        server: &str,
        enroll: Option<&str>,
        extra: &[OsString],
    ) -> Command {
        let mut args: Vec<OsString> = vec!["--server".into(), server.into()];
        match self.lab.root_dir() {
            Some(root) => {
                args.extend([
                    "--root".into(),
                    root.into(),
                    "--state".into(),
                    self.lab.dir().join("agent-state").into(),
                ]);
                for a in self.lab.dpkg_args() {
                    if !a.to_string_lossy().starts_with("--root=") {
                        let mut x = OsString::from("--dpkg-arg=");
                        x.push(a);
                        args.push(x);
                    }
                }
            }
            None => args.extend(["--state".into(), "/var/lib/patchday-agent".into()]),
        }
        if let Some(t) = enroll {
            args.extend(["--enroll-token".into(), t.into()]);
        }
        args.extend(extra.iter().cloned());
        let mut c = self.lab.command(&self.bins.agent, &args);
        c.env("RUST_LOG", "info");
        c
    }

    /// Runs the agent once; returns its output.
    pub fn agent(&self, server: &str, enroll: Option<&str>) -> Output {
        self.agent_command(server, enroll, &[])
            .output()
            .expect("run agent")
    }

    /// dpkg's version of a package inside the host.
    pub fn version(&self, pkg: &str) -> Option<String> {
        self.lab.dpkg_version(pkg).expect("dpkg-query in host")
    }

    /// A path inside the host as seen from outside (agent state etc.).
    pub fn state_file(&self, rel: &str) -> Vec<u8> {
        match self.lab.root_dir() {
            Some(_) => {
                std::fs::read(self.lab.dir().join("agent-state").join(rel)).unwrap_or_default()
            }
            None => self
                .lab
                .read_file(Path::new("/var/lib/patchday-agent").join(rel))
                .unwrap_or_default(),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // LabHost::destroy consumes; re-open by name to remove the directories.
        let dir = self.lab.dir().to_path_buf();
        if let (Some(base), Some(name)) = (dir.parent(), dir.file_name()) {
            if let Ok(h) = LabHost::open(base, &name.to_string_lossy()) {
                let _ = h.destroy();
            }
        }
    }
}

/// Serialises the tests of one binary that use lab hosts.
///
/// Concurrent overlay hosts on one machine once showed a lost-file flake (a marker
/// file written into one host was not seen by its next command while other hosts were
/// busy), and the kernel has logged "upperdir is in-use" during parallel runs, i.e. one
/// host mounted twice at once. Four later parallel runs passed, but until the double
/// mount is found, pipeline tests run one at a time (about a minute in all).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scratch directory on the root filesystem (overlay hosts cannot see a tmpfs /tmp).
pub fn scratch() -> tempfile::TempDir {
    std::fs::create_dir_all("/var/tmp/patchday-tests").unwrap();
    tempfile::Builder::new()
        .prefix("t")
        .tempdir_in("/var/tmp/patchday-tests")
        .unwrap()
}

// Issue 8, finding 8 (signed check-ins), for the tests of findings 8, 3, 4 and 10:
// one raw-HTTP client for what agents send, signed exactly as `patchday-agent` signs.

/// (status, body) of a `curl -w "\n%{http_code}"` run.
fn status_and_body(o: &Output) -> (u16, String) {
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

impl Server {
    /// `POST path` with these exact body bytes as JSON, a bearer token (or none) and,
    /// when `signed` is given, the agent's (sequence, signature) headers; returns
    /// (status, body). Sends whatever it is given: forged, replayed or unsigned bodies.
    pub fn http_post(
        &self,
        path: &str,
        token: Option<&str>,
        signed: Option<(u64, &str)>,
        body: &[u8],
    ) -> (u16, String) {
        self.http_post_with(path, token, signed, &[], body)
    }

    /// [`Server::http_post`] with extra headers (e.g. `Content-Encoding: zstd`).
    pub fn http_post_with(
        &self,
        path: &str,
        token: Option<&str>,
        signed: Option<(u64, &str)>,
        headers: &[&str],
        body: &[u8],
    ) -> (u16, String) {
        use patchday_trust::host_signature::{SEQUENCE_HEADER, SIGNATURE_HEADER};
        use std::io::Write;
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
            .args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                "@-",
            ]);
        for h in headers {
            c.arg("-H").arg(h);
        }
        let ca = self.data.join("tls/ca.pem");
        if ca.exists() {
            c.arg("--cacert").arg(ca);
        }
        if let Some(t) = token {
            c.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
        if let Some((sequence, signature)) = signed {
            c.arg("-H")
                .arg(format!("{SEQUENCE_HEADER}: {sequence}"))
                .arg("-H")
                .arg(format!("{SIGNATURE_HEADER}: {signature}"));
        }
        let mut child = c
            .arg(format!("{}{path}", self.url))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl");
        child.stdin.take().unwrap().write_all(body).unwrap();
        status_and_body(&child.wait_with_output().expect("curl"))
    }

    /// `POST /v1/agent/enroll` as the agent sends it: the enrolment token, the host
    /// name and the public half of the host's own key; returns (status, body).
    pub fn enrol_over_http(
        &self,
        token: &str,
        hostname: &str,
        key: &patchday_trust::host_signature::HostKey,
    ) -> (u16, String) {
        let body = serde_json::json!({
            "token": token,
            "hostname": hostname,
            "public_key": key.public_hex(),
        });
        self.http_post("/v1/agent/enroll", None, None, body.to_string().as_bytes())
    }
}

/// A host enrolled over raw HTTP with its own ed25519 key, which signs every body it
/// posts with the next sequence number, as `patchday-agent` does.
pub struct SigningHost {
    /// The host's tenant.
    pub tenant: String,
    /// The host's id.
    pub host: String,
    /// The host's bearer credential.
    pub credential: String,
    /// The host's private key, registered at enrolment.
    pub key: patchday_trust::host_signature::HostKey,
    /// The last sequence number this host signed.
    pub sequence: u64,
}

impl SigningHost {
    /// Enrols `hostname` with a new key; returns the host, or the refusal's
    /// (status, body).
    pub fn enrol(srv: &Server, token: &str, hostname: &str) -> Result<SigningHost, (u16, String)> {
        let key = patchday_trust::host_signature::HostKey::ephemeral().expect("host key");
        let (code, body) = srv.enrol_over_http(token, hostname, &key);
        if code != 200 {
            return Err((code, body));
        }
        let answer: serde_json::Value = serde_json::from_str(&body).expect("enrolment JSON");
        let field = |name: &str| {
            answer[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} in the enrolment answer {body}"))
                .to_string()
        };
        Ok(SigningHost {
            tenant: field("tenant"),
            host: field("host"),
            credential: field("credential"),
            key,
            sequence: 0,
        })
    }

    /// Signs `body` for `path` with the next sequence number and posts it with the
    /// host's credential; returns (status, body).
    pub fn post(&mut self, srv: &Server, path: &str, body: &[u8]) -> (u16, String) {
        self.post_as(srv, path, body, None)
    }

    /// Signs `body` as [`SigningHost::post`] does, but sends `wire` in its place with
    /// `headers` (a compressed body: the signature covers the uncompressed JSON).
    pub fn post_as(
        &mut self,
        srv: &Server,
        path: &str,
        body: &[u8],
        wire: Option<(&[&str], &[u8])>,
    ) -> (u16, String) {
        self.sequence += 1;
        let signature = self.key.sign_request(
            path.trim_start_matches('/'),
            &self.tenant,
            &self.host,
            self.sequence,
            body,
        );
        let (headers, bytes) = wire.unwrap_or((&[], body));
        srv.http_post_with(
            path,
            Some(&self.credential),
            Some((self.sequence, &signature)),
            headers,
            bytes,
        )
    }
}

// Issue 8 (server hardening): servers started under a wrapper (e.g. `prlimit`), with
// environment variables, whose log is kept in `dir/server.log`.
impl Server {
    /// Like [`Server::start_with`], run through `prefix` (a wrapper command and its
    /// arguments, may be empty) with `env`; the server's log goes to `dir/server.log`.
    pub fn start_logged(
        bins: &Bins,
        dir: &Path,
        catalog_root: &Path,
        extra: &[&str],
        prefix: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&bins.patchday);
                c
            }
            None => Command::new(&bins.patchday),
        };
        cmd.envs(env.iter().copied());
        Self::launch(
            bins,
            dir,
            catalog_root,
            extra,
            cmd,
            Some(&dir.join("server.log")),
        )
    }

    /// Waits for the server process to exit (e.g. at a failpoint); returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for server")
    }
}

// Issue 8 (after the merge): the world most CLI integration tests start from, once.

/// A catalog in `dir` holding update `id` made of `deb` (`catalog add-deb` with
/// `add_flags`, e.g. `["--emergency", "test"]`), asserting that it was added.
pub fn catalog_with(bins: &Bins, dir: &Path, id: &str, deb: &Path, add_flags: &[&str]) -> Catalog {
    let cat = Catalog::new(bins, dir);
    let o = cat.add_deb(id, deb, add_flags);
    assert!(o.status.success(), "add-deb {id} failed: {}", text(&o));
    cat
}

/// Pushes the catalog in `repo` to `srv` and creates tenant `acme` with group `web`.
pub fn acme_with_web(srv: &Server, repo: &Path) {
    srv.cli(&["catalog", "push", "--repo", repo.to_str().unwrap()]);
    srv.cli(&["tenant", "create", "acme"]);
    srv.cli(&["group", "create", "--tenant", "acme", "web"]);
}

/// A new enrolment token for tenant `acme` (`enroll-token create` with `flags`, e.g.
/// `["--unlimited"]`).
pub fn acme_enroll_token(srv: &Server, flags: &[&str]) -> String {
    let mut args = vec!["enroll-token", "create", "--tenant", "acme"];
    args.extend_from_slice(flags);
    srv.cli(&args).trim().to_string()
}

/// A catalog with one update, a server pinning it with the catalog pushed, tenant
/// `acme` with group `web`, and an enrolment token for `acme`.
pub struct AcmeWorld {
    /// The catalog (its keys and repository).
    pub cat: Catalog,
    /// The server.
    pub srv: Server,
    /// The enrolment token.
    pub enroll: String,
}

impl AcmeWorld {
    /// Builds it in `dir`: update `id` made of `deb` (see [`catalog_with`]), a server
    /// started with the flags `server_flags` makes from the catalog, and an enrolment
    /// token made with `token_flags` (see [`acme_enroll_token`]).
    pub fn start(
        bins: &Bins,
        dir: &Path,
        (id, deb, add_flags): (&str, &Path, &[&str]),
        server_flags: &dyn Fn(&Catalog) -> Vec<String>,
        token_flags: &[&str],
    ) -> AcmeWorld {
        let cat = catalog_with(bins, dir, id, deb, add_flags);
        let flags = server_flags(&cat);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let srv = Server::start_with(bins, dir, &cat.root(), &flags);
        acme_with_web(&srv, &cat.repo);
        let enroll = acme_enroll_token(&srv, token_flags);
        AcmeWorld { cat, srv, enroll }
    }
}

impl Server {
    /// The `host list --format json` row of tenant `acme`'s host `hostname`.
    pub fn acme_host(&self, hostname: &str) -> serde_json::Value {
        let hosts: Vec<serde_json::Value> = serde_json::from_str(
            &self.cli(&["host", "list", "--tenant", "acme", "--format", "json"]),
        )
        .expect("host list JSON");
        hosts
            .iter()
            .find(|h| h["hostname"] == hostname)
            .cloned()
            .unwrap_or_else(|| panic!("host {hostname} not enrolled in acme: {hosts:?}"))
    }

    /// The id of tenant `acme`'s host `hostname`.
    pub fn acme_host_id(&self, hostname: &str) -> String {
        let row = self.acme_host(hostname);
        row["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {row}"))
            .to_string()
    }
}

impl Host {
    /// Installs `deb`, enrols with tenant `acme`'s token `enroll` through `url`
    /// (asserting that it enrolled) and puts this host into group `web` on `srv`;
    /// returns its host id.
    pub fn enrol_into_web(&self, srv: &Server, url: &str, enroll: &str, deb: &Path) -> String {
        self.lab.install_deb(deb).unwrap();
        let o = self.agent(url, Some(enroll));
        assert!(o.status.success(), "enrol: {}", text(&o));
        let id = srv.acme_host_id(self.lab.name());
        srv.cli(&["host", "set-groups", "--tenant", "acme", &id, "web"]);
        id
    }
}

// Issue 9, point 4 (closure): what the host-state tests read, written once.

impl Server {
    /// The state and message of `update` on host `hostname` in the detail report
    /// (`("absent", rows)` when there is no such row).
    pub fn update_state(&self, hostname: &str, update: &str) -> (String, String) {
        let rows = self.report_rows();
        rows.iter()
            .find(|r| r["hostname"] == hostname && r["update"] == update)
            .map(|r| {
                (
                    r["state"].as_str().unwrap_or_default().to_string(),
                    r["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .unwrap_or_else(|| ("absent".into(), format!("{rows:?}")))
    }

    /// Host `hostname`'s row of `report --by host --format json`.
    pub fn host_report(&self, hostname: &str) -> serde_json::Value {
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&self.cli(&["report", "--by", "host", "--format", "json"]))
                .expect("report JSON");
        rows.into_iter()
            .find(|r| r["hostname"] == hostname)
            .unwrap_or_else(|| panic!("no report row for {hostname}"))
    }
}

impl Host {
    /// Runs a program in the host; returns (success, stdout + stderr).
    pub fn run_in(&self, program: &str, args: &[&str]) -> (bool, String) {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let o = self
            .lab
            .run(Path::new(program), &args)
            .expect("run in lab host");
        (o.status.success(), text(&o))
    }
}

/// A running `patchday-agent` daemon (its own process group, stdout and stderr in a log
/// file), killed with its children when dropped.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `h`'s agent daemon against `url` with `extra` flags, its log in `dir`.
    pub fn start(h: &Host, url: &str, dir: &Path, extra: &[&str]) -> Daemon {
        let extra: Vec<OsString> = extra.iter().map(OsString::from).collect();
        let log = dir.join(format!("daemon-{}.log", h.lab.name()));
        Daemon::spawn(h.agent_daemon_command(url, None, &extra), log)
    }

    /// Starts a daemon command the caller prepared (flags, environment), logging to `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Daemon {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .process_group(0)
            .stdout(out)
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    /// What the daemon printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls until the daemon's log contains `line`; panics after three minutes (a
    /// generous limit: nothing is asserted about how long it took).
    pub fn until_logged(&self, line: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        while !self.log().contains(line) {
            assert!(
                std::time::Instant::now() < deadline,
                "the agent never said {line:?}: {}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 250 ms until it holds; panics after five minutes (a hung rollout
/// fails the test, but nothing is asserted about how long it took).
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    panic!("gave up waiting for {what}");
}
