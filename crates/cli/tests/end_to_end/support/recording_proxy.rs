//! Issue 11, point 3: a recording proxy on 127.0.0.1 between the real `patchday` CLI or
//! agent and a real server. It forwards every request unchanged and keeps each exchange
//! (method, path, query, bodies, status, content types) for the test to check against the
//! server's OpenAPI document.

use std::sync::{Arc, Mutex};

/// One request and its answer, as they crossed the proxy.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub request_type: Option<String>,
    pub request_body: Vec<u8>,
    pub status: u16,
    pub response_type: Option<String>,
    pub response_body: Vec<u8>,
}

/// A running proxy; stops with the test process.
pub struct RecordingProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    seen: Arc<Mutex<Vec<Exchange>>>,
}

impl RecordingProxy {
    /// Starts a proxy in front of `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> RecordingProxy {
        let seen: Arc<Mutex<Vec<Exchange>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let upstream = upstream.trim_end_matches('/').to_string();
        let record = seen.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
                    let client = client.clone();
                    let upstream = upstream.clone();
                    let record = record.clone();
                    async move { forward(&client, &upstream, req, &record).await }
                });
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        RecordingProxy {
            url: format!("http://{addr}"),
            seen,
        }
    }

    /// Every exchange so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.seen.lock().unwrap().clone()
    }
}

async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    req: axum::extract::Request,
    record: &Mutex<Vec<Exchange>>,
) -> axum::response::Response {
    use axum::http::header;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let url = match &query {
        Some(q) => format!("{upstream}{path}?{q}"),
        None => format!("{upstream}{path}"),
    };
    let mut out = client.request(parts.method.clone(), url);
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    let answer = out.body(body.clone()).send().await.unwrap();
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap();
    let content_type = |h: &axum::http::HeaderMap| {
        h.get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    record.lock().unwrap().push(Exchange {
        method: parts.method.to_string(),
        path,
        query,
        request_type: content_type(&parts.headers),
        // Forwarded as it came; kept decoded (issue 12, point 7: facts go zstd-compressed).
        request_body: match parts.headers.get(header::CONTENT_ENCODING) {
            Some(e) if e == "zstd" => zstd::decode_all(body.as_ref()).unwrap(),
            _ => body.to_vec(),
        },
        status: status.as_u16(),
        response_type: content_type(&headers),
        response_body: bytes.to_vec(),
    });
    let mut resp = axum::response::Response::new(axum::body::Body::from(bytes));
    *resp.status_mut() = status;
    for (name, value) in &headers {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            resp.headers_mut().append(name, value.clone());
        }
    }
    resp
}
