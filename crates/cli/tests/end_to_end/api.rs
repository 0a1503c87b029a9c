//! Issue 11, points 3 and 4: the API describes itself, counts what it does and says when
//! it cannot serve. Real `patchday` server on 127.0.0.1:0, the real CLI and
//! `patchday-agent` (real dpkg in a lab host) talking to it through a recording proxy,
//! every exchange checked against the server's own OpenAPI document with the
//! `jsonschema` crate; `/metrics` parsed with Prometheus's Python parser.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::recording_proxy;

use patchday_lab::DebSpec;
use patchday_testkit::{scratch, text, Bins, Catalog, Host, Requirement, Server};
use recording_proxy::{Exchange, RecordingProxy};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bins() -> Bins {
    Bins::new(env!("CARGO_BIN_EXE_patchday"))
}

const METRICS_TOKEN: &str = "metrics-scrape-secret-0123456789abcdef";

/// A catalog with update PD-API-1 (emergency lane: approvable now) and a server pinning
/// it with `/metrics` on; nothing pushed yet.
struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    cat: Catalog,
    srv: Server,
    deb_old: PathBuf,
}

fn world() -> World {
    let d = scratch();
    let dir = d.path().to_path_buf();
    let b = bins();
    let pkgs = dir.join("pkgs");
    let build = |v: &str, postinst: Option<&str>| {
        let mut spec = DebSpec::new("pd-api-tool", v)
            .changelog(v, "Fix CVE-2099-1101.")
            .file(
                "/usr/share/pd-api-tool/version",
                format!("{v}\n").into_bytes(),
                0o644,
            );
        if let Some(script) = postinst {
            spec = spec.postinst(script);
        }
        patchday_lab::build_deb(&spec, &pkgs).unwrap()
    };
    let deb_old = build("1.0-1", None);
    // dpkg works on the update longer than INSTALLING_REPORT_AFTER (5 s), so the agent
    // sends its "installing" report (issue 10, point 8) and the report route is used.
    let deb_new = build("1.0-2", Some("sleep 7"));
    let cat = Catalog::new(&b, &dir);
    let o = cat.add_deb("PD-API-1", &deb_new, &["--emergency", "test"]);
    assert!(o.status.success(), "add-deb: {}", text(&o));
    let token_file = dir.join("metrics-token");
    std::fs::write(&token_file, format!("{METRICS_TOKEN}\n")).unwrap();
    let srv = Server::start_with(
        &b,
        &dir,
        &cat.root(),
        &["--metrics-token-file", token_file.to_str().unwrap()],
    );
    World {
        _dir: d,
        dir,
        cat,
        srv,
        deb_old,
    }
}

/// Runs the real CLI against `url` (the proxy) with the admin token.
fn cli_via(w: &World, url: &str, args: &[&str]) -> String {
    let o: Output = Command::new(env!("CARGO_BIN_EXE_patchday"))
        .args(args)
        .env("PATCHDAY_SERVER", url)
        .env("PATCHDAY_TOKEN", &w.srv.admin)
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    assert!(o.status.success(), "patchday {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The server's document, from `GET /v1/openapi.json`.
fn document(srv: &Server) -> Value {
    let (status, body) = srv.http_get("/v1/openapi.json", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Whether an OpenAPI path template (`/v1/tenants/{tenant}`) matches a request path.
fn template_matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(a, b)| (a.starts_with('{') && a.ends_with('}') && !b.is_empty()) || a == b)
}

/// The operation a request is for: literal segments win over parameters (as axum
/// routes `/v1/tenants/{t}/groups/rules` before `/v1/tenants/{t}/groups/{g}`).
fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> Option<(&'a str, &'a Value)> {
    let paths = doc["paths"].as_object().unwrap();
    paths
        .iter()
        .filter(|(t, item)| template_matches(t, path) && item.get(method).is_some())
        .min_by_key(|(t, _)| t.matches('{').count())
        .map(|(t, item)| (t.as_str(), &item[method]))
}

/// A validator for `schema`, resolving `#/components/...` in the document.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    if let Value::Object(o) = &mut root {
        o.insert("components".into(), doc["components"].clone());
    }
    jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("the document's schema {schema} does not compile: {e}"))
}

