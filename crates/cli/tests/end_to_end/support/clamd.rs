//! A throwaway clamd from Debian's clamav-daemon with the tests' own signatures (public
//! signature feeds are unreachable here, as on an air-gapped site): EICAR by a hash
//! signature and the milter's test sample by a body signature. Used by the milter's and
//! the folder scan's tests.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use patchday_milter::samples;

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// clamd with the test's own signatures, in the foreground, on a socket in `dir`.
pub struct Clamd {
    child: Child,
    /// Its socket.
    pub socket: PathBuf,
    conf: PathBuf,
}

impl Clamd {
    fn write_config(dir: &Path) -> (PathBuf, PathBuf) {
        let db = dir.join("clamav-db");
        std::fs::create_dir_all(&db).unwrap();
        // A hash signature of EICAR (md5:size:name) and a body signature of the test sample
        // (name:target:offset:hex), as an air-gapped customer would load its own.
        let eicar = samples::eicar();
        let md5 = Command::new("md5sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(&eicar)?;
                c.wait_with_output()
            })
            .unwrap();
        let md5 = String::from_utf8(md5.stdout).unwrap();
        let md5 = md5.split_whitespace().next().unwrap();
        std::fs::write(
            db.join("patchday-test.hdb"),
            format!("{md5}:{}:Patchday.Test.EICAR\n", eicar.len()),
        )
        .unwrap();
        std::fs::write(
            db.join("patchday-test.ndb"),
            format!(
                "Patchday.Test.Sample:0:*:{}\n",
                hex::encode(samples::TEST_SAMPLE_MARKER)
            ),
        )
        .unwrap();
        let socket = dir.join("clamd.sock");
        let conf = dir.join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "LocalSocket {}\nForeground yes\nDatabaseDirectory {}\nLogFile {}\n\
                 TemporaryDirectory {}\nPidFile {}\nUser root\n",
                socket.display(),
                db.display(),
                dir.join("clamd.log").display(),
                dir.display(),
                dir.join("clamd.pid").display(),
            ),
        )
        .unwrap();
        (conf, socket)
    }

    /// Starts clamd with the signatures in `dir/clamav-db` (written here).
    pub fn start(dir: &Path) -> Clamd {
        let (conf, socket) = Clamd::write_config(dir);
        Clamd::start_with(conf, socket)
    }

    /// Starts clamd again on a configuration [`Clamd::stop`] handed back.
    pub fn start_with(conf: PathBuf, socket: PathBuf) -> Clamd {
        let _ = std::fs::remove_file(&socket);
        let child = Command::new("/usr/sbin/clamd")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let clamd = Clamd {
            child,
            socket,
            conf,
        };
        wait_for("clamd to answer PING", || clamd.pong());
        clamd
    }

    /// Whether it answers PING.
    pub fn pong(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(&self.socket) else {
            return false;
        };
        let mut answer = String::new();
        s.write_all(b"PING\n").is_ok()
            && BufReader::new(s).read_line(&mut answer).is_ok()
            && answer.trim() == "PONG"
    }

    /// Stops clamd; its configuration and socket, to start it again.
    pub fn stop(mut self) -> (PathBuf, PathBuf) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        (self.conf.clone(), self.socket.clone())
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
