//! `patchday`: server, admin commands, catalog publishing and the demo.

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
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

// The server's hot path allocates and frees in every request and in SQLite's page cache
// (emptied by each read transaction after another connection wrote): with glibc's malloc
// that was ~17% of the server's CPU during a fleet rollout (`_int_malloc`,
// `malloc_consolidate`, `unlink_chunk`; `perf record` at 2,000 hosts). jemalloc's size
// classes and per-thread caches take it for less (BENCHMARKS.md, tenth run).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    Server(Box<ServerArgs>), // boxed: its flags outweigh every other command's
    /// Runs a server, a catalog and a small fleet from vulnerable to compliant.
    ///
    /// Example: patchday demo   (or: patchday demo --hosts 5 --keep --dir /tmp/demo)
    Demo(patchday_cli::demo::DemoArgs),
    /// Publishes the catalog: keys, signing updates offline, pushing.
    #[command(subcommand)]
    Catalog(CatalogCmd),
    /// Issue 13: baseline policies (host firewall): write one, check it, diff it against
    /// the published version; publish with `catalog add-baseline`.
    #[command(subcommand)]
    Baseline(BaselineCmd),
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
    /// Mail attachment filtering for Postfix: the milter, its quarantine (issue 14, point 4).
    ///
    /// Example: patchday milter run --policy /etc/patchday/milter.toml --clamd unix:/run/clamav/clamd.ctl
    #[command(subcommand)]
    Milter(patchday_cli::milter::MilterCmd),
    /// Compliance-gated access (issue 14): a web gate for nginx `auth_request` / Envoy
    /// `ext_authz`, and an nftables quarantine on a VPN or gateway host.
    ///
    /// Example: patchday gate http --tenant acme --listen 127.0.0.1:8471
    ///          patchday gate nft --tenant acme --peers /etc/patchday/wg-peers
    #[command(subcommand)]
    Gate(patchday_cli::gate::GateCmd),
    /// Download and messenger folders the agents scan (issue 14, point 5; the policy is a
    /// baseline's `[scan]`): what they quarantined or could not scan.
    ///
    /// Example: patchday scan findings --tenant acme
    #[command(subcommand)]
    Scan(ScanCmd),
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
    ///
    /// Emergency lane (an update exploited today, before the tenant's patch day):
    /// patchday approve --tenant acme --group web PD-2026-0001 --emergency --reason "CVE-2026-1234 exploited, see CISA KEV"
    Approve(ApproveArgs),
    /// Declines an update for a group.
    ///
    /// Example: patchday decline --tenant acme --group web PD-2026-0001 --reason "replaced by the vendor's build"
    ///
    /// Take it back from the group's hosts that installed it (issue 10, point 3): a package
    /// it brought is removed, an upgraded one goes back to the newest older signed payload,
    /// and a host that cannot (nothing older signed, something depends on it) reports why:
    /// patchday decline --tenant acme --group web PD-2026-0001 --remove --reason "breaks the web app"
    Decline(DeclineArgs),
    /// Compliance per tenant, group, host or update; with --html or --pdf, one tenant's
    /// customer-ready report for a period (executive summary, what remains and why, the
    /// fleet audit plan naming its hosts).
    ///
    /// Example: patchday report --by host --format csv
    ///          patchday report --tenant acme --from 2026-11-01 --to 2026-11-30 --html acme.html --pdf acme.pdf
    Report {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<TenantId>,
        /// Grouping.
        #[arg(long, value_enum, default_value_t = By::Host)]
        by: By,
        /// Customer report: start of the period (a date, midnight UTC, or an RFC 3339 time).
        #[arg(long)]
        from: Option<String>,
        /// Customer report: end of the period (a date counts whole, or an RFC 3339 time).
        #[arg(long)]
        to: Option<String>,
        /// Customer report: write the HTML here.
        #[arg(long)]
        html: Option<std::path::PathBuf>,
        /// Customer report: print it to PDF here with headless Chromium.
        #[arg(long)]
        pdf: Option<std::path::PathBuf>,
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
    /// The operator log: every change an operator made, with who, when, from where and what.
    ///
    /// Example: patchday log --tenant acme --since 7d --format csv > changes.csv
    Log {
        /// Only this tenant (tenant tokens always see only their own).
        #[arg(long)]
        tenant: Option<TenantId>,
        /// Entries at or after this time: RFC 3339, or a duration ago such as 24h or 7d.
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// When each host's state for each update changed, and how long updates took from
    /// publication to installed (the figure a service level is about).
    ///
    /// Example: patchday history --tenant acme --update DEB-openssl-3.0.15-1~deb12u1
    History {
        /// The tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Only this host.
        #[arg(long)]
        host: Option<HostId>,
        /// Only this update.
        #[arg(long)]
        update: Option<UpdateId>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Rings per tenant: groups in order, each with a deferral, a deadline, an
    /// auto-approval rule and an evidence gate (issue 10).
    ///
    /// Example: patchday ring set --tenant acme pilot:0d early:1d broad:5d last:9d --auto
    #[command(subcommand)]
    Ring(patchday_cli::rings::RingCmd),
    /// An update's rollout: evidence per ring, halt and resume (issue 10).
    ///
    /// Example: patchday rollout status --update PD-2026-0001
    #[command(subcommand)]
    Rollout(patchday_cli::rings::RolloutCmd),
    /// The director key that signs assignments: print it to pin it on agents out of band.
    #[command(subcommand)]
    Director(DirectorCmd),
    /// Prints a shell completion script (issue 11, point 7).
    ///
    /// Example: patchday completions bash > /usr/share/bash-completion/completions/patchday
    Completions(patchday_cli::manuals::CompletionsArgs),
    /// Writes man pages for patchday, each subcommand, and patchday-agent (issue 11).
    ///
    /// Example: patchday man /usr/share/man/man1
    Man(patchday_cli::manuals::ManArgs),
    /// Notification targets and their delivery log (issue 11).
    ///
    /// Example: patchday notify log --tenant acme
    #[command(subcommand)]
    Notify(patchday_cli::notify::NotifyCmd),
    /// Runs the agent in this process (the demo uses it when patchday-agent is not built).
    #[command(hide = true)]
    Agent(patchday_agent::cli::Args),
}

#[derive(Args)]
struct ServerArgs {
    #[command(subcommand)]
    action: Option<ServerAction>,
    /// Data directory (database, content store, pinned root).
    #[arg(long, env = "PATCHDAY_DATA")]
    data: Option<PathBuf>,
    /// Issue 12, point 2: the database, instead of SQLite in --data (which still holds the
    /// content store, the pinned root and the director key). Pool limits as parameters:
    /// postgres://patchday@db:5432/patchday?max_connections=16&acquire_timeout=10
    /// Leave the password out of the URL: it is read from a pgpass file of mode 0600
    /// (PGPASSFILE, or ~/.pgpass of the server's user) or PGPASSWORD.
    #[arg(long, env = "PATCHDAY_DATABASE", hide_env_values = true)]
    database: Option<String>,
    #[command(flatten)]
    content: ContentArgs,
    /// Issue 12, point 3: answer payload downloads with a redirect to a presigned URL of
    /// the object store (agents fetch from it directly, without their credential, and
    /// check the bytes as always) instead of streaming them through the server. Needs
    /// --content s3://...
    #[arg(long)]
    content_redirect: bool,
    /// How long a presigned URL of --content-redirect is valid (agents use it at once).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    content_redirect_lifetime: jiff::SignedDuration,
    /// Listen address.
    #[arg(long, env = "PATCHDAY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Catalog root.json to pin on first start.
    #[arg(long)]
    catalog_root: Option<PathBuf>,
    /// Also write the first admin token to this file (mode 0600).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Settings file (TOML; each key is one of these flags, `_` or `-`: data, listen,
    /// catalog_root, webhook, notify_targets, ...; unknown keys are an error; flags and
    /// environment override it). Packages install /etc/patchday/server.toml (issue 11).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seconds agents should wait between check-ins [default: 3600].
    #[arg(long)]
    poll_seconds: Option<u64>,
    /// Largest accepted catalog upload in bytes [default: 2 GiB].
    #[arg(long)]
    max_catalog_bytes: Option<u64>,
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
    /// Most open connections [default: 10000, fewer when the open-file limit is lower];
    /// beyond it the oldest idle connection is closed.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers (and an idle keep-alive
    /// connection to send its next request).
    #[arg(long, default_value_t = 15)]
    header_timeout: u64,
    /// Seconds a client may pause while sending a request body, reading an answer, or
    /// in the TLS handshake.
    #[arg(long, default_value_t = 30)]
    body_timeout: u64,
    /// Reports call a host stale when it has not checked in for this long (90m, 12h,
    /// 2d) [default: three poll intervals] (issue 9, point 7).
    #[arg(long, value_parser = parse_duration)]
    stale_after: Option<jiff::SignedDuration>,
    /// Issue 14, point 1: how long a compliance access token lives (agents renew it after
    /// two thirds; a host that falls out of compliance keeps its last token at most this
    /// long where a gate cannot ask the server). E.g. 10m, 5m, 30s.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    access_token_lifetime: jiff::SignedDuration,
    /// Warn (log, health, `catalog status`) this long before root, targets or snapshot
    /// expire (issue 9, point 5).
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    catalog_expiry_warning: jiff::SignedDuration,
    /// Warn this long before the timestamp expires (it lives a day by default).
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    timestamp_expiry_warning: jiff::SignedDuration,
    #[command(flatten)]
    mirror: Box<ServerMirrorArgs>,
    /// Announce every notification (halted rollouts, broken hosts, overdue updates,
    /// expiring catalog roles, known-exploited vulnerabilities) to this URL: a JSON body,
    /// HMAC-SHA256 over "TIMESTAMP.BODY" in X-Patchday-Signature-256 (issues 10 and 11).
    #[arg(long, requires = "webhook_secret_file")]
    webhook: Option<String>,
    /// The webhook's shared secret, in a file (mode 0600).
    #[arg(long, requires = "webhook")]
    webhook_secret_file: Option<PathBuf>,
    /// Issue 11, point 5: notification targets, global or per tenant (TOML: [[webhook]]
    /// name, url, secret_file; [[email]] name, smtp, tls, from, to; both may have tenant
    /// and events). See `patchday notify --help`.
    #[arg(long)]
    notify_targets: Option<PathBuf>,
    /// How often the server delivers notifications that are due (and retries).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    notify_every: jiff::SignedDuration,
    /// How often it reads every host for broken hosts, overdue updates and
    /// known-exploited vulnerabilities (halts and catalog expiry are announced at once).
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    notify_scan_every: jiff::SignedDuration,
    /// The first retry of a failed delivery waits about this long; each next one twice
    /// as long (with jitter, at most an hour).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    notify_retry_base: jiff::SignedDuration,
    /// Tries of one delivery before it is given up (and logged as failed).
    #[arg(long, default_value_t = 8)]
    notify_max_attempts: u32,
    /// How often the rollout looks at the rings' evidence.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    rollout_every: jiff::SignedDuration,
    /// Issue 10, point 6 (push): seconds the server holds an agent's wait
    /// (`/v1/agent/wait`) before answering "nothing new" (1 to 3600).
    #[arg(long, default_value_t = 600)]
    long_poll_seconds: u64,
    /// Seconds between the bytes of whitespace a held wait sends, to keep proxies and
    /// load balancers from closing it as idle (5 to 300; below their idle timeout).
    #[arg(long, default_value_t = 25)]
    heartbeat_seconds: u64,
    /// Most agent waits held at once (kept below --max-connections); more are answered
    /// 503 with a jittered Retry-After.
    #[arg(long, default_value_t = 20_000)]
    max_long_polls: usize,
    /// Connections the kernel queues before the server accepts them, for a fleet
    /// reconnecting at once (capped by net.core.somaxconn: raise it with sysctl).
    #[arg(long, default_value_t = 4096)]
    listen_backlog: u32,
    /// Issue 10, point 7: how often the cleanup evicts from the content store the
    /// payloads no host can need any more (superseded and declined, or needed nowhere).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    cleanup_every: jiff::SignedDuration,
    /// How long such a payload is kept after its update was superseded and declined
    /// (0s: at the next cleanup).
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    retain: jiff::SignedDuration,
    /// Issue 11, point 4: serve Prometheus metrics at `/metrics` to scrapers that send
    /// `Authorization: Bearer <the file's content>` (Prometheus: `authorization:
    /// credentials_file:`). Without it `/metrics` answers 404.
    #[arg(long, value_name = "FILE")]
    metrics_token_file: Option<PathBuf>,
}

/// Issues 12, points 3 and 5: where payloads are, for `server`, `server scrub` and
/// `server backup`.
#[derive(Args, Clone, Default)]
struct ContentArgs {
    /// Where payloads are, instead of DATA/content: a directory (one every replica
    /// shares, e.g. a network filesystem), or an S3-compatible bucket and prefix,
    /// s3://BUCKET/PREFIX (Amazon S3, Garage, MinIO, Ceph RGW, ...). The bucket's
    /// endpoint, region and credentials come from the --content-* flags or the usual AWS
    /// variables (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "PATCHDAY_CONTENT")]
    content: Option<String>,
    /// The object store's endpoint, e.g. https://s3.example.net or http://127.0.0.1:3900
    /// (plain HTTP only when written so) [default: AWS_ENDPOINT_URL, or Amazon S3].
    #[arg(long, requires = "content")]
    content_endpoint: Option<String>,
    /// The region the object store signs for (Garage: its s3_region) [default:
    /// AWS_REGION, or us-east-1].
    #[arg(long, requires = "content")]
    content_region: Option<String>,
    /// The access key id [default: AWS_ACCESS_KEY_ID].
    #[arg(long, requires = "content")]
    content_access_key_id: Option<String>,
    /// A file (mode 0600) holding the secret access key [default:
    /// AWS_SECRET_ACCESS_KEY]. Never on the command line.
    #[arg(long, requires = "content")]
    content_secret_file: Option<PathBuf>,
}

impl ContentArgs {
    /// The directory or the bucket, checked before anything is opened.
    fn apply(&self, cfg: &mut patchday_server::ServerConfig) -> anyhow::Result<()> {
        let Some(c) = self.content.as_deref() else {
            anyhow::ensure!(
                self.content_endpoint.is_none()
                    && self.content_region.is_none()
                    && self.content_access_key_id.is_none()
                    && self.content_secret_file.is_none(),
                "--content-endpoint, --content-region, --content-access-key-id and --content-secret-file are for --content s3://BUCKET/PREFIX"
            );
            return Ok(());
        };
        if !c.contains("://") {
            anyhow::ensure!(
                self.content_endpoint.is_none() && self.content_secret_file.is_none(),
                "--content {c} is a directory: the --content-* object store flags are for --content s3://BUCKET/PREFIX"
            );
            cfg.content_dir = Some(PathBuf::from(c));
            return Ok(());
        }
        let location: patchday_content::s3::S3Location = c.parse().with_context(|| {
            "--content: use a directory, or s3://BUCKET/PREFIX for an S3-compatible object store"
        })?;
        let mut s3 = patchday_content::s3::S3Config::new(location);
        s3.endpoint = self.content_endpoint.clone();
        s3.region = self.content_region.clone();
        s3.access_key_id = self.content_access_key_id.clone();
        if let Some(f) = &self.content_secret_file {
            let secret =
                patchday_server::notify::read_secret_file(f, "object store secret access key")?;
            s3.secret_access_key = Some(secret.expose().to_string());
        }
        cfg.content_s3 = Some(s3);
        Ok(())
    }

    /// A server configuration for maintenance commands on `data` (scrub, backup).
    fn config_for(&self, data: &std::path::Path) -> anyhow::Result<patchday_server::ServerConfig> {
        let mut cfg = patchday_server::ServerConfig::new(data);
        self.apply(&mut cfg)?;
        Ok(cfg)
    }
}

/// Issue 9, point 1: `patchday server --mirror-every 1h`: the archive sync on a schedule.
#[derive(Args)]
struct ServerMirrorArgs {
    /// Run the archive sync (what `patchday mirror run` does, selecting newer versions of
    /// the source packages the fleet has installed) inside the server this often (30m,
    /// 1h, 1d); what it signs is taken in like a push. Needs --mirror-config, --mirror-key
    /// and --mirror-online-keys. Each run signs onto the served catalog, built from the
    /// database (any replica can run it).
    #[arg(
        long,
        value_parser = parse_duration,
        requires_all = ["mirror_config", "mirror_key", "mirror_online_keys"]
    )]
    mirror_every: Option<jiff::SignedDuration>,
    /// Mirror configuration (TOML with [[source]] tables, as for `patchday mirror run`).
    #[arg(long, requires = "mirror_every")]
    mirror_config: Option<PathBuf>,
    /// No longer needed (issue 12): each run builds its working catalog from the
    /// database. Given, the working catalog directory of an older server is only read: its
    /// published.json (when each update was first published, for pruning) until the
    /// database holds those times, and MIRROR_CATALOG/mirror stays the default
    /// --mirror-work. Never written.
    #[arg(long, requires = "mirror_every")]
    mirror_catalog: Option<PathBuf>,
    /// The delegated role the mirror signs as (`patchday catalog delegate --role mirror`).
    #[arg(long, default_value = "mirror", requires = "mirror_every")]
    mirror_role: String,
    /// The mirror role's key file (repeatable; never the offline targets key).
    #[arg(long = "mirror-key", requires = "mirror_every")]
    mirror_key: Vec<PathBuf>,
    /// Directory with the catalog's online keys, snapshot.pem and timestamp.pem.
    #[arg(long, requires = "mirror_every")]
    mirror_online_keys: Option<PathBuf>,
    /// Downloads and the kept InRelease/index copies (`catalog verify-upstream --work`), a
    /// cache of this replica [default: DATA/mirror, or MIRROR_CATALOG/mirror].
    #[arg(long, requires = "mirror_every")]
    mirror_work: Option<PathBuf>,
}

