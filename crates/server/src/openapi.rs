//! Issue 11, point 3: the `/v1` API described from the code.
//!
//! Every `/v1` handler carries a `#[utoipa::path]` attribute, and the router registers
//! it with `utoipa_axum::routes!`, which takes the route's path and method from that same
//! attribute: a route cannot be served without being described, nor described with a
//! path it is not served at. The document is served at `GET /v1/openapi.json`, and
//! rendered as a plain HTML reference at `GET /v1/docs` (server-side, escaped, no script:
//! the page works on a machine without internet).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use std::fmt::Write as _;
use std::sync::Arc;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    OpenApi, RefOr, Response as OaResponse, ResponseBuilder, SecurityRequirement,
};
use utoipa::Modify;

/// Name of the operator bearer-token scheme.
pub const OPERATOR: &str = "operator_token";
/// Name of the host credential scheme (the bearer an agent got at enrolment).
pub const HOST_CREDENTIAL: &str = "host_credential";
/// Name of the host signature header scheme.
pub const HOST_SIGNATURE: &str = "host_signature";
/// Name of the host sequence header scheme.
pub const HOST_SEQUENCE: &str = "host_sequence";

/// The document's frame: title, version, tags, security schemes; the paths come from
/// the router (`routes::router`).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Patchday API",
        description = "The `/v1` API of a Patchday server: operators (the `patchday` CLI, the dashboard) and agents (`patchday-agent`). Errors are JSON `ErrorBody` objects whose `message` says what to do. This document is generated from the server's code.",
        license(name = "Apache-2.0")
    ),
    components(schemas(patchday_types::api::ErrorBody)),
    tags(
        (name = "operator", description = "Administration with an operator token: tenants, tokens, groups, approvals, rings, reports, the catalog, the log."),
        (name = "agent", description = "What an enrolled agent sends: every body is signed with the host's own key (Uptane's version manifests)."),
        (name = "enrolment", description = "An agent enrols with a one-time enrolment token in its body."),
        (name = "tuf", description = "The signed catalog (TUF metadata and payloads) for agents and operators."),
        (name = "public", description = "No credential: health, readiness, the pinned root, this document.")
    ),
)]
pub struct ApiDoc;

/// Adds the security schemes, each operation's requirement (from its tag) and the
/// error answers every operation may give; applied to the document the router made.
pub struct Frame;

impl Modify for Frame {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            OPERATOR,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An operator token (`Authorization: Bearer pd_…`): the first provider-admin token is printed when a server is initialised; `patchday token create` makes more. A token is scoped to one tenant or to all (provider admin), and read-only or not.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            HOST_CREDENTIAL,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The host credential an agent received at enrolment (`Authorization: Bearer …`). On agent routes it is not enough alone: the body must also be signed (`patchday-signature`, `patchday-sequence`).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            HOST_SIGNATURE,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "patchday-signature",
                "Hex ed25519 signature, under the key the host registered at enrolment, of the UTF-8 text `patchday-host-request/1\\nPATH\\nTENANT\\nHOST\\nSEQUENCE\\nSHA256(BODY)` (PATH without its leading `/`, SHA256 in lower-case hex over the exact body bytes).",
            ))),
        );
        components.add_security_scheme(
            HOST_SEQUENCE,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "patchday-sequence",
                "Decimal sequence number, above the last one the server accepted from this host (a replay is refused with 409 and the last accepted number in `patchday-last-sequence`).",
            ))),
        );
        let none: Vec<SecurityRequirement> = vec![SecurityRequirement::default()];
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                let tag = op.tags.as_ref().and_then(|t| t.first()).cloned();
                op.security = Some(match tag.as_deref() {
                    Some("operator") => {
                        vec![SecurityRequirement::new(OPERATOR, Vec::<String>::new())]
                    }
                    Some("agent") => {
                        vec![
                            SecurityRequirement::new(HOST_CREDENTIAL, Vec::<String>::new())
                                .add(HOST_SIGNATURE, Vec::<String>::new())
                                .add(HOST_SEQUENCE, Vec::<String>::new()),
                        ]
                    }
                    Some("tuf") => vec![
                        SecurityRequirement::new(OPERATOR, Vec::<String>::new()),
                        SecurityRequirement::new(HOST_CREDENTIAL, Vec::<String>::new()),
                    ],
                    _ => none.clone(),
                });
                for (range, what) in [
                    ("4XX", "Refused: the `message` says why and what to do"),
                    ("5XX", "The server could not answer: the `message` says why"),
                ] {
                    op.responses
                        .responses
                        .entry(range.to_string())
                        .or_insert_with(|| error_response(what));
                }
            }
        }
    }
}

fn error_response(what: &str) -> RefOr<OaResponse> {
    RefOr::T(
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
            .build(),
    )
}

