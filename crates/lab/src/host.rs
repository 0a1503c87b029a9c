//! Throwaway Debian hosts: an overlay of `/` in a private mount namespace, or a `dpkg --root` tree.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::{Deserialize, Serialize};

use crate::process;
use crate::LabError;

/// Where hosts live unless the caller says otherwise: on the root file system, so an overlay of `/` sees it.
pub const DEFAULT_BASE: &str = "/var/tmp/patchday-lab";

/// Where `install_deb` puts packages inside an overlay host (bind-mounted from the host's inbox).
pub const INBOX_IN_HOST: &str = "/var/cache/patchday-lab";

const META_FILE: &str = "lab-host.json";

/// How a lab host is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostKind {
    /// A private mount namespace whose root is an overlay of `/`; real dpkg, scripts and triggers. Needs root.
    Overlay,
    /// A directory tree used with `dpkg --root`; no chroot, scripts run chrootless with `DPKG_ROOT`.
    Sandbox,
}

/// The best kind this machine supports, and why: Overlay when root and a trial overlay host works.
pub fn best_kind() -> (HostKind, String) {
    let uid = process::effective_uid();
    if uid != 0 {
        return (
            HostKind::Sandbox,
            format!("not root (uid {uid}), so no overlay mounts"),
        );
    }
    let base = Path::new(DEFAULT_BASE);
    // One name per probe: tests of one process probe from parallel threads, and a shared
    // name made one probe destroy another's (a flaky "no overlay mounts" under CI).
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("probe-{}-{n}", std::process::id());
    let probe = match LabHost::create(base, &name, HostKind::Overlay) {
        Ok(host) => host,
        Err(e) => {
            return (
                HostKind::Sandbox,
                format!("could not make a trial overlay host: {e}"),
            )
        }
    };
    let result = probe.run(Path::new("/bin/true"), &[]);
    let destroyed = probe.destroy();
    match (result, destroyed) {
        (Ok(out), Ok(())) if out.status.success() => (
            HostKind::Overlay,
            "running as root and a trial overlay of / worked".to_string(),
        ),
        (Ok(out), _) if !out.status.success() => (
            HostKind::Sandbox,
            format!("trial overlay mount failed: {}", process::tail(&out)),
        ),
        (Err(e), _) | (_, Err(e)) => (HostKind::Sandbox, format!("trial overlay host failed: {e}")),
        (Ok(_), Ok(())) => (HostKind::Sandbox, "trial overlay host failed".to_string()),
    }
}

/// What we keep on disk about a host, so `open` and `cleanup_stale` know what they look at.
#[derive(Debug, Serialize, Deserialize)]
struct HostMeta {
    name: String,
    kind: HostKind,
    /// The process that owns the host; `None` once `keep` was called.
    owner: Option<Owner>,
}

/// A process identity that survives pid reuse: pid plus start time in clock ticks since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Owner {
    pid: u32,
    start: u64,
}

impl Owner {
    fn current() -> Option<Owner> {
        let pid = std::process::id();
        Some(Owner {
            pid,
            start: process_start(pid)?,
        })
    }

    fn alive(self) -> bool {
        process_start(self.pid) == Some(self.start)
    }
}

/// Field 22 of `/proc/PID/stat`: when the process started.
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields after comm start at field 3; starttime is field 22.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// One throwaway Debian host. Its state (installed packages, files) persists across commands until `destroy`.
#[derive(Debug)]
pub struct LabHost {
    name: String,
    kind: HostKind,
    dir: PathBuf,
    /// `dir/root`: the dpkg root of a Sandbox (unused for Overlay).
    sandbox_root: PathBuf,
    binds: Vec<(PathBuf, PathBuf)>,
}

