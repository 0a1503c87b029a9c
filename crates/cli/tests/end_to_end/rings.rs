//! Issue 10, points 2 and 3, with the real binaries, real agents and real dpkg: rings
//! advance on evidence (the pilot installs, the early ring gets it by its rule), a
//! failing postinst halts the update before the next ring and the webhook receives a
//! correctly signed body, resume, and the operator's emergency lane still honours the
//! halt. The server's rollout looks every second; the tests poll for outcomes and
//! assert nothing about time. Issue 10, point 7: a superseded update declines itself, its
//! payload leaves the content store, and K publish cycles leave one payload, not K.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use hmac::{Hmac, Mac};
use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, wait_for, Bins, Catalog, Host, Server};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc;

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

const SECRET: &str = "webhook-secret-for-the-rings-test";

/// A request the test's webhook receiver got: its headers (lower-case names), body, and
/// the status it was answered with.
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A tiny HTTP receiver on 127.0.0.1: every POST goes into the channel, answered 200
/// (the first `fail_first` of each delivery 503: issue 11, point 5's retries).
fn webhook_receiver(fail_first: usize) -> (String, mpsc::Receiver<Received>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tries: std::collections::HashMap<String, usize> = Default::default();
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            r.read_line(&mut line).unwrap(); // request line
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((n, v)) = l.split_once(':') {
                    headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let delivery = headers
                .iter()
                .find(|(n, _)| n == "x-patchday-delivery")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let n = tries.entry(delivery).or_default();
            *n += 1;
            let status = if *n <= fail_first { 503 } else { 200 };
            let _ = s.write_all(
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
            if tx
                .send(Received {
                    headers,
                    body,
                    status,
                })
                .is_err()
            {
                return;
            }
        }
    });
    (url, rx)
}

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    srv: Server,
    /// pilot and early enrolment tokens.
    tokens: [String; 2],
    /// Old .debs the hosts start with.
    old: Vec<PathBuf>,
    hook: mpsc::Receiver<Received>,
}

/// Emergency updates `PD-R-GOOD` (pd-ring-a 1.0-1 → 1.0-2) and `PD-R-BAD`
/// (pd-ring-b 1.0-2, whose postinst fails); tenant `acme` with groups `pilot` and
/// `early`; a server whose rollout looks every second and announces halts to the
/// test's receiver.
fn world() -> World {
    world_with(&[
        ("PD-R-GOOD", "pd-ring-a", "1.0-2", false, &[]),
        ("PD-R-BAD", "pd-ring-b", "1.0-2", true, &[]),
    ])
}

/// An emergency update: id, package, version, whether its postinst fails, more
/// `catalog add-deb` flags.
type Spec<'a> = (&'a str, &'a str, &'a str, bool, &'a [&'a str]);

/// Like [`world`], with these updates (each package starts at 1.0-1 on every host).
fn world_with(updates: &[Spec]) -> World {
    world_notifying(updates, 0, &[])
}

/// Like [`world_with`], with a webhook that fails each delivery's first `fail_first`
/// tries, and more server flags (issue 11, point 5).
fn world_notifying(updates: &[Spec], fail_first: usize, more_flags: &[String]) -> World {
    let d = scratch();
    let dir = d.path().to_path_buf();
    let b = bins();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let cat = Catalog::new(&b, &dir);
    let mut old = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (id, name, version, fail, flags) in updates {
        if seen.insert(*name) {
            let o = DebSpec::new(*name, "1.0-1").changelog("1.0-1", "Initial release.");
            old.push(patchday_lab::build_deb(&o, &pkgs).unwrap());
        }
        let n = DebSpec::new(*name, *version)
            .changelog(*version, "Fix CVE-2099-1001.")
            .changelog("1.0-1", "Initial release.")
            .fail_postinst(*fail);
        let new = patchday_lab::build_deb(&n, &pkgs).unwrap();
        let mut args = vec!["--emergency", "test", "--since", "1.0-1"];
        args.extend_from_slice(flags);
        let out = cat.add_deb(id, &new, &args);
        assert!(out.status.success(), "{}", text(&out));
    }
    let (url, hook) = webhook_receiver(fail_first);
    let secret = dir.join("webhook-secret");
    std::fs::write(&secret, SECRET).unwrap();
    // Issue 11, point 5: secrets are refused unless only their owner can read them.
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut flags: Vec<&str> = vec![
        "--rollout-every",
        "1s",
        "--webhook",
        url.as_str(),
        "--webhook-secret-file",
        secret.to_str().unwrap(),
        // Issue 10, point 7: the cleanup looks every second and keeps nothing back.
        "--cleanup-every",
        "1s",
        "--retain",
        "0s",
        // Issue 11, point 5: the notification task looks every second.
        "--notify-every",
        "1s",
        "--notify-scan-every",
        "1s",
    ];
    flags.extend(more_flags.iter().map(String::as_str));
    let srv = Server::start_with(&b, &dir, &cat.root(), &flags);
    srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
    srv.cli(&["tenant", "create", "acme"]);
    let mut tokens = Vec::new();
    for g in ["pilot", "early"] {
        srv.cli(&["group", "create", "--tenant", "acme", g]);
        tokens.push(
            srv.cli(&[
                "enroll-token",
                "create",
                "--tenant",
                "acme",
                "--unlimited",
                "--group",
                g,
            ])
            .trim()
            .to_string(),
        );
    }
    World {
        _dir: d,
        dir,
        srv,
        tokens: [tokens[0].clone(), tokens[1].clone()],
        old,
        hook,
    }
}

