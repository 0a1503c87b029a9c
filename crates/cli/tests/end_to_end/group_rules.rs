//! Issue 10, point 2, with the real binaries, real agents and real dpkg on overlay hosts:
//! groups joined by rules on host facts. A preview lists the labelled host before the
//! rule takes effect; the rule puts it in a ring's group, whose rule-made approval it
//! then installs; a host enrolled with a labels file after the rule exists joins at its
//! first check-in; manual memberships are never removed by a rule; every membership
//! change is in the operator log. The server's rollout looks every second; the tests
//! poll for outcomes and assert nothing about time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, wait_for, Bins, Catalog, Host, Server};
use serde_json::Value;
use std::path::PathBuf;

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    srv: Server,
    /// An enrolment token without a group.
    plain: String,
    /// An enrolment token into the group `manual`.
    manual: String,
    old: PathBuf,
}

/// Emergency update `PD-G-1` (pd-grp-a 1.0-1 → 1.0-2); tenant `acme` with groups `prod`
/// (a ring that approves by rule, deadline 1d, grace 2h) and `manual`.
fn world() -> World {
    let d = scratch();
    let dir = d.path().to_path_buf();
    let b = bins();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let cat = Catalog::new(&b, &dir);
    let o = DebSpec::new("pd-grp-a", "1.0-1").changelog("1.0-1", "Initial release.");
    let old = patchday_lab::build_deb(&o, &pkgs).unwrap();
    let n = DebSpec::new("pd-grp-a", "1.0-2")
        .changelog("1.0-2", "Fix CVE-2099-1002.")
        .changelog("1.0-1", "Initial release.");
    let new = patchday_lab::build_deb(&n, &pkgs).unwrap();
    let out = cat.add_deb("PD-G-1", &new, &["--emergency", "test", "--since", "1.0-1"]);
    assert!(out.status.success(), "{}", text(&out));
    let srv = Server::start_with(&b, &dir, &cat.root(), &["--rollout-every", "1s"]);
    srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
    srv.cli(&["tenant", "create", "acme"]);
    for g in ["prod", "manual"] {
        srv.cli(&["group", "create", "--tenant", "acme", g]);
    }
    let token = |group: Option<&str>| {
        let mut args = vec!["enroll-token", "create", "--tenant", "acme", "--unlimited"];
        if let Some(g) = group {
            args.extend(["--group", g]);
        }
        srv.cli(&args).trim().to_string()
    };
    let plain = token(None);
    let manual = token(Some("manual"));
    World {
        _dir: d,
        dir,
        srv,
        plain,
        manual,
        old,
    }
}

impl World {
    /// A host with the old package, enrolled with `token` and these agent flags.
    fn host(&self, name: &str, token: &str, flags: &[&str]) -> Host {
        let h = Host::new(&bins(), &self.dir, name);
        h.lab.install_deb(&self.old).unwrap();
        let o = h
            .agent_command(&self.srv.url, Some(token), flags)
            .output()
            .unwrap();
        assert!(o.status.success(), "enrol: {}", text(&o));
        h
    }

    fn run(&self, h: &Host, flags: &[&str]) -> String {
        text(
            &h.agent_command(&self.srv.url, None, flags)
                .output()
                .unwrap(),
        )
    }

    /// Runs the agent until the host has PD-G-1 (the ring's waves admit it in turn).
    fn install_by_runs(&self, h: &Host, flags: &[&str]) {
        wait_for("the host to install PD-G-1", || {
            self.run(h, flags);
            h.version("pd-grp-a").as_deref() == Some("1.0-2")
        });
    }

    fn hosts(&self) -> Vec<Value> {
        let (code, body) = self
            .srv
            .http_get("/v1/tenants/acme/hosts", Some(&self.srv.admin));
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn host_json(&self, hostname: &str) -> Value {
        self.hosts()
            .into_iter()
            .find(|h| h["hostname"] == hostname)
            .unwrap_or_else(|| panic!("no host {hostname}"))
    }

    fn groups(&self, hostname: &str) -> (Vec<String>, Vec<String>) {
        let h = self.host_json(hostname);
        let list = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|g| g.as_str().unwrap().to_string())
                .collect()
        };
        (list(&h["groups"]), list(&h["rule_groups"]))
    }

    fn approval(&self, update: &str, group: &str) -> Option<Value> {
        let (code, body) = self
            .srv
            .http_get("/v1/tenants/acme/approvals", Some(&self.srv.admin));
        assert_eq!(code, 200, "{body}");
        let all: Vec<Value> = serde_json::from_str(&body).unwrap();
        all.into_iter()
            .find(|a| a["update"] == update && a["group"] == group)
    }
}

