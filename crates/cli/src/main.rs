//! `patchday`: server, admin commands, catalog publishing and the demo.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use patchday_cli::api::Conn;
use patchday_cli::render::{report_table, By, Format, Table};
use patchday_types::api::{
    ApprovalRequest, CreateTenant, CreateToken, Decision, Group, PatchDayConfig, Role,
};
use patchday_types::{
    Classification, GroupId, HostId, Release, Severity, TenantId, UpdateId, YearMonth,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Patchday: a self-hosted patch-management system.
///
/// Start with `patchday demo` to watch a small fleet go from vulnerable to compliant.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log as JSON.
    #[arg(long, global = true)]
    log_json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server.
    ///
    /// Example: patchday server --data /var/lib/patchday --listen 127.0.0.1:8470 --catalog-root keys/../catalog/metadata/1.root.json
    Server(ServerArgs),
    /// Runs a server, a catalog and a small fleet from vulnerable to compliant.
    Demo(patchday_cli::demo::DemoArgs),
    /// Publishes the catalog: keys, signing updates offline, pushing.
    #[command(subcommand)]
    Catalog(CatalogCmd),
    /// Catalog keys: generate (root 2-of-3 by default), rotate a role's keys, check permissions.
    ///
    /// Example: patchday keys generate --keys ~/patchday-keys; patchday keys check --keys ~/patchday-keys
    #[command(subcommand)]
    Keys(patchday_cli::keys::KeysCmd),
    /// Follows Debian/Ubuntu/vendor apt archives into the catalog (issue 9, archive sync).
    ///
    /// Example: patchday mirror run --config mirror.toml --repo ~/catalog --keys ~/patchday-keys --packages openssl
    #[command(subcommand)]
    Mirror(patchday_cli::mirror::MirrorCmd),
    /// Tenants (customers).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Operator tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Enrolment tokens for agents.
    #[command(subcommand)]
    EnrollToken(EnrollTokenCmd),
    /// Host groups.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Hosts.
    #[command(subcommand)]
    Host(HostCmd),
    /// Lists the catalog's updates as a tenant's calendar sees them.
    ///
    /// Example: patchday updates --tenant acme
    Updates {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Approves an update for a group.
    ///
    /// Example: patchday approve --tenant acme --group web PD-2026-0001 --deadline 2026-12-10T18:00:00Z
    Approve(DecideArgs),
    /// Declines an update for a group.
    ///
    /// Example: patchday decline --tenant acme --group web PD-2026-0001
    Decline(DecideArgs),
    /// Compliance per tenant, group, host or update.
    ///
    /// Example: patchday report --by host --format csv
    Report {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<TenantId>,
        /// Grouping.
        #[arg(long, value_enum, default_value_t = By::Host)]
        by: By,
        #[command(flatten)]
        conn: Conn,
    },
    /// Security audit of this host (or an image with --root) and its prioritised plan.
    ///
    /// Example: patchday audit --osv advisories/ --kev known_exploited_vulnerabilities.json --format html -o plan.html
    Audit(patchday_audit::cli::AuditArgs),
    /// The security audit of enrolled hosts, from the facts their agents report.
    ///
    /// Example: patchday audit-report --tenant acme                 (fleet plan)
    ///          patchday audit-report --tenant acme --host web-1-ab12 --format html > plan.html
    AuditReport {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// One host's plan instead of the fleet's.
        #[arg(long)]
        host: Option<HostId>,
        #[command(flatten)]
        conn: Conn,
        /// With --host: json, html or text (default text).
        #[arg(long = "plan-format")]
        plan_format: Option<String>,
    },
    /// Runs the agent in this process (the demo uses it when patchday-agent is not built).
    #[command(hide = true)]
    Agent(patchday_agent::cli::Args),
}

#[derive(Args)]
struct ServerArgs {
    /// Data directory (database, content store, pinned root).
    #[arg(long, env = "PATCHDAY_DATA")]
    data: Option<PathBuf>,
    /// Listen address.
    #[arg(long, env = "PATCHDAY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Catalog root.json to pin on first start.
    #[arg(long)]
    catalog_root: Option<PathBuf>,
    /// Also write the first admin token to this file (mode 0600).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Server config file (TOML: data, listen, catalog_root, poll_seconds, max_catalog_bytes, timestamp_key).
    #[arg(long)]
    config: Option<PathBuf>,
    /// OSV advisories (file or directory, repeatable) for auditing reported facts.
    #[arg(long)]
    osv: Vec<PathBuf>,
    /// Debian security tracker JSON (repeatable).
    #[arg(long)]
    debian_tracker: Vec<PathBuf>,
    /// CISA known-exploited catalog JSON.
    #[arg(long)]
    kev: Option<PathBuf>,
    /// distro-info-data CSV [default: /usr/share/distro-info/debian.csv when present].
    #[arg(long)]
    distro_info: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key", conflicts_with = "tls_self_signed")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a private CA made in DATA/tls (agents pin DATA/tls/ca.pem with --ca).
    #[arg(long)]
    tls_self_signed: bool,
    /// Names for the self-signed certificate (repeatable) [default: localhost, 127.0.0.1].
    #[arg(long = "tls-name")]
    tls_names: Vec<String>,
    /// The catalog's timestamp key (mode 0600; the only catalog key a server may hold):
    /// the server then signs the timestamp of every pushed catalog and re-signs it before
    /// it expires, so an idle catalog stays fresh.
    #[arg(long)]
    timestamp_key: Option<PathBuf>,
    /// Lifetime of the timestamps the server signs, in seconds.
    #[arg(long, default_value_t = 86_400, requires = "timestamp_key")]
    timestamp_lifetime: u32,
    /// How often the refresher looks at the timestamp, in seconds.
    #[arg(long, default_value_t = 60, requires = "timestamp_key", hide = true)]
    timestamp_check: u32,
}

#[derive(Subcommand)]
enum CatalogCmd {
    /// Creates an empty signed catalog.
    ///
    /// Example: patchday catalog init --keys ~/patchday-keys --repo ~/catalog (keys from `patchday keys generate`)
    Init {
        /// Key directory.
        #[arg(long)]
        keys: PathBuf,
        /// Catalog directory.
        #[arg(long)]
        repo: PathBuf,
    },
    /// Signs an update made of .deb files into the catalog.
    ///
    /// Example: patchday catalog add-deb --keys K --repo R --id PD-2026-0001 --train 2026-12 --since 2.5.0-1+deb12u1 libexpat1_2.5.0-1+deb12u5_amd64.deb
    AddDeb {
        #[command(flatten)]
        common: AddArgs,
        /// The .deb files.
        #[arg(required = true)]
        debs: Vec<PathBuf>,
        /// Count CVEs from changelog entries newer than this version.
        #[arg(long)]
        since: Option<String>,
    },
    /// Signs an update made of a bundle (tar.zst with manifest.json) into the catalog.
    ///
    /// Example: patchday catalog add-bundle --keys K --repo R --id PD-2026-0002 --emergency "actively exploited" tool_2.0.tar.zst
    AddBundle {
        #[command(flatten)]
        common: AddArgs,
        /// The bundle file.
        bundle: PathBuf,
        /// CVEs it fixes.
        #[arg(long = "cve")]
        cves: Vec<String>,
    },
    /// Pushes the signed catalog to the server (which verifies it against its pinned root).
    ///
    /// Example: patchday catalog push --repo ~/catalog
    Push {
        /// Catalog directory.
        #[arg(long)]
        repo: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Shows the catalog versions the server holds.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Args)]
struct AddArgs {
    /// Key directory.
    #[arg(long)]
    keys: PathBuf,
    /// Catalog directory.
    #[arg(long)]
    repo: PathBuf,
    /// Update id, e.g. PD-2026-0001.
    #[arg(long)]
    id: UpdateId,
    /// Title.
    #[arg(long)]
    title: Option<String>,
    /// Product.
    #[arg(long)]
    product: Option<String>,
    /// security, critical, bugfix or feature.
    #[arg(long)]
    classification: Option<Classification>,
    /// critical, important, moderate or low.
    #[arg(long, default_value = "important")]
    severity: Severity,
    /// Release train (YYYY-MM): approvable from that month's patch day.
    #[arg(
        long,
        conflicts_with = "emergency",
        required_unless_present = "emergency"
    )]
    train: Option<YearMonth>,
    /// Emergency lane, with the reason: approvable at once.
    #[arg(long)]
    emergency: Option<String>,
    /// Updates this one supersedes.
    #[arg(long)]
    supersedes: Vec<UpdateId>,
    /// Publish for this tenant only (repeatable; default: every tenant), e.g. a
    /// customer's own software. Signed: no server can offer it to other tenants' hosts.
    #[arg(long = "tenant")]
    tenants: Vec<String>,
}