impl World {
    /// A host with both old packages, enrolled into `pilot` (0) or `early` (1).
    fn host(&self, name: &str, ring: usize) -> Host {
        let h = Host::new(&bins(), &self.dir, name);
        for deb in &self.old {
            h.lab.install_deb(deb).unwrap();
        }
        let o = h.agent(&self.srv.url, Some(&self.tokens[ring]));
        assert!(o.status.success(), "enrol: {}", text(&o));
        h
    }

    fn run(&self, h: &Host) -> String {
        text(&h.agent(&self.srv.url, None))
    }

    fn approvals(&self) -> Vec<Value> {
        let (code, body) = self
            .srv
            .http_get("/v1/tenants/acme/approvals", Some(&self.srv.admin));
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn approval(&self, update: &str, group: &str) -> Option<Value> {
        self.approvals()
            .into_iter()
            .find(|a| a["update"] == update && a["group"] == group)
    }

    fn rollout(&self, update: &str) -> Value {
        serde_json::from_str(
            &self
                .srv
                .cli(&["rollout", "status", "--update", update, "--format", "json"]),
        )
        .unwrap()
    }

    fn halted(&self, update: &str) -> bool {
        let r = self.rollout(update);
        r["halt"].is_object() && r["halt"]["resumed_at"].is_null()
    }
}

/// Issue 11, point 5: the signature covers the timestamp header, a dot and the body.
fn signature_ok(r: &Received) -> bool {
    let Some(ts) = r.header("x-patchday-timestamp") else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&r.body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    r.header("x-patchday-signature-256") == Some(want.as_str())
}

/// The next webhook request for `event` (other events, a broken host say, are skipped).
fn next_event(hook: &mpsc::Receiver<Received>, event: &str) -> Received {
    loop {
        let got = hook
            .recv_timeout(std::time::Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no {event} webhook call"));
        if got.header("x-patchday-event") == Some(event) {
            return got;
        }
    }
}

#[test]
fn pilot_evidence_opens_the_early_ring_and_a_failing_postinst_halts_before_it_with_a_signed_webhook(
) {
    let _serial = patchday_testkit::serial();
    let w = world();
    let p1 = w.host("ring-pilot-1", 0);
    let e1 = w.host("ring-early-1", 1);
    let set = w.srv.cli(&[
        "ring", "set", "--tenant", "acme", "pilot:0d", "early:1d", "--auto", "--soak", "1s",
    ]);
    assert!(set.contains("pilot") && set.contains("early"), "{set}");
    let list = w.srv.cli(&["ring", "list", "--tenant", "acme"]);
    assert!(list.contains("auto: severity any"), "{list}");

    // The preview names the hosts before anything takes effect.
    let preview = w.srv.cli(&[
        "ring",
        "preview",
        "--tenant",
        "acme",
        "PD-R-GOOD",
        "--format",
        "json",
    ]);
    let preview: Vec<Value> = serde_json::from_str(&preview).unwrap();
    assert_eq!(preview[0]["group"], "pilot");
    assert_eq!(
        preview[0]["hosts"].as_array().unwrap().len(),
        1,
        "{preview:?}"
    );
    assert_eq!(
        preview[1]["hosts"].as_array().unwrap().len(),
        1,
        "{preview:?}"
    );

    // The pilot's rule approves both updates (emergency updates: no deferral).
    wait_for("the pilot's rule to approve both updates", || {
        w.approval("PD-R-GOOD", "pilot").is_some() && w.approval("PD-R-BAD", "pilot").is_some()
    });
    let a = w.approval("PD-R-GOOD", "pilot").unwrap();
    assert_eq!(a["decided_by"], "rule of ring pilot", "{a}");
    // Nothing installed in the pilot yet: the early ring has nothing (its gate holds).
    assert!(w.approval("PD-R-GOOD", "early").is_none());

    // The pilot host installs the good one; the bad one's postinst fails.
    let out = w.run(&p1);
    assert_eq!(p1.version("pd-ring-a").as_deref(), Some("1.0-2"), "{out}");
    w.run(&p1); // the check-in after the install carries dpkg's word

    // Evidence: pilot 1/1 installed, soaked: the early ring gets the good update...
    wait_for("the early ring's approval of PD-R-GOOD", || {
        w.approval("PD-R-GOOD", "early").is_some()
    });
    assert_eq!(
        w.approval("PD-R-GOOD", "early").unwrap()["decided_by"],
        "rule of ring early"
    );
    w.run(&e1);
    assert_eq!(e1.version("pd-ring-a").as_deref(), Some("1.0-2"));

    // ...and the bad one is halted, for every tenant, before the early ring.
    wait_for("PD-R-BAD to halt", || w.halted("PD-R-BAD"));
    let status = w.rollout("PD-R-BAD");
    let reason = status["halt"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("1 of 1 applicable host(s) in ring pilot failed"),
        "{reason}"
    );
    assert_eq!(status["halt"]["by"], "rollout gate");
    assert!(w.approval("PD-R-BAD", "early").is_none());
    w.run(&e1);
    assert_eq!(e1.version("pd-ring-b").as_deref(), Some("1.0-1"));

    // The webhook got the halt, signed with the shared secret.
    let got = next_event(&w.hook, "rollout.halted");
    assert!(
        signature_ok(&got),
        "bad signature: {:?}",
        got.header("x-patchday-signature-256")
    );
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body["event"], "rollout.halted");
    assert_eq!(body["halt"]["update"], "PD-R-BAD");

    // Halting again is refused; resume is an operator action, logged.
    let o = w.srv.cli_as(
        &w.srv.admin,
        &["rollout", "halt", "--update", "PD-R-BAD", "--reason", "x"],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("the rollout of PD-R-BAD is halted already"),
        "{}",
        text(&o)
    );
    w.srv.cli(&["rollout", "resume", "--update", "PD-R-BAD"]);
    assert!(!w.halted("PD-R-BAD"));
    let log = w.srv.cli(&["log", "--tenant", "acme", "--format", "json"]);
    assert!(
        log.contains("approval.rule") && log.contains("rule of ring early"),
        "{log}"
    );
    let all = w.srv.cli(&["log", "--format", "json"]);
    assert!(all.contains("rollout.resume"), "{all}");
    // After the resume the pilot's old failure no longer halts, but it still holds the
    // early ring: nothing installed there.
    let status = w.rollout("PD-R-BAD");
    let pilot = status["rings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "pilot")
        .unwrap();
    assert!(
        pilot["verdict"].as_str().unwrap().starts_with("waiting"),
        "{pilot}"
    );
}

#[test]
fn the_operator_emergency_lane_still_honours_the_failure_halt() {
    let _serial = patchday_testkit::serial();
    let w = world();
    let p1 = w.host("lane-pilot-1", 0);
    let p2 = w.host("lane-pilot-2", 0);
    // Rings without rules: approvals are the operator's.
    w.srv.cli(&[
        "ring", "set", "--tenant", "acme", "pilot:0d", "early:0d", "--soak", "1s",
    ]);
    w.srv.cli(&[
        "approve",
        "--tenant",
        "acme",
        "--group",
        "pilot",
        "PD-R-BAD",
        "--emergency",
        "--reason",
        "exploited today",
    ]);
    let out = w.run(&p1);
    assert_ne!(
        p1.version("pd-ring-b").as_deref(),
        Some("1.0-1"),
        "p1 tried it: {out}"
    );
    wait_for("PD-R-BAD to halt", || w.halted("PD-R-BAD"));
    // The halt holds the second pilot host, which had not started.
    let out = w.run(&p2);
    assert_eq!(p2.version("pd-ring-b").as_deref(), Some("1.0-1"), "{out}");
    let got = next_event(&w.hook, "rollout.halted");
    assert!(signature_ok(&got));
}

#[test]
fn a_rings_first_wave_is_a_share_of_its_hosts_and_the_rest_follow_on_its_evidence() {
    let _serial = patchday_testkit::serial();
    let w = world();
    let hosts: Vec<Host> = (1..=3)
        .map(|i| w.host(&format!("wave-pilot-{i}"), 0))
        .collect();
    // A rule by source package: only pd-ring-a's update, so the bad one stays out. An
    // hour's soak: no wave follows another in this test until the soak is shortened.
    let rings = |soak: &str| {
        w.srv.cli(&[
            "ring",
            "set",
            "--tenant",
            "acme",
            "pilot:0d",
            "--source-package",
            "pd-ring-a",
            "--soak",
            soak,
        ])
    };
    rings("1h");
    wait_for("the pilot's rule to approve PD-R-GOOD", || {
        w.approval("PD-R-GOOD", "pilot").is_some()
    });
    assert!(w.approval("PD-R-BAD", "pilot").is_none());
    let installed = |hs: &[Host]| {
        hs.iter()
            .filter(|h| h.version("pd-ring-a").as_deref() == Some("1.0-2"))
            .count()
    };
    let mut outs = Vec::new();
    for _ in 0..2 {
        for h in &hosts {
            outs.push(w.run(h));
        }
    }
    // The first wave (10% of 3, at least one host) got it; the others wait, also after
    // its evidence came in, for as long as it soaks.
    assert_eq!(installed(&hosts), 1, "{outs:#?}");
    let status = w.rollout("PD-R-GOOD");
    assert_eq!(status["rings"][0]["wave_admitted"], 1, "{status}");
    assert_eq!(status["rings"][0]["installed"], 1, "{status}");
    // Soaked: the rest follow.
    rings("1s");
    wait_for("the next wave", || {
        for h in &hosts {
            w.run(h);
        }
        installed(&hosts) == 3
    });
}

#[test]
fn a_superseded_update_declines_itself_once_its_successor_is_installed_wherever_it_was_needed() {
    let _serial = patchday_testkit::serial();
    let w = world_with(&[
        ("PD-S-1", "pd-sup", "1.0-2", false, &[]),
        (
            "PD-S-2",
            "pd-sup",
            "1.0-3",
            false,
            &["--supersedes", "PD-S-1"],
        ),
    ]);
    let h = w.host("sup-1", 0);
    for u in ["PD-S-1", "PD-S-2"] {
        w.srv
            .cli(&["approve", "--tenant", "acme", "--group", "pilot", u]);
    }
    w.run(&h);
    assert_eq!(h.version("pd-sup").as_deref(), Some("1.0-3"));
    w.run(&h); // the check-in after the install carries dpkg's word
    wait_for("PD-S-1 to decline itself", || {
        w.approval("PD-S-1", "pilot")
            .is_some_and(|a| a["decision"] == "decline")
    });
    for g in ["pilot", "early"] {
        let a = w.approval("PD-S-1", g).unwrap();
        assert_eq!(a["decided_by"], "supersedence", "{a}");
        assert_eq!(
            a["reason"], "superseded by PD-S-2, installed on every host that needed it (1)",
            "{a}"
        );
    }
    assert_eq!(
        w.approval("PD-S-2", "pilot").unwrap()["decision"],
        "approve"
    );
    let log = w.srv.cli(&["log", "--tenant", "acme", "--format", "json"]);
    assert!(log.contains("\"actor\": \"supersedence\""), "{log}");
}

// ---- Issue 10, point 7 (second half): the content store stays bounded ----

/// The sha256 of a file, hex.
fn sha256_of(path: &std::path::Path) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        std::fs::read(path).unwrap(),
    ))
}

