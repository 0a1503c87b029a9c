//! One agent run, start to finish.

use crate::client::{Client, HttpTransport};
use crate::install::deb::Dpkg;
use crate::install::{bundle, Outcome};
use crate::state::{Identity, StateDir};
use anyhow::Context;
use patchday_trust::VerifiedCatalog;
use patchday_types::api::{
    AssignmentEntry, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse, ReportRequest,
    StateReport,
};
use patchday_types::{
    PayloadKind, PayloadRef, TargetCustom, UpdateDocument, UpdateId, UpdateState,
};
use std::path::PathBuf;
use std::time::Duration;

/// Agent settings.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Server base URL.
    pub server: String,
    /// State directory.
    pub state_dir: PathBuf,
    /// Enrolment token, for the first run (never printed: issue 8, finding 9).
    pub enroll_token: Option<patchday_types::Secret>,
    /// Root of the managed system.
    pub root: PathBuf,
    /// Extra dpkg arguments.
    pub dpkg_args: Vec<String>,
    /// A catalog root to pin instead of the one the server hands out at enrolment.
    pub catalog_root: Option<PathBuf>,
    /// Longest a transfer may stall.
    pub read_timeout: Duration,
    /// Longest one payload download may take.
    pub download_deadline: Duration,
    /// Collect and send security-audit facts after each run.
    pub audit: bool,
    /// The server's CA certificate to pin at enrolment (PEM file).
    pub ca: Option<PathBuf>,
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Updates assigned by the server.
    pub assigned: usize,
    /// Updates installed (including pending reboot).
    pub installed: usize,
    /// Updates that failed, with the message.
    pub failed: Vec<(UpdateId, String)>,
    /// Seconds the server suggests until the next check-in.
    pub poll_seconds: u64,
}

async fn enroll(cfg: &AgentConfig, state: &StateDir) -> anyhow::Result<Identity> {
    let token = cfg.enroll_token.clone().ok_or_else(|| {
        anyhow::anyhow!("this agent is not enrolled: pass --enroll-token (from `patchday enroll-token create --tenant T`)")
    })?;
    let hostname = crate::inventory::collect(&cfg.root)
        .map(|i| i.hostname)
        .unwrap_or_else(|_| "host".into());
    if let Some(p) = &cfg.ca {
        let pem = std::fs::read(p).with_context(|| format!("reading --ca {}", p.display()))?;
        state.save_ca(&pem)?;
    }
    let client = Client::new(&cfg.server, None, cfg.read_timeout, state.ca().as_deref())?;
    let resp: EnrollResponse = client
        .post(
            "v1/agent/enroll",
            &EnrollRequest {
                token: token.expose().to_string(),
                hostname,
            },
        )
        .await?;
    match (&cfg.catalog_root, &resp.catalog_root) {
        (Some(p), _) => {
            let b = std::fs::read(p)
                .with_context(|| format!("reading --catalog-root {}", p.display()))?;
            crate::state::write_atomic(&state.trusted_root(), &b, 0o644)?;
        }
        (None, Some(r)) => crate::state::write_atomic(&state.trusted_root(), r.as_bytes(), 0o644)?,
        (None, None) => anyhow::bail!(
            "the server has no catalog root to hand out and none was given with --catalog-root"
        ),
    }
    if let Some(k) = &resp.director_key {
        state.save_director_key(&patchday_trust::director::DirectorPublicKey {
            keyid: k.keyid.clone(),
            public: k.public.clone(),
        })?;
    }
    let id = Identity {
        server: cfg.server.clone(),
        tenant: resp.tenant,
        host: resp.host,
        credential: resp.credential,
    };
    state.save_identity(&id)?;
    tracing::info!(host = %id.host, tenant = %id.tenant, "enrolled");
    Ok(id)
}

struct Reporter<'a> {
    client: &'a Client,
}

impl Reporter<'_> {
    async fn send(&self, update: &UpdateId, state: UpdateState, message: Option<String>) {
        let body = ReportRequest {
            states: vec![StateReport {
                update: update.clone(),
                state,
                message,
            }],
        };
        // A lost report is repaired by the next run: the server derives installed
        // states from the inventory, not from these messages.
        if let Err(e) = self.client.post::<_, ()>("v1/agent/report", &body).await {
            tracing::warn!(error = %e, update = %update, "could not report state");
        }
    }
}

