//! Issue 10, point 5, with the real binaries and real agents on overlay hosts:
//! maintenance windows, deadlines and reboot policies, obeyed from the signed answer,
//! also while the server is down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::{SignedDuration, Timestamp, ToSpan};
use patchday_agent::run::CLOCK_OFFSET_ENV;
use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, Bins, Catalog, Daemon, Host, Server};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    srv: Server,
    /// Old .debs the hosts start with.
    old: Vec<PathBuf>,
    /// The reboot command every agent is given: it empties /run as a boot would and
    /// counts the reboots in /var/tmp/reboots inside the host.
    reboot: PathBuf,
}

/// Emergency updates `PD-W-1` (pd-win-a 1.0-1 → 1.0-2) and `PD-W-2` (pd-win-b, whose
/// new version asks for a reboot); tenant `acme` with groups `web`, `db` and `ops`.
fn world() -> World {
    let d = scratch();
    let dir = d.path().to_path_buf();
    let b = bins();
    let pkgs = dir.join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    let cat = Catalog::new(&b, &dir);
    let mut old = Vec::new();
    for (id, name, reboot) in [("PD-W-1", "pd-win-a", false), ("PD-W-2", "pd-win-b", true)] {
        let o = DebSpec::new(name, "1.0-1").changelog("1.0-1", "Initial release.");
        let n = DebSpec::new(name, "1.0-2")
            .changelog("1.0-2", "Fix CVE-2099-0905.")
            .changelog("1.0-1", "Initial release.")
            .reboot_required(reboot);
        old.push(patchday_lab::build_deb(&o, &pkgs).unwrap());
        let new = patchday_lab::build_deb(&n, &pkgs).unwrap();
        let out = cat.add_deb(id, &new, &["--emergency", "test", "--since", "1.0-1"]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let srv = Server::start(&b, &dir, &cat.root());
    srv.cli(&["catalog", "push", "--repo", cat.repo.to_str().unwrap()]);
    srv.cli(&["tenant", "create", "acme"]);
    for g in ["web", "db", "ops"] {
        srv.cli(&["group", "create", "--tenant", "acme", g]);
    }
    let reboot = dir.join("reboot.sh");
    std::fs::write(
        &reboot,
        "#!/bin/sh\nrm -f /run/reboot-required /run/reboot-required.pkgs\necho reboot >> /var/tmp/reboots\n",
    )
    .unwrap();
    World {
        _dir: d,
        dir,
        srv,
        old,
        reboot,
    }
}

impl World {
    /// A host with both old packages, enrolled into `group` (one agent run).
    fn host(&self, name: &str, group: &str) -> Host {
        let h = Host::new(&bins(), &self.dir, name);
        for deb in &self.old {
            h.lab.install_deb(deb).unwrap();
        }
        let token = self
            .srv
            .cli(&[
                "enroll-token",
                "create",
                "--tenant",
                "acme",
                "--group",
                group,
            ])
            .trim()
            .to_string();
        let o = run(&h, &self.srv.url, Some(&token), 0, &self.reboot);
        assert!(o.status.success(), "enrol: {}", text(&o));
        h
    }

    fn set_window(&self, group: &str, windows: &[String], reboot: &str) -> String {
        let mut args = vec![
            "group",
            "set-window",
            "--tenant",
            "acme",
            "--group",
            group,
            "--reboot",
            reboot,
        ];
        for w in windows {
            args.extend(["--window", w.as_str()]);
        }
        self.srv.cli(&args)
    }

    fn approve(&self, group: &str, update: &str, deadline: Option<Timestamp>) {
        let deadline = deadline.map(|d| d.to_string());
        let mut args = vec!["approve", "--tenant", "acme", "--group", group, update];
        if let Some(d) = &deadline {
            args.extend(["--deadline", d.as_str()]);
        }
        self.srv.cli(&args);
    }
}

/// One agent run with its clock `offset` seconds ahead.
fn run(h: &Host, url: &str, enroll: Option<&str>, offset: i64, reboot: &Path) -> Output {
    let cmd = format!("sh {}", reboot.display());
    h.agent_command(url, enroll, &["--reboot-command", &cmd])
        .env(CLOCK_OFFSET_ENV, offset.to_string())
        .output()
        .unwrap()
}

#[allow(clippy::disallowed_methods)] // windows are computed around the test's real time
fn now() -> Timestamp {
    Timestamp::now()
}

/// A weekly UTC window from `now + from` to `now + to` (minutes; less than a day apart).
fn window(from: i64, to: i64) -> String {
    let t = now();
    let start = (t + from.minutes()).to_zoned(jiff::tz::TimeZone::UTC);
    let end = (t + to.minutes()).to_zoned(jiff::tz::TimeZone::UTC);
    let day = &format!("{:?}", start.weekday())[..3];
    format!(
        "{day} {:02}:{:02}-{:02}:{:02} UTC",
        start.hour(),
        start.minute(),
        end.hour(),
        end.minute()
    )
}

/// "Sat 02:00 UTC": when a window opens, as the agent says it.
fn opening(w: &str) -> String {
    let (day, rest) = w.split_once(' ').unwrap();
    format!("{day} {} UTC", &rest[..5])
}

fn reboots(h: &Host) -> usize {
    h.lab
        .read_file(Path::new("/var/tmp/reboots"))
        .map(|b| String::from_utf8_lossy(&b).lines().count())
        .unwrap_or(0)
}

/// An approved update outside its group's window is downloaded but not installed, and
/// the agent and the report say what it waits for; inside a window it is installed. The
/// group's windows are shown in `group list` and logged.
#[test]
fn an_approved_update_outside_its_window_waits_and_says_why_inside_it_is_installed() {
    let _serial = patchday_testkit::serial();
    let w = world();
    let h = w.host("win-1", "web");
    let closed = window(300, 360);
    let out = w.set_window("web", std::slice::from_ref(&closed), "never");
    assert!(out.contains(&closed), "{out}");
    let list = w.srv.cli(&["group", "list", "--tenant", "acme"]);
    assert!(
        list.contains(&closed) && list.contains("any time"),
        "{list}"
    );
    let log = w.srv.cli(&["log", "--tenant", "acme"]);
    assert!(log.contains("group.policy"), "{log}");
    // An invalid window is refused with what to write.
    let o = w.srv.cli_as(
        &w.srv.admin,
        &[
            "group",
            "set-window",
            "--tenant",
            "acme",
            "--group",
            "web",
            "--window",
            "Sat 02:00 Mars/Olympus",
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("is malformed: expected"), "{}", text(&o));

    w.approve("web", "PD-W-1", None);
    let o = run(&h, &w.srv.url, None, 0, &w.reboot);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let expected = format!(
        "waiting PD-W-1: waiting for the maintenance window {} (in 4 hours",
        opening(&closed)
    );
    assert!(out.contains(&expected), "{expected:?} not in {out}");
    assert_eq!(h.version("pd-win-a").as_deref(), Some("1.0-1"));
    let (state, message) = w.srv.update_state("win-1", "PD-W-1");
    assert_eq!(state, "downloaded");
    assert!(
        message.starts_with("waiting for the maintenance window"),
        "{message}"
    );
    // Polling again while it waits adds nothing to the state history.
    let history = || -> Vec<Value> {
        let v: Value = serde_json::from_str(&w.srv.cli(&[
            "history", "--tenant", "acme", "--update", "PD-W-1", "--format", "json",
        ]))
        .unwrap();
        v["entries"].as_array().unwrap().clone()
    };
    let before = history();
    let o = run(&h, &w.srv.url, None, 0, &w.reboot);
    assert!(text(&o).contains(&expected), "{}", text(&o));
    assert_eq!(history(), before);

    // A window open now: installed.
    w.set_window("web", &[closed, window(-60, 120)], "never");
    let o = run(&h, &w.srv.url, None, 0, &w.reboot);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-win-a").as_deref(), Some("1.0-2"));
    assert_eq!(w.srv.update_state("win-1", "PD-W-1").0, "installed");
}

/// The deadline overrides the window: past it, the update is installed at once, while
/// one approved without a deadline in the same run waits for the window.
#[test]
fn past_its_deadline_an_update_is_installed_outside_the_window() {
    let _serial = patchday_testkit::serial();
    let w = world();
    let h = w.host("dl-1", "web");
    w.set_window("web", &[window(300, 360)], "never");
    w.approve("web", "PD-W-1", Some(now() - SignedDuration::from_secs(60)));
    w.approve("web", "PD-W-2", None);
    let o = run(&h, &w.srv.url, None, 0, &w.reboot);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-win-a").as_deref(), Some("1.0-2"));
    assert_eq!(h.version("pd-win-b").as_deref(), Some("1.0-1"));
    assert!(
        text(&o).contains("waiting PD-W-2: waiting for the maintenance window"),
        "{}",
        text(&o)
    );
}

/// A daemon with an hourly interval, push off, whose approved update waits for a window:
/// it runs again when the window opens (its own signed schedule says when), not an
/// interval later, and installs. The agent's clock is set so that the window, which opens
/// at the next minute but four, opens 20 seconds after the daemon starts.
#[test]
fn a_daemon_runs_again_when_its_window_opens_not_an_interval_later() {
    let _serial = patchday_testkit::serial();
    let w = world();
    let h = w.host("due-1", "web");
    let t = now();
    let opens = Timestamp::from_second((t + 5.minutes()).as_second() / 60 * 60).unwrap();
    let start = opens.to_zoned(jiff::tz::TimeZone::UTC);
    let end = (opens + 60.minutes()).to_zoned(jiff::tz::TimeZone::UTC);
    let win = format!(
        "{} {:02}:{:02}-{:02}:{:02} UTC",
        &format!("{:?}", start.weekday())[..3],
        start.hour(),
        start.minute(),
        end.hour(),
        end.minute()
    );
    w.set_window("web", std::slice::from_ref(&win), "never");
    w.approve("web", "PD-W-1", None);
    let offset = opens.duration_since(now()).as_secs() - 20;
    let cmd = format!("sh {}", w.reboot.display());
    let mut daemon = h.agent_daemon_command(
        &w.srv.url,
        None,
        &[
            "--interval".into(),
            "3600".into(),
            "--no-push".into(),
            "--reboot-command".into(),
            cmd.into(),
        ],
    );
    daemon.env(CLOCK_OFFSET_ENV, offset.to_string());
    let d = Daemon::spawn(daemon, w.dir.join("due-1.log"));
    d.until_logged("waiting PD-W-1: waiting for the maintenance window");
    d.until_logged("when the waiting work falls due");
    d.until_logged("assigned 1 installed 1 failed 0");
    drop(d);
    assert_eq!(h.version("pd-win-a").as_deref(), Some("1.0-2"));
}

/// The server is stopped after the agent received a signed assignment outside its
/// window: the agent still refuses to install outside it, and installs by the deadline
/// the signed answer carries; an answer older than --max-silence installs nothing.
#[test]
fn the_agent_refuses_to_install_outside_its_window_while_the_server_is_down_and_installs_by_the_deadline(
) {
    let _serial = patchday_testkit::serial();
    let w = world();
    let h = w.host("down-1", "web");
    let closed = window(300, 360);
    w.set_window("web", std::slice::from_ref(&closed), "never");
    w.approve("web", "PD-W-1", Some(now() + SignedDuration::from_hours(2)));
    let o = run(&h, &w.srv.url, None, 0, &w.reboot);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("waiting PD-W-1: waiting for the deadline"),
        "{}",
        text(&o)
    );
    let url = w.srv.url.clone();
    let World {
        srv, reboot, _dir, ..
    } = w;
    drop(srv);

    // Down, outside the window, before the deadline: nothing installed, and it says so.
    let o = run(&h, &url, None, 0, &reboot);
    let out = text(&o);
    assert!(
        !o.status.success(),
        "an unreachable server is a failed run: {out}"
    );
    assert!(
        out.contains("server unreachable")
            && out.contains("waiting PD-W-1: waiting for the deadline"),
        "{out}"
    );
    assert_eq!(h.version("pd-win-a").as_deref(), Some("1.0-1"));

    // Down for three hours: past the deadline, installed from the staged payloads.
    let o = run(&h, &url, None, 3 * 3600, &reboot);
    let out = text(&o);
    assert!(out.contains("installed 1"), "{out}");
    assert_eq!(h.version("pd-win-a").as_deref(), Some("1.0-2"));
}

/// An agent down longer than --max-silence acts on nothing, whatever the deadline.
#[test]
fn a_signed_answer_older_than_max_silence_installs_nothing_while_the_server_is_down() {
    let _serial = patchday_testkit::serial();
    let w = world();
    let h = w.host("silent-1", "web");
    w.set_window("web", &[window(300, 360)], "never");
    w.approve("web", "PD-W-1", Some(now() + SignedDuration::from_hours(1)));
    let o = run(&h, &w.srv.url, None, 0, &w.reboot);
    assert!(o.status.success(), "{}", text(&o));
    let url = w.srv.url.clone();
    let World {
        srv, reboot, _dir, ..
    } = w;
    drop(srv);
    let o = run(&h, &url, None, 25 * 3600, &reboot);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("the server is unreachable and the last signed answer is too old to act on: nothing was installed"),
        "{out}"
    );
    assert_eq!(h.version("pd-win-a").as_deref(), Some("1.0-1"));
}

/// Reboot policies: `now` reboots right after the install and the next run reports what
/// the reboot completed (installed-pending-reboot → installed in the history); `never`
/// leaves it pending and says so; `in-window` waits for the window, also with the server
/// down, after a deadline made it install outside one.
#[test]
fn reboot_policies_now_never_and_in_window() {
    let _serial = patchday_testkit::serial();
    let w = world();
    let now_host = w.host("rb-now", "web");
    let never_host = w.host("rb-never", "db");
    let window_host = w.host("rb-window", "ops");
    let open = window(-60, 120);
    w.set_window("web", std::slice::from_ref(&open), "now");
    w.set_window("db", std::slice::from_ref(&open), "never");
    let later = window(180, 240);
    w.set_window("ops", std::slice::from_ref(&later), "in-window");
    for g in ["web", "db"] {
        w.approve(g, "PD-W-2", None);
    }
    w.approve("ops", "PD-W-2", Some(now() - SignedDuration::from_secs(60)));

    // now: installed, rebooted, and the next run reports what the reboot completed.
    let o = run(&now_host, &w.srv.url, None, 0, &w.reboot);
    let out = text(&o);
    assert!(out.contains("rebooting for PD-W-2"), "{out}");
    assert_eq!(reboots(&now_host), 1);
    let o = run(&now_host, &w.srv.url, None, 0, &w.reboot);
    assert!(text(&o).contains("reboot completed PD-W-2"), "{}", text(&o));
    assert_eq!(w.srv.update_state("rb-now", "PD-W-2").0, "installed");
    let hist: Value = serde_json::from_str(&w.srv.cli(&[
        "history", "--tenant", "acme", "--update", "PD-W-2", "--format", "json",
    ]))
    .unwrap();
    let id = w.srv.acme_host_id("rb-now");
    let steps: Vec<(&str, &str)> = hist["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["host"] == id.as_str())
        .map(|e| {
            (
                e["previous"].as_str().unwrap_or("-"),
                e["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        steps.contains(&("installed-pending-reboot", "installed")),
        "{steps:?}"
    );

    // never: installed, pending reboot, no reboot.
    let o = run(&never_host, &w.srv.url, None, 0, &w.reboot);
    let out = text(&o);
    assert!(
        out.contains("pending reboot PD-W-2: reboot pending: the reboot policy is never"),
        "{out}"
    );
    assert_eq!(reboots(&never_host), 0);
    assert_eq!(
        w.srv.update_state("rb-never", "PD-W-2").0,
        "installed-pending-reboot"
    );

    // in-window: installed by the deadline outside the window, reboot waits for it...
    let o = run(&window_host, &w.srv.url, None, 0, &w.reboot);
    let out = text(&o);
    let expected = format!(
        "pending reboot PD-W-2: reboot pending until the maintenance window {}",
        opening(&later)
    );
    assert!(out.contains(&expected), "{expected:?} not in {out}");
    assert_eq!(reboots(&window_host), 0);
    // ... also with the server down, and reboots inside it.
    let url = w.srv.url.clone();
    let World {
        srv, reboot, _dir, ..
    } = w;
    drop(srv);
    let o = run(&window_host, &url, None, 3600, &reboot);
    assert_eq!(reboots(&window_host), 0, "{}", text(&o));
    let o = run(&window_host, &url, None, 200 * 60, &reboot);
    assert!(text(&o).contains("rebooting for PD-W-2"), "{}", text(&o));
    assert_eq!(reboots(&window_host), 1);
}
