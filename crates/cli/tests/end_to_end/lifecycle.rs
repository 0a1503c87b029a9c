//! Issue 8, findings 3, 4 and 10, with the real binaries: secrets that expire, run out
//! and are revoked; hosts, groups and tenants that can be removed; limits on what
//! callers send; and the operator log (who, when, from where, what), scoped per tenant.
//! Each test asserts the exact refusal a user sees.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_lab::DebSpec;
use patchday_testkit::{
    acme_enroll_token, acme_with_web, scratch, text, Bins, Catalog, Host, Server, SigningHost,
};
use patchday_trust::host_signature::HostKey;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    srv: Server,
}

/// A server with a catalog holding one emergency update (`PD-L-1`), tenant `acme` with
/// group `web`, and tenant `globex`.
fn world() -> World {
    let d = scratch();
    let dir = d.path().to_path_buf();
    let b = bins();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let deb = patchday_lab::build_deb(
        &DebSpec::new("pd-lifecycle", "1.0-2").changelog("1.0-2", "Fix CVE-2099-0201."),
        &pkgs,
    )
    .unwrap();
    let cat = Catalog::new(&b, &dir);
    cat.add_emergency("PD-L-1", &deb);
    let srv = Server::start(&b, &dir, &cat.root());
    acme_with_web(&srv, &cat.repo);
    srv.cli(&["tenant", "create", "globex"]);
    World { _dir: d, dir, srv }
}

/// Enrols `hostname` over HTTP as the agent does (an enrolment token and the host's own
/// public key); returns (status, body).
fn enrol(srv: &Server, token: &str, hostname: &str) -> (u16, String) {
    srv.enrol_over_http(token, hostname, &HostKey::ephemeral().unwrap())
}

/// The message of an error body.
fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or_else(|| body.to_string())
}

fn enroll_token(srv: &Server, extra: &[&str]) -> String {
    acme_enroll_token(srv, extra)
}

fn json_of(srv: &Server, args: &[&str]) -> Vec<Value> {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    serde_json::from_str(&srv.cli(&a)).unwrap()
}

fn fails_with(o: &std::process::Output, want: &str) {
    assert!(!o.status.success(), "expected a failure: {}", text(o));
    assert!(text(o).contains(want), "expected {want:?} in: {}", text(o));
}

