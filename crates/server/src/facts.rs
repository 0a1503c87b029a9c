//! Audit facts kept once per distinct content (issue 12, point 7).
//!
//! An agent sends its facts only when their digest differs from the one its check-in
//! answer named, and names each apt suite by digest, sending a suite's content only when
//! the tenant's store lacks it (`patchday_audit::upload`). Here the upload is checked and
//! stored as parts: the host's own document (`""`) and one part per suite
//! (`suite:NAME`), each a zstd-compressed blob of the tenant's, shared by every host of
//! the tenant with the same content. Reading puts the facts together again; the fleet
//! audit reads only the documents (it needs no suites), each distinct one once.

use crate::error::{ApiError, ApiResult};
use patchday_audit::model::Facts;
use patchday_audit::upload::{self, FactsAnswer, FactsUpload, Suite};
use patchday_store::{StoreError, StoredFacts, TenantStore};
use patchday_types::HostId;
use std::collections::{BTreeMap, BTreeSet};

/// The part that holds the host's own document.
const DOCUMENT: &str = "";
/// The prefix of a suite's part.
const SUITE: &str = "suite:";
/// zstd level for stored blobs: level 3 compresses a suite ~8× at ~100 MB/s.
const LEVEL: i32 = 3;
/// Most apt suites one host may name (a host with more is misconfigured or hostile).
const MAX_SUITES: usize = 256;