impl AddArgs {
    fn options(
        &self,
        since: Option<String>,
    ) -> anyhow::Result<patchday_cli::catalog::UpdateOptions> {
        let release = match (&self.train, &self.emergency) {
            (Some(m), None) => Release::Train { month: *m },
            (None, Some(r)) if !r.trim().is_empty() => Release::Emergency { reason: r.clone() },
            _ => anyhow::bail!("give either --train YYYY-MM or --emergency REASON"),
        };
        Ok(patchday_cli::catalog::UpdateOptions {
            id: self.id.clone(),
            title: self.title.clone(),
            product: self.product.clone(),
            classification: self.classification,
            severity: self.severity,
            release,
            supersedes: self.supersedes.clone(),
            since,
            tenants: self.tenants.clone(),
        })
    }
}

#[derive(Subcommand)]
enum TenantCmd {
    /// Creates a tenant.
    ///
    /// Example: patchday tenant create acme --name "ACME Corp" --time-zone Europe/Berlin
    Create {
        /// Tenant id.
        id: TenantId,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        patch_day: PatchDayArgs,
        #[command(flatten)]
        conn: Conn,
    },
    /// Lists tenants.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Changes a tenant's patch day.
    ///
    /// Example: patchday tenant patch-day acme --week last --weekday friday --time 22:00 --time-zone Europe/Berlin
    PatchDay {
        /// Tenant id.
        id: TenantId,
        #[command(flatten)]
        patch_day: PatchDayArgs,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Args)]
