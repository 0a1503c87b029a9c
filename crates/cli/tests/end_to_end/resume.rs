//! Issue 12, point 4: a catalog push cut off mid-way is resumed, not started again. A
//! proxy on 127.0.0.1 lets a little more than half of the upload through and then drops
//! the connection; the server keeps the complete payloads it got (each checked against
//! the digest its name carries), and the next push sends only the rest. Real server,
//! CLI and packages.

use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, Bins, Catalog, Server};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// Forwards one connection to `upstream`, passing at most `limit` bytes of the request,
/// then closing both ends. Returns the proxy's URL.
fn cutting_proxy(upstream: &str, limit: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_string();
    std::thread::spawn(move || {
        let Ok((mut client, _)) = listener.accept() else {
            return;
        };
        let mut server = TcpStream::connect(&upstream).unwrap();
        let mut back = server.try_clone().unwrap();
        let mut client_out = client.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut back, &mut client_out);
        });
        let mut sent = 0;
        let mut buf = [0u8; 64 << 10];
        while sent < limit {
            let n = match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n.min(limit - sent),
            };
            if server.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n;
        }
        let _ = server.shutdown(Shutdown::Both);
        let _ = client.shutdown(Shutdown::Both);
    });
    url
}

/// Pseudo-random bytes (incompressible, so the upload's size is the files' size).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// "K of M target files uploaded" from the push's output.
fn uploaded(out: &str) -> (usize, usize) {
    let (_, rest) = out
        .split_once(" payloads (")
        .unwrap_or_else(|| panic!("{out}"));
    let mut words = rest.split_whitespace();
    let k = words.next().unwrap().parse().unwrap();
    assert_eq!(words.next(), Some("of"), "{out}");
    let m = words.next().unwrap().parse().unwrap();
    (k, m)
}

#[test]
fn a_push_cut_off_mid_way_is_resumed_and_sends_only_what_the_server_lacks() {
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let cat = Catalog::new(&b, dir);
    for i in 0..4u64 {
        let name = format!("pd-resume{i}");
        let deb = patchday_lab::build_deb(
            &DebSpec::new(&name, "1.0-1").file(
                format!("/usr/share/{name}/blob"),
                noise(i + 7, 1 << 20),
                0o644,
            ),
            &pkgs,
        )
        .unwrap();
        let o = cat.add_deb(&format!("PD-RS-{i}"), &deb, &["--emergency", "test"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let srv = Server::start_with(&b, dir, &cat.root(), &[]);
    let repo = cat.repo.to_str().unwrap().to_string();

    // Cut off after a little more than half of the ~4 MiB upload.
    let proxy = cutting_proxy(&srv.url, 2_600_000);
    let mut via_proxy = std::process::Command::new(&b.patchday);
    via_proxy
        .args(["catalog", "push", "--repo", &repo])
        .env("PATCHDAY_SERVER", &proxy)
        .env("PATCHDAY_TOKEN", &srv.admin)
        .env("HOME", "/nonexistent");
    let cut = via_proxy.output().unwrap();
    assert!(
        !cut.status.success(),
        "the cut-off push failed: {}",
        text(&cut)
    );
    // The server kept what arrived whole (it salvages after the connection dropped).
    let kept = srv.data.join("catalog/resume");
    for _ in 0..100 {
        if std::fs::read_dir(&kept).map(|d| d.count()).unwrap_or(0) > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The salvage is done when it dropped the upload's directory (until then it may
    // still be keeping files, which the next push would then send again).
    let incoming = srv.data.join("catalog/incoming");
    for _ in 0..600 {
        if std::fs::read_dir(&incoming).map(|d| d.count()).unwrap_or(0) == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let kept_files = std::fs::read_dir(&kept).map(|d| d.count()).unwrap_or(0);
    assert!(kept_files >= 1, "nothing was kept from the cut-off push");

    // The next push sends only what the server lacks, and the catalog is whole.
    let out = srv.cli(&["catalog", "push", "--repo", &repo]);
    let (sent, targets) = uploaded(&out);
    assert!(
        sent + kept_files <= targets && sent < targets,
        "{kept_files} kept, yet the push sent {sent} of {targets}: {out}"
    );
    let status = srv.cli(&["catalog", "status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["payloads"], 4, "{status}");
    // Taken into the content store, the kept files are gone from where they waited.
    assert_eq!(std::fs::read_dir(&kept).map(|d| d.count()).unwrap_or(0), 0);
    // And everything the catalog lists is intact.
    let o = std::process::Command::new(&b.patchday)
        .args(["server", "scrub", "--data", srv.data.to_str().unwrap()])
        .args(&srv.content_args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}
