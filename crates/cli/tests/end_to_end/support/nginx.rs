//! Debian's nginx as a test's own process on 127.0.0.1 (never the system service): one
//! process (`master_process off`), its own prefix, pid, logs and temporary paths; the
//! configuration checked with `nginx -t` first; stopped when dropped. The web gate's
//! test (issue 14) and the replicas' load balancer (issue 12) use it.

use patchday_testkit::{text, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where Debian's package installs it (root's `PATH` has it, others' may not).
pub const NGINX: &str = "/usr/sbin/nginx";

/// A running nginx.
pub struct Nginx {
    child: Child,
    /// Its directory (`nginx.conf`, logs).
    pub prefix: PathBuf,
}

impl Nginx {
    /// Starts nginx in `dir/nginx` with `http` (the inside of the `http { }` block:
    /// upstreams, servers, log formats) and waits until `port` answers.
    pub fn start(dir: &Path, port: u16, http: &str) -> Nginx {
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("tmp")).unwrap();
        let p = prefix.display();
        let conf = format!(
            "worker_processes 1;
master_process off;
daemon off;
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{ worker_connections 1024; }}
http {{
  client_body_temp_path {p}/tmp/body;
  proxy_temp_path {p}/tmp/proxy;
  fastcgi_temp_path {p}/tmp/fastcgi;
  uwsgi_temp_path {p}/tmp/uwsgi;
  scgi_temp_path {p}/tmp/scgi;
{http}
}}
"
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let run = || {
            let mut c = Command::new(NGINX);
            c.arg("-e")
                .arg(prefix.join("error.log"))
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(&conf_path);
            c
        };
        let check = run().arg("-t").output().unwrap();
        assert!(check.status.success(), "nginx -t: {}", text(&check));
        let child = run()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut nginx = Nginx { child, prefix };
        wait_for("nginx to listen", || {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!(
                    "nginx exited ({status}): {}",
                    std::fs::read_to_string(nginx.prefix.join("error.log")).unwrap_or_default()
                );
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