impl ServerMirrorArgs {
    /// The schedule, when --mirror-every is given; the server's tracker and KEV feeds rate
    /// the mirrored updates too.
    fn schedule(
        &self,
        feeds: &patchday_audit::feeds::FeedPaths,
        data: &std::path::Path,
    ) -> anyhow::Result<Option<patchday_server::mirror_schedule::MirrorSchedule>> {
        let Some(every) = self.mirror_every else {
            return Ok(None);
        };
        let every = std::time::Duration::try_from(every)
            .ok()
            .filter(|d| !d.is_zero())
            .context("--mirror-every must be longer than zero")?;
        let (Some(config), Some(online)) = (&self.mirror_config, &self.mirror_online_keys) else {
            anyhow::bail!("--mirror-every needs --mirror-config and --mirror-online-keys");
        };
        // Issue 12, point 1: an older server's working catalog is a seed, read only.
        if let Some(seed) = &self.mirror_catalog {
            anyhow::ensure!(
                seed.is_dir(),
                "--mirror-catalog {} is not a directory: the server no longer needs a working catalog directory (each run builds one from the database); drop the flag, or name the directory an older server signed into, to take its publication times once",
                seed.display()
            );
            tracing::warn!(
                seed = %seed.display(),
                "--mirror-catalog is no longer needed: the mirror builds its working catalog from the database at each run; the directory is only read (published.json, until the database holds publication times) and never written"
            );
        }
        let work = self
            .mirror_work
            .clone()
            .unwrap_or_else(|| match &self.mirror_catalog {
                Some(seed) => seed.join("mirror"),
                None => data.join("mirror"),
            });
        let job = patchday_publish::mirror::MirrorJob {
            config: config.clone(),
            work: Some(work),
            debian_tracker: feeds.debian_tracker.first().cloned(),
            kev: feeds.kev.clone(),
            codename: None,
            train: None,
            publish: patchday_publish::mirror::PublishSettings {
                keys: patchday_trust::KeyPaths::in_dir(online),
                // Each run signs into a working catalog built from the database
                // (`mirror_schedule::run_once` sets it).
                repo: PathBuf::new(),
                severity: patchday_types::Severity::Important,
                tenants: Vec::new(),
                role: Some(patchday_publish::DelegatedSigner {
                    role: self.mirror_role.clone(),
                    key_files: self.mirror_key.clone(),
                }),
            },
            // The configuration's `retain` (issue 10, point 7).
            retain: None,
        };
        // Fail at start, not at the first tick, on a configuration that cannot work.
        patchday_mirror::MirrorConfig::load(config)?;
        for k in [&job.publish.keys.snapshot, &job.publish.keys.timestamp]
            .into_iter()
            .chain(&self.mirror_key)
        {
            anyhow::ensure!(
                k.is_file(),
                "{} does not exist: --mirror-online-keys names a directory with snapshot.pem and timestamp.pem, --mirror-key the mirror role's key file",
                k.display()
            );
        }
        Ok(Some(patchday_server::mirror_schedule::MirrorSchedule {
            job,
            every,
            seed: self.mirror_catalog.clone(),
        }))
    }
}

