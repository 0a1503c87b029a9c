//! Issue 8, findings 8, 13 and 9 (`--server`), with the real binaries: `patchday server`
//! on 127.0.0.1:0, the CLI, and `patchday-agent` in lab hosts.
//!
//! Finding 8: each host signs what it says about itself with its own key, so a thief
//! of the host's bearer credential cannot rewrite the host's inventory, replay what
//! it sent, or alter a signed body. Finding 13: a run that fails before installing
//! shows in the report as the host's state. Finding 9: a changed `--server` is used.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, AcmeWorld, Bins, Catalog, Host, Server};
use patchday_trust::host_signature::HostKey;
use patchday_types::api::CheckinRequest;
use patchday_types::{InstalledPackage, Inventory};
use serde_json::Value;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

/// A package at 1.0-1 and its security update 1.0-2.
fn debs(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let out = dir.join("pkgs");
    std::fs::create_dir_all(&out).unwrap();
    let old = DebSpec::new(name, "1.0-1")
        .changelog("1.0-1", "Initial release.")
        .file(
            format!("/usr/share/{name}/version"),
            b"1.0-1\n".to_vec(),
            0o644,
        );
    let new = DebSpec::new(name, "1.0-2")
        .changelog("1.0-2", "Fix CVE-2099-0201.")
        .changelog("1.0-1", "Initial release.");
    (
        patchday_lab::build_deb(&old, &out).unwrap(),
        patchday_lab::build_deb(&new, &out).unwrap(),
    )
}

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    cat: Catalog,
    srv: Server,
    enroll: String,
}

/// A catalog with `PD-S-1` (`name` 1.0-1 → 1.0-2), a server, tenant `acme` with group
/// `web`, and an enrolment token.
fn world(name: &str) -> (World, PathBuf) {
    let d = scratch();
    let dir = d.path().to_path_buf();
    let b = bins();
    let (old, new) = debs(&dir, name);
    let AcmeWorld { cat, srv, enroll } = AcmeWorld::start(
        &b,
        &dir,
        ("PD-S-1", &new, &["--emergency", "test", "--since", "1.0-1"]),
        &|_| vec![],
        &[],
    );
    (
        World {
            _dir: d,
            dir,
            cat,
            srv,
            enroll,
        },
        old,
    )
}

impl World {
    /// A host with `deb` installed, enrolled, in group `web`; returns it and its id.
    fn host(&self, name: &str, deb: &Path) -> (Host, String) {
        let h = Host::new(&bins(), &self.dir, name);
        let id = h.enrol_into_web(&self.srv, &self.srv.url, &self.enroll, deb);
        (h, id)
    }

    /// The `host list` JSON row of a host.
    fn host_row(&self, hostname: &str) -> Value {
        self.srv.acme_host(hostname)
    }