struct PatchDayArgs {
    /// first, second, third, fourth or last.
    #[arg(long, default_value = "second")]
    week: String,
    /// Day of the week.
    #[arg(long, default_value = "tuesday")]
    weekday: String,
    /// Local time HH:MM.
    #[arg(long, default_value = "10:00")]
    time: String,
    /// IANA time zone.
    #[arg(long, default_value = "UTC")]
    time_zone: String,
}

impl PatchDayArgs {
    fn config(&self) -> PatchDayConfig {
        PatchDayConfig {
            week: self.week.clone(),
            weekday: self.weekday.clone(),
            time: self.time.clone(),
            time_zone: self.time_zone.clone(),
        }
    }
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Creates an operator token (printed once).
    ///
    /// Example: patchday token create --role read-only --tenant acme --name auditor
    Create {
        /// provider-admin, tenant-admin or read-only.
        #[arg(long)]
        role: Role,
        /// Tenant for tenant roles.
        #[arg(long)]
        tenant: Option<TenantId>,
        /// Label.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
enum EnrollTokenCmd {
    /// Creates an enrolment token for a tenant (printed once).
    ///
    /// Example: patchday enroll-token create --tenant acme
    Create {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
enum GroupCmd {
    /// Creates a group.
    ///
    /// Example: patchday group create --tenant acme web --name "Web servers"
    Create {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Group id.
        id: GroupId,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Lists groups.
    List {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
enum HostCmd {
    /// Lists hosts.
    List {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Sets a host's groups.
    ///
    /// Example: patchday host set-groups --tenant acme web-1-ab12cd34 web pilot
    SetGroups {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Host id.
        host: HostId,
        /// Groups (replaces the current list).
        groups: Vec<GroupId>,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Args)]
struct DecideArgs {
    /// Tenant.
    #[arg(long)]
    tenant: TenantId,
    /// Group.
    #[arg(long)]
    group: GroupId,
    /// Update id.
    update: UpdateId,
    /// Install by then (RFC 3339).
    #[arg(long)]
    deadline: Option<jiff::Timestamp>,
    #[command(flatten)]
    conn: Conn,
}

#[allow(clippy::disallowed_methods)] // the binary edge: publishing signs with the wall clock
fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn print(t: &Table, f: Format) {
    print!("{}", t.render(f));
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Server(a) => server(a).await,
        Command::Demo(a) => patchday_cli::demo::run(a).await,
        Command::Agent(args) => Ok(i32::from(
            patchday_agent::cli::run(args).await != std::process::ExitCode::SUCCESS,
        )),
        Command::Catalog(c) => catalog(c).await,
        Command::Keys(k) => patchday_cli::keys::run(k, now()).await,
        // Issue 9, point 1: archive sync.
        Command::Mirror(m) => patchday_cli::mirror::run(m, now()).await,
        Command::Audit(a) => patchday_audit::cli::run(&a, now()),
        Command::Tenant(TenantCmd::Create {
            id,
            name,
            patch_day,
            conn,
        }) => {
            let t = conn
                .api()?
                .create_tenant(&CreateTenant {
                    name: name.unwrap_or_else(|| id.to_string()),
                    id,
                    patch_day: Some(patch_day.config()),
                })
                .await?;
            println!(
                "created tenant {} ({}); patch day: {} {} {} {}",
                t.id,
                t.name,
                t.patch_day.week,
                t.patch_day.weekday,
                t.patch_day.time,
                t.patch_day.time_zone
            );
            Ok(0)
        }
        Command::Tenant(TenantCmd::List { conn }) => {
            let mut t = Table::new(&["id", "name", "patch-day"]);
            for x in conn.api()?.tenants().await? {
                let p = &x.patch_day;
                t.rows.push(vec![
                    x.id.to_string(),
                    x.name,
                    format!("{} {} {} {}", p.week, p.weekday, p.time, p.time_zone),
                ]);
            }
            print(&t, conn.format);
            Ok(0)
        }
        Command::Tenant(TenantCmd::PatchDay {
            id,
            patch_day,
            conn,
        }) => {
            let t = conn.api()?.set_patch_day(&id, &patch_day.config()).await?;
            println!(
                "tenant {}: patch day is now {} {} {} {}",
                t.id,
                t.patch_day.week,
                t.patch_day.weekday,
                t.patch_day.time,
                t.patch_day.time_zone
            );
            Ok(0)
        }
        Command::Token(TokenCmd::Create {
            role,
            tenant,
            name,
            conn,
        }) => {
            let s = conn
                .api()?
                .create_token(&CreateToken { name, role, tenant })
                .await?;
            eprintln!("token created; it is shown only this once:");
            println!("{}", s.secret);
            Ok(0)
        }
        Command::EnrollToken(EnrollTokenCmd::Create { tenant, conn }) => {
            let s = conn.api()?.create_enroll_token(&tenant).await?;
            eprintln!("enrolment token for {tenant}; it is shown only this once:");
            println!("{}", s.secret);
            Ok(0)
        }
        Command::Group(GroupCmd::Create {
            tenant,
            id,
            name,
            conn,
        }) => {
            let g = conn
                .api()?
                .create_group(
                    &tenant,
                    &Group {
                        name: name.unwrap_or_else(|| id.to_string()),
                        id,
                    },
                )
                .await?;
            println!("created group {} in {tenant}", g.id);
            Ok(0)
        }
        Command::Group(GroupCmd::List { tenant, conn }) => {
            let mut t = Table::new(&["id", "name"]);
            for g in conn.api()?.groups(&tenant).await? {
                t.rows.push(vec![g.id.to_string(), g.name]);
            }
            print(&t, conn.format);
            Ok(0)
        }
        Command::Host(HostCmd::List { tenant, conn }) => {
            let mut t = Table::new(&["id", "hostname", "groups", "os", "last-seen"]);
            for h in conn.api()?.hosts(&tenant).await? {
                t.rows.push(vec![
                    h.id.to_string(),
                    h.hostname,
                    h.groups
                        .iter()
                        .map(|g| g.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    h.os,
                    h.last_seen
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "never".into()),
                ]);
            }
            print(&t, conn.format);
            Ok(0)
        }
        Command::Host(HostCmd::SetGroups {
            tenant,
            host,
            groups,
            conn,
        }) => {
            conn.api()?.set_host_groups(&tenant, &host, &groups).await?;
            println!(
                "host {host} is now in: {}",
                groups
                    .iter()
                    .map(|g| g.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(0)
        }
        Command::Updates { tenant, conn } => {
            let mut t = Table::new(&[
                "id",
                "severity",
                "classification",
                "release",
                "approvable",
                "cves",
                "title",
            ]);
            for u in conn.api()?.updates(&tenant).await? {
                t.rows.push(vec![
                    u.update.id.to_string(),
                    u.update.severity.to_string(),
                    u.update.classification.to_string(),
                    u.update.release.to_string(),
                    if u.approvable {
                        "yes".into()
                    } else {
                        u.approvable_at
                            .map(|t| format!("from {t}"))
                            .unwrap_or_else(|| "no".into())
                    },
                    u.update.cves.len().to_string(),
                    u.update.title,
                ]);
            }
            print(&t, conn.format);
            Ok(0)
        }
        Command::AuditReport {
            tenant,
            host,
            conn,
            plan_format,
        } => {
            let api = conn.api()?;
            match host {
                Some(h) => {
                    let format = plan_format.as_deref().unwrap_or("text");
                    let body = api.host_audit(&tenant, &h, format).await?;
                    // Issue 8, finding 5: the server's text never reaches the terminal
                    // raw (agent facts are in it); JSON stays exact.
                    if format == "json" {
                        print!("{body}");
                    } else {
                        print!("{}", patchday_text::terminal_lines(&body));
                    }
                }
                None => {
                    let r = api.fleet_audit(&tenant).await?;
                    let mut t = Table::new(&[
                        "tenant",
                        "section",
                        "source",
                        "fix",
                        "hosts",
                        "ids",
                        "severity",
                        "known-exploited",
                    ]);
                    for tr in &r.tenants {
                        for a in &tr.actions {
                            t.rows.push(vec![
                                tr.tenant.clone(),
                                serde_json::to_value(a.section)
                                    .ok()
                                    .and_then(|v| v.as_str().map(String::from))
                                    .unwrap_or_default(),
                                a.source.clone(),
                                a.fix.clone().unwrap_or_else(|| "(no fix)".into()),
                                a.hosts.len().to_string(),
                                a.ids.len().to_string(),
                                a.severity.clone().unwrap_or_default(),
                                if a.known_exploited {
                                    "yes".into()
                                } else {
                                    String::new()
                                },
                            ]);
                        }
                    }
                    print(&t, conn.format);
                }
            }
            Ok(0)
        }
        Command::Approve(a) => decide(a, Decision::Approve).await,
        Command::Decline(a) => decide(a, Decision::Decline).await,
        Command::Report { tenant, by, conn } => {
            let r = conn.api()?.report(tenant.as_ref()).await?;
            print(&report_table(&r, by), conn.format);
            Ok(0)
        }
    }
}

async fn decide(a: DecideArgs, decision: Decision) -> anyhow::Result<i32> {
    let r = a
        .conn
        .api()?
        .decide(
            &a.tenant,
            &ApprovalRequest {
                update: a.update,
                group: a.group,
                decision,
                deadline: a.deadline,
            },
        )
        .await?;
    let verb = if decision == Decision::Approve {
        "approved"
    } else {
        "declined"
    };
    println!("{verb} {} for group {} in {}", r.update, r.group, a.tenant);
    Ok(0)
}

async fn catalog(c: CatalogCmd) -> anyhow::Result<i32> {
    use patchday_trust::KeyPaths;
    match c {
        CatalogCmd::Init { keys, repo } => {
            patchday_trust::init_catalog(
                &KeyPaths::in_dir(&keys),
                &repo,
                now(),
                &patchday_trust::Expiries::default(),
            )
            .await?;
            println!(
                "catalog created in {}; pin {} on the server with --catalog-root",
                repo.display(),
                repo.join("metadata/1.root.json").display()
            );
        }
        CatalogCmd::AddDeb {
            common,
            debs,
            since,
        } => {
            let content = patchday_cli::catalog::describe_debs(&debs, since.as_deref())?;
            let opts = common.options(since)?;
            let doc = patchday_cli::catalog::add_update(
                &KeyPaths::in_dir(&common.keys),
                &common.repo,
                content,
                &opts,
                now(),
            )
            .await?;
            println!(
                "signed {}: {} [{}; {} CVEs]",
                doc.id,
                doc.title,
                doc.release,
                doc.cves.len()
            );
        }
        CatalogCmd::AddBundle {
            common,
            bundle,
            cves,
        } => {
            let p = patchday_cli::catalog::describe_bundle(&bundle)?;
            let opts = common.options(None)?;
            let doc = patchday_cli::catalog::add_update(
                &KeyPaths::in_dir(&common.keys),
                &common.repo,
                patchday_cli::catalog::UpdateContent {
                    files: vec![bundle],
                    payloads: vec![p],
                    cves,
                    description: String::new(),
                },
                &opts,
                now(),
            )
            .await?;
            println!("signed {}: {} [{}]", doc.id, doc.title, doc.release);
        }
        CatalogCmd::Push { repo, conn } => {
            let tar = patchday_cli::catalog::pack(&repo)?;
            let s = conn.api()?.push_catalog(tar.path()).await?;
            println!(
                "catalog accepted: targets v{}, {} updates, {} payloads",
                s.targets_version, s.updates, s.payloads
            );
        }
        CatalogCmd::Status { conn } => {
            let s = conn.api()?.catalog_status().await?;
            let mut t = Table::new(&[
                "root",
                "targets",
                "snapshot",
                "timestamp",
                "updates",
                "payloads",
            ]);
            t.rows.push(
                [
                    s.root_version,
                    s.targets_version,
                    s.snapshot_version,
                    s.timestamp_version,
                    s.updates,
                    s.payloads,
                ]
                .map(|n| n.to_string())
                .to_vec(),
            );
            print(&t, conn.format);
        }
    }
    Ok(0)
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    data: Option<PathBuf>,
    listen: Option<SocketAddr>,
    catalog_root: Option<PathBuf>,
    poll_seconds: Option<u64>,
    max_catalog_bytes: Option<u64>,
    timestamp_key: Option<PathBuf>,
}

async fn server(a: ServerArgs) -> anyhow::Result<i32> {
    let file: ServerFile = match &a.config {
        Some(p) => toml::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{} is not a valid server config", p.display()))?,
        None => ServerFile::default(),
    };
    let data = a
        .data
        .or(file.data)
        .context("no data directory: pass --data DIR")?;
    let listen = a
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8470)));
    let mut cfg = patchday_server::ServerConfig::new(data);
    cfg.catalog_root = a.catalog_root.or(file.catalog_root);
    if let Some(p) = file.poll_seconds {
        cfg.poll_seconds = p;
    }
    if let Some(m) = file.max_catalog_bytes {
        cfg.max_catalog_bytes = m;
    }
    let default_distro = PathBuf::from("/usr/share/distro-info/debian.csv");
    cfg.audit_feeds = patchday_audit::feeds::FeedPaths {
        osv: a.osv,
        debian_tracker: a.debian_tracker,
        kev: a.kev,
        distro_info: a
            .distro_info
            .or_else(|| default_distro.is_file().then_some(default_distro)),
    };
    if let Some(key) = a.timestamp_key.or(file.timestamp_key) {
        let mut online = patchday_server::freshness::OnlineTimestampKey::new(key);
        online.lifetime = jiff::SignedDuration::from_secs(i64::from(a.timestamp_lifetime.max(2)));
        online.check_every = std::time::Duration::from_secs(u64::from(a.timestamp_check.max(1)));
        cfg.online_timestamp = Some(online);
    }
    let init = patchday_server::init(&cfg, Arc::new(patchday_server::SystemClock)).await?;
    if let Some(tok) = &init.first_admin_token {
        println!("first provider-admin token (shown once; store it now): {tok}");
        if let Some(f) = &a.admin_token_file {
            patchday_agent::state::write_atomic(f, tok.as_bytes(), 0o600)?;
        }
    }
    let tls = match (a.tls_cert, a.tls_key, a.tls_self_signed) {
        (Some(cert), Some(key), _) => Some(patchday_server::tls::TlsFiles {
            cert,
            key,
            ca: None,
        }),
        (_, _, true) => {
            let names = if a.tls_names.is_empty() {
                vec!["localhost".to_string(), "127.0.0.1".to_string()]
            } else {
                a.tls_names
            };
            Some(patchday_server::tls::self_signed(&cfg.data_dir, &names)?)
        }
        _ => None,
    };
    match tls {
        Some(files) => {
            if let Some(ca) = &files.ca {
                println!("agents and operators pin this CA: {}", ca.display());
            }
            let (addr, serve) = patchday_server::bind_tls(init.state, listen, files).await?;
            println!("patchday server listening on https://{addr}");
            tokio::select! {
                r = serve => r?,
                _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
            }
        }
        None => {
            let (addr, serve) = patchday_server::bind(init.state, listen).await?;
            println!("patchday server listening on http://{addr}");
            tokio::select! {
                r = serve => r.context("server stopped")?,
                _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
            }
        }
    }
    Ok(0)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default = match cli.command {
        Command::Server(_) => "warn,patchday_server=info",
        _ => "warn",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        sub.json().init();
    } else {
        sub.init();
    }
    match run(cli).await {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            // Issue 8, finding 5: server answers quoted in errors are escaped too.
            eprintln!(
                "error: {}",
                patchday_text::terminal_lines(&format!("{e:#}"))
            );
            std::process::ExitCode::FAILURE
        }
    }
}
