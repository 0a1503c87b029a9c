//! Server check-in load benchmark: a real server (`patchday_server::init` + `bind` on
//! 127.0.0.1:0, SQLite in a temporary directory) with a signed catalog of U updates,
//! N enrolled hosts in one group with every update approved, then C concurrent clients
//! posting `/v1/agent/checkin` with P-package inventories for a fixed number of
//! requests, after a warm-up round of one check-in per host. Reports check-ins per
//! second, latency percentiles, assignments per check-in (against the count each
//! inventory was built for), CPU per thread group (server tokio workers, sqlx SQLite
//! threads, the load client) and latency with one client at a time, and verifies one
//! answer's director metadata as an agent would.
//!
//! `cargo run --release -p patchday-server --example checkin_bench -- 1000 50 800 32 5000 [PRESENT]`
//! (hosts, updates in the catalog, packages per inventory, concurrent clients,
//! check-ins, and optionally how many of the catalog's updates name packages each host
//! has: without it 40% of them do; with it, a catalog of 10,000 updates can be compared
//! with one of 50 at the same number of assignments, issue 9 point 6). `bench/checkin.sh` runs it under `/usr/bin/time` for the whole process's
//! peak RSS.
//!
//! Target (printed as PASS/FAIL): at least 10x the check-in rate of 10,000 hosts polling
//! hourly with jitter (10,000 / 3600 s = 2.8/s, so >= 27.8 check-ins/s) with p99 < 1 s.
//!
//! The load client is reqwest (keep-alive, a pool of up to C connections) on its own
//! thread and current-thread runtime, so that its CPU can be told apart from the server's.