/// The operations of a path item with their methods, in a stable order.
fn operations(
    item: &mut utoipa::openapi::path::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Raw bytes in a request or answer (a catalog tar, a payload): `string`, `binary`.
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .into()
    }
}

impl utoipa::ToSchema for Binary {
    fn name() -> std::borrow::Cow<'static, str> {
        "Binary".into()
    }
}

/// The served document, made once when the router is built.
#[derive(Clone)]
pub struct Document {
    /// The document as JSON text.
    json: Arc<String>,
    /// The rendered reference page.
    html: Arc<String>,
}

impl Document {
    /// Serialises `doc` and renders its reference page.
    pub fn new(doc: &OpenApi) -> Self {
        let json = doc
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"internal\",\"message\":\"the API document could not be serialised: {e}\"}}"));
        let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        Self {
            json: Arc::new(json),
            html: Arc::new(render(&value)),
        }
    }
}

/// `GET /v1/openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "public",
    responses((status = 200, description = "The OpenAPI document of the `/v1` API", body = Object, content_type = "application/json"))
)]
pub async fn openapi_json(Extension(doc): Extension<Document>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.json.as_str().to_owned(),
    )
        .into_response()
}

/// `GET /v1/docs`: the API reference as a plain HTML page (no script, no network).
#[utoipa::path(
    get,
    path = "/v1/docs",
    tag = "public",
    responses((status = 200, description = "The API reference, rendered from the OpenAPI document", body = String, content_type = "text/html"))
)]
pub async fn docs(Extension(doc): Extension<Document>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page is static text: no script, style inline, nothing from elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        doc.html.as_str().to_owned(),
    )
        .into_response()
}

/// Escapes text for HTML (the audit report's escaping: markup, control and
/// bidirectional characters), keeping the line breaks of multi-line descriptions.
fn esc(s: &str) -> String {
    s.split('\n')
        .map(patchday_audit::report::escape_html)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A schema in one line: `TenantUpdate`, `array of Approval`, `string (date-time)`.
fn schema_name(s: &serde_json::Value) -> String {
    use serde_json::Value;
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    if let Some(items) = s.get("items") {
        return format!("array of {}", schema_name(items));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(v)) = s.get(key) {
            return v.iter().map(schema_name).collect::<Vec<_>>().join(" or ");
        }
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(v)) => v
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".into(),
    };
    match s.get("format").and_then(Value::as_str) {
        Some(f) => format!("{ty} ({f})"),
        None => ty,
    }
}