    /// (state, message) of `PD-S-1` on the host with this id.
    fn state_of(&self, id: &str) -> (String, String) {
        let rows = self.srv.report_rows();
        rows.iter()
            .find(|r| r["host"] == id && r["update"] == "PD-S-1")
            .map(|r| {
                (
                    r["state"].as_str().unwrap().to_string(),
                    r["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .unwrap_or_else(|| ("absent".into(), format!("{rows:?}")))
    }

    /// The host's entry in the server's report JSON (`GET /v1/report`).
    fn report_host(&self, id: &str) -> Value {
        let (code, body) = self.srv.http_get("/v1/report", Some(&self.srv.admin));
        assert_eq!(code, 200, "{body}");
        let r: Value = serde_json::from_str(&body).unwrap();
        r["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == id)
            .cloned()
            .unwrap()
    }
}

/// The agent's state directory: (path, whether it is inside the host's namespace).
fn state_dir(h: &Host) -> (PathBuf, bool) {
    match h.lab.root_dir() {
        Some(_) => (h.lab.dir().join("agent-state"), false),
        None => (PathBuf::from("/var/lib/patchday-agent"), true),
    }
}

/// Runs a shell script with `$S` set to the agent's state directory (inside the host
/// when the host is an overlay).
fn in_state(h: &Host, script: &str) {
    let (dir, inside) = state_dir(h);
    let full = format!("S={}; {script}", dir.display());
    let o = if inside {
        h.lab
            .run(
                Path::new("/bin/sh"),
                &[OsString::from("-c"), OsString::from(full)],
            )
            .unwrap()
    } else {
        std::process::Command::new("/bin/sh")
            .args(["-c", &full])
            .output()
            .unwrap()
    };
    assert!(o.status.success(), "{script}: {}", text(&o));
}

/// The host's credential, key and the sequence numbers it reserved (every number it
/// signed is at or below it: the agent stores a block of numbers before using them), as
/// a thief of its files or a test would read them.
fn host_secrets(h: &Host) -> (String, Option<HostKey>, u64) {
    let id: Value = serde_json::from_slice(&h.state_file("identity.json")).unwrap();
    let credential = id["credential"].as_str().unwrap().to_string();
    let key_bytes = h.state_file("host-key.pk8");
    let key = (!key_bytes.is_empty()).then(|| {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.pk8");
        std::fs::write(&p, key_bytes).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        HostKey::load(&p).unwrap()
    });
    let seq = String::from_utf8_lossy(&h.state_file("sequence"))
        .trim()
        .parse()
        .unwrap_or(0);
    (credential, key, seq)
}

/// `POST path` with a host credential, a body and optional (sequence, signature)
/// headers; returns (status, answer).
fn post_as_host(
    w: &World,
    credential: &str,
    path: &str,
    body: &[u8],
    signed: Option<(u64, &str)>,
) -> (u16, Value) {
    let (code, body) = w.srv.http_post(path, Some(credential), signed, body);
    (
        code,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

/// A check-in claiming `package` is already at 1.0-2, under another host name.
fn forged_checkin(package: &str, hostname: &str) -> Vec<u8> {
    let arch = patchday_testkit::native_architecture();
    let inventory = Inventory {
        hostname: hostname.into(),
        architecture: arch.clone(),
        packages: vec![InstalledPackage {
            name: package.into(),
            version: "1.0-2".into(),
            architecture: arch,
            source: package.into(),
            source_version: "1.0-2".into(),
        }],
        ..Default::default()
    };
    serde_json::to_vec(&CheckinRequest {
        inventory,
        labels: None,
        baselines: Vec::new(),
        states: Vec::new(),
    })
    .unwrap()
}

fn assert_refused(answer: &(u16, Value), status: u16, code: &str, message: &str) {
    assert_eq!(answer.0, status, "{:?}", answer.1);
    assert_eq!(answer.1["error"], code, "{:?}", answer.1);
    let m = answer.1["message"].as_str().unwrap_or_default();
    assert!(m.contains(message), "expected {message:?} in {m:?}");
}

#[test]
fn stolen_host_credential_without_the_host_key_cannot_change_the_hosts_inventory() {
    let _serial = patchday_testkit::serial();
    let (w, old) = world("pd-sign-stolen");
    let (h, id) = w.host("stolen-1", &old);
    assert_eq!(w.state_of(&id).0, "needed");
    let (credential, _, reserved) = host_secrets(&h);
    let seq = w.report_host(&id)["signed"]["sequence"].as_u64().unwrap();
    assert!(
        seq > 0 && seq <= reserved,
        "the agent signed its enrolment check-in with a number it had stored: {seq}, {reserved}"
    );
    let row = w.host_row("stolen-1");
    assert_eq!(row["signed"], format!("yes, seq {seq}"), "{row}");
    assert_eq!(row["agent"], "ok", "{row}");

    // The thief has the credential only: an unsigned check-in claiming the update is
    // installed, under another name, is refused.
    let forged = forged_checkin("pd-sign-stolen", "forged-name");
    let a = post_as_host(&w, &credential, "/v1/agent/checkin", &forged, None);
    assert_refused(&a, 401, "signature-rejected", "unsigned body from host");
    // Signed with the thief's own key: refused as well.
    let thief = HostKey::ephemeral().unwrap();
    let sig = thief.sign_request("v1/agent/checkin", "acme", &id, seq + 1, &forged);
    let a = post_as_host(
        &w,
        &credential,
        "/v1/agent/checkin",
        &forged,
        Some((seq + 1, &sig)),
    );
    assert_refused(
        &a,
        401,
        "signature-rejected",
        "body refused: signature does not verify under the host's key",
    );
    // Nor can it report states or facts for the host.
    let report = br#"{"states":[{"update":"PD-S-1","state":"installed"}]}"#;
    let a = post_as_host(&w, &credential, "/v1/agent/report", report, None);
    assert_refused(&a, 401, "signature-rejected", "unsigned body from host");
    let a = post_as_host(&w, &credential, "/v1/agent/facts", b"{}", None);
    assert_refused(&a, 401, "signature-rejected", "unsigned body from host");

    // The server kept what the host itself signed.
    assert_eq!(w.state_of(&id).0, "needed");
    let row = w.host_row("stolen-1");
    assert_eq!(row["hostname"], "stolen-1");
    assert_eq!(row["signed"], format!("yes, seq {seq}"), "{row}");
    let by_host = w.srv.cli(&["report", "--by", "host", "--format", "json"]);
    let by_host: Vec<Value> = serde_json::from_str(&by_host).unwrap();
    assert_eq!(by_host[0]["signed"], format!("yes, seq {seq}"));
    assert_eq!(w.report_host(&id)["signed"]["sequence"], seq);
    assert_eq!(w.report_host(&id)["signed"]["key"], true);

    // The agent itself, with its key, still checks in.
    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn replayed_signed_checkin_and_a_body_altered_after_signing_are_refused() {
    let _serial = patchday_testkit::serial();
    let (w, old) = world("pd-sign-replay");
    let (h, id) = w.host("replay-1", &old);
    let (credential, key, seq) = host_secrets(&h);
    let key = key.expect("the agent made a host key at enrolment");

    // A body the host signed (here: signed with its key, as the agent does) is accepted.
    let body = forged_checkin("pd-sign-replay", "replay-1");
    let n = seq + 1;
    let sig = key.sign_request("v1/agent/checkin", "acme", &id, n, &body);
    let a = post_as_host(&w, &credential, "/v1/agent/checkin", &body, Some((n, &sig)));
    assert_eq!(a.0, 200, "{:?}", a.1);
    assert_eq!(w.state_of(&id).0, "installed", "the host said so, signed");

    // The same bytes again: a replay.
    let a = post_as_host(&w, &credential, "/v1/agent/checkin", &body, Some((n, &sig)));
    assert_refused(
        &a,
        409,
        "sequence-replayed",
        &format!("replayed body refused: sequence number {n} is not above {n}"),
    );
    // An older signed body (the enrolment check-in's number) is a replay as well.
    let old_sig = key.sign_request("v1/agent/checkin", "acme", &id, seq, &body);
    let a = post_as_host(
        &w,
        &credential,
        "/v1/agent/checkin",
        &body,
        Some((seq, &old_sig)),
    );
    assert_refused(&a, 409, "sequence-replayed", "is not above");

    // A signed body altered after signing (the package's version rolled back).
    let honest = forged_checkin("pd-sign-replay", "replay-1");
    let sig = key.sign_request("v1/agent/checkin", "acme", &id, n + 1, &honest);
    let altered = String::from_utf8(honest)
        .unwrap()
        .replace("1.0-2", "1.0-1")
        .into_bytes();
    let a = post_as_host(
        &w,
        &credential,
        "/v1/agent/checkin",
        &altered,
        Some((n + 1, &sig)),
    );
    assert_refused(
        &a,
        401,
        "signature-rejected",
        "the body was altered after signing",
    );
    // A body signed for one route is not accepted on another.
    let sig = key.sign_request("v1/agent/checkin", "acme", &id, n + 1, b"{}");
    let a = post_as_host(
        &w,
        &credential,
        "/v1/agent/facts",
        b"{}",
        Some((n + 1, &sig)),
    );
    assert_refused(&a, 401, "signature-rejected", "body refused");
    assert_eq!(w.state_of(&id).0, "installed", "nothing refused changed it");
    assert_eq!(w.report_host(&id)["signed"]["sequence"], n);

    // The agent's own counter is now behind the server's (as after restoring a backup):
    // it moves past the server's last number and checks in again.
    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("continuing above it"), "{}", text(&o));
    let (_, _, after) = host_secrets(&h);
    assert!(after > n, "{after} > {n}");
    assert_eq!(
        w.state_of(&id).0,
        "needed",
        "the agent's true inventory again"
    );
}

#[test]
fn agent_failure_before_installing_shows_as_the_hosts_state_until_a_good_run() {
    let _serial = patchday_testkit::serial();
    let (w, old) = world("pd-sign-agenterr");
    let (h, id) = w.host("agenterr-1", &old);
    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-S-1"]);
    assert_eq!(w.state_of(&id).0, "approved");

    // The agent now trusts another catalog's root: it cannot verify the server's
    // catalog (as with tampered metadata), and installs nothing.
    let other = scratch();
    let foreign = Catalog::new(&bins(), other.path());
    let root = std::fs::read_to_string(foreign.root()).unwrap();
    in_state(
        &h,
        "cp $S/trusted-root.json $S/trusted-root.json.good && rm -rf $S/tuf && mkdir $S/tuf",
    );
    let (dir, inside) = state_dir(&h);
    if inside {
        h.lab
            .write_file(dir.join("trusted-root.json"), root.as_bytes())
            .unwrap();
    } else {
        std::fs::write(dir.join("trusted-root.json"), &root).unwrap();
    }
    let o = h.agent(&w.srv.url, None);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("catalog verification failed"),
        "{}",
        text(&o)
    );
    assert_eq!(h.version("pd-sign-agenterr").as_deref(), Some("1.0-1"));

    // The operator sees why: in the report JSON, `report --by host`, `host list`, and
    // on the approved update's row.
    let e = w.report_host(&id)["signed"]["agent_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        e.starts_with("catalog verification failed; nothing was installed: catalog rejected"),
        "{e}"
    );
    assert!(w.report_host(&id)["signed"]["agent_error_at"].is_string());
    let by_host: Vec<Value> =
        serde_json::from_str(&w.srv.cli(&["report", "--by", "host", "--format", "json"])).unwrap();
    assert_eq!(by_host[0]["agent"], format!("agent-error: {e}"));
    assert_eq!(
        w.host_row("agenterr-1")["agent"],
        format!("agent-error: {e}")
    );
    let table = w.srv.cli(&["report", "--by", "host"]);
    assert!(
        table.contains("agent-error: catalog verification failed"),
        "{table}"
    );
    let (state, message) = w.state_of(&id);
    assert_eq!(state, "approved");
    assert_eq!(message, format!("agent-error: {e}"));

    // Fixed: the next good run installs and clears the error.
    in_state(
        &h,
        "mv $S/trusted-root.json.good $S/trusted-root.json && rm -rf $S/tuf && mkdir $S/tuf",
    );
    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-sign-agenterr").as_deref(), Some("1.0-2"));
    assert_eq!(w.state_of(&id).0, "installed");
    assert!(w.report_host(&id)["signed"]["agent_error"].is_null());
    assert_eq!(w.host_row("agenterr-1")["agent"], "ok");
}

#[test]
fn agents_without_a_host_key_are_told_to_enrol_again() {
    let _serial = patchday_testkit::serial();
    let (w, old) = world("pd-sign-nokey");
    // An agent that sends no key (one from before signed check-ins) is not enrolled.
    let body = br#"{"token":"TOKEN","hostname":"old-agent"}"#;
    let body = String::from_utf8_lossy(body).replace("TOKEN", &w.enroll);
    let a = post_as_host(&w, "unused", "/v1/agent/enroll", body.as_bytes(), None);
    assert_refused(
        &a,
        401,
        "signature-rejected",
        "this agent sent no signing key",
    );
    // An agent whose state has no key (enrolled before signed check-ins) says what to do.
    let (h, _) = w.host("nokey-1", &old);
    in_state(&h, "rm $S/host-key.pk8");
    let o = h.agent(&w.srv.url, None);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("this agent has no signing key") && text(&o).contains("enrol it again"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_changed_server_url_after_enrolment_is_used_and_stored() {
    let _serial = patchday_testkit::serial();
    let (mut w, old) = world("pd-sign-moved");
    let (h, id) = w.host("moved-1", &old);
    let before = w.srv.url.clone();
    // The server moves (a new port here); the admin points the agent at it.
    let (dir, root) = (w.dir.clone(), w.cat.root());
    w.srv.restart_with(&dir, &root, &[]);
    assert_ne!(w.srv.url, before);
    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("using and storing the new one"),
        "{}",
        text(&o)
    );
    let stored: Value = serde_json::from_slice(&h.state_file("identity.json")).unwrap();
    assert_eq!(stored["server"], w.srv.url.as_str());
    assert!(w.report_host(&id)["last_seen"].is_string());
}