/// Where the server keeps the blob with this sha256.
fn blob(srv: &Server, sha: &str) -> PathBuf {
    srv.data.join("content").join(&sha[..2]).join(sha)
}

/// The bytes of every blob in the content store (quarantine left out).
fn content_bytes(srv: &Server) -> u64 {
    let mut total = 0;
    for d in std::fs::read_dir(srv.data.join("content")).unwrap() {
        let d = d.unwrap();
        if d.file_name().len() != 2 {
            continue;
        }
        for f in std::fs::read_dir(d.path()).unwrap() {
            total += f.unwrap().metadata().unwrap().len();
        }
    }
    total
}

fn content_status(srv: &Server) -> Value {
    let s: Value =
        serde_json::from_str(&srv.cli(&["catalog", "status", "--format", "json"])).unwrap();
    s["content"].clone()
}

fn scrub(srv: &Server) -> std::process::Output {
    std::process::Command::new(&bins().patchday)
        .args(["server", "scrub", "--data", srv.data.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn a_superseded_payload_leaves_the_content_store_is_not_pushed_again_and_answers_410() {
    patchday_testkit::on_the_data_directory(
        "object_store:: (cleanup empties the bucket of what no host needs)",
    );
    let _serial = patchday_testkit::serial();
    let w = world_with(&[
        ("PD-C-1", "pd-clean", "1.0-2", false, &[]),
        (
            "PD-C-2",
            "pd-clean",
            "1.0-3",
            false,
            &["--supersedes", "PD-C-1"],
        ),
    ]);
    let deb = |v: &str| {
        std::fs::read_dir(w.dir.join("pkgs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with("pd-clean_") && n.contains(v) && n.ends_with(".deb")
            })
            .expect("the built package")
    };
    // The served name of a payload: its catalog file, `<sha256>.<name>`.
    let target_of = |sha: &str| {
        std::fs::read_dir(w.dir.join("catalog/targets"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with(&format!("{sha}.")))
            .expect("the payload in the catalog's targets")
    };
    let sha = sha256_of(&deb("1.0-2"));
    let len = std::fs::metadata(deb("1.0-2")).unwrap().len();
    let target = target_of(&sha);
    assert!(blob(&w.srv, &sha).is_file(), "pushed");
    let before = content_bytes(&w.srv);

    // Both approved: the host installs the successor; PD-C-1 declines itself.
    let h = w.host("clean-1", 0);
    for u in ["PD-C-1", "PD-C-2"] {
        w.srv
            .cli(&["approve", "--tenant", "acme", "--group", "pilot", u]);
    }
    w.run(&h);
    assert_eq!(h.version("pd-clean").as_deref(), Some("1.0-3"));
    w.run(&h);
    wait_for("PD-C-1's payload to leave the content store", || {
        !blob(&w.srv, &sha).exists()
    });
    assert!(
        w.approval("PD-C-1", "pilot")
            .is_some_and(|a| a["decision"] == "decline"),
        "evicted only once declined"
    );
    assert_eq!(
        content_bytes(&w.srv),
        before - len,
        "the store shrank by it"
    );
    let c = content_status(&w.srv);
    assert_eq!(c["evicted"], 1, "{c}");
    assert_eq!(c["evicted_bytes"], len, "{c}");
    assert_eq!(c["bytes"], before - len, "{c}");
    let log = w.srv.cli(&["log", "--format", "json"]);
    assert!(
        log.contains("\"actor\": \"cleanup\"")
            && log.contains("content.evict")
            && log.contains(&sha),
        "{log}"
    );

    // Scrub does not miss it; a push of the same catalog does not upload it again.
    let o = scrub(&w.srv);
    assert!(o.status.success(), "{}", text(&o));
    let out = w.srv.cli(&[
        "catalog",
        "push",
        "--repo",
        w.dir.join("catalog").to_str().unwrap(),
    ]);
    assert!(out.contains("(0 of "), "{out}");
    assert!(!blob(&w.srv, &sha).exists(), "{out}");
    assert!(scrub(&w.srv).status.success());

    // Asking for it answers 410 with what to do.
    let (code, body) = w
        .srv
        .http_get(&format!("/v1/tuf/targets/{target}"), Some(&w.srv.admin));
    assert_eq!(code, 410, "{body}");
    assert!(
        body.contains("no host can need it") && body.contains("successor"),
        "{body}"
    );
    // The successor is still served.
    let next = target_of(&sha256_of(&deb("1.0-3")));
    let (code, _) = w
        .srv
        .http_get(&format!("/v1/tuf/targets/{next}"), Some(&w.srv.admin));
    assert_eq!(code, 200);
}

#[test]
fn k_publish_cycles_each_superseding_the_last_leave_one_payload_not_k() {
    patchday_testkit::on_the_data_directory(
        "object_store:: (cleanup empties the bucket of what no host needs)",
    );
    let _serial = patchday_testkit::serial();
    let d = scratch();
    let dir = d.path();
    let b = bins();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let cat = Catalog::new(&b, dir);
    let srv = Server::start_with(
        &b,
        dir,
        &cat.root(),
        &["--cleanup-every", "1s", "--retain", "0s"],
    );
    srv.cli(&["tenant", "create", "acme"]);
    srv.cli(&["group", "create", "--tenant", "acme", "pilot"]);
    const K: usize = 5;
    let mut shas = Vec::new();
    for i in 1..=K {
        let v = format!("1.0-{i}");
        let deb = patchday_lab::build_deb(
            &DebSpec::new("pd-bound", &v).changelog(&v, "Fix CVE-2099-1002."),
            &pkgs,
        )
        .unwrap();
        shas.push(sha256_of(&deb));
        let prev = format!("PD-B-{}", i - 1);
        let mut args = vec!["--emergency", "test"];
        if i > 1 {
            args.extend(["--supersedes", prev.as_str()]);
        }
        let o = cat.add_deb(&format!("PD-B-{i}"), &deb, &args);
        assert!(o.status.success(), "{}", text(&o));
        let out = srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
        // Each push uploads the new payload and update document, never an evicted one.
        assert!(out.contains("(2 of "), "cycle {i}: {out}");
        if i > 1 {
            wait_for("the superseded payload to leave", || {
                !blob(&srv, &shas[i - 2]).exists()
            });
        }
    }
    let held: Vec<&String> = shas.iter().filter(|s| blob(&srv, s).exists()).collect();
    assert_eq!(held, vec![&shas[K - 1]], "only the newest payload is held");
    let c = content_status(&srv);
    assert_eq!(c["evicted"], K as u64 - 1, "{c}");
    let o = scrub(&srv);
    assert!(o.status.success(), "{}", text(&o));
}

// ---- Issue 11, point 5: notifications ----

/// A real SMTP server (aiosmtpd) on 127.0.0.1 that writes each message it accepts into a
/// directory. Killed when dropped.
struct SmtpSink {
    child: std::process::Child,
    port: u16,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sink: aiosmtpd's SMTP protocol on an ephemeral port (printed first), each
/// message written as NNNN.eml once whole.
const SMTP_SINK: &str = r#"
import asyncio, os, sys
from aiosmtpd.smtp import SMTP
out = sys.argv[1]
class Keep:
    async def handle_DATA(self, server, session, envelope):
        n = len([f for f in os.listdir(out) if f.endswith(".eml")])
        tmp = os.path.join(out, "%04d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(("X-Envelope-To: %s\r\n" % ",".join(envelope.rcpt_tos)).encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(out, "%04d.eml" % n))
        return "250 kept"
async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: SMTP(Keep(), hostname="sink.test"), "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()
asyncio.run(main())
"#;

fn smtp_sink(dir: &std::path::Path) -> SmtpSink {
    let mut child = std::process::Command::new("python3")
        .args(["-c", SMTP_SINK])
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the SMTP sink");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the sink prints its port");
    SmtpSink { child, port }
}

/// The messages the sink kept, headers unfolded.
fn mails(dir: &std::path::Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .replace("\r\n ", " ")
                .replace("\r\n\t", " ")
        })
        .collect()
}

#[test]
fn a_halt_is_announced_once_to_a_webhook_that_refuses_twice_and_by_mail_to_a_real_smtp_server() {
    let _serial = patchday_testkit::serial();
    if !patchday_lab::require(patchday_lab::Requirement::PYTHON_SMTP) {
        return;
    }
    let d = scratch();
    let mail_dir = d.path().join("mail");
    std::fs::create_dir_all(&mail_dir).unwrap();
    let sink = smtp_sink(&mail_dir);
    // A tenant's mail target that takes halts only; plain SMTP, allowed to loopback only.
    let targets = d.path().join("targets.toml");
    std::fs::write(
        &targets,
        format!(
            "[[email]]\nname = \"acme-mail\"\nsmtp = \"127.0.0.1:{}\"\ntls = \"none\"\n\
             from = \"patchday@provider.test\"\nto = [\"noc@acme.test\"]\ntenant = \"acme\"\n\
             events = [\"rollout.halted\"]\n",
            sink.port
        ),
    )
    .unwrap();
    // CISA's catalog lists the CVE the update fixes: a known-exploited hole in the fleet.
    let kev = d.path().join("kev.json");
    std::fs::write(
        &kev,
        r#"{"vulnerabilities": [{"cveID": "CVE-2099-1001", "dateAdded": "2099-01-01", "dueDate": "2099-01-22", "knownRansomwareCampaignUse": "Known"}]}"#,
    )
    .unwrap();
    let w = world_notifying(
        &[("PD-R-BAD", "pd-ring-b", "1.0-2", true, &[])],
        2,
        &[
            "--notify-targets".into(),
            targets.to_str().unwrap().into(),
            "--notify-retry-base".into(),
            "1s".into(),
            "--kev".into(),
            kev.to_str().unwrap().into(),
        ],
    );
    let targets = w.srv.cli(&["notify", "targets"]);
    assert!(
        targets.contains("acme-mail") && targets.contains("webhook"),
        "{targets}"
    );

    // The ring machinery halts the update: the pilot's rule approves, its postinst fails.
    let p1 = w.host("notify-pilot-1", 0);
    let e1 = w.host("notify-early-1", 1);
    w.srv.cli(&[
        "ring", "set", "--tenant", "acme", "pilot:0d", "early:0d", "--auto", "--soak", "1s",
    ]);
    wait_for("the pilot's rule to approve PD-R-BAD", || {
        w.approval("PD-R-BAD", "pilot").is_some()
    });
    let out = w.run(&p1);
    w.run(&p1);
    assert!(out.contains("failing on purpose"), "{out}");
    wait_for("PD-R-BAD to halt", || w.halted("PD-R-BAD"));

    // The webhook refused the halt twice (503) and took the third try: the same
    // delivery each time, each signed over its own timestamp.
    let tries: Vec<Received> = (0..3)
        .map(|_| next_event(&w.hook, "rollout.halted"))
        .collect();
    assert_eq!(
        tries.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 503, 200]
    );
    for r in &tries {
        assert!(
            signature_ok(r),
            "bad signature: {:?}",
            r.header("x-patchday-signature-256")
        );
        assert_eq!(
            r.header("x-patchday-delivery"),
            tries[0].header("x-patchday-delivery")
        );
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["event"], "rollout.halted");
        assert_eq!(body["halt"]["update"], "PD-R-BAD");
        assert_eq!(body["tenant"], "acme");
    }
    // A body replayed under another timestamp does not verify.
    let mut replay = Received {
        headers: tries[2].headers.clone(),
        body: tries[2].body.clone(),
        status: 200,
    };
    for (n, v) in &mut replay.headers {
        if n == "x-patchday-timestamp" {
            *v = (v.parse::<i64>().unwrap() + 600).to_string();
        }
    }
    assert!(!signature_ok(&replay));

    // The real SMTP server got the halt mail, to the tenant's address.
    wait_for("the halt mail", || !mails(&mail_dir).is_empty());
    let m = &mails(&mail_dir)[0];
    assert!(m.contains("X-Envelope-To: noc@acme.test"), "{m}");
    assert!(m.contains("From: patchday@provider.test"), "{m}");
    assert!(
        m.contains("Subject: [patchday] rollout of PD-R-BAD halted"),
        "{m}"
    );
    assert!(m.contains("event: rollout.halted"), "{m}");

    // The delivery log: the halt once per target, its tries and answers; the broken
    // host went to the webhook (the mail target takes halts only).
    let log = || -> Vec<Value> {
        serde_json::from_str(&w.srv.cli(&["notify", "log", "--format", "json"])).unwrap()
    };
    wait_for("the log to show both halt deliveries done", || {
        log()
            .iter()
            .filter(|d| d["event"] == "rollout.halted" && d["status"] == "delivered")
            .count()
            == 2
    });
    let log = log();
    let halts: Vec<&Value> = log
        .iter()
        .filter(|d| d["event"] == "rollout.halted")
        .collect();
    assert_eq!(halts.len(), 2, "each event once per target: {log:?}");
    let hook = halts.iter().find(|d| d["target"] == "webhook").unwrap();
    let tries: Vec<(bool, &str)> = hook["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["ok"].as_bool().unwrap(), a["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tries,
        [(false, "HTTP 503"), (false, "HTTP 503"), (true, "HTTP 200")]
    );
    let mail = halts.iter().find(|d| d["target"] == "acme-mail").unwrap();
    assert_eq!(mail["attempts"].as_array().unwrap().len(), 1, "{mail}");
    assert!(
        mail["attempts"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("SMTP 250"),
        "{mail}"
    );
    let broken: Vec<&Value> = log.iter().filter(|d| d["event"] == "host.broken").collect();
    assert!(
        broken
            .iter()
            .all(|d| d["target"] == "webhook" && d["tenant"] == "acme"),
        "{broken:?}"
    );
    assert!(
        !broken.is_empty(),
        "the failed install is a broken host: {log:?}"
    );
    // An operator's approval for the early ring with a deadline long past: the early
    // host (held by the halt) is overdue, announced once with its host.
    w.srv.cli(&[
        "approve",
        "--tenant",
        "acme",
        "--group",
        "early",
        "PD-R-BAD",
        "--deadline",
        "2001-01-01T00:00:00Z",
    ]);
    let overdue = || -> Vec<Value> {
        let log: Vec<Value> =
            serde_json::from_str(&w.srv.cli(&["notify", "log", "--format", "json"])).unwrap();
        log.into_iter()
            .filter(|d| d["event"] == "update.overdue")
            .collect()
    };
    wait_for("the overdue update's notification", || {
        !overdue().is_empty()
    });
    let o = overdue();
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0]["tenant"], "acme");
    assert!(
        o[0]["subject"]
            .as_str()
            .unwrap()
            .contains("PD-R-BAD is overdue on 1 host(s)"),
        "{o:?}"
    );
    drop(e1);
    // The exposed host made the KEV-listed CVE an event of tenant acme, once.
    let kev: Vec<&Value> = log
        .iter()
        .filter(|d| d["event"] == "vulnerability.known-exploited")
        .collect();
    assert_eq!(kev.len(), 1, "{log:?}");
    assert_eq!(
        kev[0]["key"],
        "vulnerability.known-exploited:acme:CVE-2099-1001"
    );
    drop(sink);
}