/// Renders the reference page: operations by tag, then the schemas with their fields.
fn render(doc: &serde_json::Value) -> String {
    use serde_json::Value;
    let mut h = String::new();
    let title = doc
        .pointer("/info/title")
        .and_then(Value::as_str)
        .unwrap_or("API");
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:60rem;margin:auto;padding:1rem;line-height:1.4}}\
         code,pre{{font-family:ui-monospace,monospace}} .op{{border-top:1px solid #ccc;padding:.5rem 0}}\
         .m{{display:inline-block;min-width:4.5rem;font-weight:bold}} table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ddd;padding:.2rem .4rem;text-align:left;vertical-align:top}}\
         </style></head><body>\n<h1>{t}</h1>\n",
        t = esc(title)
    );
    if let Some(d) = doc.pointer("/info/description").and_then(Value::as_str) {
        let _ = writeln!(h, "<p>{}</p>", esc(d));
    }
    h.push_str("<p>Machine-readable: <a href=\"/v1/openapi.json\">/v1/openapi.json</a>.</p>\n<h2 id=\"security\">Authentication</h2>\n<dl>\n");
    if let Some(Value::Object(schemes)) = doc.pointer("/components/securitySchemes") {
        for (name, s) in schemes {
            let how = match (
                s.get("type").and_then(Value::as_str),
                s.get("name").and_then(Value::as_str),
            ) {
                (Some("apiKey"), Some(header)) => format!("header {header}"),
                (Some("http"), _) => "Authorization: Bearer".into(),
                _ => String::new(),
            };
            let _ = writeln!(
                h,
                "<dt><code>{}</code> ({})</dt><dd>{}</dd>",
                esc(name),
                esc(&how),
                esc(s.get("description").and_then(Value::as_str).unwrap_or(""))
            );
        }
    }
    h.push_str("</dl>\n");
    let tags: Vec<(String, String)> = doc
        .get("tags")
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .map(|t| {
                    (
                        t.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        t.get("description")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let empty = serde_json::Map::new();
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (tag, about) in &tags {
        let _ = writeln!(
            h,
            "<h2 id=\"tag-{t}\">{t}</h2>\n<p>{}</p>",
            esc(about),
            t = esc(tag)
        );
        for (path, item) in paths {
            for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
                let Some(op) = item.get(method) else { continue };
                let first = op.pointer("/tags/0").and_then(Value::as_str).unwrap_or("");
                if first != tag {
                    continue;
                }
                render_operation(&mut h, method, path, op);
            }
        }
    }
    h.push_str("<h2 id=\"schemas\">Schemas</h2>\n");
    if let Some(Value::Object(schemas)) = doc.pointer("/components/schemas") {
        for (name, s) in schemas {
            let _ = writeln!(h, "<h3 id=\"schema-{n}\">{n}</h3>", n = esc(name));
            if let Some(d) = s.get("description").and_then(Value::as_str) {
                let _ = writeln!(h, "<p>{}</p>", esc(d));
            }
            if let Some(Value::Array(values)) = s.get("enum") {
                let list: Vec<String> = values
                    .iter()
                    .map(|v| format!("<code>{}</code>", esc(&v.to_string())))
                    .collect();
                let _ = writeln!(h, "<p>One of: {}</p>", list.join(", "));
            }
            if let Some(Value::Object(props)) = s.get("properties") {
                let required: Vec<&str> = s
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                h.push_str("<table><tr><th>field</th><th>type</th><th>about</th></tr>\n");
                for (field, p) in props {
                    let _ = writeln!(
                        h,
                        "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(field),
                        if required.contains(&field.as_str()) {
                            " (required)"
                        } else {
                            ""
                        },
                        esc(&schema_name(p)),
                        esc(p.get("description").and_then(Value::as_str).unwrap_or(""))
                    );
                }
                h.push_str("</table>\n");
            } else if s.get("enum").is_none() {
                let _ = writeln!(h, "<p>{}</p>", esc(&schema_name(s)));
            }
        }
    }
    h.push_str("</body></html>\n");
    h
}

fn render_operation(h: &mut String, method: &str, path: &str, op: &serde_json::Value) {
    use serde_json::Value;
    let _ = writeln!(
        h,
        "<div class=\"op\"><p><span class=\"m\">{}</span> <code>{}</code></p>",
        esc(&method.to_uppercase()),
        esc(path)
    );
    for key in ["summary", "description"] {
        if let Some(d) = op.get(key).and_then(Value::as_str) {
            let _ = writeln!(h, "<p>{}</p>", esc(d));
        }
    }
    if let Some(Value::Array(params)) = op.get("parameters") {
        h.push_str("<p>Parameters:</p><ul>\n");
        for p in params {
            let _ = writeln!(
                h,
                "<li><code>{}</code> ({}, {}) {}</li>",
                esc(p.get("name").and_then(Value::as_str).unwrap_or("")),
                esc(p.get("in").and_then(Value::as_str).unwrap_or("")),
                esc(&p.get("schema").map(schema_name).unwrap_or_default()),
                esc(p.get("description").and_then(Value::as_str).unwrap_or(""))
            );
        }
        h.push_str("</ul>\n");
    }
    if let Some(Value::Object(content)) = op.pointer("/requestBody/content") {
        for (mime, c) in content {
            let _ = writeln!(
                h,
                "<p>Body ({}): {}</p>",
                esc(mime),
                esc(&c.get("schema").map(schema_name).unwrap_or_default())
            );
        }
    }
    if let Some(Value::Object(responses)) = op.get("responses") {
        h.push_str("<p>Answers:</p><ul>\n");
        for (status, r) in responses {
            let body: Vec<String> = r
                .get("content")
                .and_then(Value::as_object)
                .map(|c| {
                    c.iter()
                        .map(|(mime, c)| {
                            format!(
                                "{mime}: {}",
                                c.get("schema").map(schema_name).unwrap_or_default()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let _ = writeln!(
                h,
                "<li>{} {}{}</li>",
                esc(status),
                esc(r.get("description").and_then(Value::as_str).unwrap_or("")),
                if body.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", esc(&body.join("; ")))
                }
            );
        }
        h.push_str("</ul>\n");
    }
    let security: Vec<String> = op
        .get("security")
        .and_then(Value::as_array)
        .map(|alts| {
            alts.iter()
                .filter_map(Value::as_object)
                .map(|all| {
                    if all.is_empty() {
                        "none".to_string()
                    } else {
                        all.keys().cloned().collect::<Vec<_>>().join(" + ")
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if !security.is_empty() {
        let _ = writeln!(h, "<p>Credentials: {}</p>", esc(&security.join(" or ")));
    }
    h.push_str("</div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_page_escapes_what_the_document_says() {
        let doc = serde_json::json!({
            "info": {"title": "<script>alert(1)</script>", "description": "a & b"},
            "tags": [{"name": "operator", "description": "<b>x</b>"}],
            "paths": {"/v1/x/{a}": {"get": {"tags": ["operator"], "summary": "\"quoted\" <i>", "responses": {}}}},
            "components": {"schemas": {"S<1>": {"type": "object", "properties": {"f<": {"type": "string", "description": "<img src=x>"}}}}}
        });
        let page = render(&doc);
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<i>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&quot;quoted&quot; &lt;i&gt;"));
        assert!(page.contains("S&lt;1&gt;"));
    }
}