fn mime(content_type: &Option<String>) -> String {
    content_type
        .as_deref()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Checks one exchange against the document; returns what is wrong.
fn check(doc: &Value, x: &Exchange) -> Vec<String> {
    let mut wrong = Vec::new();
    let method = x.method.to_ascii_lowercase();
    let Some((template, op)) = operation(doc, &method, &x.path) else {
        return vec![format!("{} {}: not in the document", x.method, x.path)];
    };
    let what = format!("{} {} ({template})", x.method, x.path);
    // Every query parameter sent is a documented one.
    if let Some(q) = &x.query {
        let documented: Vec<&str> = op["parameters"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter(|p| p["in"] == "query")
                    .filter_map(|p| p["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        for pair in q.split('&') {
            let name = pair.split('=').next().unwrap_or("");
            if !documented.contains(&name) {
                wrong.push(format!(
                    "{what}: query parameter {name:?} is not documented"
                ));
            }
        }
    }
    // The request body.
    let req_mime = mime(&x.request_type);
    if !x.request_body.is_empty() {
        match op["requestBody"]["content"].as_object() {
            None => wrong.push(format!("{what}: sends a body, the document has none")),
            Some(content) => match content.get(&req_mime) {
                None => wrong.push(format!(
                    "{what}: sends {req_mime}, the document says {:?}",
                    content.keys().collect::<Vec<_>>()
                )),
                Some(c) if req_mime == "application/json" => {
                    let body: Value = serde_json::from_slice(&x.request_body).unwrap();
                    let v = validator(doc, &c["schema"]);
                    for e in v.iter_errors(&body) {
                        wrong.push(format!(
                            "{what}: request body: {e} at {}",
                            e.instance_path()
                        ));
                    }
                }
                Some(_) => {}
            },
        }
    }
    // The answer: its status is documented (exactly or by range), and its body fits.
    let status = x.status.to_string();
    let range = format!("{}XX", x.status / 100);
    let responses = &op["responses"];
    let Some(r) = responses
        .get(&status)
        .or_else(|| responses.get(&range))
        .or_else(|| responses.get("default"))
    else {
        wrong.push(format!("{what}: status {status} is not documented"));
        return wrong;
    };
    let resp_mime = mime(&x.response_type);
    match r["content"].as_object() {
        None => {
            let body = String::from_utf8_lossy(&x.response_body);
            if !(body.trim().is_empty() || body.trim() == "null") {
                wrong.push(format!(
                    "{what}: {status} has a body the document does not describe: {body}"
                ));
            }
        }
        Some(content) => match content.get(&resp_mime) {
            None => wrong.push(format!(
                "{what}: answers {resp_mime}, the document says {:?}",
                content.keys().collect::<Vec<_>>()
            )),
            Some(c) if resp_mime == "application/json" => {
                let body: Value = serde_json::from_slice(&x.response_body).unwrap_or_else(|e| {
                    panic!(
                        "{what}: answer is not JSON ({e}): {}",
                        String::from_utf8_lossy(&x.response_body)
                    )
                });
                let v = validator(doc, &c["schema"]);
                for e in v.iter_errors(&body) {
                    wrong.push(format!(
                        "{what}: {status} answer: {e} at {}",
                        e.instance_path()
                    ));
                }
            }
            Some(_) => {}
        },
    }
    wrong
}

/// Fills a path template with placeholder values.
fn filled(template: &str) -> String {
    template
        .split('/')
        .map(|s| {
            if s == "{id}" {
                "1"
            } else if s.starts_with('{') {
                "x"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// (status, body) of `method url` with no credential.
fn probe(url: &str, method: &str) -> (u16, String) {
    let o = Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
            "--max-time",
            "20",
        ])
        .arg(url)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn every_v1_route_is_described_and_what_the_cli_and_agent_send_fits_the_document() {
    let _serial = patchday_testkit::serial();
    let w = world();
    let doc = document(&w.srv);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );

    // 1. The router and the document agree, in both directions, for every path the
    // document has: each documented method is routed (not 405, not the router's empty
    // 404), and each method the router answers on that path is documented.
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() > 50, "only {} paths documented", paths.len());
    let mut mismatches = Vec::new();
    for (template, item) in paths {
        assert!(
            template.starts_with("/v1/"),
            "{template} in the /v1 document"
        );
        let url = format!("{}{}", w.srv.url, filled(template));
        for method in ["get", "put", "post", "delete", "patch"] {
            if template == "/v1/agent/wait" && method == "post" {
                continue; // a held long poll; routed as the check-in is (checked below)
            }
            let documented = item.get(method).is_some();
            let (status, body) = probe(&url, &method.to_uppercase());
            let routed = status != 405 && !(status == 404 && body.trim().is_empty());
            if documented != routed {
                mismatches.push(format!(
                    "{} {template}: documented {documented}, routed {routed} ({status} {body})",
                    method.to_uppercase()
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "router and document disagree:\n{}",
        mismatches.join("\n")
    );
    // Outside the document: the router's own 404 for what no route serves, and
    // /metrics (not part of the /v1 API).
    assert_eq!(
        probe(&format!("{}/v1/no-such-route", w.srv.url), "GET").0,
        404
    );
    assert!(!paths.contains_key("/metrics"));

    // 2. Security schemes: the operator token and the agent's signed requests.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["operator_token"]["scheme"], "bearer", "{schemes}");
    assert_eq!(
        schemes["host_signature"]["name"], "patchday-signature",
        "{schemes}"
    );
    assert_eq!(
        schemes["host_sequence"]["name"], "patchday-sequence",
        "{schemes}"
    );
    let checkin = &doc["paths"]["/v1/agent/checkin"]["post"]["security"][0];
    for s in ["host_credential", "host_signature", "host_sequence"] {
        assert!(checkin.get(s).is_some(), "check-in security {checkin}");
    }
    assert!(doc["paths"]["/v1/tenants"]["get"]["security"][0]
        .get("operator_token")
        .is_some());

    // 3. The reference page: every path, escaped, no script, nothing from elsewhere.
    let (status, page) = w.srv.http_get("/v1/docs", None);
    assert_eq!(status, 200);
    assert!(!page.contains("<script"), "the reference page has a script");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads nothing from elsewhere"
    );
    for template in paths.keys() {
        assert!(
            page.contains(&format!("<code>{template}</code>")),
            "{template} is not on the page"
        );
    }
    assert!(page.contains("patchday-signature"));

    // 4. The real CLI and agent through a recording proxy: every exchange fits.
    let proxy = RecordingProxy::start(&w.srv.url);
    let p = proxy.url.as_str();
    let repo = w.cat.repo.to_str().unwrap();
    cli_via(&w, p, &["catalog", "push", "--repo", repo]);
    cli_via(&w, p, &["catalog", "status"]);
    cli_via(&w, p, &["tenant", "create", "acme"]);
    cli_via(&w, p, &["tenant", "list", "--format", "json"]);
    cli_via(&w, p, &["group", "create", "--tenant", "acme", "web"]);
    cli_via(&w, p, &["group", "list", "--tenant", "acme"]);
    let enroll = cli_via(
        &w,
        p,
        &["enroll-token", "create", "--tenant", "acme", "--unlimited"],
    );
    cli_via(&w, p, &["enroll-token", "list", "--tenant", "acme"]);
    cli_via(
        &w,
        p,
        &[
            "token",
            "create",
            "--name",
            "reader",
            "--role",
            "read-only",
            "--tenant",
            "acme",
        ],
    );
    cli_via(&w, p, &["token", "list"]);
    let h = Host::new(&bins(), &w.dir, "api-host-1");
    let id = h.enrol_into_web(&w.srv, p, enroll.trim(), &w.deb_old);
    cli_via(&w, p, &["host", "list", "--tenant", "acme"]);
    cli_via(
        &w,
        p,
        &["host", "set-groups", "--tenant", "acme", &id, "web"],
    );
    cli_via(&w, p, &["updates", "--tenant", "acme"]);
    cli_via(
        &w,
        p,
        &["approve", "--tenant", "acme", "--group", "web", "PD-API-1"],
    );
    let o = h.agent(p, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(h.version("pd-api-tool").as_deref(), Some("1.0-2"));
    cli_via(&w, p, &["report", "--format", "json"]);
    cli_via(&w, p, &["report", "--by", "detail", "--format", "json"]);
    cli_via(
        &w,
        p,
        &[
            "history", "--tenant", "acme", "--host", &id, "--format", "json",
        ],
    );
    cli_via(&w, p, &["log", "--format", "json"]);
    cli_via(&w, p, &["ring", "list", "--tenant", "acme"]);
    cli_via(&w, p, &["ring", "preview", "--tenant", "acme", "PD-API-1"]);
    cli_via(&w, p, &["rollout", "status", "--update", "PD-API-1"]);
    cli_via(&w, p, &["group", "rule", "list", "--tenant", "acme"]);
    cli_via(&w, p, &["director", "key"]);
    cli_via(&w, p, &["audit-report", "--tenant", "acme"]);
    cli_via(
        &w,
        p,
        &[
            "tenant",
            "patch-day",
            "acme",
            "--week",
            "second",
            "--weekday",
            "tuesday",
            "--time",
            "10:00",
            "--time-zone",
            "UTC",
        ],
    );
    let exchanges = proxy.exchanges();
    let mut wrong = Vec::new();
    let mut routes = std::collections::BTreeSet::new();
    for x in &exchanges {
        wrong.extend(check(&doc, x));
        if let Some((t, _)) = operation(&doc, &x.method.to_ascii_lowercase(), &x.path) {
            routes.insert(format!("{} {t}", x.method));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} exchanges do not fit the document:\n{}",
        wrong.len(),
        exchanges.len(),
        wrong.join("\n")
    );
    // The exchanges covered the CLI's and the agent's main routes.
    for r in [
        "POST /v1/catalog",
        "POST /v1/catalog/missing",
        "POST /v1/agent/enroll",
        "POST /v1/agent/checkin",
        "POST /v1/agent/report",
        "GET /v1/tuf/targets/{name}",
        "GET /v1/tuf/metadata/{name}",
        "POST /v1/tenants/{tenant}/approvals",
        "GET /v1/report",
    ] {
        assert!(routes.contains(r), "{r} was not exercised: {routes:?}");
    }
    // The check bites: a document that demands a field the server never sends, or
    // forbids one the CLI sends, fails the same exchanges.
    let mut strict = doc.clone();
    strict["components"]["schemas"]["CheckinResponse"]["required"]
        .as_array_mut()
        .unwrap()
        .push("no_such_field".into());
    strict["components"]["schemas"]["ApprovalRequest"]["additionalProperties"] = false.into();
    strict["components"]["schemas"]["ApprovalRequest"]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("group");
    let caught: Vec<String> = exchanges.iter().flat_map(|x| check(&strict, x)).collect();
    assert!(
        caught
            .iter()
            .any(|e| e.contains("/v1/agent/checkin") && e.contains("no_such_field")),
        "{caught:?}"
    );
    assert!(
        caught
            .iter()
            .any(|e| e.contains("/approvals") && e.contains("request body")),
        "{caught:?}"
    );
    eprintln!(
        "{} exchanges on {} routes fit the document",
        exchanges.len(),
        routes.len()
    );
}

/// Prometheus's own parser (Python `prometheus_client`) over a scrape: every sample as
/// `[name, labels, value]`.
fn parse_metrics(scrape: &str) -> Vec<(String, serde_json::Map<String, Value>, f64)> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args([
            "-c",
            r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "the Prometheus parser refused the scrape: {}\n{scrape}",
        text(&o)
    );
    let v: Vec<(String, serde_json::Map<String, Value>, f64)> =
        serde_json::from_slice(&o.stdout).unwrap();
    v
}

fn sample(
    samples: &[(String, serde_json::Map<String, Value>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .map(|s| s.2)
}

#[test]
fn metrics_count_checkins_installs_and_compliance_for_a_real_agent() {
    if !patchday_testkit::require(Requirement::PROMETHEUS_CLIENT) {
        return;
    }
    let _serial = patchday_testkit::serial();
    let w = world();
    patchday_testkit::acme_with_web(&w.srv, &w.cat.repo);
    let enroll = patchday_testkit::acme_enroll_token(&w.srv, &["--unlimited"]);
    let h = Host::new(&bins(), &w.dir, "metrics-host-1");
    h.enrol_into_web(&w.srv, &w.srv.url, &enroll, &w.deb_old);
    w.srv
        .cli(&["approve", "--tenant", "acme", "--group", "web", "PD-API-1"]);
    let o = h.agent(&w.srv.url, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        w.srv.update_state("metrics-host-1", "PD-API-1").0,
        "installed"
    );

    // Refused without the scrape secret, and with an operator token: it is its own secret.
    assert_eq!(w.srv.http_get("/metrics", None).0, 401);
    assert_eq!(w.srv.http_get("/metrics", Some(&w.srv.admin)).0, 401);
    let (status, scrape) = w.srv.http_get("/metrics", Some(METRICS_TOKEN));
    assert_eq!(status, 200, "{scrape}");
    let s = parse_metrics(&scrape);
    // Two check-ins at least (enrolment run, install run) and their latency.
    let checkins = sample(&s, "patchday_checkins_total", &[]).unwrap_or(0.0);
    assert!(checkins >= 2.0, "check-ins {checkins}:\n{scrape}");
    let observed = sample(&s, "patchday_checkin_duration_seconds_count", &[]).unwrap_or(0.0);
    assert!(observed >= checkins, "{scrape}");
    // The install the agent reported, by state.
    let installed = sample(
        &s,
        "patchday_install_outcomes_total",
        &[("state", "installed")],
    );
    assert!(installed.unwrap_or(0.0) >= 1.0, "{scrape}");
    // Issue 10, point 8: one report per step under way, and only for a slow step
    // (downloading over 2 s, dpkg over 5 s: this update's postinst takes 7 s); the
    // outcome came with the closing check-in, not alone.
    let reported = |state: &str| {
        sample(&s, "patchday_install_outcomes_total", &[("state", state)]).unwrap_or(0.0)
    };
    assert_eq!(reported("installing"), 1.0, "{scrape}");
    assert_eq!(
        sample(
            &s,
            "patchday_http_requests_total",
            &[("route", "/v1/agent/report"), ("status", "200")]
        )
        .unwrap_or(0.0),
        reported("installing") + reported("downloading"),
        "{scrape}"
    );
    // The payload it downloaded.
    assert!(
        sample(&s, "patchday_downloads_total", &[]).unwrap_or(0.0) >= 1.0,
        "{scrape}"
    );
    assert!(
        sample(&s, "patchday_download_bytes_total", &[]).unwrap_or(0.0) > 0.0,
        "{scrape}"
    );
    // Requests by route template, never by raw path.
    assert!(
        sample(
            &s,
            "patchday_http_requests_total",
            &[("route", "/v1/agent/checkin"), ("status", "200")]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{scrape}"
    );
    assert!(
        !scrape.contains("route=\"/v1/tenants/acme"),
        "raw paths in labels:\n{scrape}"
    );
    // Compliance: the one host is up to date. On failure, the host's row says why (its
    // compliance reason, e.g. dpkg's words) and the agent's log what it saw.
    assert_eq!(
        sample(
            &s,
            "patchday_hosts_compliance",
            &[("tenant", "acme"), ("state", "up-to-date")]
        ),
        Some(1.0),
        "{scrape}\nhost: {}\nagent: {}",
        w.srv.host_report("metrics-host-1"),
        text(&o)
    );
    // Catalog expiry in the future; no long poll held by a one-shot agent.
    let expiry = sample(&s, "patchday_catalog_expiry_seconds", &[]).unwrap();
    assert!(expiry > 3600.0, "{expiry}");
    assert_eq!(sample(&s, "patchday_push_connections_held", &[]), Some(0.0));

    // Issue 11: the agent's check-ins and reports kept the host's evaluation, so the
    // fleet views (the compliance gauge above, a report) read it instead of evaluating
    // the host again.
    let views = |evaluation| {
        let (status, scrape) = w.srv.http_get("/metrics", Some(METRICS_TOKEN));
        assert_eq!(status, 200, "{scrape}");
        sample(
            &parse_metrics(&scrape),
            "patchday_fleet_view_hosts_total",
            &[("evaluation", evaluation)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(
        views("again"),
        0.0,
        "evaluated again after a check-in kept it"
    );
    assert!(views("kept") >= 1.0);
    let (status, body) = w.srv.http_get("/v1/report", Some(&w.srv.admin));
    assert_eq!(status, 200, "{body}");
    assert_eq!(views("again"), 0.0);
    // A new decision moves the tenant's decisions mark: the next view evaluates the host
    // once, keeps it, and the views after it read it again; the report says the same.
    w.srv.cli(&[
        "approve",
        "--tenant",
        "acme",
        "--group",
        "web",
        "--deadline",
        "2099-01-01T00:00:00Z",
        "PD-API-1",
    ]);
    let (_, again) = w.srv.http_get("/v1/report", Some(&w.srv.admin));
    assert_eq!(views("again"), 1.0, "the new decision");
    assert_eq!(views("again"), 1.0, "kept by the view that made it");
    let rows = |body: &str| -> Vec<Value> {
        let v: Value = serde_json::from_str(body).unwrap();
        v["rows"].as_array().unwrap().clone()
    };
    assert_eq!(rows(&body), rows(&again), "the same host, the same rows");
}

#[test]
fn ready_says_which_part_cannot_serve() {
    patchday_testkit::on_the_data_directory(
        "readiness on a bucket in crates/content (readiness_writes_its_probe_once_per_period…) and replicas::",
    );
    let w = world();
    let ready = || w.srv.http_get("/v1/ready", None);
    assert_eq!(ready(), (200, "ready".to_string()));

    // The content store cannot be written: its directory is gone, a file in its place
    // (root can write into any directory, so permissions would not stop it).
    let content = w.srv.data.join("content");
    let aside = w.srv.data.join("content.aside");
    std::fs::rename(&content, &aside).unwrap();
    std::fs::write(&content, b"not a directory").unwrap();
    let (status, body) = ready();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("content store: cannot"), "{body}");
    assert!(!body.contains("database"), "{body}");
    // /v1/health (alive) is not readiness.
    assert_eq!(w.srv.http_get("/v1/health", None).0, 200);
    std::fs::remove_file(&content).unwrap();
    std::fs::rename(&aside, &content).unwrap();
    assert_eq!(ready().0, 200);

    // The database file is gone from under the running server.
    let db = w.srv.data.join("patchday.db");
    let db_aside = w.srv.data.join("patchday.db.aside");
    std::fs::rename(&db, &db_aside).unwrap();
    let (status, body) = ready();
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("database: "), "{body}");
    assert!(
        body.contains("patchday.db is gone or was replaced"),
        "{body}"
    );
    std::fs::rename(&db_aside, &db).unwrap();
    assert_eq!(ready(), (200, "ready".to_string()));
    let _ = Path::new(&w.dir);
}
