//! `patchday demo`: a server, a signed catalog and a small fleet going from
//! vulnerable to compliant, on embedded defaults.
//!
//! As root it uses overlay hosts (copies of this machine in mount namespaces, see
//! `patchday-lab`) and, when the Debian security archive answers, this machine's genuine
//! pending security updates mirrored through the delegated mirror role ([`archive`]);
//! otherwise one genuine update fetched with `apt-get download` and synthetic packages,
//! or synthetic packages in `dpkg --root` sandboxes. It says which it used.

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
    /// Where packages mirrored from the Debian security archive are kept between runs
    /// [default: $XDG_CACHE_HOME/patchday/archive, else ~/.cache/patchday/archive].
    #[arg(long)]
    pub archive_cache: Option<PathBuf>,
    /// The Debian security archive to mirror from (its InRelease must be signed by
    /// Debian's archive keyring).
    #[arg(long, default_value = archive::DEFAULT_ARCHIVE)]
    pub archive_uri: String,
}

mod archive;

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
    // Issue 9 ("Real parts and tests"): the genuine pending security updates of this
    // machine, mirrored from the Debian security archive, when it answers.
    let archive = if kind == HostKind::Overlay && !args.synthetic {
        match archive::probe(args).await {
            Ok(source) => {
                say.total = archive::STEPS;
                Some(source)
            }
            Err(why) => {
                println!(
                    "      the Debian security archive path is not taken ({why}); falling back to one genuine update fetched with apt-get download, and synthetic ones"
                );
                None
            }
        }
    } else {
        None
    };
    say.step(&format!(
        "hosts: {} ({})",
        match kind {
            HostKind::Overlay => "overlay hosts: real Debian systems in private mount namespaces",
            HostKind::Sandbox => "dpkg --root sandboxes",
        },
        why
    ));
    if let Some(source) = archive {
        return archive::run(args, dir, say, kind, source).await;
    }

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

    let (api, url, server_task) = start_server(dir, &keys, &repo).await?;
    let st = api
        .push_catalog(crate::catalog::pack(&repo)?.path())
        .await?;
    say.step(&format!(
        "server on {url}: catalog verified against the pinned root and accepted ({} updates); the server keeps its timestamp fresh, the other catalog keys stay offline",
        st.updates
    ));

    let (plan, hosts) = fleet(&api, args, kind, dir, |host| {
        for c in &changes {
            host.install_deb(&c.old_deb)
                .with_context(|| format!("{}: installing {}", host.name(), c.old_deb.display()))?;
        }
        Ok(())
    })
    .await?;
    say.step(&format!(
        "fleet: {} hosts in 2 tenants, each with {}",
        hosts.len(),
        changes
            .iter()
            .map(|c| format!("{} {}", c.package, c.old_version))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let agent = agent_program()?;
    enrol(&api, &plan, &hosts, &agent, &url).await?;
    say.step("agents enrolled and reported their dpkg inventory; nothing is approved yet");
    print_report(&api, &[By::Host]).await?;

    // Approve.
    for c in &changes {
        decide_everywhere(&api, &c.id, Decision::Approve, None).await?;
    }
    say.step(&format!("approved {} updates for every group (train {month} has had its patch day; PD-DEMO-0002 took the emergency lane)", changes.len()));

    install_and_reboot(&hosts, &agent, &url, say)?;

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
    let report = print_report(&api, &[By::Host, By::Update]).await?;
    let verdict = report_verdict(&report, truthful);
    finish(verdict, say, server_task, hosts, args.keep)
}

/// Whether every host ended compliant (or waits only for a reboot) and dpkg agreed:
/// `(all_ok, compliant hosts, hosts, hosts pending reboot)`.
fn report_verdict(
    report: &patchday_types::api::ComplianceReport,
    truthful: bool,
) -> (bool, usize, usize, usize) {
    let compliant = compliant_hosts(report);
    let reboot = report
        .hosts
        .iter()
        .filter(|h| h.compliance == HostCompliance::PendingReboot)
        .count();
    let ok = compliant.values().filter(|c| **c).count();
    let all_ok = truthful && !compliant.is_empty() && ok + reboot == compliant.len();
    (all_ok, ok, compliant.len(), reboot)
}

/// The last step: says whether every host is compliant, stops the server, removes the
/// hosts unless kept; the exit code.
fn finish(
    (all_ok, _ok, total, reboot): (bool, usize, usize, usize),
    say: &mut Say,
    server_task: tokio::task::JoinHandle<std::io::Result<()>>,
    hosts: Vec<(TenantId, LabHost, GroupId)>,
    keep: bool,
) -> anyhow::Result<i32> {
    // Issue 9, point 7: a host whose only gap is a reboot has everything installed
    // but is not compliant until it reboots.
    say.step(&if all_ok && reboot == 0 {
        format!("every host is compliant ({total} of {total}), and dpkg on each host agrees")
    } else if all_ok {
        format!(
            "every host has every update installed ({total} of {total}), and dpkg on each host agrees; {reboot} only wait for a reboot to be compliant"
        )
    } else {
        "some hosts are NOT compliant; see the report above".to_string()
    });
    server_task.abort();
    if !keep {
        for (_, host, _) in hosts {
            host.destroy()?;
        }
    }
    Ok(if all_ok { 0 } else { 1 })
}

/// Starts the demo's server with `repo`'s root pinned and only the timestamp key online.
async fn start_server(
    dir: &Path,
    keys: &patchday_trust::KeyPaths,
    repo: &Path,
) -> anyhow::Result<(Api, String, tokio::task::JoinHandle<std::io::Result<()>>)> {
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
    Ok((api, url, server_task))
}

/// Which host is in which tenant and group.
type Plan = Vec<(TenantId, &'static str, GroupId)>;
/// The demo's hosts, with their tenant and group.
type Fleet = Vec<(TenantId, LabHost, GroupId)>;

/// The demo's tenants (acme with groups web and db, globex with all) and hosts, each
/// made vulnerable by `prepare`.
async fn fleet(
    api: &Api,
    args: &DemoArgs,
    kind: HostKind,
    dir: &Path,
    prepare: impl Fn(&LabHost) -> anyhow::Result<()>,
) -> anyhow::Result<(Plan, Fleet)> {
    let (acme, globex) = tenants()?;
    let mut plan: Plan = Vec::new();
    for (t, name) in [(&acme, "ACME Corp"), (&globex, "Globex")] {
        api.create_tenant(&CreateTenant {
            id: t.clone(),
            name: name.into(),
            patch_day: None,
            max_hosts: None,
        })
        .await?;
    }
    for g in ACME_GROUPS {
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
        prepare(&host)?;
        hosts.push((t.clone(), host, g.clone()));
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok((plan, hosts))
}

/// The demo's two tenants.
fn tenants() -> anyhow::Result<(TenantId, TenantId)> {
    Ok(("acme".parse()?, "globex".parse()?))
}

/// acme's groups.
const ACME_GROUPS: [&str; 2] = ["web", "db"];

/// Enrols every host (one token per tenant, good for exactly its hosts), lets it report
/// its dpkg inventory, and puts it in its group.
async fn enrol(
    api: &Api,
    plan: &Plan,
    hosts: &Fleet,
    agent: &(PathBuf, Vec<OsString>),
    url: &str,
) -> anyhow::Result<()> {
    let (acme, globex) = tenants()?;
    let mut enroll = std::collections::BTreeMap::<TenantId, String>::new();
    for t in [&acme, &globex] {
        let uses = hosts.iter().filter(|(ht, _, _)| ht == t).count();
        let req = patchday_types::api::CreateEnrollToken {
            max_uses: Some(u32::try_from(uses)?),
            ..Default::default()
        };
        enroll.insert(t.clone(), api.create_enroll_token(t, &req).await?.secret);
    }
    let pb = spinner(hosts.len() as u64, "agents enrolling");
    for (t, host, _) in hosts {
        run_agent(agent, host, url, enroll.get(t).map(String::as_str))?;
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
    Ok(())
}

/// Approves (or declines, with `reason`) `update` for every group of both tenants.
async fn decide_everywhere(
    api: &Api,
    update: &UpdateId,
    decision: Decision,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    let (acme, globex) = tenants()?;
    let groups = ACME_GROUPS
        .iter()
        .map(|g| (&acme, *g))
        .chain([(&globex, "all")]);
    for (t, g) in groups {
        api.decide(
            t,
            &ApprovalRequest {
                update: update.clone(),
                group: g.parse()?,
                decision,
                deadline: None,
                reason: reason.map(str::to_owned),
                emergency: false,
                remove: false,
            },
        )
        .await?;
    }
    Ok(())
}

/// Agents install what is assigned; then the hosts reboot (simulated: their /run is
/// emptied, as a boot does) and check in again, as a maintenance window would (issue 9,
/// point 7: pending reboot is not compliant).
fn install_and_reboot(
    hosts: &Fleet,
    agent: &(PathBuf, Vec<OsString>),
    url: &str,
    say: &mut Say,
) -> anyhow::Result<()> {
    let pb = spinner(hosts.len() as u64, "agents installing");
    for (_, host, _) in hosts {
        run_agent(agent, host, url, None)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    say.step("agents verified the signed assignments against the catalog, downloaded, checked hashes, installed with dpkg, and reported");
    let pb = spinner(hosts.len() as u64, "hosts rebooting");
    for (_, host, _) in hosts {
        host.reboot()?;
        run_agent(agent, host, url, None)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    say.step("hosts that asked for a reboot rebooted (their /run emptied, as a boot does) and checked in again");
    Ok(())
}

/// Prints the compliance report, by each of `views`; returns it.
async fn print_report(
    api: &Api,
    views: &[By],
) -> anyhow::Result<patchday_types::api::ComplianceReport> {
    let report = api.report(None).await?;
    println!();
    for by in views {
        print!(
            "{}",
            indent(&report_table(&report, *by).render(Format::Table))
        );
        println!();
    }
    Ok(report)
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
