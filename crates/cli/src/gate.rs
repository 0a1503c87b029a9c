//! `patchday gate http|nft` (issue 14, points 2 and 3): the gates of `patchday-gate`,
//! following a tenant's access list on the server with an operator token (a read-only
//! one is enough). This module reads flags, connects, and prints.

use crate::api::{Api, Conn};
use anyhow::Context;
use patchday_gate::follow::{self, AccessSource};
use patchday_types::api::AccessList;
use patchday_types::TenantId;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Gate commands.
#[derive(clap::Subcommand)]
pub enum GateCmd {
    /// The web gate: answers nginx `auth_request` (and Envoy `ext_authz` HTTP checks).
    /// A request passes with a valid access token of a compliant host of --tenant and the
    /// host key's proof of possession; else 401/403 with the reason (`Patchday-Reason`
    /// header and an HTML page). Tokens are verified offline with the server's key; the
    /// server's access list (followed by long poll) refuses hosts that lapsed before their
    /// token expires.
    ///
    /// Example: PATCHDAY_TOKEN=pd_... patchday gate http --server https://patchday.example:8470 --tenant acme --listen 127.0.0.1:8471
    Http(HttpArgs),
    /// The network-edge gate: keeps the nftables table `inet patchday_gate` on this
    /// gateway current: addresses of hosts that lapsed (mapped with --peer or --peers)
    /// reach only the Patchday server and the --reachable addresses (package archives)
    /// until they are patched, then are released.
    ///
    /// Example: PATCHDAY_TOKEN=pd_... patchday gate nft --server https://patchday.example:8470 --tenant acme --peers /etc/patchday/wg-peers --reachable 151.101.0.0/16
    Nft(NftArgs),
}

/// How the gates follow the server.
#[derive(clap::Args)]
pub struct Follow {
    /// The tenant whose hosts the gate admits.
    #[arg(long)]
    tenant: TenantId,
    /// Seconds the server may hold each wait for a change (at most 120).
    #[arg(long, default_value_t = 25)]
    wait_seconds: u64,
    #[command(flatten)]
    conn: Conn,
}

/// `patchday gate http`.
#[derive(clap::Args)]
pub struct HttpArgs {
    #[command(flatten)]
    follow: Follow,
    /// Where nginx (or Envoy) reaches the gate.
    #[arg(long, default_value = "127.0.0.1:8471")]
    listen: String,
    /// Seconds a request's proof of possession may be away from the gate's clock.
    #[arg(long, default_value_t = 60)]
    proof_window: u64,
    /// Most proofs remembered within the window (each is admitted once; roughly 100 bytes
    /// each). Past it, requests are refused until older proofs expire.
    #[arg(long, default_value_t = 200_000)]
    proof_cache: usize,
    /// Refuse every request when the server has not confirmed the list for this many
    /// seconds (fail closed when the gate cannot learn that a host lapsed).
    #[arg(long, default_value_t = 90)]
    max_age: u64,
}

/// `patchday gate nft`.
#[derive(clap::Args)]
pub struct NftArgs {
    #[command(flatten)]
    follow: Follow,
    /// A host (id or hostname) and its address on this gateway, e.g. its WireGuard
    /// tunnel address (repeatable): laptop-7=10.8.0.7.
    #[arg(long = "peer", value_name = "HOST=ADDRESS")]
    peers: Vec<String>,
    /// A file of such mappings, one `HOST=ADDRESS` or `HOST ADDRESS` a line, `#` comments.
    #[arg(long = "peers")]
    peers_file: Option<PathBuf>,
    /// An address or network quarantined hosts may still reach, e.g. a package archive
    /// (repeatable). The server's own addresses are added.
    #[arg(long = "reachable", value_name = "ADDRESS[/PREFIX]")]
    reachable: Vec<String>,
    /// The nft program.
    #[arg(long, default_value = "nft")]
    nft: PathBuf,
}

/// The server, read through the CLI's client.
struct Server {
    api: Api,
    tenant: TenantId,
}

#[async_trait::async_trait]
impl AccessSource for Server {
    async fn fetch(&self, known: Option<&str>, wait: Duration) -> Result<AccessList, String> {
        self.api
            .access_list(&self.tenant, known, wait)
            .await
            .map_err(|e| format!("{e:#}"))
    }
}