/// One complete run.
pub async fn run_once(cfg: &AgentConfig) -> anyhow::Result<RunSummary> {
    let state = StateDir::open(&cfg.state_dir)?;
    let id = match state.identity()? {
        Some(id) => id,
        None => enroll(cfg, &state).await?,
    };
    let client = Client::new(
        &id.server,
        Some(id.credential.clone()),
        cfg.read_timeout,
        state.ca().as_deref(),
    )?;
    let reporter = Reporter { client: &client };
    let dpkg = Dpkg {
        root: cfg.root.clone(),
        extra_args: cfg.dpkg_args.clone(),
    };

    // Finish or undo whatever a killed run left behind, before looking at anything.
    if let Some(u) = state.journal_entry() {
        tracing::warn!(update = %u, "the previous run stopped during an install; it will be verified and retried");
    }
    if let Err(e) = dpkg.recover() {
        tracing::warn!(error = %e, "dpkg recovery failed");
    }
    bundle::recover(&cfg.root)?;

    let inventory = crate::inventory::collect(&cfg.root)?;
    let resp: CheckinResponse = client
        .post(
            "v1/agent/checkin",
            &CheckinRequest {
                inventory: inventory.clone(),
            },
        )
        .await?;
    let mut summary = RunSummary {
        assigned: resp.assignments.len(),
        poll_seconds: resp.poll_seconds,
        ..Default::default()
    };
    let new_certificate = resp
        .director_certificate
        .as_deref()
        .filter(|c| certificate_version(c) > state.director_certificate_version());
    if resp.assignments.is_empty() && new_certificate.is_none() {
        state.set_journal(None)?;
        send_facts(cfg, &client).await;
        return Ok(summary);
    }

    let catalog = patchday_trust::load_remote(
        HttpTransport(client.clone()),
        client.url("v1/tuf/metadata/")?,
        client.url("v1/tuf/targets/")?,
        &state.trusted_root(),
        &state.tuf(),
    )
    .await
    .context("catalog verification failed; nothing was installed")?;

    // A director key rotation: the new key counts once a threshold of the catalog's
    // root keys (as this agent trusts them now) certified it.
    if let Some(cert) = new_certificate {
        adopt_certificate(&state, cert)?;
    }
    if resp.assignments.is_empty() {
        state.set_journal(None)?;
        send_facts(cfg, &client).await;
        return Ok(summary);
    }

    // Uptane: the assignments must be signed by the director key pinned at enrolment
    // (or certified by the root keys since).
    let pk = state.director_key()?.ok_or_else(|| {
        anyhow::anyhow!("no director key is pinned in {}: enrol this agent again (--enroll-token); nothing was installed", cfg.state_dir.display())
    })?;
    let doc = resp.director.as_deref().ok_or_else(|| {
        anyhow::anyhow!("assignment rejected: signature: the server sent assignments without director metadata; nothing was installed")
    })?;
    let dt = patchday_trust::director::verify(
        doc.as_bytes(),
        &pk,
        id.host.as_str(),
        clock_now(),
        state.director_version(),
    )
    .context("nothing was installed")?;
    state.set_director_version(dt.version)?;

    let mut counters = state.release_counters()?;
    let host = HostFacts {
        tenant: id.tenant.as_str(),
        inventory: &inventory,
    };
    for a in &resp.assignments {
        if let Err(m) = director_agrees(&dt, a, &catalog, &host, &counters) {
            tracing::error!(update = %a.update, message = %m, "update refused");
            reporter
                .send(&a.update, UpdateState::Failed, Some(m.clone()))
                .await;
            summary.failed.push((a.update.clone(), m));
            continue;
        }
        let ctx = Ctx {
            cfg,
            state: &state,
            client: &client,
            reporter: &reporter,
            dpkg: &dpkg,
            catalog: &catalog,
            host: &host,
        };
        match process(&ctx, a).await {
            Ok(Outcome::Installed) => {
                summary.installed += 1;
                record_counters(&state, &mut counters, a, &catalog)?;
                reporter.send(&a.update, UpdateState::Installed, None).await;
            }
            Ok(Outcome::PendingReboot) => {
                summary.installed += 1;
                record_counters(&state, &mut counters, a, &catalog)?;
                reporter
                    .send(&a.update, UpdateState::InstalledPendingReboot, None)
                    .await;
            }
            Ok(Outcome::Failed(m)) | Err(FailedBefore(m)) => {
                tracing::error!(update = %a.update, message = %m, "update failed");
                reporter
                    .send(&a.update, UpdateState::Failed, Some(m.clone()))
                    .await;
                summary.failed.push((a.update.clone(), m));
            }
        }
    }
    state.set_journal(None)?;
    // Tell the server the truth as dpkg now sees it.
    let inventory = crate::inventory::collect(&cfg.root)?;
    let _: CheckinResponse = client
        .post("v1/agent/checkin", &CheckinRequest { inventory })
        .await?;
    send_facts(cfg, &client).await;
    Ok(summary)
}