use anyhow::{bail, Context};
use axum::body::Bytes;
use futures::{StreamExt, TryStreamExt};
use patchday_server::Clock;
use patchday_trust::host_signature::{HostKey, SEQUENCE_HEADER, SIGNATURE_HEADER};
use patchday_trust::{Expiries, NewTarget};
use patchday_types::api::{
    ApprovalRequest, AssignmentEntry, CheckinRequest, CheckinResponse, CreateTenant, Decision,
    EnrollRequest, EnrollResponse, Group, SecretCreated, SetHostGroups,
};
use patchday_types::{
    Classification, GroupId, HostId, InstalledPackage, Inventory, OsRelease, PayloadKind,
    PayloadRef, Release, Severity, TargetCustom, TenantId, UpdateDocument, UpdateId,
};
use reqwest::{header::CONTENT_TYPE, Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 10,000 hosts polling hourly is 2.8 check-ins/s; the server must sustain 10x that.
const TARGET_RATE: f64 = 10.0 * 10_000.0 / 3600.0;
/// And answer 99% of check-ins within a second (in ms) while doing so.
const TARGET_P99_MS: f64 = 1000.0;

/// A small deterministic generator (no dependency, same numbers every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        let (mul, inc) = (6364136223846793005, 1442695040888963407);
        self.0 = self.0.wrapping_mul(mul).wrapping_add(inc);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The server's HTTP API through one keep-alive reqwest client.
struct Api {
    http: reqwest::Client,
    base: String,
    /// The administrator's token.
    admin: String,
}

impl Api {
    /// A request to `path` with `token` as bearer credential.
    fn request(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        let url = format!("{}{path}", self.base);
        self.http.request(method, url).bearer_auth(token)
    }

    /// Sends `req`; the body of a 2xx answer.
    async fn send(req: RequestBuilder) -> anyhow::Result<Bytes> {
        let resp = req.send().await?;
        let (status, path) = (resp.status(), resp.url().path().to_string());
        let body = resp.bytes().await?;
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }

    /// Sends `req`; the JSON answer of a 2xx status.
    async fn json<R: DeserializeOwned>(req: RequestBuilder) -> anyhow::Result<R> {
        Ok(serde_json::from_slice(&Self::send(req).await?)?)
    }

    /// An administrator's request with a JSON body, and its JSON answer.
    async fn admin<R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<R> {
        Self::json(self.request(method, path, &self.admin).json(body)).await
    }
}

// --- The synthetic catalog and fleet ---

/// One update of the catalog; the fleet has `old` of its packages, it installs the
/// versions its payloads name.
struct Spec {
    doc: UpdateDocument,
    old: String,
}

fn catalog_specs(updates: usize) -> anyhow::Result<Vec<Spec>> {
    let mut out = Vec::new();
    for i in 0..updates {
        let id = UpdateId::new(format!("PD-BENCH-{i:04}"))?;
        // Every third update ships a second binary package (a -dev or -common split).
        let names = [format!("libpd{i:03}"), format!("libpd{i:03}-common")];
        let src = format!("pd{i:03}");
        let epoch = if i % 5 == 0 { "1:" } else { "" };
        let old = format!("{epoch}{}.{}.{}-{}", 1 + i % 4, i % 17, i % 5, 1 + i % 3);
        let new = format!("{old}+deb12u{}", 1 + i % 2);
        let file_version = new.split_once(':').map_or(new.as_str(), |(_, r)| r);
        let payloads = names.into_iter().take(if i % 3 == 0 { 2 } else { 1 });
        let payloads = payloads
            .zip(["amd64", "all"])
            .map(|(name, arch)| PayloadRef {
                target: format!("{name}_{file_version}_{arch}.deb"),
                kind: PayloadKind::Deb,
                package: name,
                version: new.clone(),
                architecture: arch.into(),
                source: src.clone(),
                source_version: new.clone(),
            });
        let cves: Vec<String> = (0..1 + i % 4)
            .map(|k| format!("CVE-2099-{}", 1000 + i * 10 + k))
            .collect();
        let doc = UpdateDocument {
            id,
            title: format!("{src} {new} security update ({} CVEs)", cves.len()),
            product: "debian".into(),
            classification: Classification::Security,
            severity: Severity::Important,
            cves,
            supersedes: vec![],
            release: Release::Emergency {
                reason: "checkin benchmark".into(),
            },
            payloads: payloads.collect(),
            description: format!("{src} ({new})\n  * Security fixes (synthetic).\n"),
            tenants: vec![],
            upstream: None,
        };
        out.push(Spec { doc, old });
    }
    Ok(out)
}

/// Signs the catalog offline (as the publisher would) and packs metadata/ and targets/.
async fn build_catalog(
    dir: &Path,
    specs: &[Spec],
    now: jiff::Timestamp,
) -> anyhow::Result<Vec<u8>> {
    let keys = patchday_trust::generate_keyset(
        &dir.join("keys"),
        patchday_trust::DEFAULT_ROOT_KEYS,
        patchday_trust::DEFAULT_ROOT_THRESHOLD,
    )?;
    let repo = dir.join("catalog");
    patchday_trust::init_catalog(&keys, &repo, now, &Expiries::default()).await?;
    let files = dir.join("files");
    std::fs::create_dir_all(&files)?;
    let mut targets = Vec::new();
    for s in specs {
        let doc_path = files.join(UpdateDocument::target_name(&s.doc.id));
        std::fs::write(&doc_path, serde_json::to_vec_pretty(&s.doc)?)?;
        targets.push(NewTarget {
            name: UpdateDocument::target_name(&s.doc.id),
            path: doc_path,
            custom: serde_json::to_value(TargetCustom::Update {
                id: s.doc.id.clone(),
            })?,
        });
        for pl in &s.doc.payloads {
            let path = files.join(&pl.target);
            // Stand-in bytes: the server hashes payloads but never unpacks them.
            std::fs::write(&path, format!("synthetic payload {}\n", pl.target))?;
            targets.push(NewTarget {
                name: pl.target.clone(),
                path,
                custom: serde_json::to_value(TargetCustom::for_payload(pl, 1))?,
            });
        }
    }
    if !targets.is_empty() {
        patchday_trust::add_targets(&keys, &repo, targets, now, &Expiries::default()).await?;
    }
    let root_copy = dir.join("1.root.json");
    std::fs::copy(repo.join("metadata/1.root.json"), &root_copy)?;
    let mut b = tar::Builder::new(Vec::new());
    for sub in ["metadata", "targets"] {
        for e in std::fs::read_dir(repo.join(sub))? {
            let e = e?;
            if e.file_type()?.is_file() {
                b.append_path_with_name(e.path(), Path::new(sub).join(e.file_name()))?;
            }
        }
    }
    Ok(b.into_inner()?)
}

/// Applicable updates per host: each update's package is on a host with probability
/// 40%, and a quarter of those hosts already run the fixed version.
const PRESENT_PCT: u64 = 40;
const ALREADY_FIXED_PCT: u64 = 25;

/// One inventory variant, serialised with an empty hostname and split there, so that a
/// request is `prefix + hostname + rest` without serialising anything per request.
struct Variant {
    prefix: Vec<u8>,
    rest: Vec<u8>,
    expected_assignments: usize,
}

fn inventory_variant(
    seed: u64,
    packages: usize,
    specs: &[Spec],
    present: Option<usize>,
) -> anyhow::Result<Variant> {
    let mut rng = Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03);
    let mut pkgs = Vec::with_capacity(packages);
    let mut expected = 0;
    // With a fixed count, that many updates (chosen at random) name packages of the host.
    let chosen: Option<std::collections::BTreeSet<usize>> = present.map(|n| {
        let n = n.min(specs.len());
        let mut set = std::collections::BTreeSet::new();
        while set.len() < n {
            set.insert(rng.below(specs.len() as u64) as usize);
        }
        set
    });
    for (i, s) in specs.iter().enumerate() {
        let r = match &chosen {
            // Present; fixed already with the same odds as below.
            Some(set) if set.contains(&i) => rng.below(PRESENT_PCT),
            Some(_) => continue,
            None => rng.below(100),
        };
        if r >= PRESENT_PCT {
            continue;
        }
        let fixed = r < PRESENT_PCT * ALREADY_FIXED_PCT / 100;
        if !fixed {
            expected += 1;
        }
        for pl in &s.doc.payloads {
            let v = if fixed { &pl.version } else { &s.old };
            pkgs.push(InstalledPackage {
                name: pl.package.clone(),
                version: v.clone(),
                architecture: pl.architecture.clone(),
                source: pl.source.clone(),
                source_version: v.clone(),
            });
        }
    }
    // Filler: a Debian-like mix of libraries, tools and arch-all data packages.
    const STEMS: &str = "libssl python3- libgtk- perl-modules- fonts- libx11- coreutils- \
                         libsystemd gir1.2- libqt5 node- golang-";
    let stems: Vec<&str> = STEMS.split_whitespace().collect();
    let mut k = 0usize;
    while pkgs.len() < packages {
        let stem = stems[k % stems.len()];
        let name = format!("{stem}{}x{}", k / stems.len(), rng.below(10));
        let (a, b, c) = (rng.below(12), rng.below(40), rng.below(9));
        let version = match k % 5 {
            0 => format!("1:{a}.{b}.{c}-{}+deb12u{}", 1 + c, 1 + a % 3),
            1 => format!("{a}.{b}+dfsg-{}", 1 + c),
            2 => format!("{a}.{b}.{c}~rc{}-1", 1 + b % 4),
            _ => format!("{a}.{b}.{c}-{}", 1 + c),
        };
        let (source, source_version) = match k % 3 {
            0 => (format!("src-{stem}{}", k / 7), version.clone()),
            _ => (name.clone(), version.clone()),
        };
        pkgs.push(InstalledPackage {
            name,
            version,
            architecture: if k.is_multiple_of(4) { "all" } else { "amd64" }.into(),
            source,
            source_version,
        });
        k += 1;
    }
    pkgs.sort_by(|a, b| a.name.cmp(&b.name));
    let inv = Inventory {
        hostname: String::new(),
        os: OsRelease {
            id: "debian".into(),
            version_id: "12".into(),
            version_codename: "bookworm".into(),
            pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
        },
        architecture: "amd64".into(),
        kernel_running: "6.1.0-28-amd64".into(),
        reboot_required: false,
        packages: pkgs,
        unfinished: vec![],
        bundles: vec![],
        baselines: vec![],
        dpkg_broken: None,
    };
    let bytes = serde_json::to_vec(&CheckinRequest {
        inventory: inv,
        labels: None,
        baselines: Vec::new(),
        states: Vec::new(),
    })?;
    let marker = b"\"hostname\":\"";
    let at = (bytes.windows(marker.len()).position(|w| w == marker))
        .context("serialised inventory has no hostname field")?;
    let split = at + marker.len();
    Ok(Variant {
        prefix: bytes[..split].to_vec(),
        rest: bytes[split..].to_vec(),
        expected_assignments: expected,
    })
}