/// Starts following; the receiving end for the gate.
fn start(f: &Follow) -> anyhow::Result<(Api, follow::View)> {
    let api = f.conn.api()?;
    let source = Arc::new(Server {
        api: api.clone(),
        tenant: f.tenant.clone(),
    });
    let (tx, view) = follow::channel();
    let wait = Duration::from_secs(f.wait_seconds.clamp(1, 120));
    tokio::spawn(follow::follow(source, tx, wait, Duration::from_secs(2)));
    Ok((api, view))
}

/// Runs a gate command until it fails or is stopped.
pub async fn run(cmd: GateCmd, now: fn() -> jiff::Timestamp) -> anyhow::Result<i32> {
    match cmd {
        GateCmd::Http(a) => http(a, now).await,
        GateCmd::Nft(a) => nft(a).await,
    }
}

async fn http(a: HttpArgs, now: fn() -> jiff::Timestamp) -> anyhow::Result<i32> {
    let (_, view) = start(&a.follow)?;
    let gate = Arc::new(patchday_gate::http::HttpGate {
        tenant: a.follow.tenant.to_string(),
        proof_window: jiff::SignedDuration::from_secs(i64::try_from(a.proof_window).unwrap_or(60)),
        max_age: Duration::from_secs(a.max_age.max(a.follow.wait_seconds + 5)),
        now,
        view,
        replay: std::sync::Mutex::new(patchday_trust::access::ReplayCache::new(a.proof_cache)),
    });
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {} (in use? another gate?)", a.listen))?;
    println!(
        "patchday gate http: listening on {} for hosts of tenant {}",
        listener.local_addr()?,
        a.follow.tenant
    );
    patchday_gate::http::serve(listener, gate)
        .await
        .context("the gate's listener failed")?;
    Ok(0)
}

/// The addresses the server's host name resolves to.
async fn server_addresses(api: &Api) -> anyhow::Result<Vec<std::net::IpAddr>> {
    let url = url::Url::parse(api.base()).context("the server URL is not a URL")?;
    let host = url
        .host_str()
        .context("the server URL has no host")?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve the server's host {host}"))?;
    let mut ips: Vec<std::net::IpAddr> = addrs.map(|a| a.ip()).collect();
    ips.sort();
    ips.dedup();
    Ok(ips)
}

async fn nft(a: NftArgs) -> anyhow::Result<i32> {
    use patchday_gate::nft::{keep_current, parse_peer, parse_peers_file, parse_reachable};
    let mut peers = Vec::new();
    if let Some(f) = &a.peers_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read --peers {}", f.display()))?;
        peers.extend(
            parse_peers_file(&text).map_err(|e| anyhow::anyhow!("--peers {}: {e}", f.display()))?,
        );
    }
    for p in &a.peers {
        peers.push(parse_peer(p).map_err(|e| anyhow::anyhow!("--peer {e}"))?);
    }
    if peers.is_empty() {
        anyhow::bail!("no hosts to gate: map each host to its address with --peer HOST=ADDRESS or --peers FILE");
    }
    let mut reachable = Vec::new();
    for r in &a.reachable {
        reachable.push(parse_reachable(r).map_err(|e| anyhow::anyhow!("--reachable {e}"))?);
    }
    let (api, view) = start(&a.follow)?;
    for ip in server_addresses(&api).await? {
        reachable.push(parse_reachable(&ip.to_string()).map_err(|e| anyhow::anyhow!(e))?);
    }
    let shown: Vec<String> = reachable
        .iter()
        .map(|r| format!("{}/{}", r.addr, r.len))
        .collect();
    println!(
        "patchday gate nft: {} mapped hosts of tenant {}; quarantined ones reach only {}",
        peers.len(),
        a.follow.tenant,
        shown.join(", ")
    );
    let nft = patchday_baseline::nft::Nft { program: a.nft };
    keep_current(nft, peers, reachable, view, |c| {
        for q in &c.quarantined {
            println!("quarantined {} ({}): {}", q.addr, q.host, q.reason);
        }
        for q in &c.released {
            println!("released {} ({})", q.addr, q.host);
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; the quarantine set may be out of date: restart the gate"))?;
    Ok(0)
}
