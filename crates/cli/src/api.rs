//! The operator's HTTP client.

use anyhow::Context;
use patchday_types::api::*;
use patchday_types::{GroupId, HostId, TenantId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::PathBuf;

use crate::render::Format;

/// The server answered with an error status (a request that did not reach it is a
/// transport error instead): callers that retry tell the two apart.
#[derive(Debug)]
pub struct Refused {
    /// The answer's status.
    pub status: reqwest::StatusCode,
    text: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// Whether the same request may succeed later: the server was busy, unavailable or
    /// failed (5xx, 408, 429), as opposed to refusing this request (other 4xx).
    pub fn is_transient(&self) -> bool {
        self.status.is_server_error()
            || self.status == reqwest::StatusCode::REQUEST_TIMEOUT
            || self.status == reqwest::StatusCode::TOO_MANY_REQUESTS
    }
}

/// Where the server is and who we are.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Api {
    /// A client for `base` (e.g. `http://127.0.0.1:8470`) with an operator token.
    pub fn new(base: &str, token: &str, ca_pem: Option<&[u8]>) -> anyhow::Result<Self> {
        let mut builder =
            reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10));
        if let Some(pem) = ca_pem {
            let cert =
                reqwest::Certificate::from_pem(pem).context("--ca is not a PEM certificate")?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(cert);
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: builder.build()?,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; returns the body of a success, or the server's error message.
    async fn send_raw(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Vec<u8>> {
        let resp = req.bearer_auth(&self.token).send().await.with_context(|| {
            format!(
                "cannot reach the Patchday server at {}: is it running? (set --server or PATCHDAY_SERVER)",
                self.base
            )
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let text = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => format!("{what}: {} ({status})", e.message),
            Err(_) => format!("{what}: server answered {status}"),
        };
        Err(Refused { status, text }.into())
    }

    async fn send<R: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<R> {
        let bytes = self.send_raw(req, what).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{what}: unexpected answer from the server"))
    }

    async fn get<R: DeserializeOwned>(&self, path: &str, what: &str) -> anyhow::Result<R> {
        self.send(self.http.get(format!("{}{path}", self.base)), what)
            .await
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        what: &str,
    ) -> anyhow::Result<R> {
        self.json(reqwest::Method::POST, path, body, what).await
    }

    async fn put<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        what: &str,
    ) -> anyhow::Result<R> {
        self.json(reqwest::Method::PUT, path, body, what).await
    }

    async fn json<B: Serialize, R: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
        what: &str,
    ) -> anyhow::Result<R> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.request(method, url).json(body), what)
            .await
    }

    /// Creates a tenant.
    pub async fn create_tenant(&self, req: &CreateTenant) -> anyhow::Result<Tenant> {
        self.post("/v1/tenants", req, "creating the tenant").await
    }
    /// Lists tenants in scope.
    pub async fn tenants(&self) -> anyhow::Result<Vec<Tenant>> {
        self.get("/v1/tenants", "listing tenants").await
    }
    /// Creates an operator token.
    pub async fn create_token(&self, req: &CreateToken) -> anyhow::Result<SecretCreated> {
        self.post("/v1/tokens", req, "creating the token").await
    }
    /// Creates an enrolment token with these limits (by default one use within 24 hours).
    pub async fn create_enroll_token(
        &self,
        t: &TenantId,
        req: &CreateEnrollToken,
    ) -> anyhow::Result<SecretCreated> {
        self.post(
            &format!("/v1/tenants/{t}/enroll-tokens"),
            req,
            "creating the enrolment token",
        )
        .await
    }
    /// Sets a tenant's patch day.
    pub async fn set_patch_day(&self, t: &TenantId, pd: &PatchDayConfig) -> anyhow::Result<Tenant> {
        self.put(
            &format!("/v1/tenants/{t}/patch-day"),
            pd,
            "setting the patch day",
        )
        .await
    }
    /// Creates a group.
    pub async fn create_group(&self, t: &TenantId, g: &Group) -> anyhow::Result<Group> {
        self.post(&format!("/v1/tenants/{t}/groups"), g, "creating the group")
            .await
    }
    /// Lists groups.
    pub async fn groups(&self, t: &TenantId) -> anyhow::Result<Vec<Group>> {
        self.get(&format!("/v1/tenants/{t}/groups"), "listing groups")
            .await
    }
    /// Lists hosts.
    pub async fn hosts(&self, t: &TenantId) -> anyhow::Result<Vec<HostSummary>> {
        self.get(&format!("/v1/tenants/{t}/hosts"), "listing hosts")
            .await
    }
    /// Replaces a host's groups.
    pub async fn set_host_groups(
        &self,
        t: &TenantId,
        h: &HostId,
        groups: &[GroupId],
    ) -> anyhow::Result<()> {
        self.put(
            &format!("/v1/tenants/{t}/hosts/{h}/groups"),
            &SetHostGroups {
                groups: groups.to_vec(),
            },
            "setting the host's groups",
        )
        .await
    }
    /// The catalog as a tenant sees it.
    pub async fn updates(&self, t: &TenantId) -> anyhow::Result<Vec<TenantUpdate>> {
        self.get(&format!("/v1/tenants/{t}/updates"), "listing updates")
            .await
    }
    /// Approves or declines.
    pub async fn decide(&self, t: &TenantId, req: &ApprovalRequest) -> anyhow::Result<Approval> {
        self.post(
            &format!("/v1/tenants/{t}/approvals"),
            req,
            "recording the decision",
        )
        .await
    }
    /// Lists decisions.
    pub async fn approvals(&self, t: &TenantId) -> anyhow::Result<Vec<Approval>> {
        self.get(&format!("/v1/tenants/{t}/approvals"), "listing approvals")
            .await
    }
    /// The compliance report.
    pub async fn report(&self, tenant: Option<&TenantId>) -> anyhow::Result<ComplianceReport> {
        let q = tenant.map(|t| format!("?tenant={t}")).unwrap_or_default();
        self.get(&format!("/v1/report{q}"), "fetching the report")
            .await
    }
    /// One host's audit plan, rendered by the server (`json`, `html` or `text`).
    pub async fn host_audit(
        &self,
        t: &TenantId,
        h: &HostId,
        format: &str,
    ) -> anyhow::Result<String> {
        let url = format!(
            "{}/v1/tenants/{t}/hosts/{h}/audit?format={format}",
            self.base
        );
        let bytes = self
            .send_raw(self.http.get(url), "fetching the host audit")
            .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
    /// The tenant's fleet audit.
    pub async fn fleet_audit(
        &self,
        t: &TenantId,
    ) -> anyhow::Result<patchday_audit::fleet::FleetReport> {
        self.get(
            &format!("/v1/tenants/{t}/audit"),
            "fetching the fleet audit",
        )
        .await
    }
    /// Issue 12, point 1 (`catalog pull`): a file the server serves to TUF clients under
    /// `/v1/tuf/` (`metadata/NAME` or `targets/SHA256.NAME`), `None` when it has none by
    /// that name. At most `limit` bytes are accepted.
    pub async fn tuf_file(&self, path: &str, limit: u64) -> anyhow::Result<Option<Vec<u8>>> {
        let url = format!("{}/v1/tuf/{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the Patchday server at {}: is it running? (set --server or PATCHDAY_SERVER)",
                    self.base
                )
            })?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        anyhow::ensure!(
            resp.status().is_success(),
            "reading {path} from the server: it answered {}",
            resp.status()
        );
        anyhow::ensure!(
            resp.content_length().is_none_or(|n| n <= limit),
            "{path} is larger than {limit} bytes: refused"
        );
        let bytes = resp.bytes().await?;
        anyhow::ensure!(
            bytes.len() as u64 <= limit,
            "{path} is larger than {limit} bytes: refused"
        );
        Ok(Some(bytes.to_vec()))
    }

    /// Catalog status.
    pub async fn catalog_status(&self) -> anyhow::Result<CatalogStatus> {
        self.get("/v1/catalog", "reading the catalog status").await
    }
    /// The director key and its certificate version.
    pub async fn director(&self) -> anyhow::Result<DirectorStatus> {
        self.get("/v1/director", "reading the director key").await
    }
    /// Starts (or resumes) a director key rotation: the key to certify.
    pub async fn director_rotation(&self) -> anyhow::Result<DirectorStatus> {
        self.post(
            "/v1/director/rotation",
            &serde_json::json!({}),
            "starting a director key rotation",
        )
        .await
    }
    /// Installs a root-signed director key certificate.
    pub async fn put_director_certificate(&self, cert: Vec<u8>) -> anyhow::Result<DirectorStatus> {
        self.send(
            self.http
                .put(format!("{}/v1/director/certificate", self.base))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(cert),
            "installing the director key certificate",
        )
        .await
    }
    /// Pushes a catalog tar file (streamed, not loaded into memory), with a progress bar
    /// on a terminal (issue 12, point 4).
    pub async fn push_catalog(&self, tar: &std::path::Path) -> anyhow::Result<CatalogStatus> {
        use futures::StreamExt;
        let f = tokio::fs::File::open(tar).await?;
        let len = f.metadata().await?.len();
        // indicatif draws nothing when stderr is not a terminal.
        let bar = indicatif::ProgressBar::new(len).with_style(
            indicatif::ProgressStyle::with_template(
                "pushing {bytes}/{total_bytes} {wide_bar} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let progress = bar.clone();
        let stream =
            tokio_util::io::ReaderStream::with_capacity(f, 256 << 10).inspect(move |chunk| {
                if let Ok(c) = chunk {
                    progress.inc(c.len() as u64);
                }
            });
        let body = reqwest::Body::wrap_stream(stream);
        let answer = self
            .send(
                self.http
                    .post(format!("{}/v1/catalog", self.base))
                    .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .body(body),
                "pushing the catalog",
            )
            .await;
        bar.finish_and_clear();
        answer
    }

    /// Which of these target files (sha256) the server lacks (issue 9, point 6).
    pub async fn missing_targets(&self, sha256: Vec<String>) -> anyhow::Result<Vec<String>> {
        let answer: patchday_types::api::TargetHashes = self
            .post(
                "/v1/catalog/missing",
                &patchday_types::api::TargetHashes { sha256 },
                "asking the server which payloads it lacks",
            )
            .await?;
        Ok(answer.sha256)
    }

    // ---- Finding 3/4/10 (issue 8): lifecycle commands and the operator log ----

    async fn delete<R: DeserializeOwned>(&self, path: &str, what: &str) -> anyhow::Result<R> {
        self.send(self.http.delete(format!("{}{path}", self.base)), what)
            .await
    }
    /// Operator tokens in scope (of one tenant with `Some`).
    pub async fn tokens(&self, tenant: Option<&TenantId>) -> anyhow::Result<Vec<TokenInfo>> {
        let q = tenant.map(|t| format!("?tenant={t}")).unwrap_or_default();
        self.get(&format!("/v1/tokens{q}"), "listing tokens").await
    }
    /// Revokes an operator token.
    pub async fn revoke_token(&self, id: &str) -> anyhow::Result<TokenInfo> {
        self.delete(&format!("/v1/tokens/{id}"), "revoking the token")
            .await
    }
    /// A tenant's enrolment tokens.
    pub async fn enroll_tokens(&self, t: &TenantId) -> anyhow::Result<Vec<EnrollTokenInfo>> {
        self.get(
            &format!("/v1/tenants/{t}/enroll-tokens"),
            "listing enrolment tokens",
        )
        .await
    }
    /// Revokes an enrolment token.
    pub async fn revoke_enroll_token(
        &self,
        t: &TenantId,
        id: &str,
    ) -> anyhow::Result<EnrollTokenInfo> {
        self.delete(
            &format!("/v1/tenants/{t}/enroll-tokens/{id}"),
            "revoking the enrolment token",
        )
        .await
    }
    /// Removes a host; its credential stops working at once.
    pub async fn remove_host(&self, t: &TenantId, h: &HostId) -> anyhow::Result<Removed> {
        self.delete(&format!("/v1/tenants/{t}/hosts/{h}"), "removing the host")
            .await
    }
    /// Removes a group with its memberships and approvals.
    pub async fn remove_group(&self, t: &TenantId, g: &GroupId) -> anyhow::Result<Removed> {
        self.delete(&format!("/v1/tenants/{t}/groups/{g}"), "removing the group")
            .await
    }
    /// Removes a tenant (refused while it has hosts unless `force`).
    pub async fn remove_tenant(&self, t: &TenantId, force: bool) -> anyhow::Result<Removed> {
        self.delete(
            &format!("/v1/tenants/{t}?force={force}"),
            "removing the tenant",
        )
        .await
    }
    /// Sets a tenant's host quota.
    pub async fn set_limits(&self, t: &TenantId, limits: &TenantLimits) -> anyhow::Result<Tenant> {
        self.put(
            &format!("/v1/tenants/{t}/limits"),
            limits,
            "setting the tenant's limits",
        )
        .await
    }
    /// Operator log entries in scope, oldest first.
    /// Issue 10, point 1: a tenant's state history, for one host and/or update.
    pub async fn history(
        &self,
        tenant: &TenantId,
        host: Option<&patchday_types::HostId>,
        update: Option<&patchday_types::UpdateId>,
    ) -> anyhow::Result<patchday_types::api::HistoryAnswer> {
        let mut q: Vec<String> = Vec::new();
        if let Some(h) = host {
            q.push(format!("host={h}"));
        }
        if let Some(u) = update {
            q.push(format!("update={}", url_escape(u.as_str())));
        }
        let q = if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        };
        self.get(
            &format!("/v1/tenants/{tenant}/history{q}"),
            "reading the state history",
        )
        .await
    }

    /// Issue 13, point 1: each host's latest report per baseline, and drift found.
    pub async fn baselines(
        &self,
        tenant: &TenantId,
    ) -> anyhow::Result<patchday_types::api::BaselinesAnswer> {
        self.get(
            &format!("/v1/tenants/{tenant}/baselines"),
            "reading the baseline reports",
        )
        .await
    }

    pub async fn log(
        &self,
        tenant: Option<&TenantId>,
        since: Option<jiff::Timestamp>,
    ) -> anyhow::Result<Vec<LogEntry>> {
        let mut q: Vec<String> = Vec::new();
        if let Some(t) = tenant {
            q.push(format!("tenant={t}"));
        }
        if let Some(s) = since {
            q.push(format!("since={s}"));
        }
        let q = if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        };
        self.get(&format!("/v1/log{q}"), "reading the operator log")
            .await
    }
}