impl LabHost {
    /// Make a new host `base/name`; refuses when that directory exists already (see `open`).
    pub fn create(base: &Path, name: &str, kind: HostKind) -> Result<LabHost, LabError> {
        check_name(name)?;
        if kind == HostKind::Overlay {
            let uid = process::effective_uid();
            if uid != 0 {
                return Err(LabError::NeedsRoot { uid });
            }
        }
        fs::create_dir_all(base).map_err(|e| LabError::io("create directory", base, e))?;
        let dir = absolute(base)?.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(LabError::HostExists { dir })
            }
            Err(e) => return Err(LabError::io("create directory", &dir, e)),
        }
        let host = LabHost::at(name.to_string(), kind, dir);
        host.write_meta(Owner::current())?;
        match kind {
            HostKind::Overlay => host.init_overlay()?,
            HostKind::Sandbox => host.init_sandbox()?,
        }
        Ok(host)
    }

    /// Reopen an existing host `base/name` (made by `create`), taking ownership for `cleanup_stale`.
    pub fn open(base: &Path, name: &str) -> Result<LabHost, LabError> {
        check_name(name)?;
        let dir = absolute(base)?.join(name);
        let meta = read_meta(&dir)?;
        if meta.name != name {
            return Err(LabError::NotAHost {
                dir,
                reason: format!("its metadata names host {:?}", meta.name),
            });
        }
        if meta.kind == HostKind::Overlay {
            let uid = process::effective_uid();
            if uid != 0 {
                return Err(LabError::NeedsRoot { uid });
            }
        }
        let host = LabHost::at(meta.name, meta.kind, dir);
        if meta.owner.is_some() {
            host.write_meta(Owner::current())?;
        }
        Ok(host)
    }

    /// The host name (also its hostname inside an overlay host).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Overlay or Sandbox.
    pub fn kind(&self) -> HostKind {
        self.kind
    }

    /// The host's directory on the real machine.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// For a Sandbox, the directory to pass as `dpkg --root`; `None` for an Overlay host, whose root is `/` inside.
    pub fn root_dir(&self) -> Option<&Path> {
        match self.kind {
            HostKind::Overlay => None,
            HostKind::Sandbox => Some(self.sandbox_root_ref()),
        }
    }

    /// The options every dpkg call for this host needs before its action (empty for Overlay).
    pub fn dpkg_args(&self) -> Vec<OsString> {
        match self.kind {
            HostKind::Overlay => Vec::new(),
            HostKind::Sandbox => {
                let root = self.sandbox_root_ref();
                let mut log = OsString::from("--log=");
                log.push(root.join("var/log/dpkg.log"));
                let mut root_arg = OsString::from("--root=");
                root_arg.push(root);
                let mut args = vec![root_arg, OsString::from("--force-script-chrootless"), log];
                if process::effective_uid() != 0 {
                    // dpkg refuses to install as non-root unless told; files then belong to the caller.
                    args.push(OsString::from("--force-not-root"));
                }
                args
            }
        }
    }

    /// Make `outside` (a file or directory on the real machine) visible at `inside` in every later Overlay command.
    pub fn add_bind(&mut self, outside: &Path, inside: &Path) -> Result<(), LabError> {
        check_host_path(inside)?;
        self.binds
            .push((outside.to_path_buf(), inside.to_path_buf()));
        Ok(())
    }

    /// A command that runs `program` inside the host (Overlay) or directly (Sandbox; pass `dpkg_args()` yourself).
    ///
    /// For Overlay the command is `unshare -m -u --propagation private sh -c SCRIPT ...`: the script mounts the
    /// overlay, /proc, /dev, /sys, the host's /run and inbox, sets the hostname and `exec chroot`s, so the spawned
    /// process becomes `program` itself and its mounts die with it. Stop it with `Child::kill`.
    pub fn command(&self, program: &Path, args: &[OsString]) -> Command {
        match self.kind {
            HostKind::Sandbox => {
                let mut cmd = Command::new(program);
                cmd.args(args);
                cmd
            }
            HostKind::Overlay => {
                let mut binds = self.binds.clone();
                if !visible_in_overlay(program) {
                    binds.push((program.to_path_buf(), program.to_path_buf()));
                }
                let mut cmd = Command::new("unshare");
                cmd.args([
                    "-m",
                    "-u",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    OVERLAY_SCRIPT,
                    "patchday-lab",
                ]);
                cmd.arg(&self.dir)
                    .arg(&self.name)
                    .arg(binds.len().to_string());
                for (outside, inside) in &binds {
                    cmd.arg(outside).arg(inside);
                }
                cmd.arg(program).args(args);
                cmd
            }
        }
    }

    /// Run `program` in the host and wait, capturing output; a non-zero exit is not an error here.
    pub fn run(&self, program: &Path, args: &[OsString]) -> Result<Output, LabError> {
        process::output(&mut self.command(program, args))
    }

    /// The installed version of `package` in this host, if dpkg says "install ok installed".
    pub fn dpkg_version(&self, package: &str) -> Result<Option<String>, LabError> {
        let mut args = self.dpkg_query_root_args();
        args.extend(["-W", "-f", "${Status}\t${Version}", "--", package].map(OsString::from));
        let out = self.run(Path::new("dpkg-query"), &args)?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            // dpkg-query exits 1 for "no packages found matching"; anything else is a real failure.
            if out.status.code() == Some(1) && text.trim().is_empty() {
                return Ok(None);
            }
            return Err(process::failed(
                format!("dpkg-query for {package} in host {}", self.name),
                &out,
            ));
        }
        Ok(text
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .find(|(status, _)| *status == "install ok installed")
            .map(|(_, version)| version.to_string()))
    }

    /// Install a .deb with `dpkg -i` inside the host; fails with dpkg's own message.
    pub fn install_deb(&self, deb: &Path) -> Result<(), LabError> {
        let what = || format!("dpkg -i {} in lab host {}", deb.display(), self.name);
        match self.kind {
            HostKind::Sandbox => {
                let mut args = self.dpkg_args();
                args.push("-i".into());
                args.push(deb.into());
                let mut cmd = self.command(Path::new("dpkg"), &args);
                cmd.env("DEBIAN_FRONTEND", "noninteractive");
                process::checked(&mut cmd, what)?;
            }
            HostKind::Overlay => {
                let file_name = deb.file_name().ok_or_else(|| LabError::InvalidPath {
                    path: deb.to_path_buf(),
                })?;
                let staged = self.dir.join("inbox").join(file_name);
                fs::copy(deb, &staged)
                    .map_err(|e| LabError::io("copy package into host inbox", &staged, e))?;
                let inside = Path::new(INBOX_IN_HOST).join(file_name);
                let mut cmd = self.command(Path::new("dpkg"), &["-i".into(), inside.into()]);
                cmd.env("DEBIAN_FRONTEND", "noninteractive");
                let result = process::checked(&mut cmd, what);
                // The copy only served this install; a leftover is harmless.
                let _ = fs::remove_file(&staged);
                result?;
            }
        }
        Ok(())
    }

    /// Read a file as the host sees it (`path` is absolute inside the host).
    pub fn read_file(&self, path: impl AsRef<Path>) -> Result<Vec<u8>, LabError> {
        let path = path.as_ref();
        check_host_path(path)?;
        match self.kind {
            HostKind::Sandbox => {
                let real = self.sandbox_path(path);
                fs::read(&real).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => self.missing(path),
                    _ => LabError::io("read", real, e),
                })
            }
            HostKind::Overlay => {
                let out = self.run(
                    Path::new("/bin/sh"),
                    &[
                        "-c".into(),
                        r#"test -f "$1" || exit 3; exec cat -- "$1""#.into(),
                        "sh".into(),
                        path.into(),
                    ],
                )?;
                match out.status.code() {
                    Some(0) => Ok(out.stdout),
                    Some(3) => Err(self.missing(path)),
                    _ => Err(process::failed(
                        format!("reading {} in host {}", path.display(), self.name),
                        &out,
                    )),
                }
            }
        }
    }

    /// Whether a file or directory exists as the host sees it.
    pub fn file_exists(&self, path: impl AsRef<Path>) -> Result<bool, LabError> {
        let path = path.as_ref();
        check_host_path(path)?;
        match self.kind {
            HostKind::Sandbox => Ok(fs::symlink_metadata(self.sandbox_path(path)).is_ok()),
            HostKind::Overlay => {
                let out = self.run(
                    Path::new("/bin/sh"),
                    &[
                        "-c".into(),
                        r#"test -e "$1""#.into(),
                        "sh".into(),
                        path.into(),
                    ],
                )?;
                Ok(out.status.success())
            }
        }
    }

    /// Write (create or replace) a file inside the host, making parent directories as needed.
    pub fn write_file(&self, path: impl AsRef<Path>, contents: &[u8]) -> Result<(), LabError> {
        let path = path.as_ref();
        check_host_path(path)?;
        match self.kind {
            HostKind::Sandbox => {
                let real = self.sandbox_path(path);
                if let Some(parent) = real.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|e| LabError::io("create directory", parent, e))?;
                }
                fs::write(&real, contents).map_err(|e| LabError::io("write", real, e))
            }
            HostKind::Overlay => {
                let mut cmd = self.command(
                    Path::new("/bin/sh"),
                    &[
                        "-c".into(),
                        r#"mkdir -p "$(dirname "$1")" && cat > "$1""#.into(),
                        "sh".into(),
                        path.into(),
                    ],
                );
                let what = || format!("writing {} in host {}", path.display(), self.name);
                let mut child = cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|source| LabError::Spawn {
                        program: "unshare".into(),
                        source,
                    })?;
                let written = child
                    .stdin
                    .take()
                    .map(|mut stdin| stdin.write_all(contents));
                let out = child.wait_with_output().map_err(|source| LabError::Spawn {
                    program: "unshare".into(),
                    source,
                })?;
                if !out.status.success() {
                    return Err(process::failed(what(), &out));
                }
                match written {
                    Some(Ok(())) => Ok(()),
                    Some(Err(e)) => Err(LabError::io("write", path, e)),
                    None => Err(LabError::CommandFailed {
                        what: what(),
                        status: "no stdin".into(),
                        detail: String::new(),
                    }),
                }
            }
        }
    }

    /// Simulate a reboot: empty the host's /run (so /run/reboot-required goes away), as a real boot would.
    pub fn reboot(&self) -> Result<(), LabError> {
        let run = match self.kind {
            HostKind::Overlay => self.dir.join("run"),
            HostKind::Sandbox => self.sandbox_path(Path::new("/run")),
        };
        remove_tree(&run)?;
        make_run_dir(&run)
    }

    /// Mark the host as kept: `cleanup_stale` will leave it alone after this process exits.
    pub fn keep(&self) -> Result<(), LabError> {
        self.write_meta(None)
    }

    /// Kill every process still running inside this overlay host (a killed agent's
    /// orphaned maintainer scripts, say) and wait until they are gone, so that the next
    /// command does not mount the same upper directory twice. Returns how many were
    /// killed; a sandbox host has none of its own.
    pub fn kill_all(&self) -> Result<usize, LabError> {
        if self.kind != HostKind::Overlay {
            return Ok(0);
        }
        let merged = self.dir.join("merged");
        let inside = || -> Vec<String> {
            fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let pid = e.file_name().to_string_lossy().into_owned();
                    let root = fs::read_link(e.path().join("root")).ok()?;
                    (pid.bytes().all(|b| b.is_ascii_digit()) && root == merged).then_some(pid)
                })
                .collect()
        };
        let first = inside();
        for _ in 0..50 {
            let left = inside();
            if left.is_empty() {
                return Ok(first.len());
            }
            let _ = Command::new("kill").arg("-KILL").args(&left).status();
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(LabError::CommandFailed {
            what: format!("killing the processes of host {}", self.name),
            status: "still running after 5 s".into(),
            detail: inside().join(" "),
        })
    }

    /// Remove the host and everything installed in it.
    pub fn destroy(self) -> Result<(), LabError> {
        remove_host_dir(&self.dir)
    }

    fn missing(&self, path: &Path) -> LabError {
        LabError::FileMissing {
            host: self.name.clone(),
            path: path.to_path_buf(),
        }
    }

    fn at(name: String, kind: HostKind, dir: PathBuf) -> LabHost {
        let sandbox_root = dir.join("root");
        LabHost {
            name,
            kind,
            dir,
            sandbox_root,
            binds: Vec::new(),
        }
    }

    fn sandbox_root_ref(&self) -> &Path {
        &self.sandbox_root
    }

    fn sandbox_path(&self, inside: &Path) -> PathBuf {
        let rel = inside.strip_prefix("/").unwrap_or(inside);
        self.sandbox_root_ref().join(rel)
    }

    fn dpkg_query_root_args(&self) -> Vec<OsString> {
        match self.kind {
            HostKind::Overlay => Vec::new(),
            HostKind::Sandbox => {
                let mut root = OsString::from("--root=");
                root.push(self.sandbox_root_ref());
                vec![root]
            }
        }
    }

    fn write_meta(&self, owner: Option<Owner>) -> Result<(), LabError> {
        let meta = HostMeta {
            name: self.name.clone(),
            kind: self.kind,
            owner,
        };
        let path = self.dir.join(META_FILE);
        let json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| LabError::io("encode", &path, std::io::Error::other(e)))?;
        let tmp = self.dir.join(format!("{META_FILE}.tmp"));
        fs::write(&tmp, json).map_err(|e| LabError::io("write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| LabError::io("rename", &path, e))
    }

    fn init_overlay(&self) -> Result<(), LabError> {
        for sub in ["upper", "work", "merged", "inbox"] {
            let p = self.dir.join(sub);
            fs::create_dir(&p).map_err(|e| LabError::io("create directory", &p, e))?;
        }
        make_run_dir(&self.dir.join("run"))?;
        // The upper dir is not mounted yet, so writing into it directly is safe.
        let etc = self.dir.join("upper/etc");
        fs::create_dir(&etc).map_err(|e| LabError::io("create directory", &etc, e))?;
        copy_mode("/etc", &etc)?;
        let hostname = etc.join("hostname");
        fs::write(&hostname, format!("{}\n", self.name))
            .map_err(|e| LabError::io("write", hostname, e))
    }

    fn init_sandbox(&self) -> Result<(), LabError> {
        let root = self.sandbox_root.clone();
        let dpkg = root.join("var/lib/dpkg");
        for sub in ["info", "updates", "triggers", "alternatives", "parts"] {
            let p = dpkg.join(sub);
            fs::create_dir_all(&p).map_err(|e| LabError::io("create directory", &p, e))?;
        }
        for sub in ["var/log", "var/cache", "etc", "tmp", "usr/share/doc"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(|e| LabError::io("create directory", &p, e))?;
        }
        for file in ["status", "available"] {
            let p = dpkg.join(file);
            fs::write(&p, b"").map_err(|e| LabError::io("write", &p, e))?;
        }
        let hostname = root.join("etc/hostname");
        fs::write(&hostname, format!("{}\n", self.name))
            .map_err(|e| LabError::io("write", hostname, e))?;
        make_run_dir(&root.join("run"))
    }
}