/// Collects the security-audit facts and sends them; a failure is logged, never
/// fatal: patching must not depend on the audit.
async fn send_facts(cfg: &AgentConfig, client: &Client) {
    if !cfg.audit {
        return;
    }
    let opts = if cfg.root == std::path::Path::new("/") {
        patchday_audit::facts::CollectOptions::host()
    } else {
        patchday_audit::facts::CollectOptions::image(&cfg.root)
    };
    let facts =
        match tokio::task::spawn_blocking(move || patchday_audit::facts::collect(&opts)).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => return tracing::warn!(error = %e, "could not collect audit facts"),
            Err(e) => return tracing::warn!(error = %e, "audit fact collection failed"),
        };
    if let Err(e) = client.post::<_, ()>("v1/agent/facts", &facts).await {
        tracing::warn!(error = %e, "could not send audit facts");
    }
}

#[allow(clippy::disallowed_methods)] // the agent's one clock read, for director expiry
fn clock_now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// The version a director key certificate claims, before it is verified (to decide
/// whether it is worth verifying); 0 when unreadable.
fn certificate_version(text: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["signed"]["version"].as_u64())
        .unwrap_or(0)
}

/// Verifies a newer director key certificate against the newest catalog root this agent
/// trusts and pins the key it names.
fn adopt_certificate(state: &StateDir, cert: &str) -> anyhow::Result<()> {
    // A certificate for the key already pinned changes nothing: an agent enrolled after
    // the last rotation must not stop working because that certificate has since expired.
    let claimed = serde_json::from_str::<serde_json::Value>(cert)
        .ok()
        .and_then(|v| v["signed"]["key"]["keyid"].as_str().map(str::to_owned));
    let pinned = state.director_key()?;
    let same_key =
        claimed.is_some() && claimed.as_deref() == pinned.as_ref().map(|k| k.keyid.as_str());
    let root_path = state.tuf().join("root.json");
    let root = std::fs::read(&root_path)
        .with_context(|| format!("reading the trusted root {}", root_path.display()))?;
    let verified = patchday_trust::director::verify_certificate(
        cert.as_bytes(),
        &root,
        clock_now(),
        state.director_certificate_version(),
    );
    let c = match verified {
        Ok(c) => c,
        // Its version is only recorded once it verifies; refusing it would stop an agent
        // for nothing.
        Err(e) if same_key => {
            tracing::debug!(error = %e, "certificate for the pinned director key not adopted");
            return Ok(());
        }
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context("director key change refused; nothing was installed")
            )
        }
    };
    let before = state.director_key()?;
    state.adopt_director_key(&c.key, c.version)?;
    if before.as_ref() != Some(&c.key) {
        tracing::warn!(keyid = %c.key.keyid, version = c.version, "director key rotated: assignments signed by the previous key are refused from now on");
    }
    Ok(())
}

/// What the agent knows of its own host, to hold assignments against.
pub struct HostFacts<'a> {
    /// The tenant it enrolled in.
    pub tenant: &'a str,
    /// dpkg's view before this run.
    pub inventory: &'a patchday_types::Inventory,
}

/// A payload as the catalog's offline keys signed it.
fn signed_payload(catalog: &VerifiedCatalog, name: &str) -> Result<TargetCustom, String> {
    let c = catalog
        .target(name)
        .map_err(|e| format!("assignment rejected: the catalog does not publish {name}: {e}"))?;
    serde_json::from_value(c.custom.clone())
        .map_err(|e| format!("assignment rejected: {name}: signed description unreadable: {e}"))
}