// ---- Issue 10, points 2 and 3 (rings) ----
impl Api {
    /// Replaces a tenant's rings.
    pub async fn set_rings(
        &self,
        t: &TenantId,
        rings: &patchday_types::api::RingsRequest,
    ) -> anyhow::Result<Vec<patchday_types::api::Ring>> {
        self.put(
            &format!("/v1/tenants/{t}/rings"),
            rings,
            "setting the rings",
        )
        .await
    }
    /// A tenant's rings, first to last.
    pub async fn rings(&self, t: &TenantId) -> anyhow::Result<Vec<patchday_types::api::Ring>> {
        self.get(&format!("/v1/tenants/{t}/rings"), "reading the rings")
            .await
    }
    /// Which hosts each ring's approval of `u` would touch.
    pub async fn ring_preview(
        &self,
        t: &TenantId,
        u: &patchday_types::UpdateId,
    ) -> anyhow::Result<Vec<patchday_types::api::RingPreview>> {
        let u = url_escape(u.as_str());
        self.get(
            &format!("/v1/tenants/{t}/rings/preview?update={u}"),
            "previewing the rings",
        )
        .await
    }
    /// An update's rollout: halt and every ring's evidence.
    pub async fn rollout(
        &self,
        u: &patchday_types::UpdateId,
    ) -> anyhow::Result<patchday_types::api::RolloutStatus> {
        let u = url_escape(u.as_str());
        self.get(&format!("/v1/rollouts/{u}"), "reading the rollout")
            .await
    }
    /// Issue 11, point 5: the notification targets and delivery log in scope.
    pub async fn notifications(
        &self,
        tenant: Option<&TenantId>,
        limit: u32,
    ) -> anyhow::Result<patchday_types::notify::NotificationsView> {
        let q = match tenant {
            Some(t) => format!("?tenant={}&limit={limit}", url_escape(t.as_str())),
            None => format!("?limit={limit}"),
        };
        self.get(
            &format!("/v1/notifications{q}"),
            "reading the notification log",
        )
        .await
    }
    /// Halts an update's rollout for every tenant.
    pub async fn halt_rollout(
        &self,
        u: &patchday_types::UpdateId,
        reason: &str,
    ) -> anyhow::Result<patchday_types::api::RolloutHalt> {
        let body = patchday_types::api::HaltRequest {
            reason: reason.into(),
        };
        let u = url_escape(u.as_str());
        self.post(
            &format!("/v1/rollouts/{u}/halt"),
            &body,
            "halting the rollout",
        )
        .await
    }
    /// Resumes a halted rollout.
    pub async fn resume_rollout(&self, u: &patchday_types::UpdateId) -> anyhow::Result<()> {
        let u = url_escape(u.as_str());
        self.post(
            &format!("/v1/rollouts/{u}/resume"),
            &serde_json::json!({}),
            "resuming the rollout",
        )
        .await
    }
}

