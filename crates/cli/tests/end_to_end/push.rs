//! Issue 10, point 6 (push), with the real binaries: an agent daemon holding
//! `/v1/agent/wait` installs an approval at once instead of at its next poll, a failed
//! run is retried with back-off instead of a whole interval, and the wait itself
//! (stale generation, wake on approve, 503 with Retry-After over the admission limit).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_lab::DebSpec;
use patchday_testkit::{scratch, AcmeWorld, Bins, Daemon, Host, Server, SigningHost};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// Generous: the point is that nobody waits the agent's hour, not how fast it is.
const LIMIT: Duration = Duration::from_secs(180);

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    srv: Server,
    root: PathBuf,
    enroll: String,
    old: PathBuf,
}

/// `PD-P-1` (`name` 1.0-1 → 1.0-2, the publisher's emergency lane, so it may be approved
/// at once), a server started with `flags`, tenant `acme` with group `web`.
fn world(name: &str, flags: &[&str]) -> World {
    let d = scratch();
    let dir = d.path().to_path_buf();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let old = patchday_lab::build_deb(
        &DebSpec::new(name, "1.0-1").changelog("1.0-1", "Initial release."),
        &pkgs,
    )
    .unwrap();
    let new = patchday_lab::build_deb(
        &DebSpec::new(name, "1.0-2")
            .changelog("1.0-2", "Fix CVE-2099-0610.")
            .changelog("1.0-1", "Initial release."),
        &pkgs,
    )
    .unwrap();
    let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
    let AcmeWorld { cat, srv, enroll } = AcmeWorld::start(
        &bins(),
        &dir,
        ("PD-P-1", &new, &["--emergency", "test", "--since", "1.0-1"]),
        &move |_| flags.clone(),
        &["--unlimited"],
    );
    World {
        _dir: d,
        dir,
        root: cat.root(),
        srv,
        enroll,
        old,
    }
}

/// Polls the server until `update` is installed on `hostname` (states come from the
/// dpkg inventory the agent reports), then stops the daemon and asks dpkg in the host
/// itself. Not before: a second mount of the host's overlay while the daemon has it
/// mounted would share its upper directory, which overlayfs does not allow.
fn until_installed(
    srv: &Server,
    h: &Host,
    d: Daemon,
    (update, pkg, version): (&str, &str, &str),
) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let (state, msg) = srv.update_state(h.lab.name(), update);
        if state == "installed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{update} was not installed in time (the agent's interval is an hour): {state} {msg}: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let log = d.log();
    drop(d);
    assert_eq!(h.version(pkg).as_deref(), Some(version), "{log}");
    log
}

#[test]
fn a_daemon_agent_installs_an_approval_at_once_not_at_its_next_poll() {
    let _serial = patchday_testkit::serial();
    let w = world("pd-push-a", &[]);
    let h = Host::new(&bins(), &w.dir, "push-a");
    h.enrol_into_web(&w.srv, &w.srv.url, &w.enroll, &w.old);
    let d = Daemon::start(&h, &w.srv.url, &w.dir, &["--interval", "3600"]);
    // Its first run finds nothing to do; then it waits at the server.
    d.until_logged("assigned 0 installed 0 failed 0");

    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-P-1"]);
    let log = until_installed(&w.srv, &h, d, ("PD-P-1", "pd-push-a", "1.0-2"));
    assert!(
        log.contains("woken by the server"),
        "the server's push woke it: {log}"
    );
}

#[test]
fn a_failed_run_is_retried_with_back_off_and_installs_after_the_server_returns() {
    let _serial = patchday_testkit::serial();
    let mut w = world("pd-push-b", &[]);
    let h = Host::new(&bins(), &w.dir, "push-b");
    h.enrol_into_web(&w.srv, &w.srv.url, &w.enroll, &w.old);
    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-P-1"]);
    // The server goes away (a crash, an upgrade) before the agent's run.
    w.srv.stop();
    let d = Daemon::start(
        &h,
        &w.srv.url,
        &w.dir,
        &["--interval", "3600", "--retry-seconds", "2"],
    );
    d.until_logged("run failed: trying again in");
    let root = w.root.clone();
    let dir = w.dir.clone();
    w.srv.start_again_on_same_port(&dir, &root, &[]);
    // The back-off (2 s doubling, jittered) brings it back long before its hour.
    let log = until_installed(&w.srv, &h, d, ("PD-P-1", "pd-push-b", "1.0-2"));
    assert!(log.contains("run failed: trying again in"), "{log}");
}