/// A clap parser for durations (`90m`, `12h`, `30d`, `2w`).
fn parse_duration(s: &str) -> Result<jiff::SignedDuration, String> {
    duration(s).ok_or_else(|| format!("{s:?} is not a duration (90m, 12h, 30d, 2w)"))
}

/// Maintenance of a server's data directory (issue 8, finding 14).
#[derive(Subcommand)]
enum ServerAction {
    /// Checks every stored payload against its sha256, quarantines damaged ones and
    /// prints a summary; exits non-zero if any was damaged or missing (a catalog push
    /// repairs them).
    ///
    /// Example: patchday server scrub --data /var/lib/patchday
    Scrub {
        /// Data directory.
        #[arg(long, env = "PATCHDAY_DATA")]
        data: PathBuf,
        /// Where the server keeps payloads, when not DATA/content (issue 12, point 3).
        #[command(flatten)]
        content: ContentArgs,
    },
    /// Backs up a SQLite server's data directory (while it runs) into one tar file: the
    /// database, the director key and certificate, the pinned root and trusted catalog
    /// state, the payloads and the TLS files. Refuses a directory that lacks a part a
    /// restore needs, naming it. A server on PostgreSQL: back up the database with
    /// pg_dump. The file holds private keys: keep it like them.
    ///
    /// Example: patchday server backup --data /var/lib/patchday --out /srv/backup/patchday-2026-12-02.tar
    Backup {
        /// Data directory.
        #[arg(long, env = "PATCHDAY_DATA")]
        data: PathBuf,
        /// Where the server keeps payloads, when not DATA/content: that directory is
        /// backed up (as content/); a bucket (s3://...) is not copied, and the backup
        /// says so: back the bucket up by the object store's own means.
        #[command(flatten)]
        content: ContentArgs,
        /// The backup file to write (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restores a backup into a new data directory (one that does not exist or is empty);
    /// then start the server on it. Agents enrolled before the backup go on; ones
    /// enrolled after it are told to enrol again.
    ///
    /// Example: patchday server restore --from /srv/backup/patchday-2026-12-02.tar --data /var/lib/patchday
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// The new data directory.
        #[arg(long, env = "PATCHDAY_DATA")]
        data: PathBuf,
    },
}