/// Server URL and operator token: flags, then environment, then the config file
/// (`$XDG_CONFIG_HOME/patchday/cli.toml` or `~/.config/patchday/cli.toml`, keys `server` and `token`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Conn {
    /// Server URL, e.g. http://127.0.0.1:8470.
    #[arg(long, env = "PATCHDAY_SERVER", global = true)]
    pub server: Option<String>,
    /// Operator token.
    #[arg(long, env = "PATCHDAY_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<patchday_types::Secret>,
    /// CLI config file.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The server's CA certificate (PEM) to trust instead of the system's.
    #[arg(long, env = "PATCHDAY_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,
}

impl Conn {
    /// The API client these settings describe.
    pub fn api(&self) -> anyhow::Result<Api> {
        #[derive(serde::Deserialize, Default)]
        struct File {
            pub server: Option<String>,
            token: Option<patchday_types::Secret>,
        }
        let path = self.config.clone().or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .map(|d| d.join("patchday/cli.toml"))
        });
        let file: File = match path.as_ref().map(std::fs::read_to_string) {
            Some(Ok(s)) => toml::from_str(&s).with_context(|| {
                format!(
                    "{} is not valid TOML",
                    path.as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                )
            })?,
            Some(Err(_)) if self.config.is_some() => anyhow::bail!("cannot read --config file"),
            _ => File::default(),
        };
        let server = self
            .server
            .clone()
            .or(file.server)
            .context("no server: pass --server URL or set PATCHDAY_SERVER")?;
        let token = self.token.clone().or(file.token).context("no token: pass --token or set PATCHDAY_TOKEN (the first one is printed when the server starts)")?;
        let ca = match &self.ca {
            Some(p) => {
                Some(std::fs::read(p).with_context(|| format!("reading --ca {}", p.display()))?)
            }
            None => None,
        };
        Api::new(&server, token.expose(), ca.as_deref())
    }
}