// --- Measurement helpers ---

/// CPU seconds (user + system) per thread, from /proc/self/task/*/stat, keyed by tid.
fn thread_cpu() -> BTreeMap<u32, (String, f64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        out.insert(tid, (comm, (ticks(11) + ticks(12)) / 100.0));
    }
    out
}

fn group_of(comm: &str) -> &'static str {
    if comm.starts_with("tokio-r") {
        "server: tokio workers (axum, JSON, applicability, signing)"
    } else if comm.starts_with("sqlx-sqlite") {
        "server: SQLite connection threads (sqlx workers)"
    } else if comm.starts_with("bench-client") {
        "load client (reqwest, this benchmark)"
    } else {
        "other threads (main, blocking pool)"
    }
}

/// CPU used per thread group between two snapshots.
fn cpu_delta(
    a: &BTreeMap<u32, (String, f64)>,
    b: &BTreeMap<u32, (String, f64)>,
) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    for (tid, (comm, t)) in b {
        let before = a.get(tid).map_or(0.0, |(_, x)| *x);
        *out.entry(group_of(comm)).or_insert(0.0) += t - before;
    }
    out
}

/// Current and peak resident memory, from /proc/self/status.
fn mem(label: &str) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mib = |field: &str| {
        let line = status.lines().find(|l| l.starts_with(field));
        let kib = line.and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok());
        kib.unwrap_or(0.0) / 1024.0
    };
    let (rss, peak) = (mib("VmRSS:"), mib("VmHWM:"));
    println!("memory {label}: RSS {rss:.1} MiB, peak {peak:.1} MiB");
}