/// Checks an upload, and stores it when the tenant holds (or the upload carries) every
/// suite it names; otherwise answers with the digests to send.
pub async fn save(
    tenant: &dyn TenantStore,
    host: &HostId,
    upload: FactsUpload,
    now: jiff::Timestamp,
) -> ApiResult<FactsAnswer> {
    check(&upload)?;
    let FactsUpload {
        sha256,
        facts,
        suites,
        contents,
    } = upload;
    let document = serde_json::to_vec(&facts).map_err(ApiError::internal)?;
    let document_sha256 = upload::sha256_hex(&document);
    // One question to the store: which of the document and the named suites it lacks.
    // A named suite that was not sent must be held already (else the agent sends it);
    // what it lacks of the rest is compressed and stored (a suite another host sent
    // first is not). Suites sent but not named are dropped.
    let named: BTreeSet<String> = suites.values().cloned().collect();
    let mut asked: Vec<String> = named.iter().cloned().collect();
    asked.push(document_sha256.clone());
    let lacking: BTreeSet<String> = tenant
        .missing_facts_blobs(&asked)
        .await?
        .into_iter()
        .collect();
    let missing: Vec<String> = named
        .iter()
        .filter(|d| lacking.contains(*d) && !contents.contains_key(*d))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Ok(FactsAnswer {
            stored: false,
            missing,
        });
    }
    let mut plain: Vec<(String, Vec<u8>)> = Vec::new();
    if lacking.contains(&document_sha256) {
        plain.push((document_sha256.clone(), document));
    }
    for (digest, suite) in &contents {
        if lacking.contains(digest) && named.contains(digest) {
            plain.push((digest.clone(), upload::suite_bytes(suite)));
        }
    }
    let blobs = tokio::task::spawn_blocking(move || {
        plain
            .into_iter()
            .map(|(d, bytes)| zstd::encode_all(bytes.as_slice(), LEVEL).map(|z| (d, z)))
            .collect::<std::io::Result<Vec<_>>>()
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let mut parts = BTreeMap::from([(DOCUMENT.to_string(), document_sha256)]);
    for (name, digest) in suites {
        parts.insert(format!("{SUITE}{name}"), digest);
    }
    let stored = StoredFacts {
        sha256,
        parts,
        at: now,
    };
    match tenant.save_facts(host, &stored, &blobs).await {
        Ok(()) => Ok(FactsAnswer {
            stored: true,
            missing: Vec::new(),
        }),
        // A suite held at the check above went since (no other host names it any
        // more): the agent sends it again.
        Err(StoreError::Refused(_)) => {
            let named: Vec<String> = stored
                .parts
                .iter()
                .filter(|(p, _)| p.starts_with(SUITE))
                .map(|(_, d)| d.clone())
                .collect();
            Ok(FactsAnswer {
                stored: false,
                missing: tenant.missing_facts_blobs(&named).await?,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Refuses an upload whose digests are malformed or whose suite contents do not match
/// the digests they are sent under: a suite is shared by the tenant's hosts, so a host
/// must not plant one under another content's name.
fn check(upload: &FactsUpload) -> ApiResult<()> {
    if !upload::is_sha256(&upload.sha256) {
        return Err(ApiError::bad_request(
            "facts upload: sha256 must be 64 lower-case hex digits",
        ));
    }
    if upload.suites.len() > MAX_SUITES || upload.contents.len() > MAX_SUITES {
        return Err(ApiError::bad_request(format!(
            "facts upload: more than {MAX_SUITES} apt suites; check the host's apt sources"
        )));
    }
    if !upload.facts.apt_suites.is_empty() {
        return Err(ApiError::bad_request(
            "facts upload: apt suites go in `suites` and `contents`, not inside the facts",
        ));
    }
    for (name, digest) in &upload.suites {
        if !upload::is_sha256(digest) {
            return Err(ApiError::bad_request(format!(
                "facts upload: suite {name:?} is named by a malformed digest"
            )));
        }
    }
    for (digest, suite) in &upload.contents {
        if upload::suite_sha256(suite) != *digest {
            return Err(ApiError::bad_request(format!(
                "facts upload: the content sent as suite {digest} has another digest; nothing was stored"
            )));
        }
    }
    Ok(())
}

/// A legacy upload (the whole facts, as agents before issue 12 send them) as an upload
/// that carries every suite.
pub fn from_whole(facts: Facts) -> FactsUpload {
    let (mut up, contents) = upload::split(facts);
    up.contents = contents;
    up
}

/// A host's facts put together again, or `None` when it has reported none.
pub async fn read(tenant: &dyn TenantStore, host: &HostId) -> ApiResult<Option<Facts>> {
    let Some(stored) = tenant.facts(host).await? else {
        return Ok(None);
    };
    let digests: Vec<String> = stored.parts.values().cloned().collect();
    let blobs: BTreeMap<String, Vec<u8>> =
        tenant.facts_blobs(&digests).await?.into_iter().collect();
    let blob = |digest: &String| {
        blobs.get(digest).ok_or_else(|| {
            ApiError::internal(format!("facts blob {digest} of host {host} is missing"))
        })
    };
    let document = stored
        .parts
        .get(DOCUMENT)
        .ok_or_else(|| ApiError::internal(format!("the facts of host {host} have no document")))?;
    let mut facts: Facts = decode(blob(document)?)?;
    for (part, digest) in &stored.parts {
        if let Some(name) = part.strip_prefix(SUITE) {
            let suite: Suite = decode(blob(digest)?)?;
            facts.apt_suites.insert(name.to_string(), suite);
        }
    }
    Ok(Some(facts))
}

/// Each host's facts document (without suites), each distinct document read and decoded
/// once, in batches so that memory stays bounded by a batch, not the fleet.
pub async fn documents(
    tenant: &dyn TenantStore,
    mut each: impl FnMut(&HostId, &Facts),
) -> ApiResult<()> {
    const BATCH: usize = 256;
    let all = tenant.all_facts().await?;
    for batch in all.chunks(BATCH) {
        let digests: Vec<String> = batch
            .iter()
            .filter_map(|(_, f)| f.parts.get(DOCUMENT).cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut decoded: BTreeMap<String, Facts> = BTreeMap::new();
        for (digest, bytes) in tenant.facts_blobs(&digests).await? {
            decoded.insert(digest, decode(&bytes)?);
        }
        for (host, f) in batch {
            if let Some(facts) = f.parts.get(DOCUMENT).and_then(|d| decoded.get(d)) {
                each(host, facts);
            }
        }
    }
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(blob: &[u8]) -> ApiResult<T> {
    let bytes = zstd::decode_all(blob).map_err(ApiError::internal)?;
    serde_json::from_slice(&bytes).map_err(ApiError::internal)
}