// Issue 9, point 1 (archive sync): the fleet's installed source packages for the mirror.
/// `GET /v1/fleet/source-packages`: installed source versions across the visible fleet.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct FleetSourcePackages {
    /// Hosts whose inventory was read.
    pub hosts: u64,
    /// Source name → installed source versions.
    pub sources: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    /// Issue 9, point 4 (closure): binary name → installed versions (absent from older
    /// servers).
    #[serde(default)]
    pub binaries: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl Api {
    /// Issue 14: every host's access in tenant `t`; with `known`, the server holds the
    /// answer up to `wait` seconds until the list differs.
    pub async fn access_list(
        &self,
        t: &TenantId,
        known: Option<&str>,
        wait: std::time::Duration,
    ) -> anyhow::Result<AccessList> {
        let mut req = self
            .http
            .get(format!("{}/v1/tenants/{t}/access", self.base))
            // The server holds a wait at most 120 s; longer means it is gone.
            .timeout(wait + std::time::Duration::from_secs(30));
        if let Some(k) = known {
            req = req.query(&[("known", k), ("wait", &wait.as_secs().to_string())]);
        }
        self.send(req, "reading the access list").await
    }
}

impl Api {
    /// The source packages installed on at least one host the token may see.
    pub async fn fleet_source_packages(&self) -> anyhow::Result<FleetSourcePackages> {
        self.get(
            "/v1/fleet/source-packages",
            "reading the fleet's installed source packages",
        )
        .await
    }
}