/// Uptane's full verification for one assignment: the director must name its update
/// document and every payload for this update, for this tenant and architecture, with
/// exactly the length, sha256 and release counter the catalog's offline keys signed, and
/// no payload may carry a lower release counter than this host installed before.
pub fn director_agrees(
    dt: &patchday_trust::director::DirectorTargets,
    a: &AssignmentEntry,
    catalog: &VerifiedCatalog,
    host: &HostFacts<'_>,
    counters: &crate::state::ReleaseCounters,
) -> Result<(), String> {
    let names =
        std::iter::once(UpdateDocument::target_name(&a.update)).chain(a.targets.iter().cloned());
    for name in names {
        let d = dt.targets.get(&name).ok_or_else(|| {
            format!("assignment rejected: director: {name} is not in the signed assignment")
        })?;
        if d.custom.update != a.update.as_str() {
            return Err(format!(
                "assignment rejected: director: {name} is signed for update {}, not {}",
                d.custom.update, a.update
            ));
        }
        if d.custom.tenant != host.tenant {
            return Err(format!(
                "assignment rejected: tenant: {name} is assigned for tenant {}, and this host belongs to {}",
                d.custom.tenant, host.tenant
            ));
        }
        if d.custom.architecture != host.inventory.architecture {
            return Err(format!(
                "assignment rejected: architecture: {name} is assigned for an {} host, and this host is {}",
                d.custom.architecture, host.inventory.architecture
            ));
        }
        let c = catalog.target(&name).map_err(|e| {
            format!("assignment rejected: the catalog does not publish {name}: {e}")
        })?;
        if d.length != c.length || d.hashes.get("sha256") != Some(&c.sha256) {
            return Err(format!(
                "assignment rejected: director and catalog disagree on {name} (length or sha256); a stolen director key cannot make a payload installable"
            ));
        }
        let signed = signed_payload(catalog, &name)?;
        if d.custom.release_counter != signed.release_counter() {
            return Err(format!(
                "assignment rejected: release counter: the director says {} for {name}, the catalog signed {}",
                d.custom.release_counter,
                signed.release_counter()
            ));
        }
        if let TargetCustom::Payload {
            kind,
            package,
            architecture,
            release_counter,
            ..
        } = &signed
        {
            if !host.inventory.fits_architecture(package, architecture) {
                return Err(format!(
                    "assignment rejected: architecture: {name} is built for {architecture}, and this host is {}",
                    host.inventory.architecture
                ));
            }
            let installed = counters.get(*kind, package);
            if *release_counter < installed {
                return Err(format!(
                    "assignment rejected: release counter: {name} is release {release_counter} of {package}, older than release {installed} installed here (rollback attack?)"
                ));
            }
        }
    }
    Ok(())
}

/// Remembers the release counters of an update's payloads once it is installed.
fn record_counters(
    state: &StateDir,
    counters: &mut crate::state::ReleaseCounters,
    a: &AssignmentEntry,
    catalog: &VerifiedCatalog,
) -> anyhow::Result<()> {
    for name in &a.targets {
        if let Ok(TargetCustom::Payload {
            kind,
            package,
            release_counter,
            ..
        }) = signed_payload(catalog, name)
        {
            counters.raise(kind, &package, release_counter);
        }
    }
    state.save_release_counters(counters)
}

/// Why installing `p` would move an installed package (or bundle) to an older version.
pub fn downgrade(inv: &patchday_types::Inventory, p: &PayloadRef) -> Option<String> {
    let installed = match p.kind {
        PayloadKind::Deb => inv
            .package(&p.package, &p.architecture)
            .map(|i| i.version.clone()),
        PayloadKind::Bundle => inv.bundle(&p.package).map(|b| b.version.clone()),
    }?;
    match patchday_pkg::version::compare_deb(&installed, &p.version) {
        Ok(std::cmp::Ordering::Greater) => Some(format!(
            "payload {} would downgrade {} from {installed} to {}; refused (rollback attack?)",
            p.target, p.package, p.version
        )),
        Ok(_) => None,
        Err(e) => Some(format!(
            "payload {}: cannot order versions: {e}; refused",
            p.target
        )),
    }
}

/// A failure before anything was installed.
struct FailedBefore(String);

impl<E: std::fmt::Display> From<E> for FailedBefore {
    fn from(e: E) -> Self {
        FailedBefore(e.to_string())
    }
}