/// Issue 11, point 5: a catalog role inside the warning time is announced to the
/// notification targets, signed, once per role version (the watch runs every minute).
#[test]
fn a_catalog_role_about_to_expire_is_announced_once_per_role_by_a_signed_webhook() {
    let _serial = patchday_testkit::serial();
    // Every role of a fresh catalog expires within ten years: all inside the warning.
    let w = world_notifying(
        &[("PD-R-EXP", "pd-ring-x", "1.0-2", false, &[])],
        0,
        &["--catalog-expiry-warning".into(), "3650d".into()],
    );
    let first = next_event(&w.hook, "catalog.expiring");
    assert!(signature_ok(&first), "bad signature");
    let body: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(body["event"], "catalog.expiring");
    assert!(body["tenant"].is_null(), "a provider event: {body}");
    let log = || -> Vec<Value> {
        serde_json::from_str::<Vec<Value>>(&w.srv.cli(&["notify", "log", "--format", "json"]))
            .unwrap()
            .into_iter()
            .filter(|d| d["event"] == "catalog.expiring")
            .collect()
    };
    wait_for("each signing role announced", || {
        let roles: std::collections::BTreeSet<String> = log()
            .iter()
            .map(|d| d["subject"].as_str().unwrap_or_default().to_string())
            .collect();
        roles.len() >= 3
    });
    // A minute later, nothing was announced twice.
    let before = log().len();
    std::thread::sleep(std::time::Duration::from_secs(65));
    let after = log();
    assert_eq!(
        after.len(),
        before,
        "announced once per role version: {after:?}"
    );
    let mut subjects: Vec<&str> = after
        .iter()
        .map(|d| d["subject"].as_str().unwrap())
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), after.len(), "no subject twice: {after:?}");
}