/// Waits (without asserting anything about time) until the wall clock is past `t`.
fn wait_until_past(t: &str) {
    let t: jiff::Timestamp = t.parse().unwrap();
    #[allow(clippy::disallowed_methods)] // the test waits for a real expiry
    while jiff::Timestamp::now() <= t {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn enrol_token_used_up_is_refused() {
    let _serial = patchday_testkit::serial();
    let w = world();
    let token = enroll_token(&w.srv, &["--group", "web", "--name", "rack 4"]);
    let first = Host::new(&bins(), &w.dir, "used-1");
    let o = first.agent(&w.srv.url, Some(&token));
    assert!(o.status.success(), "first enrolment: {}", text(&o));
    // The host joined the token's group at enrolment.
    let hosts = json_of(&w.srv, &["host", "list", "--tenant", "acme"]);
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["groups"], "web", "{hosts:?}");

    let second = Host::new(&bins(), &w.dir, "used-2");
    let o = second.agent(&w.srv.url, Some(&token));
    fails_with(
        &o,
        "enrolment token is used up (it allowed 1 enrolment(s)): ask the tenant admin for a new one",
    );
    assert_eq!(
        json_of(&w.srv, &["host", "list", "--tenant", "acme"]).len(),
        1,
        "no second host"
    );
    // Listed by id, name and prefix, never the secret.
    let listed = w.srv.cli(&["enroll-token", "list", "--tenant", "acme"]);
    assert!(!listed.contains(&token), "the secret is listed: {listed}");
    let rows = json_of(&w.srv, &["enroll-token", "list", "--tenant", "acme"]);
    assert_eq!(rows[0]["name"], "rack 4");
    assert_eq!(rows[0]["uses"], "1/1");
    assert_eq!(rows[0]["state"], "used-up");
    assert!(token.starts_with(rows[0]["prefix"].as_str().unwrap()));
}

#[test]
fn expired_token_is_refused() {
    let w = world();
    let before = json_of(&w.srv, &["token", "list"]).len();
    let secret = w
        .srv
        .cli(&[
            "token",
            "create",
            "--role",
            "tenant-admin",
            "--tenant",
            "acme",
            "--name",
            "ci",
            "--expires",
            "2s",
        ])
        .trim()
        .to_string();
    let enrol_secret = enroll_token(&w.srv, &["--expires", "2s", "--unlimited"]);
    let o = w
        .srv
        .cli_as(&secret, &["group", "list", "--tenant", "acme"]);
    assert!(o.status.success(), "fresh token works: {}", text(&o));

    let tokens = json_of(&w.srv, &["token", "list"]);
    assert_eq!(tokens.len(), before + 1);
    let ci = tokens.iter().find(|t| t["name"] == "ci").unwrap();
    let enrol_expiry = json_of(&w.srv, &["enroll-token", "list", "--tenant", "acme"])[0]["expires"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until_past(ci["expires"].as_str().unwrap());
    wait_until_past(&enrol_expiry);

    let o = w
        .srv
        .cli_as(&secret, &["group", "list", "--tenant", "acme"]);
    fails_with(
        &o,
        &format!("token {} (ci) expired at", ci["id"].as_str().unwrap()),
    );
    fails_with(&o, "401");
    let (code, body) = enrol(&w.srv, &enrol_secret, "late-1");
    assert_eq!(code, 401, "{body}");
    assert!(
        message(&body).starts_with("enrolment token expired at "),
        "{body}"
    );
    let listed = json_of(&w.srv, &["token", "list", "--tenant", "acme"]);
    assert_eq!(listed[0]["state"], "expired");
}

#[test]
fn revoked_tokens_are_refused_at_once() {
    let w = world();
    let secret = w
        .srv
        .cli(&[
            "token",
            "create",
            "--role",
            "read-only",
            "--tenant",
            "acme",
            "--name",
            "auditor",
        ])
        .trim()
        .to_string();
    let id = json_of(&w.srv, &["token", "list", "--tenant", "acme"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A read-only token may not revoke; the other tenant does not even see it.
    let o = w.srv.cli_as(&secret, &["token", "revoke", &id]);
    fails_with(&o, "read-only");
    w.srv.cli(&["token", "revoke", &id]);
    let o = w
        .srv
        .cli_as(&secret, &["group", "list", "--tenant", "acme"]);
    fails_with(&o, &format!("token {id} (auditor) was revoked at"));
    // It cannot read the catalog either.
    let (code, _) = w
        .srv
        .http_get("/v1/tuf/metadata/timestamp.json", Some(&secret));
    assert_eq!(code, 401);

    let enrol_secret = enroll_token(&w.srv, &["--unlimited"]);
    let (code, body) = enrol(&w.srv, &enrol_secret, "ok-1");
    assert_eq!(code, 200, "{body}");
    let eid = json_of(&w.srv, &["enroll-token", "list", "--tenant", "acme"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = w.srv.cli_as(
        &w.srv.admin,
        &["enroll-token", "revoke", "--tenant", "globex", &eid],
    );
    fails_with(&o, "not found");
    w.srv
        .cli(&["enroll-token", "revoke", "--tenant", "acme", &eid]);
    let (code, body) = enrol(&w.srv, &enrol_secret, "late-1");
    assert_eq!(code, 401, "{body}");
    assert!(
        message(&body).starts_with("enrolment token was revoked at "),
        "{body}"
    );
}

#[test]
fn removed_host_credential_stops_working_at_once() {
    let _serial = patchday_testkit::serial();
    let w = world();
    let token = enroll_token(&w.srv, &[]);
    let h = Host::new(&bins(), &w.dir, "gone-1");
    let o = h.agent(&w.srv.url, Some(&token));
    assert!(o.status.success(), "enrol: {}", text(&o));
    let id = json_of(&w.srv, &["host", "list", "--tenant", "acme"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = w.srv.cli(&["host", "remove", "--tenant", "acme", &id]);
    assert!(out.contains("its credential no longer works"), "{out}");
    assert!(json_of(&w.srv, &["host", "list", "--tenant", "acme"]).is_empty());

    let o = h.agent(&w.srv.url, None);
    fails_with(&o, &format!("host {id} was removed from tenant acme at"));
    fails_with(&o, "delete identity.json in the agent's state directory");

    // Doing what the message says enrols the machine again.
    let identity = match h.lab.root_dir() {
        Some(_) => h.lab.dir().join("agent-state/identity.json"),
        None => PathBuf::from("/var/lib/patchday-agent/identity.json"),
    };
    let rm = h
        .lab
        .run(
            std::path::Path::new("/bin/rm"),
            &[identity.clone().into_os_string()],
        )
        .unwrap();
    assert!(rm.status.success(), "{}", text(&rm));
    let again = enroll_token(&w.srv, &[]);
    let o = h.agent(&w.srv.url, Some(&again));
    assert!(o.status.success(), "re-enrolment: {}", text(&o));
    let hosts = json_of(&w.srv, &["host", "list", "--tenant", "acme"]);
    assert_eq!(hosts.len(), 1);
    assert_ne!(hosts[0]["id"], id.as_str(), "a new host id");
}

#[test]
fn tenant_remove_refused_while_it_has_hosts() {
    let w = world();
    let token = enroll_token(&w.srv, &[]);
    let mut host = SigningHost::enrol(&w.srv, &token, "web-1").unwrap();
    let (code, body) = host.post(&w.srv, "/v1/agent/report", br#"{"states":[]}"#);
    assert_eq!(code, 200, "the host's signed report is accepted: {body}");
    let tenant_admin = w
        .srv
        .cli(&[
            "token",
            "create",
            "--role",
            "tenant-admin",
            "--tenant",
            "acme",
            "--name",
            "ops",
        ])
        .trim()
        .to_string();

    let o = w.srv.cli_as(&tenant_admin, &["tenant", "remove", "acme"]);
    fails_with(&o, "only a provider-admin token may do this");
    let o = w.srv.cli_as(&w.srv.admin, &["tenant", "remove", "acme"]);
    fails_with(
        &o,
        "tenant acme still has 1 host(s): remove them first (`patchday host remove`) or pass --force",
    );
    assert_eq!(
        json_of(&w.srv, &["tenant", "list"]).len(),
        2,
        "nothing removed"
    );

    let out = w.srv.cli(&["tenant", "remove", "acme", "--force"]);
    assert!(
        out.contains("removed tenant acme (1 host(s) with it)"),
        "{out}"
    );
    assert_eq!(json_of(&w.srv, &["tenant", "list"]).len(), 1);
    // Its tokens and hosts are gone with it.
    let o = w
        .srv
        .cli_as(&tenant_admin, &["group", "list", "--tenant", "acme"]);
    fails_with(&o, "401");
    let (code, body) = host.post(&w.srv, "/v1/agent/report", br#"{"states":[]}"#);
    assert_eq!(code, 401, "{body}");
    assert!(
        message(&body).contains("was removed from tenant acme"),
        "{body}"
    );
    // A tenant without hosts goes without --force.
    w.srv.cli(&["tenant", "remove", "globex"]);
}

#[test]
fn group_remove_takes_its_approvals_and_memberships() {
    let w = world();
    let token = enroll_token(&w.srv, &["--group", "web"]);
    let stale = enroll_token(&w.srv, &["--group", "web"]);
    let (code, body) = enrol(&w.srv, &token, "web-1");
    assert_eq!(code, 200, "{body}");
    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-L-1"]);
    w.srv.cli(&["group", "remove", "--tenant", "acme", "web"]);
    assert!(json_of(&w.srv, &["group", "list", "--tenant", "acme"]).is_empty());
    let hosts = json_of(&w.srv, &["host", "list", "--tenant", "acme"]);
    assert_eq!(hosts[0]["groups"], "", "{hosts:?}");
    let (_, approvals) = w
        .srv
        .http_get("/v1/tenants/acme/approvals", Some(&w.srv.admin));
    assert_eq!(approvals, "[]");
    // A token made for the removed group says so; no new one can be made for it.
    let (code, body) = enrol(&w.srv, &stale, "web-2");
    assert_eq!(code, 401, "{body}");
    assert_eq!(
        message(&body),
        "the group web this enrolment token enrols into was removed: ask the tenant admin for a new one (`patchday enroll-token create --tenant T`)"
    );
    let o = w.srv.cli_as(
        &w.srv.admin,
        &[
            "enroll-token",
            "create",
            "--tenant",
            "acme",
            "--group",
            "web",
        ],
    );
    fails_with(&o, "group web not found");
}

#[test]
fn oversized_hostname_is_refused() {
    let w = world();
    let token = enroll_token(&w.srv, &[]);
    for bad in [
        "a".repeat(254),
        "web\u{1b}[2J-1".to_string(),
        "web 1\r\nfake,row".into(),
    ] {
        let (code, body) = enrol(&w.srv, &token, &bad);
        assert_eq!(code, 400, "{body}");
        assert!(
            message(&body).contains(
                "is not a valid host name: at most 253 bytes of letters, digits, '-', '_' and '.'"
            ),
            "{body}"
        );
    }
    // The refusals took no use of the single-use token.
    let (code, body) = enrol(&w.srv, &token, &"a".repeat(253));
    assert_eq!(code, 200, "{body}");
    // Names and labels are limited too.
    let long = "n".repeat(257);
    let o = w.srv.cli_as(
        &w.srv.admin,
        &["group", "create", "--tenant", "acme", "g2", "--name", &long],
    );
    fails_with(&o, "group name is 257 bytes long; the limit is 256 bytes");
}

#[test]
fn states_for_unknown_updates_are_refused() {
    let w = world();
    let token = enroll_token(&w.srv, &[]);
    let mut host = SigningHost::enrol(&w.srv, &token, "web-1").unwrap();
    // Signed by the host, so only the limits can refuse these reports.
    let mut report = |states: Value| {
        let body = json!({ "states": states }).to_string();
        host.post(&w.srv, "/v1/agent/report", body.as_bytes())
    };
    let (code, body) = report(json!([{ "update": "PD-NOPE-1", "state": "failed" }]));
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        message(&body),
        "state for update PD-NOPE-1 refused: the catalog has no such update"
    );
    let (code, body) =
        report(json!([{ "update": "PD-L-1", "state": "failed", "message": "x".repeat(4097) }]));
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        message(&body),
        "the message for PD-L-1 is 4097 bytes long; the limit is 4096 bytes"
    );
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({ "update": "PD-L-1", "state": "failed" }))
        .collect();
    let (code, body) = report(json!(many));
    assert_eq!(code, 413, "{body}");
    assert_eq!(
        message(&body),
        "1001 states in one report; the limit is 1000"
    );
    let (code, body) =
        report(json!([{ "update": "PD-L-1", "state": "failed", "message": "dpkg: error" }]));
    assert_eq!(code, 200, "a known update is accepted: {body}");
}

/// Issue 10, point 8: a run's last outcomes ride on its closing check-in. They are
/// recorded before the host is evaluated, bounded like a report's; one about an update
/// the catalog no longer has is left out instead of costing the host its check-in.
#[test]
fn a_checkins_outcomes_are_recorded_bounded_and_unknown_updates_left_out() {
    let w = world();
    let token = enroll_token(&w.srv, &["--group", "web"]);
    let mut host = SigningHost::enrol(&w.srv, &token, "web-1").unwrap();
    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-L-1"]);
    let arch = patchday_testkit::native_architecture();
    let mut checkin = |states: Value| {
        let inventory = patchday_types::Inventory {
            hostname: "web-1".into(),
            architecture: arch.clone(),
            packages: vec![patchday_types::InstalledPackage {
                name: "pd-lifecycle".into(),
                version: "1.0-1".into(),
                architecture: arch.clone(),
                source: "pd-lifecycle".into(),
                source_version: "1.0-1".into(),
            }],
            ..Default::default()
        };
        let mut body = json!({
            "inventory": inventory,
            "states": states
        });
        if body["states"].is_null() {
            body.as_object_mut().unwrap().remove("states");
        }
        host.post(&w.srv, "/v1/agent/checkin", body.to_string().as_bytes())
    };
    let (code, body) = checkin(json!([
        { "update": "PD-L-1", "state": "failed", "message": "dpkg: error processing pd-lifecycle" },
        { "update": "PD-NOPE-1", "state": "installed" }
    ]));
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        w.srv.update_state("web-1", "PD-L-1"),
        (
            "failed".into(),
            "dpkg: error processing pd-lifecycle".into()
        ),
        "recorded before the evaluation"
    );
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({ "update": "PD-L-1", "state": "failed" }))
        .collect();
    let (code, body) = checkin(json!(many));
    assert_eq!(code, 413, "{body}");
    assert_eq!(
        message(&body),
        "1001 states in one report; the limit is 1000"
    );
    let (code, body) = checkin(json!([
        { "update": "PD-L-1", "state": "failed", "message": "x".repeat(4097) }
    ]));
    assert_eq!(code, 400, "{body}");
    // A check-in without states (an older agent's) leaves them as they were.
    let (code, body) = checkin(Value::Null);
    assert_eq!(code, 200, "{body}");
    assert_eq!(w.srv.update_state("web-1", "PD-L-1").0, "failed");
}

#[test]
fn host_quota_refuses_enrolment_above_it() {
    let w = world();
    w.srv.cli(&["tenant", "set", "acme", "--max-hosts", "1"]);
    let tenants = json_of(&w.srv, &["tenant", "list"]);
    assert_eq!(tenants[0]["max-hosts"], 1, "{tenants:?}");
    let token = enroll_token(&w.srv, &["--uses", "5"]);
    let (code, body) = enrol(&w.srv, &token, "q-1");
    assert_eq!(code, 200, "{body}");
    let (code, body) = enrol(&w.srv, &token, "q-2");
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        message(&body),
        "tenant acme has reached its quota of 1 host(s): remove hosts (`patchday host remove`) or raise it (`patchday tenant set acme --max-hosts N`)"
    );
    // A tenant admin cannot raise its own quota.
    let ta = w
        .srv
        .cli(&[
            "token",
            "create",
            "--role",
            "tenant-admin",
            "--tenant",
            "acme",
            "--name",
            "ops",
        ])
        .trim()
        .to_string();
    let o = w
        .srv
        .cli_as(&ta, &["tenant", "set", "acme", "--max-hosts", "9"]);
    fails_with(&o, "only a provider-admin token may do this");
    // The refused enrolment took no use of the token.
    let rows = json_of(&w.srv, &["enroll-token", "list", "--tenant", "acme"]);
    assert_eq!(rows[0]["uses"], "1/5");
    w.srv.cli(&["tenant", "set", "acme", "--no-max-hosts"]);
    let (code, body) = enrol(&w.srv, &token, "q-2");
    assert_eq!(code, 200, "{body}");
}

#[test]
fn audit_log_records_approval_with_who_when_where() {
    let w = world();
    let ops = w
        .srv
        .cli(&[
            "token",
            "create",
            "--role",
            "tenant-admin",
            "--tenant",
            "acme",
            "--name",
            "alice",
        ])
        .trim()
        .to_string();
    let alice_id = json_of(&w.srv, &["token", "list", "--tenant", "acme"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    #[allow(clippy::disallowed_methods)] // brackets the approval's log time
    let before = jiff::Timestamp::now();
    let o = w.srv.cli_as(
        &ops,
        &["approve", "--tenant", "acme", "--group", "web", "PD-L-1"],
    );
    assert!(o.status.success(), "{}", text(&o));
    #[allow(clippy::disallowed_methods)]
    let after = jiff::Timestamp::now();

    let o = w
        .srv
        .cli_as(&ops, &["log", "--tenant", "acme", "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let entries: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let e = entries
        .iter()
        .find(|e| e["action"] == "approval.approve")
        .unwrap_or_else(|| panic!("no approval in {entries:?}"));
    assert_eq!(e["actor"], "alice");
    assert_eq!(e["actor_id"], alice_id.as_str());
    assert_eq!(e["tenant"], "acme");
    assert_eq!(e["object"], "update PD-L-1 group web");
    assert_eq!(e["detail"]["update"], "PD-L-1");
    assert!(
        e["source"].as_str().unwrap().starts_with("127.0.0.1:"),
        "from where: {e}"
    );
    let at: jiff::Timestamp = e["at"].as_str().unwrap().parse().unwrap();
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
    // Tenant, group and token creation were logged too, before it.
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "tenant.create",
            "group.create",
            "token.create",
            "approval.approve"
        ]
    );
    // Exported as CSV with a header.
    let csv = w.srv.cli(&[
        "log", "--tenant", "acme", "--since", "1h", "--format", "csv",
    ]);
    assert!(
        csv.starts_with("seq,at,tenant,actor,actor-id,source,action,object,detail\n"),
        "{csv}"
    );
    assert!(csv.contains(",alice,"), "{csv}");
    let future = w
        .srv
        .cli(&["log", "--since", "2099-01-01T00:00:00Z", "--format", "json"]);
    assert_eq!(future.trim(), "[]");
}

#[test]
fn tenant_token_does_not_see_another_tenants_log() {
    let w = world();
    w.srv.cli(&["group", "create", "--tenant", "globex", "all"]);
    let globex = w
        .srv
        .cli(&[
            "token",
            "create",
            "--role",
            "read-only",
            "--tenant",
            "globex",
            "--name",
            "gx",
        ])
        .trim()
        .to_string();
    let o = w.srv.cli_as(&globex, &["log", "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let seen: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|e| e["tenant"] == "globex"),
        "a globex token saw: {seen:?}"
    );
    let o = w.srv.cli_as(&globex, &["log", "--tenant", "acme"]);
    fails_with(&o, "tenant acme not found");
    let (code, _) = w.srv.http_get("/v1/tenants/acme/log", Some(&globex));
    assert_eq!(code, 404);
    // The provider sees everything, provider-wide entries included.
    let all = json_of(&w.srv, &["log"]);
    let pushes: Vec<&Value> = all
        .iter()
        .filter(|e| e["action"] == "catalog.push")
        .collect();
    assert_eq!(pushes.len(), 1, "{all:?}");
    assert_eq!(pushes[0]["tenant"], Value::Null);
    assert_eq!(pushes[0]["actor"], "first-admin");
    assert!(all.iter().any(|e| e["tenant"] == "acme"));
    // The log starts with the first admin token, which is listed by its prefix.
    assert_eq!(all[0]["action"], "token.create");
    assert_eq!(all[0]["actor"], "patchday server");
    let tokens = json_of(&w.srv, &["token", "list"]);
    let first = tokens.iter().find(|t| t["name"] == "first-admin").unwrap();
    assert!(w.srv.admin.starts_with(first["prefix"].as_str().unwrap()));
    assert_eq!(first["prefix"].as_str().unwrap().len(), 11);
}

#[test]
fn agent_reads_its_enrolment_token_from_a_file() {
    let _serial = patchday_testkit::serial();
    let w = world();
    let token = enroll_token(&w.srv, &[]);
    let file = w.dir.join("enroll-token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let h = Host::new(&bins(), &w.dir, "file-1");
    let o = h
        .agent_command(
            &w.srv.url,
            None,
            &["--enroll-token-file", file.to_str().unwrap()],
        )
        .env_remove("PATCHDAY_ENROLL_TOKEN")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        json_of(&w.srv, &["host", "list", "--tenant", "acme"]).len(),
        1
    );
    // `--help` shows the environment variable and the file before the flag's value.
    let help = Command::new(&bins().agent).arg("--help").output().unwrap();
    let help = text(&help);
    assert!(
        help.contains("PATCHDAY_ENROLL_TOKEN=pde_... patchday-agent"),
        "{help}"
    );
    assert!(
        help.contains("--enroll-token-file <ENROLL_TOKEN_FILE>"),
        "{help}"
    );
    assert!(help.contains("visible in the process list"), "{help}");
}

#[test]
fn concurrent_enrolments_cannot_share_a_use_or_pass_the_quota() {
    let w = world();
    // 40 enrolments at once with a token good for 5: exactly 5 hosts.
    let token = enroll_token(&w.srv, &["--uses", "5"]);
    let codes: Vec<u16> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..40)
            .map(|n| {
                let (srv, token) = (&w.srv, &token);
                sc.spawn(move || enrol(srv, token, &format!("race-{n}")).0)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 5, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 401), "{codes:?}");
    assert_eq!(
        json_of(&w.srv, &["host", "list", "--tenant", "acme"]).len(),
        5
    );

    // 40 at once with an unlimited token against a quota of 8: exactly 8 hosts in all.
    w.srv.cli(&["tenant", "set", "acme", "--max-hosts", "8"]);
    let many = enroll_token(&w.srv, &["--unlimited"]);
    let codes: Vec<u16> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..40)
            .map(|n| {
                let (srv, token) = (&w.srv, &many);
                sc.spawn(move || enrol(srv, token, &format!("quota-{n}")).0)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 3, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 409), "{codes:?}");
    assert_eq!(
        json_of(&w.srv, &["host", "list", "--tenant", "acme"]).len(),
        8
    );
}