// --- The load client (its own thread and runtime) ---

#[derive(Clone, Copy)]
struct Params {
    hosts: usize,
    updates: usize,
    packages: usize,
    concurrency: usize,
    checkins: usize,
    present: Option<usize>,
}

struct Fleet {
    api: Api,
    hostnames: Vec<String>,
    /// (host id, credential) per host index.
    creds: Vec<(HostId, String)>,
    /// (tenant, host key, last sequence number) per host index.
    signers: Vec<(String, HostKey, std::sync::atomic::AtomicU64)>,
    variants: Vec<Variant>,
    director_key: Option<patchday_trust::director::DirectorPublicKey>,
}

impl Fleet {
    fn variant(&self, host: usize) -> &Variant {
        &self.variants[host % self.variants.len()]
    }

    /// One check-in of host `h`: (h, request bytes, latency, answer body).
    async fn checkin(&self, h: usize) -> (usize, usize, Duration, anyhow::Result<Bytes>) {
        let v = self.variant(h);
        let body = [&v.prefix[..], self.hostnames[h].as_bytes(), &v.rest].concat();
        let sent = body.len();
        let (tenant, key, seq) = &self.signers[h];
        let n = seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let path = "v1/agent/checkin";
        let sig = key.sign_request(path, tenant, self.creds[h].0.as_str(), n, &body);
        let req = self
            .api
            .request(Method::POST, "/v1/agent/checkin", &self.creds[h].1)
            .header(CONTENT_TYPE, "application/json")
            .header(SEQUENCE_HEADER, n)
            .header(SIGNATURE_HEADER, sig)
            .body(body);
        let t0 = Instant::now();
        let answer = Api::send(req).await;
        (h, sent, t0.elapsed(), answer)
    }
}