// Issue 10, point 5: maintenance windows and reboot policy per group.
impl Api {
    /// Every group's windows and reboot policy.
    pub async fn group_policies(
        &self,
        t: &TenantId,
    ) -> anyhow::Result<Vec<patchday_types::api::GroupPolicyInfo>> {
        self.get(
            &format!("/v1/tenants/{t}/groups/policies"),
            "listing the groups' maintenance windows",
        )
        .await
    }
    /// Replaces a group's windows and reboot policy.
    pub async fn set_group_policy(
        &self,
        t: &TenantId,
        g: &GroupId,
        policy: &patchday_types::api::GroupPolicy,
    ) -> anyhow::Result<patchday_types::api::GroupPolicy> {
        self.put(
            &format!("/v1/tenants/{t}/groups/{g}/policy"),
            policy,
            "setting the group's maintenance windows",
        )
        .await
    }
}

// Issue 9, point 4 (closure): the server-side repair assignment.
impl Api {
    /// Asks the host's agent to run the repair at its next check-in.
    pub async fn repair_host(
        &self,
        t: &TenantId,
        h: &HostId,
        allow_apt: bool,
    ) -> anyhow::Result<()> {
        self.post(
            &format!("/v1/tenants/{t}/hosts/{h}/repair"),
            &serde_json::json!({ "allow_apt": allow_apt }),
            "asking the host to repair its dpkg database",
        )
        .await
    }
}

