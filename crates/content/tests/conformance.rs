//! Issue 12, point 3: the content-store conformance suite, one test per case, on the
//! local directory (always) and on a real S3-compatible server named in
//! `PATCHDAY_TEST_S3` (`.ci/run` starts Garage; skipped without it, failed under CI=true).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use patchday_content::conformance::Harness;
use patchday_content::ContentStore;
use std::path::Path;

async fn http_get(url: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

mod local {
    use super::*;
    use patchday_content::LocalDisk;

    pub struct Fresh {
        store: LocalDisk,
        dir: tempfile::TempDir,
    }

    #[async_trait]
    impl Harness for Fresh {
        fn store(&self) -> &dyn ContentStore {
            &self.store
        }
        fn replica(&self) -> Box<dyn ContentStore> {
            Box::new(LocalDisk::new(self.dir.path().join("blobs")).unwrap())
        }
        async fn damage(&self, key: &str, bytes: &[u8]) {
            let p = self.dir.path().join("blobs").join(&key[..2]).join(key);
            std::fs::write(p, bytes).unwrap();
        }
        fn scratch(&self) -> &Path {
            self.dir.path()
        }
        async fn http_get(&self, url: &str, range: Option<&str>) -> (u16, Vec<u8>) {
            super::http_get(url, range).await
        }
    }

    pub async fn fresh() -> Option<Fresh> {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDisk::new(dir.path().join("blobs")).unwrap();
        Some(Fresh { store, dir })
    }

    patchday_content::content_conformance_tests!(fresh);
}

mod s3 {
    use super::*;
    use object_store::ObjectStoreExt;
    use patchday_content::s3::{S3Config, S3Location, S3Store};
    use patchday_lab::Requirement;

    /// A prefix of its own in the test bucket per case, removed afterwards.
    pub struct Fresh {
        store: S3Store,
        config: S3Config,
        dir: tempfile::TempDir,
    }

    #[async_trait]
    impl Harness for Fresh {
        fn store(&self) -> &dyn ContentStore {
            &self.store
        }
        fn replica(&self) -> Box<dyn ContentStore> {
            Box::new(S3Store::new(&self.config).unwrap())
        }
        async fn damage(&self, key: &str, bytes: &[u8]) {
            let raw = self.config.client().unwrap();
            let path = object_store::path::Path::from(format!(
                "{}/{}/{key}",
                self.config.location.prefix,
                &key[..2]
            ));
            raw.put(&path, bytes.to_vec().into()).await.unwrap();
        }
        fn scratch(&self) -> &Path {
            self.dir.path()
        }
        async fn http_get(&self, url: &str, range: Option<&str>) -> (u16, Vec<u8>) {
            super::http_get(url, range).await
        }
    }

    pub fn config(prefix: &str) -> Option<S3Config> {
        let server = patchday_lab::s3_server()?;
        let mut c = S3Config::new(S3Location {
            bucket: server.bucket,
            prefix: prefix.into(),
        });
        c.endpoint = Some(server.endpoint);
        c.region = Some(server.region);
        c.access_key_id = Some(server.access_key_id);
        c.secret_access_key = Some(server.secret_access_key);
        Some(c)
    }

    pub async fn fresh() -> Option<Fresh> {
        if !patchday_lab::require(Requirement::S3) {
            return None;
        }
        let prefix = format!("conformance/{:016x}", rand::random::<u64>());
        let config = config(&prefix)?;
        let store = S3Store::new(&config).unwrap();
        Some(Fresh {
            store,
            config,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    patchday_content::content_conformance_tests!(fresh);

    /// The failures an operator meets first say what they are and whether to retry.
    #[tokio::test]
    async fn bad_credentials_a_missing_bucket_and_no_endpoint_say_what_to_do() {
        use patchday_content::S3Failure;
        let Some(_) = fresh().await else { return };
        let kind = |e: patchday_content::ContentError| match e {
            patchday_content::ContentError::S3 { kind, .. } => (kind, e.to_string()),
            other => panic!("expected an object store failure, got {other}"),
        };

        let mut c = config("errors").unwrap();
        c.secret_access_key = Some("0".repeat(64));
        let (k, text) = kind(S3Store::new(&c).unwrap().ready().await.unwrap_err());
        assert_eq!(k, S3Failure::Credentials, "{text}");
        assert!(!k.is_retryable() && text.contains("credentials"), "{text}");
        assert!(
            !text.contains(&"0".repeat(64)),
            "the secret is not in the message"
        );

        let mut c = config("errors").unwrap();
        c.location.bucket = "no-such-bucket-here".into();
        let (k, text) = kind(S3Store::new(&c).unwrap().ready().await.unwrap_err());
        assert_eq!(k, S3Failure::BucketMissing, "{text}");
        assert!(text.contains("create it"), "{text}");

        let mut c = config("errors").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        c.endpoint = Some(format!("http://127.0.0.1:{port}"));
        let (k, text) = kind(S3Store::new(&c).unwrap().ready().await.unwrap_err());
        assert_eq!(k, S3Failure::Unreachable, "{text}");
        assert!(
            k.is_retryable() && text.contains("does not answer"),
            "{text}"
        );
    }

    /// Issue 12: a load balancer asks `/v1/ready` every second. The S3 store then only
    /// reads (one HEAD per call); it writes, reads back and removes its probe object on
    /// the first call and at most once per `WRITE_PROBE_EVERY` after. Counted on the wire,
    /// by a forwarding proxy on 127.0.0.1 in front of the real S3 server.
    #[tokio::test]
    async fn readiness_writes_its_probe_once_per_period_and_only_reads_between() {
        let Some(_) = fresh().await else { return };
        let server = patchday_lab::s3_server().unwrap();
        let (endpoint, requests) = counting_proxy(&server.endpoint).await;
        let mut c = config(&format!("ready/{:016x}", rand::random::<u64>())).unwrap();
        c.endpoint = Some(endpoint);
        let store = S3Store::new(&c).unwrap();
        for _ in 0..10 {
            store.ready().await.unwrap();
        }
        let seen = requests.lock().unwrap().clone();
        let count = |m: &str| seen.iter().filter(|r| r.as_str() == m).count();
        assert_eq!(count("PUT"), 1, "one probe write in ten checks: {seen:?}");
        assert_eq!(
            count("DELETE") + count("POST"),
            1,
            "one removal (a bulk delete is a POST): {seen:?}"
        );
        assert_eq!(count("HEAD"), 10, "each check reads: {seen:?}");
        assert_eq!(
            seen.len(),
            14,
            "and nothing else but one listing and one read-back: {seen:?}"
        );
        assert!(
            store.keys().await.unwrap().is_empty(),
            "no probe left behind"
        );
    }

    /// Issue 12: `POST /v1/catalog/missing` asks `holds` for every payload of a catalog;
    /// on S3 that is one HEAD each (no GET, no byte of a payload), for blobs this process
    /// never read as for absent ones. Counted on the wire.
    #[tokio::test]
    async fn holds_asks_one_head_per_blob_and_reads_no_payload() {
        let Some(h) = fresh().await else { return };
        let mut keys = Vec::new();
        for i in 0..3 {
            let (src, key) = patchday_content::conformance::source(
                &h,
                &format!("p{i}"),
                &patchday_content::conformance::pattern(10_000 + i),
            );
            h.store().put_file(&src, &key).await.unwrap();
            keys.push(key);
        }
        let server = patchday_lab::s3_server().unwrap();
        let (endpoint, requests) = counting_proxy(&server.endpoint).await;
        let mut c = h.config.clone();
        c.endpoint = Some(endpoint);
        let replica = S3Store::new(&c).unwrap();
        for k in &keys {
            assert!(replica.holds(k).await.unwrap(), "{k}");
        }
        assert!(!replica.holds(&"0".repeat(64)).await.unwrap(), "absent");
        let seen = requests.lock().unwrap().clone();
        assert_eq!(seen, vec!["HEAD"; 4], "{seen:?}");
    }

    /// A TCP forwarder to `upstream` (`http://HOST:PORT`) that records the method of each
    /// request it carries; returns its `http://127.0.0.1:PORT` and the methods.
    async fn counting_proxy(
        upstream: &str,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = tokio::net::TcpStream::connect(&target).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = upstream.into_split();
                let record = record.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 << 10];
                    let mut line = Vec::new();
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        // Request lines: `METHOD /path HTTP/1.1` at a line start.
                        for &b in &buf[..n] {
                            if b == b'\n' {
                                let text = String::from_utf8_lossy(&line);
                                let text = text.trim_end();
                                // A body without a final newline runs into the next
                                // request line: the method is the upper-case word
                                // before the path.
                                if let Some(rest) = text.strip_suffix(" HTTP/1.1") {
                                    if let Some((before, _path)) = rest.rsplit_once(' ') {
                                        let method: String = before
                                            .chars()
                                            .rev()
                                            .take_while(char::is_ascii_uppercase)
                                            .collect::<Vec<_>>()
                                            .into_iter()
                                            .rev()
                                            .collect();
                                        record.lock().unwrap().push(method);
                                    }
                                }
                                line.clear();
                            } else if line.len() < 8 << 10 {
                                line.push(b);
                            }
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut ur, &mut cw).await;
                });
            }
        });
        (url, seen)
    }
}