/// Issue 14, point 5: the agents' folder scan.
#[derive(Subcommand)]
enum ScanCmd {
    /// Findings the agents reported, newest first: files quarantined (with the signature
    /// and the quarantine id for `patchday-agent quarantine release` on the host), files
    /// not scanned within the policy's bound and why, files clean after a retry, releases.
    ///
    /// Example: patchday scan findings --tenant acme --format json
    Findings {
        /// The tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Most findings to show.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Which example `baseline new` writes.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BaselineKind {
    /// A host firewall (`[firewall]`).
    Firewall,
    /// A memory-protection profile (`[memory]`).
    Memory,
    /// Chromium and Firefox policy (`[browser]`).
    Browser,
    /// Download and messenger folders scanned with clamd (`[scan]`, issue 14, point 5).
    Scan,
}

/// Issue 13, point 1: baseline policy files.
#[derive(Subcommand)]
enum BaselineCmd {
    /// Prints a commented example policy to edit (or writes it to --out).
    ///
    /// Example: patchday baseline new web-servers --out web-servers.toml
    /// (--kind browser: a browser policy; --kind memory: a memory-protection profile;
    /// --kind scan: download folders scanned with clamd)
    New {
        /// Baseline name (a-z, 0-9, -).
        name: String,
        /// Which example: firewall, memory, browser or scan.
        #[arg(long, value_enum, default_value = "firewall")]
        kind: BaselineKind,
        /// Write here instead of standard output (refuses to overwrite).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Checks a policy file strictly (unknown keys, references, networks) and prints
    /// what it would publish.
    ///
    /// Example: patchday baseline check web-servers.toml
    Check {
        /// The policy file.
        policy: PathBuf,
        /// Print the firewall as the `nft -j -f` document the agent would apply, compiled
        /// with the users and groups of the system at --root.
        #[arg(long)]
        nft: bool,
        /// Print the files a `[memory]` profile and a `[browser]` policy write (sysctl.d
        /// file, systemd drop-ins, Chromium's and Firefox's policy files).
        #[arg(long, conflicts_with = "nft")]
        files: bool,
        /// Whose /etc/passwd and /etc/group resolve user and group names (with --nft).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Baseline compliance as the agents reported it: per host and baseline the applied
    /// version, drift found and repaired at the latest run, and how often drift was found.
    ///
    /// Example: patchday baseline report --tenant acme
    Report {
        /// The tenant.
        #[arg(long)]
        tenant: TenantId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Shows what a policy changes against the version the catalog publishes (or --from
    /// another file), before it is signed and approved.
    ///
    /// Example: patchday baseline diff --repo ~/catalog web-servers.toml
    Diff {
        /// The publisher's catalog directory.
        #[arg(long, required_unless_present = "from", conflicts_with = "from")]
        repo: Option<PathBuf>,
        /// Compare with this file instead.
        #[arg(long)]
        from: Option<PathBuf>,
        /// The new policy file.
        policy: PathBuf,
    },
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
    /// Issue 13: signs a baseline policy into the catalog as an update (classification
    /// security unless given) whose one payload is the policy file; approve it like any
    /// update. Shows the diff against the published version first.
    ///
    /// Example: patchday catalog add-baseline --keys K --repo R --id PD-2026-0100 --emergency "firewall" web-servers.toml
    AddBaseline {
        #[command(flatten)]
        common: AddArgs,
        /// The policy file (`patchday baseline new`).
        policy: PathBuf,
    },
    /// Delegates target paths to an online role (a mirror) held by its own key: the offline
    /// targets key signs the delegation; the role can then sign only under those paths.
    /// Run again with a new --key-file to replace a lost or stolen key.
    ///
    /// Example: patchday catalog delegate --keys K --repo R --role mirror --key-file mirror-keys/targets.pem
    Delegate {
        /// Key directory (the offline targets key, and the snapshot and timestamp keys).
        #[arg(long)]
        keys: PathBuf,
        /// Catalog directory.
        #[arg(long)]
        repo: PathBuf,
        /// Role name, e.g. mirror.
        #[arg(long)]
        role: String,
        /// Path pattern the role may sign (repeatable; default `ROLE~*` for payloads and
        /// `update-ROLE-*` for update documents).
        #[arg(long = "paths")]
        paths: Vec<String>,
        /// The role's key file (PEM; repeatable). `patchday keys generate` writes one as
        /// targets.pem in a directory of its own.
        #[arg(long = "key-file", required = true)]
        key_files: Vec<PathBuf>,
        /// How many of the role's keys must sign.
        #[arg(long, default_value_t = 1)]
        threshold: u64,
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
    /// Copies the catalog the server serves into a directory (every metadata file and the
    /// update documents; payloads stay on the server), verified against the catalog's
    /// first root: the copy to sign onto when the server's scheduled mirror signs too, or
    /// to check with `catalog verify-upstream`. Refuses a directory whose catalog is ahead
    /// of the served one.
    ///
    /// Example: patchday catalog pull --repo ~/catalog
    Pull {
        /// Catalog directory (created when missing).
        #[arg(long)]
        repo: PathBuf,
        /// The catalog's first root, which everything served must chain to
        /// [default: REPO/metadata/1.root.json].
        #[arg(long)]
        root: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Shows the catalog the server holds: every role's version and expiry, with a
    /// warning for a role that expires soon.
    ///
    /// Example: patchday catalog status
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Re-checks mirrored updates against the upstream evidence in their signed documents:
    /// the InRelease (fetched again, or the mirror's kept copy) verifies with the pinned
    /// keyring, lists the recorded index hash, and that index lists every payload with the
    /// sha256 the catalog signs. Exits 1 on any difference (issue 9, point 2).
    ///
    /// Example: patchday catalog verify-upstream --repo ~/catalog --config mirror.toml --all
    VerifyUpstream(patchday_cli::mirror::VerifyUpstreamArgs),
    /// Drops superseded updates from the catalog (issue 10, point 7): those whose first
    /// successor was published at or before --superseded-before, never the newest update
    /// of a package nor one nothing supersedes; re-signs the hash bins they were in,
    /// snapshot and timestamp, and deletes their files. The server drops them at the next
    /// push and frees their payloads.
    ///
    /// Example: patchday catalog prune --keys ~/patchday-keys --repo ~/catalog --superseded-before 2026-06-01 && patchday catalog push --repo ~/catalog
    Prune {
        /// Key directory (targets, snapshot and timestamp keys; with --as only snapshot
        /// and timestamp).
        #[arg(long)]
        keys: PathBuf,
        /// Catalog directory.
        #[arg(long)]
        repo: PathBuf,
        /// Drop updates superseded at or before this: a date (2026-06-01, midnight UTC),
        /// an RFC 3339 time, or a duration ago (90d).
        #[arg(long)]
        superseded_before: String,
        /// Prune the updates of this delegated role (e.g. `mirror`), signed with
        /// --key-file, instead of the offline targets role's.
        #[arg(long = "as", requires = "key_files")]
        as_role: Option<String>,
        /// The delegated role's key file (repeatable).
        #[arg(long = "key-file")]
        key_files: Vec<PathBuf>,
    },
    /// Re-signs expiring metadata without adding an update: snapshot and timestamp
    /// always, targets when it expires within --targets-within (issue 9, point 5).
    ///
    /// Example: patchday catalog refresh --keys ~/patchday-keys --repo ~/catalog && patchday catalog push --repo ~/catalog
    Refresh {
        /// Key directory (snapshot and timestamp keys; the targets key only when
        /// targets is re-signed).
        #[arg(long)]
        keys: PathBuf,
        /// Catalog directory.
        #[arg(long)]
        repo: PathBuf,
        /// Re-sign targets too when it expires within this time (14d, 2w, 0s: never).
        #[arg(long, default_value = "14d", value_parser = parse_duration)]
        targets_within: jiff::SignedDuration,
        /// Lifetime of a re-signed targets role.
        #[arg(long, default_value = "90d", value_parser = parse_duration)]
        targets_expires: jiff::SignedDuration,
        /// Lifetime of the new snapshot.
        #[arg(long, default_value = "35d", value_parser = parse_duration)]
        snapshot_expires: jiff::SignedDuration,
        /// Lifetime of the new timestamp.
        #[arg(long, default_value = "1d", value_parser = parse_duration)]
        timestamp_expires: jiff::SignedDuration,
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
    /// Publish for this tenant only (default: every tenant), e.g. a customer's own
    /// software: signed into the tenant's own role (created on first use), whose metadata
    /// and payloads the server serves to that tenant only.
    #[arg(long = "tenant")]
    tenants: Vec<String>,
    /// Sign as this delegated role (see `catalog delegate`) with --key-file, not with the
    /// offline targets key; the update id must lie in its paths (e.g. mirror-DSA-5555-1).
    #[arg(long = "as", requires = "key_files")]
    as_role: Option<String>,
    /// The delegated role's key file (repeatable).
    #[arg(long = "key-file")]
    key_files: Vec<PathBuf>,
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
            role: self
                .as_role
                .clone()
                .map(|role| patchday_cli::catalog::DelegatedSigner {
                    role,
                    key_files: self.key_files.clone(),
                }),
            upstream: None,
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
        /// Most hosts the tenant may enrol (no limit by default).
        #[arg(long)]
        max_hosts: Option<u32>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Removes a tenant with its groups, tokens and approvals (refused while it has hosts).
    ///
    /// Example: patchday tenant remove acme --force
    Remove {
        /// Tenant id.
        id: TenantId,
        /// Also remove its hosts (their credentials stop working at once).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Changes a tenant's host quota.
    ///
    /// Example: patchday tenant set acme --max-hosts 500
    Set {
        /// Tenant id.
        id: TenantId,
        /// Most hosts the tenant may enrol.
        #[arg(long, required_unless_present = "no_max_hosts")]
        max_hosts: Option<u32>,
        /// Lift the host quota.
        #[arg(long, conflicts_with = "max_hosts")]
        no_max_hosts: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Lists tenants.
    ///
    /// Example: patchday tenant list --format json
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
        /// When it stops working: a duration such as 30d or 12h, or an RFC 3339 time
        /// (default: never).
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Lists operator tokens by id, name and prefix (never the secret).
    ///
    /// Example: patchday token list --tenant acme
    List {
        /// Only this tenant's tokens (tenant tokens always see only their own).
        #[arg(long)]
        tenant: Option<TenantId>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revokes an operator token: it stops working at once.
    ///
    /// Example: patchday token revoke 3f2a9c0d1b7e
    Revoke {
        /// Token id (from `patchday token list`).
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
enum EnrollTokenCmd {
    /// Creates an enrolment token for a tenant (printed once): by default it enrols one
    /// host within 24 hours.
    ///
    /// Example: patchday enroll-token create --tenant acme --group web --uses 20 --expires 7d
    Create {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// How many hosts may enrol with it.
        #[arg(long, default_value_t = 1, conflicts_with = "unlimited")]
        uses: u32,
        /// Any number of hosts may enrol with it until it expires or is revoked.
        #[arg(long)]
        unlimited: bool,
        /// When it stops working: a duration such as 7d or 12h, or an RFC 3339 time.
        #[arg(long, default_value = "24h")]
        expires: String,
        /// The group every host enrolled with it joins.
        #[arg(long)]
        group: Option<GroupId>,
        /// A label for people.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Lists a tenant's enrolment tokens by id, name and prefix (never the secret).
    ///
    /// Example: patchday enroll-token list --tenant acme
    List {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revokes an enrolment token: no host can enrol with it any more.
    ///
    /// Example: patchday enroll-token revoke --tenant acme 3f2a9c0d1b7e
    Revoke {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Token id (from `patchday enroll-token list`).
        id: String,
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
    /// Lists groups, with their windows, reboot policy and rules.
    ///
    /// Example: patchday group list --tenant acme
    List {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Removes a group with its memberships and approvals (its hosts stay).
    ///
    /// Example: patchday group remove --tenant acme web
    Remove {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Group id.
        id: GroupId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Membership rules on host facts (release, hostname, labels) and their preview
    /// (issue 10).
    ///
    /// Example: patchday group rule set --tenant acme web --release debian-12 --hostname 'web-*' --label env=prod
    #[command(subcommand)]
    Rule(patchday_cli::group_rules::GroupRuleCmd),
    // Issue 10, point 5: maintenance windows and reboot policy per group.
    /// Sets a group's maintenance windows (replacing them; none: install any time) and
    /// reboot policy. Agents install only inside a window or once the deadline passed,
    /// also while the server is unreachable.
    ///
    /// Example: patchday group set-window --tenant acme --group web --window "Sat 02:00-05:00 Europe/Berlin" --reboot in-window
    SetWindow {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Group id.
        #[arg(long)]
        group: GroupId,
        /// A weekly window, "DAY HH:MM-HH:MM ZONE" (repeatable; an end at or before the
        /// start crosses midnight).
        #[arg(long = "window")]
        windows: Vec<String>,
        /// in-window (reboot only inside a window), now (right after the install), or
        /// never (the admin reboots; the host reports pending reboot). Unchanged if not given.
        #[arg(long)]
        reboot: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Subcommand)]
enum HostCmd {
    /// Issue 14: whether each host gets compliance access tokens (and passes the gates),
    /// and why not.
    ///
    /// Example: patchday host access --tenant acme
    Access {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Lists hosts, with their groups and when each last checked in.
    ///
    /// Example: patchday host list --tenant acme
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
    /// Removes a host: its credential stops working at once (its agent is told so).
    ///
    /// Example: patchday host remove --tenant acme web-1-ab12cd34
    Remove {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Host id.
        host: HostId,
        #[command(flatten)]
        conn: Conn,
    },
    /// Issue 9, point 4: asks the host's agent, in its next signed check-in answer, to
    /// run the recovery of `patchday-agent repair` (`dpkg --configure -a`; `apt-get -f
    /// install` only with --allow-apt). The request stays until the host reports a clean
    /// dpkg database.
    ///
    /// Example: patchday host repair --tenant acme web-1-ab12cd34 --allow-apt
    Repair {
        /// Tenant.
        #[arg(long)]
        tenant: TenantId,
        /// Host id.
        host: HostId,
        /// Let `apt-get -f install` install or remove packages to fix dependencies.
        #[arg(long)]
        allow_apt: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Finding 7: the director key, for `patchday-agent --director-key`.
#[derive(Subcommand)]
enum DirectorCmd {
    /// Prints the director's public key as JSON (keyid, public), for
    /// `patchday-agent --director-key FILE` (or its keyid for `--director-key KEYID`).
    ///
    /// Example: patchday director key -o director-key.json          (from the API, provider token)
    ///          patchday director key --data /var/lib/patchday      (on the server, no network)
    Key {
        /// Read the key from this server data directory instead of asking the server.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Write the JSON to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Finding 7: `patchday director key`.
async fn director_key(
    data: Option<PathBuf>,
    output: Option<PathBuf>,
    conn: Conn,
) -> anyhow::Result<i32> {
    let key = match data {
        Some(dir) => {
            let path = dir.join("director/ed25519.pk8");
            anyhow::ensure!(
                path.exists(),
                "{} does not exist: is {} a server data directory (the server makes the key at first start)?",
                path.display(),
                dir.display()
            );
            let k = patchday_trust::director::DirectorKey::load_or_create(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            patchday_types::api::DirectorKeyInfo {
                keyid: k.public().keyid.clone(),
                public: k.public().public.clone(),
            }
        }
        None => conn.api()?.director().await?.key,
    };
    let text = format!("{}\n", serde_json::to_string_pretty(&key)?);
    match output {
        Some(p) => {
            std::fs::write(&p, &text).with_context(|| format!("writing {}", p.display()))?;
            eprintln!(
                "director key {} written to {}; pin it with: patchday-agent --director-key {}",
                key.keyid,
                p.display(),
                p.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(0)
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

/// Issue 10, point 4: an approval may take the operator's emergency lane.
#[derive(Args)]
struct ApproveArgs {
    #[command(flatten)]
    decide: DecideArgs,
    /// Skip the tenant's patch day and deferrals for this approval (the update is still
    /// verified against the signed catalog); needs --reason, which the log and reports show.
    #[arg(long, requires = "reason")]
    emergency: bool,
    /// Why (required with --emergency).
    #[arg(long)]
    reason: Option<String>,
}

/// Issue 9, point 7: a decline carries the operator's reason, shown in reports.
#[derive(Args)]
struct DeclineArgs {
    #[command(flatten)]
    decide: DecideArgs,
    /// Why the update is not installed (required; the report shows it).
    #[arg(long)]
    reason: String,
    /// Also take it back from the group's hosts that installed it: they report
    /// `removed`, or `remove-failed` with why (see `patchday history --update U`).
    #[arg(long)]
    remove: bool,
}

/// Issue 13, point 1: `patchday baseline ...`.
async fn baseline(c: BaselineCmd) -> anyhow::Result<i32> {
    match c {
        BaselineCmd::New { name, kind, out } => {
            let text = match kind {
                BaselineKind::Firewall => patchday_baseline::policy::example(&name),
                BaselineKind::Memory => patchday_baseline::policy::example_memory(&name),
                BaselineKind::Browser => patchday_baseline::policy::example_browser(&name),
                BaselineKind::Scan => patchday_baseline::scan::example(&name),
            };
            patchday_baseline::Policy::parse(&text)?;
            match out {
                None => print!("{text}"),
                Some(path) => {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .with_context(|| {
                            format!("creating {} (it must not exist yet)", path.display())
                        })?;
                    f.write_all(text.as_bytes())?;
                    println!(
                        "wrote {}; edit it, check it with `patchday baseline check {}`",
                        path.display(),
                        path.display()
                    );
                }
            }
        }
        BaselineCmd::Check {
            policy,
            nft,
            files,
            root,
        } => {
            let (p, _) = patchday_cli::baseline::read(&policy)?;
            if files {
                if p.memory.is_none() && p.browser.is_none() {
                    anyhow::bail!(
                        "the policy has no [memory] and no [browser]: it writes no files"
                    );
                }
                let mut all = p
                    .memory
                    .as_ref()
                    .map(|m| patchday_baseline::memory::compile(&p.baseline.name, m))
                    .unwrap_or_default();
                if let Some(b) = &p.browser {
                    all.extend(patchday_baseline::browser::compile(
                        &p.baseline.name,
                        b,
                        &patchday_baseline::browser::BrowserPaths::default(),
                    )?);
                }
                for f in all {
                    println!("==> /{} <==\n{}", f.path, f.content);
                }
                return Ok(0);
            }
            if nft {
                let fw = p
                    .firewall
                    .as_ref()
                    .context("the policy has no [firewall]")?;
                let accounts = patchday_baseline::accounts::Accounts::read(&root)?;
                let doc = patchday_baseline::firewall::compile(fw, &accounts)?;
                println!("{}", serde_json::to_string_pretty(&doc)?);
                return Ok(0);
            }
            let fw = p.firewall.as_ref();
            println!(
                "baseline {} {}: ok; target {}; firewall: {}; memory: {}",
                p.baseline.name,
                p.baseline.version,
                p.target_name(),
                match fw {
                    None => "none".to_string(),
                    Some(f) => format!(
                        "{} zones, {} inbound services, {} outbound rules, outbound default {:?}, guard {}s",
                        f.zones.len(),
                        f.inbound.len(),
                        f.outbound.len(),
                        f.outbound_default,
                        f.guard_seconds
                    ),
                },
                match &p.memory {
                    None => "none".to_string(),
                    Some(m) => format!(
                        "{} kernel settings, {} services{}",
                        m.sysctls.len(),
                        m.services.len(),
                        if m.dry_run { " (dry run)" } else { "" }
                    ),
                }
            );
            if let Some(b) = &p.browser {
                use patchday_baseline::browser::{self as br, BrowserKind};
                for kind in &b.browsers {
                    let (label, policies) = match kind {
                        BrowserKind::Chromium => ("chromium", br::chromium_policies(b)),
                        BrowserKind::Firefox => ("firefox", br::firefox_policies(b)),
                    };
                    println!(
                        "browser: {label}: {}",
                        policies.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
                for l in patchday_baseline::browser::limits(b) {
                    println!("note: {l}");
                }
            }
            // Issue 14, point 5.
            if let Some(sc) = &p.scan {
                println!(
                    "scan: {} folders ({}), clamd {}, quarantine {}, files up to {} MiB, clamd down: {:?} after {}s",
                    sc.folders.len(),
                    sc.folders.join(", "),
                    sc.clamd,
                    sc.quarantine,
                    sc.max_file_mib,
                    sc.when_clamd_down,
                    sc.unscanned_after_seconds
                );
            }
        }
        BaselineCmd::Report { tenant, conn } => {
            let a = conn.api()?.baselines(&tenant).await?;
            match conn.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&a.hosts)?),
                f => print(&patchday_cli::render::baseline_table(&a.hosts), f),
            }
        }
        BaselineCmd::Diff { repo, from, policy } => {
            let (p, text) = patchday_cli::baseline::read(&policy)?;
            let new_label = format!("{} {}", p.baseline.name, p.baseline.version);
            let (old_label, old) = match (repo, from) {
                (_, Some(f)) => (
                    f.display().to_string(),
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?,
                ),
                (Some(r), None) => {
                    match patchday_cli::baseline::published(&r, &p.baseline.name).await? {
                        Some((v, path)) => (
                            format!("{} {v} (published)", p.baseline.name),
                            std::fs::read_to_string(&path)
                                .with_context(|| format!("reading {}", path.display()))?,
                        ),
                        None => ("(not published yet)".to_string(), String::new()),
                    }
                }
                (None, None) => anyhow::bail!("give --repo CATALOG or --from FILE"),
            };
            print!(
                "{}",
                patchday_cli::baseline::diff_text(&old_label, &old, &new_label, &text)
            );
        }
    }
    Ok(0)
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
        Command::Server(a) => server(*a).await,
        Command::Demo(a) => patchday_cli::demo::run(a).await,
        Command::Agent(args) => Ok(i32::from(
            patchday_agent::cli::run(args).await != std::process::ExitCode::SUCCESS,
        )),
        Command::Catalog(c) => catalog(c).await,
        Command::Baseline(c) => baseline(c).await,
        Command::Director(DirectorCmd::Key { data, output, conn }) => {
            director_key(data, output, conn).await
        }
        Command::Keys(k) => patchday_cli::keys::run(k, now()).await,
        // Issue 9, point 1: archive sync.
        Command::Mirror(m) => patchday_cli::mirror::run(m, now()).await,
        // Issue 14, point 4: mail attachment filtering.
        Command::Milter(m) => patchday_cli::milter::run(m, now).await,
        Command::Gate(g) => patchday_cli::gate::run(g, now).await,
        Command::Scan(ScanCmd::Findings {
            tenant,
            limit,
            conn,
        }) => {
            let rows = conn.api()?.scan_findings(&tenant, limit).await?;
            match conn.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                f => print(&patchday_cli::render::scan_findings_table(&rows), f),
            }
            Ok(0)
        }
        Command::Ring(c) => patchday_cli::rings::ring_cmd(c).await, // issue 10 (rings)
        Command::Rollout(c) => patchday_cli::rings::rollout_cmd(c).await, // issue 10 (rings)
        Command::Notify(c) => patchday_cli::notify::run(c).await,   // issue 11, point 5
        // Issue 11, point 7: completions and man pages from the definitions above.
        Command::Completions(a) => patchday_cli::manuals::completions(&a, Cli::command()),
        Command::Man(a) => patchday_cli::manuals::man(&a, Cli::command()),
        Command::Audit(a) => patchday_audit::cli::run(&a, now()),
        Command::Tenant(TenantCmd::Create {
            id,
            name,
            patch_day,
            max_hosts,
            conn,
        }) => {
            let t = conn
                .api()?
                .create_tenant(&CreateTenant {
                    name: name.unwrap_or_else(|| id.to_string()),
                    id,
                    patch_day: Some(patch_day.config()),
                    max_hosts,
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
            let mut t =
                Table::new(&["id", "name", "patch-day", "max-hosts"]).numbers(&["max-hosts"]);
            for x in conn.api()?.tenants().await? {
                let p = &x.patch_day;
                t.rows.push(vec![
                    x.id.to_string(),
                    x.name,
                    format!("{} {} {} {}", p.week, p.weekday, p.time, p.time_zone),
                    x.max_hosts.map(|n| n.to_string()).unwrap_or_default(),
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
        Command::Token(cmd) => token(cmd).await,
        Command::EnrollToken(cmd) => enroll_token(cmd).await,
        Command::Log {
            tenant,
            since,
            conn,
        } => {
            let since = since.as_deref().map(|s| ago(s, now())).transpose()?;
            let entries = conn.api()?.log(tenant.as_ref(), since).await?;
            match conn.format {
                // JSON keeps each entry's detail as an object.
                Format::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
                f => print(&patchday_cli::render::log_table(&entries), f),
            }
            Ok(0)
        }
        Command::History {
            tenant,
            host,
            update,
            conn,
        } => {
            let h = conn
                .api()?
                .history(&tenant, host.as_ref(), update.as_ref())
                .await?;
            match conn.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&h)?),
                f => {
                    print(&patchday_cli::render::history_table(&h.entries), f);
                    if f == Format::Table {
                        println!();
                        print(
                            &patchday_cli::render::time_to_install_table(&h.time_to_install),
                            f,
                        );
                    }
                }
            }
            Ok(0)
        }
        Command::Tenant(TenantCmd::Remove { id, force, conn }) => {
            let r = conn.api()?.remove_tenant(&id, force).await?;
            println!("removed {} ({} host(s) with it)", r.removed, r.hosts);
            Ok(0)
        }
        Command::Tenant(TenantCmd::Set {
            id,
            max_hosts,
            no_max_hosts: _,
            conn,
        }) => {
            let t = conn
                .api()?
                .set_limits(&id, &patchday_types::api::TenantLimits { max_hosts })
                .await?;
            match t.max_hosts {
                Some(n) => println!("tenant {}: at most {n} host(s)", t.id),
                None => println!("tenant {}: no host quota", t.id),
            }
            Ok(0)
        }
        Command::Group(GroupCmd::Remove { tenant, id, conn }) => {
            let r = conn.api()?.remove_group(&tenant, &id).await?;
            println!("removed {} from {tenant}", r.removed);
            Ok(0)
        }
        Command::Host(HostCmd::Remove { tenant, host, conn }) => {
            let r = conn.api()?.remove_host(&tenant, &host).await?;
            println!(
                "removed {} from {tenant}; its credential no longer works",
                r.removed
            );
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
            let api = conn.api()?;
            // Issue 10, point 5: each group's windows and reboot policy.
            let policies = api.group_policies(&tenant).await?;
            let mut t = Table::new(&["id", "name", "windows", "reboot"]);
            for g in api.groups(&tenant).await? {
                let p = policies
                    .iter()
                    .find(|p| p.group == g.id)
                    .map(|p| p.policy.clone())
                    .unwrap_or_default();
                let windows = if p.windows.is_empty() {
                    "any time".to_string()
                } else {
                    p.windows.join("; ")
                };
                t.rows
                    .push(vec![g.id.to_string(), g.name, windows, p.reboot]);
            }
            print(&t, conn.format);
            Ok(0)
        }
        // Issue 10, point 5.
        // Issue 10, point 2: groups joined by rules on host facts.
        Command::Group(GroupCmd::Rule(c)) => patchday_cli::group_rules::group_rule_cmd(c).await,
        Command::Group(GroupCmd::SetWindow {
            tenant,
            group,
            windows,
            reboot,
            conn,
        }) => {
            let api = conn.api()?;
            let reboot = match reboot {
                Some(r) => r,
                None => api
                    .group_policies(&tenant)
                    .await?
                    .into_iter()
                    .find(|p| p.group == group)
                    .map(|p| p.policy.reboot)
                    .unwrap_or_else(|| "never".to_string()),
            };
            let p = api
                .set_group_policy(
                    &tenant,
                    &group,
                    &patchday_types::api::GroupPolicy { windows, reboot },
                )
                .await?;
            let windows = if p.windows.is_empty() {
                "any time".to_string()
            } else {
                p.windows.join("; ")
            };
            println!(
                "group {group} in {tenant}: installs {windows}; reboot {}",
                p.reboot
            );
            Ok(0)
        }
        Command::Host(HostCmd::Access { tenant, conn }) => {
            let list = conn
                .api()?
                .access_list(&tenant, None, std::time::Duration::ZERO)
                .await?;
            let mut t = Table::new(&["id", "hostname", "access", "compliance", "why"]);
            for h in list.hosts {
                t.rows.push(vec![
                    h.host.to_string(),
                    h.hostname,
                    if h.allowed { "allowed" } else { "refused" }.into(),
                    h.compliance.to_string(),
                    h.reason.unwrap_or_default(),
                ]);
            }
            print(&t, conn.format);
            Ok(0)
        }
        Command::Host(HostCmd::List { tenant, conn }) => {
            let mut cols = vec!["id", "hostname", "groups", "os", "last-seen"];
            cols.extend(patchday_cli::render::SIGNED_COLS); // issue 8, findings 8 and 13
            let mut t = Table::new(&cols);
            for h in conn.api()?.hosts(&tenant).await? {
                let [signed, agent] = patchday_cli::render::signed_cells(&h.signed);
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
                    signed,
                    agent,
                ]);
            }
            print(&t, conn.format);
            Ok(0)
        }
        // issue 9, point 4 (closure): the server-side repair assignment
        Command::Host(HostCmd::Repair {
            tenant,
            host,
            allow_apt,
            conn,
        }) => {
            conn.api()?.repair_host(&tenant, &host, allow_apt).await?;
            println!(
                "host {host} will run the repair{} at its next check-in",
                if allow_apt { " (apt allowed)" } else { "" }
            );
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
            ])
            .numbers(&["cves"]);
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
        Command::Approve(a) => {
            decide(a.decide, Decision::Approve, a.reason, (a.emergency, false)).await
        }
        Command::Decline(a) => {
            decide(
                a.decide,
                Decision::Decline,
                Some(a.reason),
                (false, a.remove),
            )
            .await
        }
        Command::Report {
            tenant,
            by,
            from,
            to,
            html,
            pdf,
            conn,
        } => {
            // Issue 11, point 6: the customer-ready report.
            if html.is_some() || pdf.is_some() {
                let (Some(tenant), Some(from), Some(to)) = (tenant, from, to) else {
                    anyhow::bail!("a customer report needs --tenant, --from and --to (patchday report --tenant acme --from 2026-11-01 --to 2026-11-30 --pdf acme.pdf)");
                };
                customer_report(&conn, &tenant, (&from, &to), html, pdf).await?;
                return Ok(0);
            }
            anyhow::ensure!(
                from.is_none() && to.is_none(),
                "--from and --to go with --html or --pdf (the customer report)"
            );
            let r = conn.api()?.report(tenant.as_ref()).await?;
            print(&report_table(&r, by), conn.format);
            Ok(0)
        }
    }
}

/// Issue 11, point 6: reads what the report needs through the API, writes the HTML
/// (to --html, or next to the PDF) and prints the PDF.
async fn customer_report(
    conn: &Conn,
    tenant: &TenantId,
    (from, to): (&str, &str),
    html: Option<std::path::PathBuf>,
    pdf: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use patchday_cli::customer_report as cr;
    let (from, to) = (cr::parse_bound(from, false)?, cr::parse_bound(to, true)?);
    anyhow::ensure!(from < to, "--from {from} is not before --to {to}");
    let api = conn.api()?;
    let t = api
        .tenants()
        .await?
        .into_iter()
        .find(|x| &x.id == tenant)
        .with_context(|| format!("tenant {tenant} not found (or not yours)"))?;
    let history = api.history(tenant, None, None).await?;
    let report = api.report(Some(tenant)).await?;
    let updates = api.updates(tenant).await?;
    let audit = api.fleet_audit(tenant).await?;
    let r = cr::build(&cr::Input {
        tenant: &t,
        from,
        to,
        history: &history,
        report: &report,
        updates: &updates,
        audit: &audit,
    });
    let text = cr::html(&r)?;
    let html_path = html
        .or_else(|| pdf.as_ref().map(|p| p.with_extension("html")))
        .context("a customer report needs --html or --pdf")?;
    std::fs::write(&html_path, text).with_context(|| format!("writing {}", html_path.display()))?;
    println!("wrote {}", html_path.display());
    if let Some(p) = pdf {
        cr::print_pdf(&html_path, &p)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

async fn decide(
    a: DecideArgs,
    decision: Decision,
    reason: Option<String>,
    (emergency, remove): (bool, bool),
) -> anyhow::Result<i32> {
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
                reason,
                emergency,
                remove,
            },
        )
        .await?;
    let verb = match (decision, emergency, remove) {
        (Decision::Approve, false, _) => "approved",
        (Decision::Approve, true, _) => "approved through the emergency lane",
        (Decision::Decline, _, false) => "declined",
        // Issue 10, point 3.
        (Decision::Decline, _, true) => "declined with removal",
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
        CatalogCmd::AddBaseline { common, policy } => {
            let p = patchday_cli::baseline::describe(&policy)?;
            let (_, text) = patchday_cli::baseline::read(&policy)?;
            if let Some((v, old)) =
                patchday_cli::baseline::published(&common.repo, &p.package).await?
            {
                anyhow::ensure!(
                    patchday_pkg::version::compare_deb(&p.version, &v)?
                        == std::cmp::Ordering::Greater,
                    "baseline {} {} is not newer than the published version {v}; raise `version` in [baseline]",
                    p.package,
                    p.version
                );
                let old_text = std::fs::read_to_string(&old)
                    .with_context(|| format!("reading {}", old.display()))?;
                print!(
                    "{}",
                    patchday_cli::baseline::diff_text(
                        &format!("{} {v} (published)", p.package),
                        &old_text,
                        &format!("{} {}", p.package, p.version),
                        &text,
                    )
                );
            }
            let mut opts = common.options(None)?;
            opts.classification = opts
                .classification
                .or(Some(patchday_types::Classification::Security));
            if opts.title.is_none() {
                opts.title = Some(format!("baseline {} {}", p.package, p.version));
            }
            let doc = patchday_cli::catalog::add_update(
                &KeyPaths::in_dir(&common.keys),
                &common.repo,
                patchday_cli::catalog::UpdateContent {
                    files: vec![policy],
                    payloads: vec![p],
                    cves: Vec::new(),
                    description: text,
                },
                &opts,
                now(),
            )
            .await?;
            println!("signed {}: {} [{}]", doc.id, doc.title, doc.release);
        }
        CatalogCmd::Delegate {
            keys,
            repo,
            role,
            paths,
            key_files,
            threshold,
        } => {
            let v = patchday_cli::catalog::delegate(
                &KeyPaths::in_dir(&keys),
                &repo,
                &role,
                &paths,
                &key_files,
                threshold,
                now(),
            )
            .await?;
            println!(
                "delegated to role {role} (targets v{}, snapshot v{}); push the catalog to publish it",
                v.targets, v.snapshot
            );
        }
        CatalogCmd::Push { repo, conn } => {
            let (s, sent) = patchday_cli::catalog::push(&conn.api()?, &repo).await?;
            println!(
                "catalog accepted: targets v{}, {} updates, {} payloads ({} of {} target files uploaded, {} KiB; the server held the rest)",
                s.targets_version,
                s.updates,
                s.payloads,
                sent.uploaded,
                sent.targets,
                sent.bytes / 1024
            );
        }
        // Issue 12, point 1.
        CatalogCmd::Pull { repo, root, conn } => {
            let root = root.unwrap_or_else(|| repo.join("metadata/1.root.json"));
            anyhow::ensure!(
                root.is_file(),
                "{} does not exist: give --root PATH/TO/1.root.json (the catalog's first root, from the offline catalog), which everything the server serves must chain to",
                root.display()
            );
            // The root may be the one the pull replaces: read it first.
            let pinned = tempfile::NamedTempFile::new()?;
            std::fs::copy(&root, pinned.path())
                .with_context(|| format!("reading {}", root.display()))?;
            let p = patchday_cli::catalog::pull(&conn.api()?, &repo, pinned.path(), now()).await?;
            println!(
                "pulled the served catalog into {}: root v{}, targets v{}, snapshot v{}; {} metadata file(s), {} update document(s) fetched (payloads stay on the server: `catalog push` sends only what it lacks)",
                repo.display(),
                p.root_version,
                p.targets_version,
                p.snapshot_version,
                p.metadata,
                p.documents
            );
        }
        // Issue 9, point 2.
        CatalogCmd::VerifyUpstream(a) => {
            return patchday_cli::mirror::verify_upstream(a, now()).await;
        }
        CatalogCmd::Refresh {
            keys,
            repo,
            targets_within,
            targets_expires,
            snapshot_expires,
            timestamp_expires,
        } => {
            let exp = patchday_trust::Expiries {
                targets: targets_expires,
                snapshot: snapshot_expires,
                timestamp: timestamp_expires,
                ..Default::default()
            };
            let now = now();
            let (resigned_targets, roles) = patchday_cli::catalog::refresh(
                &KeyPaths::in_dir(&keys),
                &repo,
                now,
                &exp,
                targets_within,
            )
            .await?;
            for r in &roles {
                println!("{} v{} expires {}", r.role, r.version, r.expires);
            }
            println!(
                "catalog refreshed ({}); push it: patchday catalog push --repo {}",
                if resigned_targets {
                    "targets, snapshot and timestamp re-signed"
                } else {
                    "snapshot and timestamp re-signed; targets kept"
                },
                repo.display()
            );
        }
        CatalogCmd::Prune {
            keys,
            repo,
            superseded_before,
            as_role,
            key_files,
        } => {
            let now = now();
            let cutoff = before(&superseded_before, now)?;
            let role = as_role.map(|role| patchday_publish::DelegatedSigner { role, key_files });
            let report = patchday_publish::prune::prune(
                &KeyPaths::in_dir(&keys),
                &repo,
                role.as_ref(),
                patchday_publish::prune::Scope::All,
                cutoff,
                now,
            )
            .await?;
            for line in report.lines() {
                println!("{line}");
            }
            if !report.dropped.is_empty() {
                println!(
                    "push the catalog: patchday catalog push --repo {}",
                    repo.display()
                );
            }
        }
        CatalogCmd::Status { conn } => {
            let s = conn.api()?.catalog_status().await?;
            // Issue 9, point 5: every role's expiry; JSON is the whole status.
            if conn.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(0);
            }
            let mut roles = Table::new(&["role", "version", "expires", "state"]);
            for r in &s.roles {
                roles.rows.push(vec![
                    r.role.clone(),
                    r.version.to_string(),
                    r.expires.to_string(),
                    r.state.to_string(),
                ]);
            }
            print(&roles, conn.format);
            for w in &s.warnings {
                eprintln!("warning: {w}");
            }
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
            // Issue 10, point 7: the content store and what the cleanup freed.
            if let Some(c) = &s.content {
                let mut t = Table::new(&[
                    "stored blobs",
                    "stored bytes",
                    "evicted payloads",
                    "bytes freed",
                    "retain",
                    "last cleanup",
                ]);
                t.rows.push(vec![
                    c.blobs.to_string(),
                    c.bytes.to_string(),
                    c.evicted.to_string(),
                    c.evicted_bytes.to_string(),
                    format!("{}s", c.retain_seconds),
                    c.last_cleanup
                        .map_or_else(|| "not yet".to_string(), |t| t.to_string()),
                ]);
                print(&t, conn.format);
            }
        }
    }
    Ok(0)
}

// ---- Finding 3/10 (issue 8): token lifecycle commands ----

async fn token(cmd: TokenCmd) -> anyhow::Result<i32> {
    match cmd {
        TokenCmd::Create {
            role,
            tenant,
            name,
            expires,
            conn,
        } => {
            let expires_at = expires.as_deref().map(|e| ahead(e, now())).transpose()?;
            let s = conn
                .api()?
                .create_token(&CreateToken {
                    name,
                    role,
                    tenant,
                    expires_at,
                })
                .await?;
            match expires_at {
                Some(at) => {
                    eprintln!("token created, valid until {at}; it is shown only this once:")
                }
                None => eprintln!("token created; it is shown only this once:"),
            }
            println!("{}", s.secret);
        }
        TokenCmd::List { tenant, conn } => {
            let tokens = conn.api()?.tokens(tenant.as_ref()).await?;
            print(
                &patchday_cli::render::token_table(&tokens, now()),
                conn.format,
            );
        }
        TokenCmd::Revoke { id, conn } => {
            let t = conn.api()?.revoke_token(&id).await?;
            println!(
                "revoked token {} ({}, {}); it no longer works",
                t.id, t.name, t.prefix
            );
        }
    }
    Ok(0)
}

async fn enroll_token(cmd: EnrollTokenCmd) -> anyhow::Result<i32> {
    match cmd {
        EnrollTokenCmd::Create {
            tenant,
            uses,
            unlimited,
            expires,
            group,
            name,
            conn,
        } => {
            let req = patchday_types::api::CreateEnrollToken {
                name,
                expires_at: Some(ahead(&expires, now())?),
                max_uses: (!unlimited).then_some(uses),
                unlimited,
                group,
            };
            let s = conn.api()?.create_enroll_token(&tenant, &req).await?;
            let uses = if unlimited {
                "any number of hosts".to_string()
            } else {
                format!("{uses} host(s)")
            };
            eprintln!(
                "enrolment token for {tenant} ({uses}, until {}); it is shown only this once.\n\
                 Give it to agents in PATCHDAY_ENROLL_TOKEN or a file (--enroll-token-file), not on the command line:",
                req.expires_at.map(|t| t.to_string()).unwrap_or_default()
            );
            println!("{}", s.secret);
        }
        EnrollTokenCmd::List { tenant, conn } => {
            let tokens = conn.api()?.enroll_tokens(&tenant).await?;
            print(
                &patchday_cli::render::enroll_token_table(&tokens, now()),
                conn.format,
            );
        }
        EnrollTokenCmd::Revoke { tenant, id, conn } => {
            let t = conn.api()?.revoke_enroll_token(&tenant, &id).await?;
            println!(
                "revoked enrolment token {} ({}) of {tenant}; no host can enrol with it now",
                t.id, t.prefix
            );
        }
    }
    Ok(0)
}

/// A length of time such as `90m`, `12h`, `30d` or `2w`.
fn duration(s: &str) -> Option<jiff::SignedDuration> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    (n >= 0).then(|| jiff::SignedDuration::from_secs(n.saturating_mul(secs)))
}

/// `--superseded-before`: a duration before `now`, an RFC 3339 time or a date (midnight UTC).
fn before(s: &str, now: jiff::Timestamp) -> anyhow::Result<jiff::Timestamp> {
    if let Some(d) = duration(s) {
        return Ok(now.checked_sub(d)?);
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let date: jiff::civil::Date = s.parse().with_context(|| {
        format!("{s:?} is neither a date (2026-06-01), an RFC 3339 time nor a duration (90d)")
    })?;
    Ok(date.to_zoned(jiff::tz::TimeZone::UTC)?.timestamp())
}

/// `--expires`: a duration from `now` or an RFC 3339 time.
fn ahead(s: &str, now: jiff::Timestamp) -> anyhow::Result<jiff::Timestamp> {
    match duration(s) {
        Some(d) => Ok(now.checked_add(d)?),
        None => s.parse().with_context(|| {
            format!("{s:?} is neither a duration (30d, 12h, 90m, 2w) nor an RFC 3339 time")
        }),
    }
}

/// `--since`: a duration before `now` or an RFC 3339 time.
fn ago(s: &str, now: jiff::Timestamp) -> anyhow::Result<jiff::Timestamp> {
    match duration(s) {
        Some(d) => Ok(now.checked_sub(d)?),
        None => s
            .parse()
            .with_context(|| format!("{s:?} is neither a duration (24h, 7d) nor an RFC 3339 time")),
    }
}

async fn server(a: ServerArgs) -> anyhow::Result<i32> {
    match &a.action {
        Some(ServerAction::Scrub { data, content }) => {
            return scrub(&content.config_for(data)?).await
        }
        // Issue 12, point 6.
        Some(ServerAction::Backup { data, out, content }) => {
            #[allow(clippy::disallowed_methods)] // the binary edge: the backup's time
            let now = jiff::Timestamp::now();
            let cfg = content.config_for(data)?;
            let source = match (&cfg.content_s3, cfg.content_directory()) {
                (Some(s3), _) => {
                    patchday_server::backup::PayloadSource::Elsewhere(s3.location.to_string())
                }
                (None, Some(dir)) => patchday_server::backup::PayloadSource::Directory(dir),
                (None, None) => {
                    patchday_server::backup::PayloadSource::Directory(data.join("content"))
                }
            };
            let m = patchday_server::backup::backup(data, &source, out, now).await?;
            println!(
                "backup: {} written: the database, {} files ({} bytes), {} payloads. It holds the director key: keep it like a private key.",
                out.display(),
                m.files,
                m.bytes,
                m.payloads
            );
            if let Some(elsewhere) = &m.payloads_elsewhere {
                println!(
                    "backup: the payloads are not in it: they stay in {elsewhere}; back that bucket up by the object store's own means (versioning, replication), and start a restored server with --content {elsewhere}"
                );
            }
            return Ok(0);
        }
        Some(ServerAction::Restore { from, data }) => {
            let r = patchday_server::backup::restore(from, data).await?;
            println!(
                "restore: {} restored from the backup of {} ({} tenants, {} hosts, {} payloads). Start the server with --data {}; hosts enrolled after the backup must enrol again.",
                data.display(),
                r.manifest.created_at,
                r.tenants,
                r.hosts,
                r.manifest.payloads,
                data.display()
            );
            if let Some(elsewhere) = &r.manifest.payloads_elsewhere {
                println!(
                    "restore: the payloads were not in the backup: start the server with --content {elsewhere} (and that bucket's endpoint and credentials)"
                );
            }
            return Ok(0);
        }
        None => {}
    }
    // Issue 11, point 7: `--config FILE` was turned into flags before parsing.
    let data = a
        .data
        .clone()
        .context("no data directory: pass --data DIR (or data = \"DIR\" in --config)")?;
    let listen = a
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8470)));
    let mut cfg = patchday_server::ServerConfig::new(data);
    // Issue 12, point 2: an unknown scheme is refused before anything is opened.
    cfg.database = a
        .database
        .as_deref()
        .map(str::parse::<patchday_server::DatabaseChoice>)
        .transpose()?;
    // Issues 10 and 11 (point 5): notification targets.
    cfg.notify = notify_config(&a)?;
    cfg.catalog_root = a.catalog_root.clone();
    // Issue 12, points 3 and 5: a directory or a bucket.
    a.content.apply(&mut cfg)?;
    if a.content_redirect {
        anyhow::ensure!(
            cfg.content_s3.is_some(),
            "--content-redirect needs --content s3://BUCKET/PREFIX: a directory has no URL to send agents to"
        );
        let lifetime = std::time::Duration::try_from(a.content_redirect_lifetime)
            .ok()
            .filter(|d| (10..=7 * 86_400).contains(&d.as_secs()))
            .context("--content-redirect-lifetime: between 10s and 7d (S3 signs URLs for at most a week)")?;
        cfg.content_redirect = Some(lifetime);
    }
    if let Some(p) = a.poll_seconds {
        cfg.poll_seconds = p;
    }
    if let Some(m) = a.max_catalog_bytes {
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
    if let Some(key) = a.timestamp_key.clone() {
        let mut online = patchday_server::freshness::OnlineTimestampKey::new(key);
        online.lifetime = jiff::SignedDuration::from_secs(i64::from(a.timestamp_lifetime.max(2)));
        online.check_every = std::time::Duration::from_secs(u64::from(a.timestamp_check.max(1)));
        cfg.online_timestamp = Some(online);
    }
    cfg.limits = patchday_server::listener::ConnectionLimits {
        max_connections: a.max_connections,
        header_timeout: std::time::Duration::from_secs(a.header_timeout.max(1)),
        body_timeout: std::time::Duration::from_secs(a.body_timeout.max(1)),
    };
    cfg.stale_after = a.stale_after;
    cfg.access_token_lifetime = a.access_token_lifetime;
    cfg.expiry_warning = patchday_core::catalog_expiry::ExpiryWarning {
        roles: a.catalog_expiry_warning,
        timestamp: a.timestamp_expiry_warning,
    };
    // Issue 9, point 1: the archive sync on a schedule.
    cfg.mirror = a.mirror.schedule(&cfg.audit_feeds, &cfg.data_dir)?;
    // Issues 10 and 11 (point 5): the rollout's pace.
    cfg.rollout_every = std::time::Duration::try_from(a.rollout_every)
        .unwrap_or(cfg.rollout_every)
        .max(std::time::Duration::from_secs(1));
    // Issue 10, point 6 (push).
    cfg.push = patchday_server::push::PushLimits {
        long_poll: std::time::Duration::from_secs(a.long_poll_seconds.clamp(1, 3600)),
        max_waiting: a.max_long_polls,
        heartbeat: std::time::Duration::from_secs(a.heartbeat_seconds.clamp(5, 300)),
    };
    cfg.listen_backlog = a.listen_backlog;
    // Issue 10, point 7: the content store stays bounded.
    cfg.cleanup_every = std::time::Duration::try_from(a.cleanup_every)
        .unwrap_or(cfg.cleanup_every)
        .max(std::time::Duration::from_secs(1));
    cfg.retain = a.retain;
    // Issue 11, point 4: the scrape secret (a secret of its own, not an operator token).
    if let Some(f) = a.metrics_token_file.as_ref() {
        let token = std::fs::read_to_string(f)
            .with_context(|| format!("reading the metrics token {}", f.display()))?;
        anyhow::ensure!(
            token.trim().len() >= 16,
            "the metrics token file {} holds fewer than 16 characters: put a long random secret in it (for example `openssl rand -hex 32`)",
            f.display()
        );
        cfg.metrics_token = Some(patchday_types::Secret::new(token.trim()));
    }
    let init = patchday_server::init(&cfg, Arc::new(patchday_server::SystemClock)).await?;
    if let Some(tok) = &init.first_admin_token {
        println!("first provider-admin token (shown once; store it now): {tok}");
        if let Some(f) = &a.admin_token_file {
            write_secret_file(f, tok)?;
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

/// Issue 11, point 5: the notification targets (`--webhook`, `--notify-targets`) and pace.
fn notify_config(a: &ServerArgs) -> anyhow::Result<patchday_server::notify::NotifyConfig> {
    use patchday_server::notify::{
        read_secret_file, NotifyConfig, RetryPolicy, Target, TargetKind,
    };
    let mut targets = Vec::new();
    if let (Some(url), Some(f)) = (&a.webhook, &a.webhook_secret_file) {
        targets.push(Target {
            name: "webhook".into(),
            tenant: None,
            events: Vec::new(),
            kind: TargetKind::Webhook {
                url: url.clone(),
                secret: read_secret_file(f, "webhook secret")?,
            },
        });
    }
    if let Some(f) = &a.notify_targets {
        targets.extend(patchday_server::notify::TargetsFile::load(f)?);
    }
    patchday_server::notify::check_names(&targets)?;
    let secs = |d: jiff::SignedDuration, min: u64| {
        std::time::Duration::try_from(d)
            .unwrap_or_default()
            .max(std::time::Duration::from_secs(min))
    };
    Ok(NotifyConfig {
        targets,
        every: secs(a.notify_every, 1),
        scan_every: secs(a.notify_scan_every, 1),
        retry: RetryPolicy {
            base: a.notify_retry_base.max(jiff::SignedDuration::from_secs(1)),
            max_delay: jiff::SignedDuration::from_hours(1),
            max_attempts: a.notify_max_attempts.max(1),
        },
    })
}

// Issue 8, findings 9 and 14: `server --admin-token-file` and `server scrub`.

/// Writes a secret through a temporary file with a random name, created exclusively
/// (never through a link someone planted) with mode 0600, then renamed into place.
fn write_secret_file(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".patchday-token-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(secret.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

async fn scrub(cfg: &patchday_server::ServerConfig) -> anyhow::Result<i32> {
    let r = patchday_server::scrub(cfg).await?;
    for d in &r.damaged {
        println!("damaged (quarantined): {d}");
    }
    for m in &r.missing {
        println!("missing: {m}");
    }
    println!(
        "scrub: {} payloads checked, {} damaged, {} missing{}",
        r.checked,
        r.damaged.len(),
        r.missing.len(),
        if r.clean() {
            ""
        } else {
            "; push the catalog again to repair"
        }
    );
    Ok(if r.clean() { 0 } else { 1 })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Issue 11, point 7: `--config FILE` of `server` and `agent` supplies the flags not given.
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    for path in [["server"], ["agent"]] {
        argv = match patchday_agent::config_file::expand(&Cli::command(), argv, &path) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
        };
    }
    let cli = Cli::parse_from(argv);
    let default = match cli.command {
        Command::Server(_) => "warn,patchday_server=info",
        _ => "warn",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Issue 11, point 7: no colour codes in a journal or a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
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

// Finding 3/10 (issue 8): `--expires` and `--since`.
#[cfg(test)]
mod tests {
    use super::{ago, ahead};

    /// Issue 11, point 8: every command an operator runs shows an example in its help.
    #[test]
    fn every_command_has_an_example_in_its_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            let subs: Vec<&clap::Command> = cmd
                .get_subcommands()
                .filter(|c| c.get_name() != "help")
                .collect();
            if subs.is_empty() {
                let about = cmd.get_long_about().map(ToString::to_string);
                let after = cmd.get_after_help().map(ToString::to_string);
                if ![about, after]
                    .iter()
                    .flatten()
                    .any(|t| t.contains("Example"))
                {
                    missing.push(path.clone());
                }
            }
            for s in subs {
                walk(s, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(
            &<super::Cli as clap::CommandFactory>::command(),
            "",
            &mut missing,
        );
        assert!(
            missing.is_empty(),
            "commands without an example: {missing:?}"
        );
    }

    #[test]
    fn expiry_durations_and_times_parse() {
        let now: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(ahead("30d", now).unwrap(), at("2026-12-31T10:00:00Z"));
        assert_eq!(ahead("12h", now).unwrap(), at("2026-12-01T22:00:00Z"));
        assert_eq!(ahead("2w", now).unwrap(), at("2026-12-15T10:00:00Z"));
        assert_eq!(ago("90m", now).unwrap(), at("2026-12-01T08:30:00Z"));
        assert_eq!(
            ahead("2027-01-01T00:00:00Z", now).unwrap(),
            at("2027-01-01T00:00:00Z")
        );
        let e = ahead("soon", now).unwrap_err().to_string();
        assert_eq!(
            e,
            "\"soon\" is neither a duration (30d, 12h, 90m, 2w) nor an RFC 3339 time"
        );
        assert!(ahead("-3d", now).is_err());
    }
}