#[test]
fn a_labelled_host_joins_a_rings_group_by_rule_after_a_preview_and_installs_its_approval() {
    let _serial = patchday_testkit::serial();
    let w = world();
    let prod = ["--label", "env=prod", "--label", "site=fra"];
    w.srv.cli(&[
        "ring",
        "set",
        "--tenant",
        "acme",
        "prod:0d:1d:2h",
        "--auto",
        "--soak",
        "1s",
    ]);
    // Two hosts check in before any rule: the labelled web host, and a db host that an
    // enrolment token put in `manual`.
    let web1 = w.host("web-1", &w.plain, &prod);
    let db1 = w.host("db-1", &w.manual, &["--label", "env=test"]);
    let web1_id = w.host_json("web-1")["id"].as_str().unwrap().to_string();
    assert_eq!(w.host_json("web-1")["labels"]["env"], "prod");
    assert_eq!(w.groups("web-1"), (vec![], vec![]));
    assert_eq!(w.groups("db-1"), (vec!["manual".to_string()], vec![]));

    // The preview lists the web host, and only it, before anything takes effect.
    let rule = |verb: &'static str, more: &[&'static str]| -> Vec<&'static str> {
        let mut args = vec!["group", "rule", verb, "--tenant", "acme", "prod"];
        args.extend(["--label", "env=prod", "--hostname", "web-*"]);
        args.extend(more);
        args
    };
    let preview: Value =
        serde_json::from_str(&w.srv.cli(&rule("preview", &["--format", "json"]))).unwrap();
    let changes = preview["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{preview}");
    assert_eq!(changes[0]["host"], web1_id.as_str());
    assert_eq!(changes[0]["group"], "prod");
    assert_eq!(changes[0]["join"], true);
    let table = w.srv.cli(&[
        "group", "rule", "preview", "--tenant", "acme", "prod", "--label", "env=prod",
    ]);
    assert!(
        table.contains(&web1_id) && table.contains("joins"),
        "{table}"
    );
    assert_eq!(
        w.groups("web-1"),
        (vec![], vec![]),
        "a preview changes nothing"
    );

    // The rule takes effect for the hosts the server knows at once.
    let set = w.srv.cli(&rule("set", &[]));
    assert!(
        set.contains("rule 1 added") && set.contains(&web1_id),
        "{set}"
    );
    assert_eq!(
        w.groups("web-1"),
        (vec!["prod".to_string()], vec!["prod".to_string()])
    );
    let list = w.srv.cli(&["group", "rule", "list", "--tenant", "acme"]);
    assert!(
        list.contains("web-*") && list.contains("env=prod"),
        "{list}"
    );

    // The ring's rule approves the update for prod, with the ring's deadline.
    wait_for("the prod ring's approval of PD-G-1", || {
        w.approval("PD-G-1", "prod").is_some()
    });
    let a = w.approval("PD-G-1", "prod").unwrap();
    assert_eq!(a["decided_by"], "rule of ring prod", "{a}");
    assert!(a["deadline"].is_string(), "{a}");
    w.install_by_runs(&web1, &prod);

    // A host enrolled after the rule exists, labelled by /etc/patchday/labels, joins at
    // its first check-in and gets the approval too.
    let web2 = Host::new(&bins(), &w.dir, "web-2");
    web2.lab.install_deb(&w.old).unwrap();
    web2.lab
        .write_file("/etc/patchday/labels", b"# set by the test\nenv=prod\n")
        .unwrap();
    let o = web2
        .agent_command(&w.srv.url, Some(&w.plain), &[])
        .output()
        .unwrap();
    assert!(o.status.success(), "enrol: {}", text(&o));
    assert_eq!(
        w.groups("web-2"),
        (vec!["prod".to_string()], vec!["prod".to_string()]),
        "joined at its first check-in"
    );
    w.install_by_runs(&web2, &[]);
    // The db host is in no group the rule governs: untouched.
    w.run(&db1, &["--label", "env=test"]);
    assert_eq!(db1.version("pd-grp-a").as_deref(), Some("1.0-1"));

    // Manual memberships stay whatever the rules do; rule-made ones follow the facts.
    w.srv
        .cli(&["host", "set-groups", "--tenant", "acme", &web1_id, "manual"]);
    assert_eq!(
        w.groups("web-1"),
        (
            vec!["manual".to_string(), "prod".to_string()],
            vec!["prod".to_string()]
        )
    );
    // web-2's labels change: it leaves prod at its next check-in.
    web2.lab
        .write_file("/etc/patchday/labels", b"env=staging\n")
        .unwrap();
    w.run(&web2, &[]);
    assert_eq!(w.groups("web-2"), (vec![], vec![]));
    // Removing the rule: web-1 leaves prod, keeps manual.
    let preview: Value = serde_json::from_str(&w.srv.cli(&[
        "group", "rule", "preview", "--tenant", "acme", "prod", "--remove", "1", "--format", "json",
    ]))
    .unwrap();
    assert_eq!(preview["changes"][0]["join"], false, "{preview}");
    let removed = w
        .srv
        .cli(&["group", "rule", "remove", "--tenant", "acme", "prod", "1"]);
    assert!(removed.contains("leaves"), "{removed}");
    assert_eq!(w.groups("web-1"), (vec!["manual".to_string()], vec![]));
    assert_eq!(w.groups("db-1"), (vec!["manual".to_string()], vec![]));

    // Every membership change is in the operator log.
    let log: Vec<Value> =
        serde_json::from_str(&w.srv.cli(&["log", "--tenant", "acme", "--format", "json"])).unwrap();
    let actions =
        |action: &str| -> Vec<&Value> { log.iter().filter(|e| e["action"] == action).collect() };
    assert_eq!(actions("group.rule.add").len(), 1);
    assert_eq!(actions("group.rule.remove").len(), 1);
    let joins = actions("group.join");
    let leaves = actions("group.leave");
    assert_eq!((joins.len(), leaves.len()), (2, 2), "{log:#?}");
    assert!(
        joins.iter().any(|e| e["actor"] == "group rules"),
        "web-2 joined at its check-in: {joins:#?}"
    );
    assert!(
        leaves.iter().any(|e| e["actor"] == "group rules"),
        "web-2 left at its check-in: {leaves:#?}"
    );
}