/// Runs as `sh -c SCRIPT patchday-lab DIR NAME NBINDS [OUTSIDE INSIDE]... PROGRAM ARGS...` in a fresh,
/// private mount and UTS namespace. Every mount below dies with the namespace, i.e. with the program.
const OVERLAY_SCRIPT: &str = r#"set -e
export PATH="$PATH:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
d=$1; name=$2; n=$3; shift 3
m="$d/merged"
mount -t overlay "patchday-lab-$name" -o "lowerdir=/,upperdir=$d/upper,workdir=$d/work" "$m"
mount -t proc -o nosuid,nodev,noexec proc "$m/proc"
mount --rbind /dev "$m/dev"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$m/sys" 2>/dev/null || mount --rbind /sys "$m/sys"
mount --bind "$d/run" "$m/run"
mkdir -p "$m/var/cache/patchday-lab"
mount --bind "$d/inbox" "$m/var/cache/patchday-lab"
while [ "$n" -gt 0 ]; do
  src=$1; dst="$m$2"; shift 2; n=$((n - 1))
  if [ -d "$src" ]; then mkdir -p "$dst"; else mkdir -p "$(dirname "$dst")"; [ -e "$dst" ] || : > "$dst"; fi
  mount --bind "$src" "$dst"
done
printf '%s' "$name" > /proc/sys/kernel/hostname
c=$(command -v chroot)
exec "$c" "$m" "$@"
"#;