/// A signed `POST /v1/agent/wait` as the agent sends it; (status, Retry-After, body).
fn wait(srv: &Server, host: &mut SigningHost, since: u64) -> (u16, Option<u64>, Value) {
    let (status, retry, body) = wait_raw(srv, host, since, None);
    (
        status,
        retry,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

/// One signed wait with curl: status, Retry-After, the body as sent (what arrived within
/// `max_seconds`, when given: curl then gives up).
pub(crate) fn wait_raw(
    srv: &Server,
    host: &mut SigningHost,
    since: u64,
    max_seconds: Option<f64>,
) -> (u16, Option<u64>, String) {
    use patchday_trust::host_signature::{SEQUENCE_HEADER, SIGNATURE_HEADER};
    host.sequence += 1;
    let body = format!("{{\"since\":{since}}}");
    let signature = host.key.sign_request(
        "v1/agent/wait",
        &host.tenant,
        &host.host,
        host.sequence,
        body.as_bytes(),
    );
    let o = Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
        ])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", host.credential))
        .arg("-H")
        .arg(format!("{SEQUENCE_HEADER}: {}", host.sequence))
        .arg("-H")
        .arg(format!("{SIGNATURE_HEADER}: {signature}"))
        .args(["--data-binary", &body])
        // Cut off by a time limit, curl still shows what arrived (unbuffered).
        .args(
            max_seconds
                .map(|s| {
                    vec![
                        "--no-buffer".to_string(),
                        "--max-time".into(),
                        s.to_string(),
                    ]
                })
                .unwrap_or_default(),
        )
        .arg(format!("{}/v1/agent/wait", srv.url))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let retry = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("retry-after")
            .then(|| v.trim().parse().ok())
            .flatten()
    });
    (status, retry, body.to_string())
}

/// A held wait sends a newline every --heartbeat-seconds (so a proxy or load balancer
/// with a 60-second idle timeout keeps it open through a ten-minute hold), then its
/// answer: whitespace before JSON, which every agent reads as before.
#[test]
fn a_held_wait_sends_heartbeats_then_its_answer() {
    let w = world(
        "pd-push-d",
        &["--long-poll-seconds", "12", "--heartbeat-seconds", "5"],
    );
    let mut a = SigningHost::enrol(&w.srv, &w.enroll, "beat-a").unwrap();
    let (_, _, first) = wait(&w.srv, &mut a, 0);
    let g = first["generation"].as_u64().unwrap();
    let (code, _, raw) = wait_raw(&w.srv, &mut a, g, None);
    assert_eq!(code, 200, "{raw:?}");
    assert!(
        raw.starts_with("\n\n") && raw.trim_start().starts_with('{'),
        "two heartbeats in a 12 s hold, then the answer: {raw:?}"
    );
    let v: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        (v["wake"].clone(), v["generation"].as_u64()),
        (Value::Bool(false), Some(g))
    );
}

#[test]
fn the_wait_answers_a_stale_generation_at_once_wakes_on_approve_and_refuses_over_its_limit() {
    let w = world(
        "pd-push-c",
        &["--max-long-polls", "1", "--long-poll-seconds", "300"],
    );
    let mut a = SigningHost::enrol(&w.srv, &w.enroll, "wait-a").unwrap();
    let mut b = SigningHost::enrol(&w.srv, &w.enroll, "wait-b").unwrap();

    // Unsigned: refused like an unsigned check-in.
    let (code, _) = w.srv.http_post(
        "/v1/agent/wait",
        Some(&a.credential),
        None,
        b"{\"since\":0}",
    );
    assert!(code == 401 || code == 403, "unsigned wait answered {code}");

    // A stale generation (0: the first call) is answered at once, even with a 300 s hold.
    let (code, _, first) = wait(&w.srv, &mut a, 0);
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["wake"], true, "{first}");
    let g = first["generation"].as_u64().unwrap();
    assert!(g > 0, "{first}");
    let (_, _, stale) = wait(&w.srv, &mut a, g - 1);
    assert_eq!(
        (stale["wake"].clone(), stale["generation"].as_u64()),
        (Value::Bool(true), Some(g))
    );

    std::thread::scope(|s| {
        // A current generation is held...
        // (while another host's quick answer holds the place for a moment, it is
        // refused too: then it asks again).
        let held = s.spawn(|| loop {
            let r = wait(&w.srv, &mut a, g);
            if r.0 != 503 {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        });
        // ...taking the only place, so another host's wait is refused with a Retry-After.
        let deadline = Instant::now() + LIMIT;
        loop {
            let (code, retry, body) = wait(&w.srv, &mut b, 0);
            if code == 503 {
                let retry = retry.expect("a Retry-After header");
                assert!(retry > 0, "{retry}");
                assert_eq!(body["retry_after_seconds"].as_u64(), Some(retry), "{body}");
                assert_eq!(body["wake"], false, "{body}");
                break;
            }
            assert_eq!(code, 200, "{body}");
            if held.is_finished() {
                panic!("the wait was not held: {:?}", held.join().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "the held wait never took its place"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // An approval in the tenant wakes the held wait (its hold is 300 s).
        w.srv
            .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-P-1"]);
        let (code, _, woke) = held.join().unwrap();
        assert_eq!(code, 200, "{woke}");
        assert_eq!(woke["wake"], true, "{woke}");
        assert!(woke["generation"].as_u64().unwrap() > g, "{woke}");
    });
    // The place is free again.
    let (code, _, body) = wait(&w.srv, &mut b, 0);
    assert_eq!(code, 200, "{body}");
}
