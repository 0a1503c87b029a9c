//! `patchday demo`: a server, a signed catalog and a small fleet going from
//! vulnerable to compliant, on embedded defaults.
//!
//! As root it uses overlay hosts (real Debian systems in mount namespaces, see
//! `patchday-lab`) and a genuine Debian security update fetched with
//! `apt-get download` when the registry answers; otherwise synthetic packages and
//! `dpkg --root` sandboxes. It says which it used.

use crate::api::Api;
use crate::catalog::{add_update, describe_debs, UpdateOptions};
use crate::render::{compliant_hosts, report_table, By, Format};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use patchday_core::calendar::PatchDaySchedule;
use patchday_lab::{DebSpec, HostKind, LabHost};
use patchday_trust::Expiries;
use patchday_types::api::HostCompliance;
use patchday_types::api::{ApprovalRequest, CreateTenant, Decision, Group};
use patchday_types::{GroupId, Release, Severity, TenantId, UpdateId, YearMonth};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options of `patchday demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Working directory (server data, keys, catalog, hosts); removed afterwards unless --keep.
    #[arg(long, default_value = "/var/tmp/patchday-demo")]
    pub dir: PathBuf,
    /// Number of hosts (3 to 5).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(3..=5))]
    pub hosts: u8,
    /// Use synthetic packages even when a real Debian update can be fetched.
    #[arg(long)]
    pub synthetic: bool,
    /// Use `dpkg --root` sandboxes even as root.
    #[arg(long)]
    pub sandbox: bool,
    /// Keep the working directory and hosts for inspection.
    #[arg(long)]
    pub keep: bool,
}

#[allow(clippy::disallowed_methods)] // the demo is a binary edge
fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

struct Say {
    step: usize,
    total: usize,
}

impl Say {
    fn step(&mut self, msg: &str) {
        self.step += 1;
        println!("[{}/{}] {msg}", self.step, self.total);
    }
}

fn spinner(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("      {spinner} {msg} [{bar:20}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(what.to_string());
    pb
}

/// One package change the demo ships: the fleet starts at `old`, the catalog offers `new`.
struct Change {
    id: UpdateId,
    package: String,
    old_deb: PathBuf,
    new_deb: PathBuf,
    new_version: String,
    old_version: String,
    release: Release,
    severity: Severity,
}

fn train_month(now: jiff::Timestamp) -> anyhow::Result<YearMonth> {
    let sched = PatchDaySchedule::default();
    let z = now.to_zoned(jiff::tz::TimeZone::UTC);
    let this = YearMonth {
        year: z.year(),
        month: z.month(),
    };
    if sched.is_approvable(&Release::Train { month: this }, now)? {
        return Ok(this);
    }
    Ok(if this.month == 1 {
        YearMonth {
            year: this.year - 1,
            month: 12,
        }
    } else {
        YearMonth {
            year: this.year,
            month: this.month - 1,
        }
    })
}

fn synthetic(
    dir: &Path,
    name: &str,
    old: &str,
    new: &str,
    cves: &str,
    reboot: bool,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let body = |v: &str| format!("#!/bin/sh\necho '{name} {v} (Patchday demo)'\n").into_bytes();
    let base = DebSpec::new(name, old)
        .file(format!("/usr/bin/{name}"), body(old), 0o755)
        .changelog(old, "Initial demo release.");
    let old_deb = patchday_lab::build_deb(&base, dir)?;
    let new_spec = DebSpec::new(name, new)
        .file(format!("/usr/bin/{name}"), body(new), 0o755)
        .changelog(
            new,
            format!("Security fix (fictional demo advisories: {cves})."),
        )
        .changelog(old, "Initial demo release.")
        .reboot_required(reboot);
    let new_deb = patchday_lab::build_deb(&new_spec, dir)?;
    Ok((old_deb, new_deb))
}

/// Runs the demo; returns the exit code (0 only when every host ended compliant).
pub async fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let mut say = Say { step: 0, total: 10 };
    let started = std::time::Instant::now();
    let dir = args.dir.clone();
    if dir.exists() {
        cleanup(&dir)?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run_in(&args, &dir, &mut say).await;
    if args.keep {
        println!("kept {} for inspection", dir.display());
    } else if let Err(e) = cleanup(&dir) {
        eprintln!("warning: could not remove {}: {e:#}", dir.display());
    }
    let code = result?;
    println!("demo finished in {:.1}s", started.elapsed().as_secs_f64());
    Ok(code)
}

fn cleanup(dir: &Path) -> anyhow::Result<()> {
    let hosts = dir.join("hosts");
    if hosts.exists() {
        for e in std::fs::read_dir(&hosts)? {
            let e = e?;
            if let Ok(h) = LabHost::open(&hosts, &e.file_name().to_string_lossy()) {
                h.destroy()?;
            }
        }
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

async fn run_in(args: &DemoArgs, dir: &Path, say: &mut Say) -> anyhow::Result<i32> {
    let (mut kind, why) = patchday_lab::best_kind();
    if args.sandbox {
        kind = HostKind::Sandbox;
    }
    say.step(&format!(
        "hosts: {} ({})",
        match kind {
            HostKind::Overlay => "overlay hosts: real Debian systems in private mount namespaces",
            HostKind::Sandbox => "dpkg --root sandboxes",
        },
        why
    ));

    // Packages.
    let pkgs = dir.join("packages");
    std::fs::create_dir_all(&pkgs)?;
    let now = now();
    let month = train_month(now)?;
    let mut changes = Vec::new();
    let mut real_used = false;
    if kind == HostKind::Overlay && !args.synthetic {
        match patchday_lab::find_real_update(&[]).and_then(|u| match u {
            Some(u) => patchday_lab::download_real_update(&u, &pkgs).map(|d| Some((u, d))),
            None => Ok(None),
        }) {
            Ok(Some((u, (old, new)))) => {
                changes.push(Change {
                    id: UpdateId::new("PD-DEMO-0001")?,
                    package: u.package.clone(),
                    old_deb: old,
                    new_deb: new,
                    new_version: u.new_version.clone(),
                    old_version: u.old_version.clone(),
                    release: Release::Train { month },
                    severity: Severity::Important,
                });
                real_used = true;
            }
            Ok(None) => println!("      no real Debian security update found in this machine's apt lists; using synthetic packages"),
            Err(e) => println!("      real Debian update unavailable ({e}); using synthetic packages"),
        }
    }
    if !real_used {
        let (o, n) = synthetic(
            &pkgs,
            "libpatchday-demo1",
            "1.0-1",
            "1.0-1+deb12u1",
            "CVE-2099-1001, CVE-2099-1002",
            false,
        )?;
        changes.push(Change {
            id: UpdateId::new("PD-DEMO-0001")?,
            package: "libpatchday-demo1".into(),
            old_deb: o,
            new_deb: n,
            new_version: "1.0-1+deb12u1".into(),
            old_version: "1.0-1".into(),
            release: Release::Train { month },
            severity: Severity::Important,
        });
    }
    let (o, n) = synthetic(
        &pkgs,
        "patchday-demo-tool",
        "2.0-1",
        "2.0-2",
        "CVE-2099-2001",
        false,
    )?;
    changes.push(Change {
        id: UpdateId::new("PD-DEMO-0002")?,
        package: "patchday-demo-tool".into(),
        old_deb: o,
        new_deb: n,
        new_version: "2.0-2".into(),
        old_version: "2.0-1".into(),
        release: Release::Emergency {
            reason: "demo: a worm is spreading".into(),
        },
        severity: Severity::Critical,
    });
    let (o, n) = synthetic(
        &pkgs,
        "patchday-demo-firmware",
        "3.0-1",
        "3.1-1",
        "CVE-2099-3001",
        true,
    )?;
    changes.push(Change {
        id: UpdateId::new("PD-DEMO-0003")?,
        package: "patchday-demo-firmware".into(),
        old_deb: o,
        new_deb: n,
        new_version: "3.1-1".into(),
        old_version: "3.0-1".into(),
        release: Release::Train { month },
        severity: Severity::Moderate,
    });
    say.step(&format!(
        "packages: {}",
        if real_used {
            format!(
                "a genuine Debian security update ({} {} -> {}, fetched with apt-get download) and two synthetic ones",
                changes[0].package, changes[0].old_version, changes[0].new_version
            )
        } else {
            "synthetic packages built with dpkg-deb".into()
        }
    ));

    // Catalog, signed offline.
    let keys = patchday_trust::generate_keyset(
        &dir.join("keys"),
        patchday_trust::DEFAULT_ROOT_KEYS,
        patchday_trust::DEFAULT_ROOT_THRESHOLD,
    )?;
    let repo = dir.join("catalog");
    patchday_trust::init_catalog(&keys, &repo, now, &Expiries::default()).await?;
    for c in &changes {
        let content = describe_debs(std::slice::from_ref(&c.new_deb), Some(&c.old_version))?;
        let opts = UpdateOptions {
            id: c.id.clone(),
            title: None,
            product: None,
            classification: None,
            severity: c.severity,
            release: c.release.clone(),
            supersedes: vec![],
            since: Some(c.old_version.clone()),
            tenants: vec![],
            role: None,
            upstream: None,
        };
        let doc = add_update(&keys, &repo, content, &opts, now).await?;
        println!("      signed {}: {} [{}]", doc.id, doc.title, doc.release);
    }
    say.step("catalog: TUF repository signed with keys kept outside the server");

    // Server.
    let mut cfg = patchday_server::ServerConfig::new(dir.join("server"));
    cfg.catalog_root = Some(repo.join("metadata/1.root.json"));
    // As in production: the timestamp key is the only catalog key the server holds.
    cfg.online_timestamp = Some(patchday_server::freshness::OnlineTimestampKey::new(
        keys.timestamp.clone(),
    ));
    let init = patchday_server::init(&cfg, Arc::new(patchday_server::SystemClock)).await?;
    let token = init
        .first_admin_token
        .context("a fresh server must create an admin token")?;
    let (addr, serve) = patchday_server::bind(init.state, "127.0.0.1:0".parse()?).await?;
    let server_task = tokio::spawn(serve);
    let url = format!("http://{addr}");
    let api = Api::new(&url, &token, None)?;
    let tar = crate::catalog::pack(&repo)?;
    let st = api.push_catalog(tar.path()).await?;
    say.step(&format!(
        "server on {url}: catalog verified against the pinned root and accepted ({} updates); the server keeps its timestamp fresh, the other catalog keys stay offline",
        st.updates
    ));

    // Tenants, groups, hosts.
    let acme: TenantId = "acme".parse()?;
    let globex: TenantId = "globex".parse()?;
    let mut plan: Vec<(TenantId, &str, GroupId)> = Vec::new();
    for (t, name) in [(&acme, "ACME Corp"), (&globex, "Globex")] {
        api.create_tenant(&CreateTenant {
            id: t.clone(),
            name: name.into(),
            patch_day: None,
            max_hosts: None,
        })
        .await?;
    }
    let acme_groups = ["web", "db"];
    for g in acme_groups {
        api.create_group(
            &acme,
            &Group {
                id: g.parse()?,
                name: g.into(),
            },
        )
        .await?;
    }
    api.create_group(
        &globex,
        &Group {
            id: "all".parse()?,
            name: "all".into(),
        },
    )
    .await?;
    let names = ["web-1", "web-2", "db-1", "web-3"];
    for n in names.iter().take(usize::from(args.hosts) - 1) {
        plan.push((
            acme.clone(),
            n,
            if n.starts_with("web") {
                "web".parse()?
            } else {
                "db".parse()?
            },
        ));
    }
    plan.push((globex.clone(), "gx-1", "all".parse()?));

    let hosts_dir = dir.join("hosts");
    std::fs::create_dir_all(&hosts_dir)?;
    let pb = spinner(plan.len() as u64, "preparing vulnerable hosts");
    let mut hosts = Vec::new();
    for (t, name, g) in &plan {
        let host = LabHost::create(&hosts_dir, name, kind)?;
        for c in &changes {
            host.install_deb(&c.old_deb)
                .with_context(|| format!("{name}: installing {}", c.old_deb.display()))?;
        }
        hosts.push((t.clone(), host, g.clone()));
        pb.inc(1);
    }
    pb.finish_and_clear();
    say.step(&format!(
        "fleet: {} hosts in 2 tenants, each with {}",
        hosts.len(),
        changes
            .iter()
            .map(|c| format!("{} {}", c.package, c.old_version))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // Enrol and report inventory.
    // One token per tenant, good for exactly as many hosts as the demo enrols there.
    let mut enroll = std::collections::BTreeMap::<TenantId, String>::new();
    for t in [&acme, &globex] {
        let uses = hosts.iter().filter(|(ht, _, _)| ht == t).count();
        let req = patchday_types::api::CreateEnrollToken {
            max_uses: Some(u32::try_from(uses)?),
            ..Default::default()
        };
        enroll.insert(t.clone(), api.create_enroll_token(t, &req).await?.secret);
    }
    let agent = agent_program()?;
    let pb = spinner(hosts.len() as u64, "agents enrolling");
    for (t, host, _) in &hosts {
        run_agent(&agent, host, &url, enroll.get(t).map(String::as_str))?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    for t in [&acme, &globex] {
        for h in api.hosts(t).await? {
            let g = plan
                .iter()
                .find(|(pt, n, _)| pt == t && h.hostname == *n)
                .map(|(_, _, g)| g.clone());
            if let Some(g) = g {
                api.set_host_groups(t, &h.id, &[g]).await?;
            }
        }
    }
    say.step("agents enrolled and reported their dpkg inventory; nothing is approved yet");
    println!();
    print!(
        "{}",
        indent(&report_table(&api.report(None).await?, By::Host).render(Format::Table))
    );
    println!();

    // Approve.
    for c in &changes {
        for g in acme_groups {
            api.decide(
                &acme,
                &ApprovalRequest {
                    update: c.id.clone(),
                    group: g.parse()?,
                    decision: Decision::Approve,
                    deadline: None,
                    reason: None,
                    emergency: false,
                },
            )
            .await?;
        }
        api.decide(
            &globex,
            &ApprovalRequest {
                update: c.id.clone(),
                group: "all".parse()?,
                decision: Decision::Approve,
                deadline: None,
                reason: None,
                emergency: false,
            },
        )
        .await?;
    }
    say.step(&format!("approved {} updates for every group (train {month} has had its patch day; PD-DEMO-0002 took the emergency lane)", changes.len()));

    // Install.
    let pb = spinner(hosts.len() as u64, "agents installing");
    for (_, host, _) in &hosts {
        run_agent(&agent, host, &url, None)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    say.step("agents verified the signed assignments against the catalog, downloaded, checked hashes, installed with dpkg, and reported");

    // Issue 9, point 7: pending reboot is not compliant. The hosts reboot (simulated: their
    // /run is emptied, as a boot does) and check in again, as a maintenance window would.
    let pb = spinner(hosts.len() as u64, "hosts rebooting");
    for (_, host, _) in &hosts {
        host.reboot()?;
        run_agent(&agent, host, &url, None)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    say.step("hosts that asked for a reboot rebooted (their /run emptied, as a boot does) and checked in again");

    // Truth check against dpkg itself.
    let mut truthful = true;
    for (_, host, _) in &hosts {
        for c in &changes {
            let v = host.dpkg_version(&c.package)?;
            if v.as_deref() != Some(c.new_version.as_str()) {
                truthful = false;
                println!(
                    "      {}: dpkg reports {} at {:?}, expected {}",
                    host.name(),
                    c.package,
                    v,
                    c.new_version
                );
            }
        }
    }
    let report = api.report(None).await?;
    println!();
    print!(
        "{}",
        indent(&report_table(&report, By::Host).render(Format::Table))
    );
    println!();
    print!(
        "{}",
        indent(&report_table(&report, By::Update).render(Format::Table))
    );
    println!();
    // Issue 9, point 7: a host whose only gap is a reboot has everything installed
    // but is not compliant until it reboots; the demo does not reboot its hosts.
    let compliant = compliant_hosts(&report);
    let reboot = report
        .hosts
        .iter()
        .filter(|h| h.compliance == HostCompliance::PendingReboot)
        .count();
    let all_ok = truthful
        && !compliant.is_empty()
        && compliant.values().filter(|c| **c).count() + reboot == compliant.len();
    say.step(&if all_ok && reboot == 0 {
        format!(
            "every host is compliant ({} of {}), and dpkg on each host agrees",
            compliant.len(),
            compliant.len()
        )
    } else if all_ok {
        format!(
            "every host has every update installed ({} of {}), and dpkg on each host agrees; {reboot} only wait for a reboot to be compliant",
            compliant.len(),
            compliant.len()
        )
    } else {
        "some hosts are NOT compliant; see the report above".to_string()
    });
    server_task.abort();
    if !args.keep {
        for (_, host, _) in hosts {
            host.destroy()?;
        }
    }
    Ok(if all_ok { 0 } else { 1 })
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("      {l}\n")).collect()
}

/// The agent program: `patchday-agent` next to this binary, else this binary's
/// hidden `agent` subcommand (same code).
fn agent_program() -> anyhow::Result<(PathBuf, Vec<OsString>)> {
    let me = std::env::current_exe()?;
    let sibling = me.with_file_name("patchday-agent");
    if sibling.exists() {
        Ok((sibling, vec![]))
    } else {
        Ok((me, vec!["agent".into()]))
    }
}

fn run_agent(
    agent: &(PathBuf, Vec<OsString>),
    host: &LabHost,
    url: &str,
    enroll: Option<&str>,
) -> anyhow::Result<()> {
    let mut args = agent.1.clone();
    args.extend(["--server".into(), url.into(), "--once".into()]);
    match host.root_dir() {
        Some(root) => {
            args.push("--root".into());
            args.push(root.into());
            args.push("--state".into());
            args.push(host.dir().join("agent-state").into());
            for a in host.dpkg_args() {
                if !a.to_string_lossy().starts_with("--root=") {
                    let mut x = OsString::from("--dpkg-arg=");
                    x.push(a);
                    args.push(x);
                }
            }
        }
        None => {
            args.push("--state".into());
            args.push("/var/lib/patchday-agent".into());
        }
    }
    let mut cmd = host.command(&agent.0, &args);
    // In the environment, not the process list (as the README tells users).
    match enroll {
        Some(t) => cmd.env("PATCHDAY_ENROLL_TOKEN", t),
        None => cmd.env_remove("PATCHDAY_ENROLL_TOKEN"),
    };
    let out = cmd
        .env("RUST_LOG", "warn")
        .output()
        .with_context(|| format!("{}: cannot start the agent", host.name()))?;
    if !out.status.success() {
        anyhow::bail!(
            "{}: agent failed: {}{}",
            host.name(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