/// Whether `path` is on the root file system, i.e. visible through an overlay of `/` (submounts are not).
fn visible_in_overlay(path: &Path) -> bool {
    match (fs::metadata(path), fs::metadata("/")) {
        (Ok(p), Ok(root)) => p.dev() == root.dev(),
        // A relative name (looked up in PATH inside) or a missing file: nothing to bind.
        _ => true,
    }
}

/// The overlay script runs mounts and chroot with these paths, so they must not depend on the cwd.
fn absolute(path: &Path) -> Result<PathBuf, LabError> {
    std::path::absolute(path).map_err(|e| LabError::io("resolve", path, e))
}

fn check_name(name: &str) -> Result<(), LabError> {
    let reason = if name.is_empty() || name.len() > 63 {
        Some("use 1 to 63 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("use only a-z, 0-9 and '-' (it becomes a hostname and a directory name)")
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("do not start or end with '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LabError::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

fn check_host_path(path: &Path) -> Result<(), LabError> {
    let ok = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidPath {
            path: path.to_path_buf(),
        })
    }
}

fn read_meta(dir: &Path) -> Result<HostMeta, LabError> {
    let path = dir.join(META_FILE);
    let bytes = fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LabError::NotAHost {
            dir: dir.to_path_buf(),
            reason: format!("no {META_FILE}"),
        },
        _ => LabError::io("read", &path, e),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| LabError::NotAHost {
        dir: dir.to_path_buf(),
        reason: format!("unreadable {META_FILE}: {e}"),
    })
}

fn copy_mode(from: impl AsRef<Path>, to: &Path) -> Result<(), LabError> {
    let from = from.as_ref();
    let perms = fs::metadata(from)
        .map_err(|e| LabError::io("stat", from, e))?
        .permissions();
    fs::set_permissions(to, perms).map_err(|e| LabError::io("set permissions of", to, e))
}

/// A /run like a fresh boot's: the directory plus /run/lock (which /var/lock points at).
fn make_run_dir(run: &Path) -> Result<(), LabError> {
    let lock = run.join("lock");
    fs::create_dir_all(&lock).map_err(|e| LabError::io("create directory", &lock, e))?;
    fs::set_permissions(run, fs::Permissions::from_mode(0o755))
        .map_err(|e| LabError::io("set permissions of", run, e))
}

fn remove_tree(path: &Path) -> Result<(), LabError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LabError::io("remove", path, e)),
    }
}