// ---- Issue 10, point 2: groups joined by rules on host facts ----

impl Api {
    /// The tenant's group rules.
    pub async fn group_rules(
        &self,
        t: &TenantId,
    ) -> anyhow::Result<Vec<patchday_types::api::GroupRuleInfo>> {
        self.get(
            &format!("/v1/tenants/{t}/groups/rules"),
            "listing the group rules",
        )
        .await
    }
    /// Adds a rule to group `g`; the answer lists the hosts that joined.
    pub async fn add_group_rule(
        &self,
        t: &TenantId,
        g: &GroupId,
        rule: &patchday_types::api::GroupRule,
    ) -> anyhow::Result<patchday_types::api::RuleChangeAnswer> {
        self.post(
            &format!("/v1/tenants/{t}/groups/{g}/rules"),
            rule,
            "adding the group rule",
        )
        .await
    }
    /// Removes rule `id` of group `g`; the answer lists the hosts that left.
    pub async fn remove_group_rule(
        &self,
        t: &TenantId,
        g: &GroupId,
        id: u64,
    ) -> anyhow::Result<patchday_types::api::RuleChangeAnswer> {
        self.delete(
            &format!("/v1/tenants/{t}/groups/{g}/rules/{id}"),
            "removing the group rule",
        )
        .await
    }
    /// Which hosts would join or leave group `g`; changes nothing.
    pub async fn preview_group_rule(
        &self,
        t: &TenantId,
        g: &GroupId,
        req: &patchday_types::api::RulePreviewRequest,
    ) -> anyhow::Result<patchday_types::api::RuleChangeAnswer> {
        self.post(
            &format!("/v1/tenants/{t}/groups/{g}/rules/preview"),
            req,
            "previewing the group rule",
        )
        .await
    }
}

/// Percent-encodes what a query value must not carry raw (ids are slugs, but `:` and `+`
/// in Debian versions would otherwise be read differently).
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- Issue 14, point 4: the mail attachment filter's verdicts ----

impl Api {
    /// Reports one milter verdict for a tenant.
    pub async fn report_mail_verdict(
        &self,
        t: &TenantId,
        verdict: &patchday_types::api::MailVerdict,
    ) -> anyhow::Result<()> {
        self.post(
            &format!("/v1/tenants/{t}/mail/verdicts"),
            verdict,
            "reporting a mail verdict",
        )
        .await
    }

    /// The tenant's newest mail verdicts.
    pub async fn mail_verdicts(
        &self,
        t: &TenantId,
        limit: u32,
    ) -> anyhow::Result<Vec<patchday_types::api::MailVerdict>> {
        self.get(
            &format!("/v1/tenants/{t}/mail/verdicts?limit={limit}"),
            "listing mail verdicts",
        )
        .await
    }
}

// ---- Issue 14, point 5: the agents' folder scan ----

impl Api {
    /// The tenant's newest folder scan findings.
    pub async fn scan_findings(
        &self,
        t: &TenantId,
        limit: u32,
    ) -> anyhow::Result<Vec<patchday_types::api::HostScanFinding>> {
        self.get(
            &format!("/v1/tenants/{t}/scan-findings?limit={limit}"),
            "listing folder scan findings",
        )
        .await
    }
}