#[derive(Default)]
struct PhaseResult {
    wall: Duration,
    /// Of the successful check-ins, sorted.
    latencies: Vec<Duration>,
    assignments: Vec<usize>,
    targets: Vec<usize>,
    request_bytes: usize,
    answer_bytes: usize,
    with_director: usize,
    errors: usize,
    first_error: Option<String>,
    mismatched: usize,
    director_verified: Option<Result<usize, String>>,
    cpu: BTreeMap<&'static str, f64>,
}

impl PhaseResult {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile of the latencies, in milliseconds.
    fn ms(&self, q: f64) -> f64 {
        let n = self.latencies.len();
        let i = ((q * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1;
        let d = self.latencies.get(i).copied().unwrap_or_default();
        d.as_secs_f64() * 1000.0
    }

    /// `total` per successful check-in.
    fn per(&self, total: f64) -> f64 {
        total / self.latencies.len().max(1) as f64
    }
}

/// `count` check-ins, hosts in turn, `concurrency` in flight at a time.
async fn checkin_phase(fleet: &Fleet, count: usize, concurrency: usize) -> PhaseResult {
    let mut r = PhaseResult::default();
    let before = thread_cpu();
    let started = Instant::now();
    let mut answers = futures::stream::iter(0..count)
        .map(|i| fleet.checkin(i % fleet.creds.len()))
        .buffer_unordered(concurrency.max(1));
    while let Some((h, sent, dt, answer)) = answers.next().await {
        r.request_bytes += sent;
        let parsed = answer.and_then(|b| {
            r.answer_bytes += b.len();
            serde_json::from_slice::<CheckinResponse>(&b).context("check-in: unexpected answer")
        });
        let a = match parsed {
            Ok(a) => a,
            Err(e) => {
                r.errors += 1;
                r.first_error.get_or_insert_with(|| format!("{e:#}"));
                continue;
            }
        };
        r.latencies.push(dt);
        r.assignments.push(a.assignments.len());
        r.targets
            .push(a.assignments.iter().map(|x| x.targets.len()).sum());
        if a.assignments.len() != fleet.variant(h).expected_assignments {
            r.mismatched += 1;
        }
        if let Some(d) = &a.director {
            r.with_director += 1;
            if r.director_verified.is_none() {
                let host = &fleet.creds[h].0;
                r.director_verified = Some(verify_director(fleet, d, host, &a.assignments));
            }
        }
    }
    r.wall = started.elapsed();
    r.cpu = cpu_delta(&before, &thread_cpu());
    r.latencies.sort();
    r
}

/// Checks one answer's director metadata as an agent would (signature by the pinned
/// key, this host, not expired, and one target per assigned document and payload).
fn verify_director(
    fleet: &Fleet,
    director: &str,
    host: &HostId,
    assignments: &[AssignmentEntry],
) -> Result<usize, String> {
    let key = fleet.director_key.as_ref().ok_or("no director key")?;
    let now = patchday_server::SystemClock.now();
    let t = patchday_trust::director::verify(director.as_bytes(), key, host.as_str(), now, 0)
        .map_err(|e| e.to_string())?;
    let want: usize = assignments.iter().map(|a| 1 + a.targets.len()).sum();
    if t.targets.len() != want {
        return Err(format!(
            "director metadata names {} targets, assignments {want}",
            t.targets.len()
        ));
    }
    Ok(t.targets.len())
}

/// Pushes the catalog, creates the tenant and its group, enrols and groups every host,
/// approves every update for the group, then runs the check-in phases: a warm-up (one
/// per host, not measured), the measured load and one client at a time.
async fn client_main(
    api: Api,
    catalog_tar: Vec<u8>,
    ids: Vec<UpdateId>,
    variants: Vec<Variant>,
    p: Params,
) -> anyhow::Result<(PhaseResult, PhaseResult)> {
    let started = Instant::now();
    let push = api.request(Method::POST, "/v1/catalog", &api.admin);
    let push = push.header(CONTENT_TYPE, "application/x-tar");
    let st: Value = Api::json(push.body(catalog_tar)).await?;
    println!("catalog pushed: {st}");
    let tenant: TenantId = "bench".parse()?;
    let group: GroupId = "fleet".parse()?;
    let (id, name) = (tenant.clone(), "Benchmark Corp".into());
    let new_tenant = CreateTenant {
        id,
        name,
        patch_day: None,
        max_hosts: None,
    };
    let _: Value = api.admin(Method::POST, "/v1/tenants", &new_tenant).await?;
    let t = format!("/v1/tenants/{tenant}");
    let (id, name) = (group.clone(), "fleet".into());
    let new_group = Group { id, name };
    let _: Group = api
        .admin(Method::POST, &format!("{t}/groups"), &new_group)
        .await?;
    let tokens = format!("{t}/enroll-tokens");
    let unlimited = serde_json::json!({ "unlimited": true });
    let enroll: SecretCreated = api.admin(Method::POST, &tokens, &unlimited).await?;

    // Enrol and group every host, up to 16 at a time.
    let hostnames: Vec<String> = (0..p.hosts).map(|h| format!("bench-{h:05}")).collect();
    let groups = vec![group.clone()];
    let set = SetHostGroups { groups };
    let url = format!("{}/v1/agent/enroll", api.base);
    let (api_, t_, set, url, secret) = (&api, &t, &set, &url, &enroll.secret);
    let enrolled: Vec<(EnrollResponse, HostKey)> = futures::stream::iter(&hostnames)
        .map(|hostname| async move {
            let (token, hostname) = (secret.clone(), hostname.clone());
            // Each host signs its check-ins with its own key (issue 8, finding 8).
            let key = HostKey::ephemeral()?;
            let public_key = Some(key.public_hex());
            let req = EnrollRequest {
                token,
                hostname,
                public_key,
            };
            let e: EnrollResponse = Api::json(api_.http.post(url).json(&req)).await?;
            let path = format!("{t_}/hosts/{}/groups", e.host);
            let _: Value = api_.admin(Method::PUT, &path, set).await?;
            anyhow::Ok((e, key))
        })
        .buffered(p.concurrency.clamp(1, 16))
        .try_collect()
        .await?;
    for id in &ids {
        let (update, group) = (id.clone(), group.clone());
        let req = ApprovalRequest {
            update,
            group,
            decision: Decision::Approve,
            deadline: None,
            reason: None,
            emergency: false,
            remove: false,
        };
        let _: Value = api
            .admin(Method::POST, &format!("{t}/approvals"), &req)
            .await?;
    }
    let setup = started.elapsed().as_secs_f64();
    let (n, u) = (enrolled.len(), ids.len());
    println!("setup: {n} hosts enrolled and grouped, {u} updates approved, in {setup:.1}s");

    let key = enrolled.iter().find_map(|(e, _)| e.director_key.as_ref());
    let director_key = key.map(|k| patchday_trust::director::DirectorPublicKey {
        keyid: k.keyid.clone(),
        public: k.public.clone(),
    });
    let mut creds = Vec::new();
    let mut signers = Vec::new();
    for (e, key) in enrolled {
        signers.push((
            e.tenant.to_string(),
            key,
            std::sync::atomic::AtomicU64::new(0),
        ));
        creds.push((e.host, e.credential));
    }
    let fleet = Fleet {
        api,
        hostnames,
        creds,
        signers,
        variants,
        director_key,
    };
    let warm = checkin_phase(&fleet, p.hosts, p.concurrency).await;
    println!(
        "warm-up: {} check-ins (one per host) in {:.1}s, {} errors",
        warm.latencies.len() + warm.errors,
        warm.wall.as_secs_f64(),
        warm.errors
    );
    mem("after warm-up (every host has checked in once)");
    let load = checkin_phase(&fleet, p.checkins, p.concurrency).await;
    let seq = checkin_phase(&fleet, p.checkins.min(200), 1).await;
    Ok((load, seq))
}

// --- The run and its report ---

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arg = |i: usize, d: usize| -> usize {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let p = Params {
        hosts: arg(1, 1000).max(1),
        updates: arg(2, 50),
        packages: arg(3, 800),
        concurrency: arg(4, 32).max(1),
        checkins: arg(5, 5000),
        present: std::env::args().nth(6).and_then(|s| s.parse().ok()),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "checkin-bench: hosts={} updates={} packages={} concurrency={} checkins={} present={:?} (cores: {cores})",
        p.hosts, p.updates, p.packages, p.concurrency, p.checkins, p.present
    );
    let tmp = tempfile::tempdir()?;
    let specs = catalog_specs(p.updates)?;
    let t0 = Instant::now();
    let tar = build_catalog(tmp.path(), &specs, patchday_server::SystemClock.now()).await?;
    println!(
        "catalog signed offline: {} updates, {} payloads, tar {} KiB, {:.1}s",
        p.updates,
        specs.iter().map(|s| s.doc.payloads.len()).sum::<usize>(),
        tar.len() / 1024,
        t0.elapsed().as_secs_f64()
    );
    let nvar = p.hosts.min(64);
    let variants: Vec<Variant> = (0..nvar)
        .map(|v| inventory_variant(v as u64, p.packages, &specs, p.present))
        .collect::<anyhow::Result<_>>()?;
    let bytes = variants.iter().map(|v| v.prefix.len() + v.rest.len());
    let kib = bytes.sum::<usize>() / nvar / 1024;
    let expected = (0..p.hosts).map(|h| variants[h % nvar].expected_assignments);
    let expected = expected.sum::<usize>() as f64 / p.hosts as f64;
    println!(
        "inventories: {nvar} variants of {} packages, ~{kib} KiB of JSON per check-in, {expected:.1} expected assignments per host",
        p.packages
    );

    let mut cfg = patchday_server::ServerConfig::new(tmp.path().join("server"));
    cfg.catalog_root = Some(tmp.path().join("1.root.json"));
    // Issue 12, point 2: the same load on PostgreSQL (bench/checkin-postgres.sh).
    if let Ok(url) = std::env::var("PATCHDAY_BENCH_DATABASE") {
        cfg.database = Some(url.parse()?);
        println!("database: PostgreSQL (PATCHDAY_BENCH_DATABASE)");
    }
    let init = patchday_server::init(&cfg, Arc::new(patchday_server::SystemClock)).await?;
    let admin = init
        .first_admin_token
        .context("a fresh server must create an admin token")?;
    let (addr, serve) = patchday_server::bind(init.state, "127.0.0.1:0".parse()?).await?;
    let server = tokio::spawn(serve);
    println!(
        "server on http://{addr}, data in {}",
        cfg.data_dir.display()
    );
    mem("after server start");

    // One connection per concurrent client, kept alive across the phases.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(p.concurrency)
        .tcp_nodelay(true);
    let (http, base) = (http.build()?, format!("http://{addr}"));
    let api = Api { http, base, admin };
    let ids: Vec<UpdateId> = specs.iter().map(|s| s.doc.id.clone()).collect();
    let client = std::thread::Builder::new()
        .name("bench-client".into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("bench-client")
                .build()?
                .block_on(client_main(api, tar, ids, variants, p))
        })?;
    let (r, seq) = tokio::task::spawn_blocking(move || client.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the client thread panicked"))??;
    server.abort();
    mem("after the measured run");

    let n = r.latencies.len();
    let (rate, p99) = (r.rate(), r.ms(0.99));
    let (amin, amax) = (r.assignments.iter().min(), r.assignments.iter().max());
    let mean = |v: &[usize]| r.per(v.iter().sum::<usize>() as f64);
    let wall = r.wall.as_secs_f64();
    println!();
    println!(
        "measured: {n} check-ins ({} errors) from {} clients in {wall:.2}s",
        r.errors, p.concurrency
    );
    if let Some(e) = &r.first_error {
        println!("  first error: {e}");
    }
    println!("  rate: {rate:.1} check-ins/s");
    println!(
        "  latency: p50 {:.1} ms, p95 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        r.ms(0.5),
        r.ms(0.95),
        r.ms(1.0)
    );
    println!(
        "  assignments per check-in: mean {:.1} (min {}, max {}), payload targets {:.1}; {} of {n} answers carried signed director metadata; {} differed from the expected count",
        mean(&r.assignments),
        amin.unwrap_or(&0),
        amax.unwrap_or(&0),
        mean(&r.targets),
        r.with_director,
        r.mismatched
    );
    match &r.director_verified {
        Some(Ok(k)) => println!(
            "  director metadata of one answer verified as an agent would: {k} targets, signed by the enrolment key"
        ),
        Some(Err(e)) => println!("  director metadata did NOT verify: {e}"),
        None => println!("  no answer carried director metadata"),
    }
    let kib = |b: usize| b as f64 / 1024.0 / (n + r.errors).max(1) as f64;
    println!(
        "  traffic: {:.1} KiB per request, {:.1} KiB per answer",
        kib(r.request_bytes),
        kib(r.answer_bytes)
    );
    let cpu_total: f64 = r.cpu.values().sum();
    println!(
        "  CPU during the run: {cpu_total:.2} s over {wall:.2} s wall ({:.0}% of one core); per check-in:",
        100.0 * cpu_total / wall.max(1e-9)
    );
    let mut server_cpu = 0.0;
    for (g, s) in &r.cpu {
        let share = 100.0 * s / cpu_total.max(1e-9);
        println!("    {g:<62} {:>7.2} ms ({share:>4.1}%)", r.per(s * 1000.0));
        server_cpu += if g.starts_with("server") { *s } else { 0.0 };
    }
    if server_cpu > 0.0 {
        println!(
            "  server CPU per check-in {:.2} ms: with the client on another machine, {cores} cores would allow ~{:.0} check-ins/s",
            r.per(server_cpu * 1000.0),
            cores as f64 * n as f64 / server_cpu
        );
    }
    if !seq.latencies.is_empty() {
        println!(
            "  one client at a time ({} check-ins): p50 {:.1} ms, p99 {:.1} ms, {:.1} check-ins/s",
            seq.latencies.len(),
            seq.ms(0.5),
            seq.ms(0.99),
            seq.rate()
        );
    }
    let db = std::fs::read_dir(&cfg.data_dir)?.flatten();
    let db = db.filter(|e| e.file_name().to_string_lossy().starts_with("patchday.db"));
    let db: u64 = db.filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
    println!("  database (+ WAL): {:.1} MiB", db as f64 / 1048576.0);

    let ok_errors = r.errors == 0 && n > 0;
    let ok_assign =
        p.updates == 0 || (r.with_director > 0 && matches!(r.director_verified, Some(Ok(_))));
    let pass = rate >= TARGET_RATE && p99 < TARGET_P99_MS && ok_errors && ok_assign;
    println!();
    println!(
        "target: >= {TARGET_RATE:.1} check-ins/s (10x 10,000 hosts polling hourly) and p99 < {TARGET_P99_MS:.0} ms, no errors"
    );
    let verdict = if pass { "PASS" } else { "FAIL" };
    let errors = if ok_errors { "" } else { ", errors" };
    let unverified = if ok_assign {
        ""
    } else {
        ", no verified director metadata"
    };
    println!(
        "{verdict}: {rate:.1} check-ins/s ({:.1}x the target rate), p99 {p99:.1} ms{errors}{unverified}",
        rate / TARGET_RATE
    );
    if !pass {
        std::process::exit(1);
    }
    Ok(())
}