/// Mount points at or below `dir` in this process's mount namespace.
fn mounts_below(dir: &Path) -> Vec<String> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|mount| Path::new(mount).starts_with(dir))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, b| acc.wrapping_mul(8).wrapping_add(b - b'0')),
                );
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Remove a host directory, but only a real lab host with nothing mounted inside it.
fn remove_host_dir(dir: &Path) -> Result<(), LabError> {
    let dir = fs::canonicalize(dir).map_err(|e| LabError::io("resolve", dir, e))?;
    read_meta(&dir)?;
    // remove_dir_all descends into mount points; a stray mount of / at merged/ would be a disaster.
    if let Some(mount) = mounts_below(&dir).into_iter().next() {
        return Err(LabError::StillMounted { dir, mount });
    }
    remove_tree(&dir)
}

/// Remove host directories under `base` whose owning process has exited (e.g. a killed test run); returns their names.
///
/// Hosts marked with `keep` and directories that are not lab hosts are left alone; an empty directory
/// (a `create` interrupted before it wrote its metadata) is removed.
pub fn cleanup_stale(base: &Path) -> Result<Vec<String>, LabError> {
    let entries = match fs::read_dir(base) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::io("list", base, e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LabError::io("list", base, e))?;
        let dir = entry.path();
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        match read_meta(&dir) {
            Ok(HostMeta {
                owner: Some(owner), ..
            }) if !owner.alive() => {
                remove_host_dir(&dir)?;
                removed.push(name);
            }
            Ok(_) => {}
            Err(LabError::NotAHost { .. }) => {
                if fs::remove_dir(&dir).is_ok() {
                    removed.push(name);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("web-1").is_ok());
        assert!(check_name("Web").is_err());
        assert!(check_name("-a").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn host_paths_are_checked() {
        assert!(check_host_path(Path::new("/etc/x")).is_ok());
        assert!(check_host_path(Path::new("etc/x")).is_err());
        assert!(check_host_path(Path::new("/etc/../x")).is_err());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn this_process_is_alive_and_has_a_start_time() {
        let me = Owner::current().expect("own start time");
        assert!(me.alive());
        assert!(!Owner {
            pid: me.pid,
            start: me.start + 1
        }
        .alive());
    }
}

// ---- archive (issue 9, real-archive demo): a whole host's packages and dpkg's health ----

/// What dpkg and apt say about a host's package database after an install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpkgHealth {
    /// `dpkg --audit`'s complaints (empty: none).
    pub audit: String,
    /// `apt-get check`'s complaint when it failed (`None`: every dependency is met). Run in
    /// overlay hosts only: a sandbox has no apt configuration of its own.
    pub apt_check: Option<String>,
}

impl DpkgHealth {
    /// No half-installed or unconfigured package, and no unmet dependency.
    pub fn is_clean(&self) -> bool {
        self.audit.trim().is_empty() && self.apt_check.is_none()
    }
}

impl LabHost {
    /// Every installed package as `name:architecture` (`all` for architecture-independent
    /// ones) and its version, as dpkg-query lists those "install ok installed".
    pub fn installed_packages(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, LabError> {
        let mut args = self.dpkg_query_root_args();
        args.extend(
            [
                "-W",
                "-f",
                "${Status}\t${Package}:${Architecture}\t${Version}\n",
            ]
            .map(OsString::from),
        );
        let out = self.run(Path::new("dpkg-query"), &args)?;
        if !out.status.success() {
            return Err(process::failed(
                format!("dpkg-query -W in host {}", self.name),
                &out,
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                match (f.next(), f.next(), f.next()) {
                    (Some("install ok installed"), Some(p), Some(v)) => {
                        Some((p.to_owned(), v.to_owned()))
                    }
                    _ => None,
                }
            })
            .collect())
    }

    /// `dpkg --audit` and, in an overlay host, `apt-get check` (unmet dependencies).
    pub fn dpkg_health(&self) -> Result<DpkgHealth, LabError> {
        let mut args = self.dpkg_args();
        args.push("--audit".into());
        let out = self.run(Path::new("dpkg"), &args)?;
        let audit = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            if out.status.success() {
                String::new()
            } else {
                String::from_utf8_lossy(&out.stderr).into_owned()
            }
        );
        let apt_check = match self.kind {
            HostKind::Sandbox => None,
            HostKind::Overlay => {
                let out = self.run(Path::new("apt-get"), &["-q".into(), "check".into()])?;
                (!out.status.success()).then(|| process::tail(&out))
            }
        };
        Ok(DpkgHealth { audit, apt_check })
    }
}