/// Everything one assignment's processing reads.
struct Ctx<'a> {
    cfg: &'a AgentConfig,
    state: &'a StateDir,
    client: &'a Client,
    reporter: &'a Reporter<'a>,
    dpkg: &'a Dpkg,
    catalog: &'a VerifiedCatalog,
    host: &'a HostFacts<'a>,
}

async fn process(ctx: &Ctx<'_>, a: &AssignmentEntry) -> Result<Outcome, FailedBefore> {
    let Ctx {
        cfg,
        state,
        client,
        reporter,
        dpkg,
        catalog,
        host,
    } = *ctx;
    // The update document must be a signed catalog target, and say what it is.
    let doc_name = UpdateDocument::target_name(&a.update);
    let doc_info = catalog.target(&doc_name)?;
    let doc_path = crate::download::fetch_target(
        client,
        &state.downloads(),
        &doc_name,
        doc_info,
        cfg.download_deadline,
    )
    .await?;
    let doc: UpdateDocument = serde_json::from_slice(&std::fs::read(&doc_path)?)
        .map_err(|e| FailedBefore(format!("update document {doc_name} is not valid: {e}")))?;
    if doc.id != a.update {
        return Err(FailedBefore(format!(
            "update document {doc_name} names {} instead of {}",
            doc.id, a.update
        )));
    }
    if !doc.published_for(host.tenant) {
        return Err(FailedBefore(format!(
            "assignment rejected: tenant: update {} is published for {} only, and this host belongs to {}",
            a.update,
            doc.tenants.join(", "),
            host.tenant
        )));
    }
    // Every assigned payload must be named by the document and described identically
    // by the signed catalog: the server chooses among published payloads only.
    let mut chosen: Vec<(PayloadRef, &patchday_trust::TargetInfo)> = Vec::new();
    for t in &a.targets {
        let p = doc
            .payloads
            .iter()
            .find(|p| &p.target == t)
            .ok_or_else(|| {
                FailedBefore(format!(
                    "the server assigned payload {t}, which update {} does not name; refused",
                    a.update
                ))
            })?;
        let info = catalog.target(t)?;
        let signed: TargetCustom = serde_json::from_value(info.custom.clone()).map_err(|e| {
            FailedBefore(format!("payload {t}: signed description unreadable: {e}"))
        })?;
        if !signed.describes(p) {
            return Err(FailedBefore(format!(
                "payload {t}: the signed catalog and the update document disagree; refused"
            )));
        }
        chosen.push((p.clone(), info));
    }
    if chosen.is_empty() {
        return Err(FailedBefore(format!(
            "update {} was assigned with no payload",
            a.update
        )));
    }
    // Never move a package backwards, whoever asks: a compromised server may choose
    // among published payloads, but not roll a host back to an older one.
    let now_installed = crate::inventory::collect(&cfg.root)?;
    for (p, _) in &chosen {
        if let Some(why) = downgrade(&now_installed, p) {
            return Err(FailedBefore(why));
        }
    }

    reporter
        .send(&a.update, UpdateState::Downloading, None)
        .await;
    let mut files = Vec::new();
    for (p, info) in &chosen {
        let path = crate::download::fetch_target(
            client,
            &state.downloads(),
            &p.target,
            info,
            cfg.download_deadline,
        )
        .await?;
        files.push((p.clone(), path));
    }
    reporter
        .send(&a.update, UpdateState::Downloaded, None)
        .await;

    reporter
        .send(&a.update, UpdateState::Installing, None)
        .await;
    state.set_journal(Some(&a.update))?;
    let debs: Vec<(PayloadRef, PathBuf)> = files
        .iter()
        .filter(|(p, _)| p.kind == PayloadKind::Deb)
        .cloned()
        .collect();
    let mut outcome = Outcome::Installed;
    if !debs.is_empty() {
        // dpkg wants a .deb suffix for nothing, but its messages are clearer with one.
        let named: Vec<(PayloadRef, PathBuf)> = debs
            .into_iter()
            .map(|(p, path)| {
                let link = path.with_extension("deb");
                let _ = std::fs::remove_file(&link);
                match std::fs::hard_link(&path, &link) {
                    Ok(()) => (p, link),
                    Err(_) => (p, path),
                }
            })
            .collect();
        outcome = dpkg.install(&named);
        for (_, l) in &named {
            if l.extension().is_some_and(|e| e == "deb") {
                let _ = std::fs::remove_file(l);
            }
        }
    }
    for (p, path) in files.iter().filter(|(p, _)| p.kind == PayloadKind::Bundle) {
        if matches!(outcome, Outcome::Failed(_)) {
            break;
        }
        if let Outcome::Failed(m) = bundle::install(&cfg.root, path, &p.package, &p.version) {
            outcome = Outcome::Failed(m);
        }
    }
    if !matches!(outcome, Outcome::Failed(_)) {
        for (_, path) in &files {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ReleaseCounters;
    use patchday_types::{InstalledPackage, Inventory};

    fn inv(version: &str) -> Inventory {
        Inventory {
            architecture: "amd64".into(),
            packages: vec![InstalledPackage {
                name: "libfoo".into(),
                version: version.into(),
                architecture: "amd64".into(),
                source: "foo".into(),
                source_version: version.into(),
            }],
            ..Default::default()
        }
    }

    fn payload(version: &str) -> PayloadRef {
        PayloadRef {
            target: format!("libfoo_{version}_amd64.deb"),
            kind: PayloadKind::Deb,
            package: "libfoo".into(),
            version: version.into(),
            architecture: "amd64".into(),
            source: "foo".into(),
            source_version: version.into(),
        }
    }

    #[test]
    fn version_downgrades_are_refused_whatever_the_counters() {
        let why = downgrade(&inv("1:2.0-1"), &payload("2.5-1")).unwrap();
        assert!(
            why.contains("would downgrade libfoo from 1:2.0-1 to 2.5-1"),
            "{why}"
        );
        assert_eq!(downgrade(&inv("2.0-1"), &payload("2.0-1")), None);
        assert_eq!(downgrade(&inv("2.0-1"), &payload("2.0-1+deb12u1")), None);
        assert_eq!(downgrade(&Inventory::default(), &payload("1.0")), None);
    }

    #[test]
    fn release_counters_only_go_up() {
        let mut c = ReleaseCounters::default();
        c.raise(PayloadKind::Deb, "libfoo", 4);
        c.raise(PayloadKind::Deb, "libfoo", 2);
        assert_eq!(c.get(PayloadKind::Deb, "libfoo"), 4);
        assert_eq!(c.get(PayloadKind::Bundle, "libfoo"), 0, "kinds are apart");
    }

    #[tokio::test]
    async fn an_expired_certificate_for_the_pinned_key_does_not_stop_the_agent() {
        use patchday_trust::director::{certify, DirectorKey, KeyCertificate};
        let d = tempfile::tempdir().unwrap();
        let keys = patchday_trust::generate_keyset(&d.path().join("keys"), 3, 2).unwrap();
        let repo = d.path().join("repo");
        let now = clock_now();
        patchday_trust::init_catalog(&keys, &repo, now, &patchday_trust::Expiries::default())
            .await
            .unwrap();
        let state = StateDir::open(&d.path().join("state")).unwrap();
        std::fs::copy(
            repo.join("metadata/1.root.json"),
            state.tuf().join("root.json"),
        )
        .unwrap();
        let pinned = DirectorKey::load_or_create(&d.path().join("pinned")).unwrap();
        state.save_director_key(pinned.public()).unwrap();
        let expired = |key: &DirectorKey| {
            let mut c = KeyCertificate::new(key.public().clone(), 1, now, 1).unwrap();
            c.expires = "2020-01-01T00:00:00Z".into();
            c
        };
        // Enrolled after the rotation it certified: nothing to adopt, nothing refused.
        let same = certify(&expired(&pinned), &keys.root).await.unwrap();
        adopt_certificate(&state, std::str::from_utf8(&same).unwrap()).unwrap();
        assert_eq!(state.director_certificate_version(), 0);
        // An expired certificate for another key is a refused key change.
        let other = DirectorKey::load_or_create(&d.path().join("other")).unwrap();
        let change = certify(&expired(&other), &keys.root).await.unwrap();
        let err = adopt_certificate(&state, std::str::from_utf8(&change).unwrap()).unwrap_err();
        assert!(
            format!("{err:#}").contains("director key change refused"),
            "{err:#}"
        );
        assert_eq!(
            state.director_key().unwrap().as_ref(),
            Some(pinned.public())
        );
    }
}
