//! Compliance access tokens (issue 14, points 1 and 2): what a compliant host carries to a
//! gate, and how a gate checks it offline.
//!
//! A token is a JWT (RFC 7519) signed with `EdDSA` (Ed25519) by the server's access key
//! (`DATA/access/ed25519.pk8`, apart from the director key). JWT rather than PASETO: the
//! proxies in front of web applications (Envoy's `jwt_authn`, nginx modules, API
//! gateways) verify JWTs against a JWKS natively, so a site can check our tokens without
//! Patchday code; the `jsonwebtoken` crate signs and verifies them, with the workspace's
//! aws-lc-rs underneath.
//!
//! The token names the host (`sub`), its tenant, and, in a `cnf` claim (RFC 7800), the
//! host's own ed25519 key from its enrolment (as a JWK and its RFC 7638 thumbprint). A
//! request to a gate carries the token and a proof: a signature by that host key over the
//! request's method, authority, path and query, the time, and the token's hash
//! ([`proof_message`]). So a token copied off a host is worthless elsewhere: whoever
//! replays it cannot sign the proof. Each proof also carries a random nonce, and a gate
//! admits a proof once ([`ReplayCache`]), so a request captured in flight cannot be
//! replayed within the proof's window either.
//!
//! Everything here is pure: times are parameters, no HTTP, no clock.

use crate::host_signature::HostKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The token's `iss`.
pub const ISSUER: &str = "patchday";
/// The token's JOSE `typ` header: an access token of Patchday, nothing else.
pub const TOKEN_TYPE: &str = "patchday-access+jwt";
/// The request header carrying the proof of possession.
pub const PROOF_HEADER: &str = "patchday-proof";
/// First line of every proof message (domain separation from host request signatures;
/// `/2`: the message carries a nonce, and proofs without one are refused).
pub const PROOF_CONTEXT: &str = "patchday-access-proof/2";
/// How far a proof's time may be from the gate's clock when none is configured.
pub const DEFAULT_PROOF_WINDOW: SignedDuration = SignedDuration::from_secs(60);

pub use patchday_types::api::{Jwk as PublicJwk, JwkSet as KeySet};

/// The JWK of a raw 32-byte Ed25519 key.
pub fn jwk_ed25519(raw: &[u8]) -> PublicJwk {
    PublicJwk {
        kty: "OKP".into(),
        crv: "Ed25519".into(),
        x: URL_SAFE_NO_PAD.encode(raw),
        kid: None,
        alg: None,
        use_: None,
    }
}

/// The JWK of a host's public key as the server stores it (hex).
pub fn jwk_from_host_hex(public_hex: &str) -> Result<PublicJwk, AccessError> {
    crate::host_signature::check_public_key(public_hex)
        .map_err(|e| AccessError::HostKey(e.to_string()))?;
    let raw = hex::decode(public_hex).map_err(|e| AccessError::HostKey(e.to_string()))?;
    Ok(jwk_ed25519(&raw))
}

/// RFC 7638 thumbprint: sha256 of the required members in lexical order, base64url.
pub fn thumbprint(jwk: &PublicJwk) -> String {
    let canonical = format!(
        r#"{{"crv":"{}","kty":"{}","x":"{}"}}"#,
        jwk.crv, jwk.kty, jwk.x
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The raw key bytes, when `jwk` is an Ed25519 JWK.
fn jwk_raw(jwk: &PublicJwk) -> Option<Vec<u8>> {
    if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
        return None;
    }
    URL_SAFE_NO_PAD
        .decode(&jwk.x)
        .ok()
        .filter(|b| b.len() == 32)
}

/// The `cnf` claim: the host key a request must prove it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 7638 thumbprint of `jwk`.
    pub jkt: String,
    /// The host's ed25519 key from its enrolment.
    pub jwk: PublicJwk,
}

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Always [`ISSUER`].
    pub iss: String,
    /// The host's id.
    pub sub: String,
    /// The host's tenant.
    pub tenant: String,
    /// The host's name (for logs and reason pages; not trusted for anything).
    pub hostname: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires.
    pub exp: i64,
    /// A random id of this token (for logs).
    pub jti: String,
    /// The host's compliance when the token was issued (`up-to-date`, `approved-pending`, ...).
    pub compliance: String,
    /// The host key a request must prove.
    pub cnf: Confirmation,
}

/// Why a key could not be made or loaded, or a token not be made.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The access key file is missing, unreadable, readable by others, or not ed25519.
    #[error("access token key {path}: {detail}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The host's stored public key is not an ed25519 key.
    #[error("the host's public key is malformed ({0}); re-enrol the host")]
    HostKey(String),
    /// Signing failed.
    #[error("cannot sign the access token: {0}")]
    Sign(String),
}

/// The server's token signing key. Never printed.
pub struct AccessKey {
    der: Vec<u8>,
    public: PublicJwk,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl AccessKey {
    /// Loads the key at `path` (0600, PKCS#8 ed25519), making it on first use. Uses the
    /// host key's file handling: written 0600 through a temporary file, and refused when
    /// others may read it.
    pub fn load_or_create(path: &Path) -> Result<AccessKey, AccessError> {
        let err = |detail: String| AccessError::Key {
            path: path.to_path_buf(),
            detail,
        };
        let key = if path.exists() {
            HostKey::load(path).map_err(|e| err(e.to_string()))?
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| err(format!("cannot create its directory: {e}")))?;
            }
            HostKey::generate(path).map_err(|e| err(e.to_string()))?
        };
        let der = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let mut public = jwk_ed25519(&key.public_bytes());
        public.kid = Some(thumbprint(&public));
        public.alg = Some("EdDSA".into());
        public.use_ = Some("sig".into());
        Ok(AccessKey { der, public })
    }

    /// The public half, as served to gates.
    pub fn public(&self) -> &PublicJwk {
        &self.public
    }

    /// Signs `claims` into a compact JWT.
    pub fn issue(&self, claims: &AccessClaims) -> Result<String, AccessError> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = self.public.kid.clone();
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ed_der(&self.der),
        )
        .map_err(|e| AccessError::Sign(e.to_string()))
    }
}

/// Why a gate refuses a request. Each is one check; the text is what the reason page
/// shows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No token.
    #[error("no access token: the request must carry `Authorization: Bearer TOKEN` from a compliant host's Patchday agent (--access-token-file)")]
    Missing,
    /// Not a JWT of ours.
    #[error("the access token is malformed: {0}")]
    Malformed(String),
    /// Signed by a key the gate does not know.
    #[error("the access token is signed by key {kid}, which this gate does not know: it is from another Patchday server, or the server's access key changed (restart the gate)")]
    UnknownKey {
        /// The token's `kid`.
        kid: String,
    },
    /// The signature does not verify.
    #[error("the access token's signature does not verify: it was altered or forged")]
    BadSignature,
    /// Past `exp`.
    #[error("the access token expired at {at}: the host's agent renews it while the host is compliant; a host that stopped getting tokens fell out of compliance or lost its server")]
    Expired {
        /// When it expired.
        at: Timestamp,
    },
    /// Before `nbf`.
    #[error("the access token is not valid before {at} (a clock ahead on the server, or behind on the gate)")]
    NotYetValid {
        /// When it becomes valid.
        at: Timestamp,
    },
    /// Another tenant's host.
    #[error("the access token belongs to a host of tenant {token}; this gate admits hosts of tenant {gate}")]
    WrongTenant {
        /// The token's tenant.
        token: String,
        /// The gate's.
        gate: String,
    },
    /// No proof of possession.
    #[error("no proof of possession: the request must carry a `Patchday-Proof` header signed with the host's key (`patchday-agent access-proof`); a token alone proves nothing")]
    NoProof,
    /// A proof header that cannot be read.
    #[error("the proof of possession is malformed: {0}")]
    ProofMalformed(String),
    /// A proof made too long ago, or in the future.
    #[error("the proof of possession was made at {at}, more than {window} from the gate's time: sign each request anew (or check the host's clock)")]
    ProofStale {
        /// The proof's time.
        at: Timestamp,
        /// The window.
        window: String,
    },
    /// The proof is not the token's host key over this request.
    #[error("the proof of possession is not signed by the host key the token names: the token was replayed from another host, or the request differs from the one signed")]
    ProofMismatch,
    /// This proof (its host key and nonce) was admitted before within its window.
    #[error("this proof of possession was used already: a captured request cannot be replayed; sign each request anew (`patchday-agent access-proof`)")]
    ProofReplayed,
    /// The gate remembers as many proofs as it may within the window.
    #[error("the gate has admitted {capacity} proofs within the proof window and remembers no more until they expire; try again in a moment (or raise the gate's --proof-cache)")]
    ReplayCacheFull {
        /// The cache's capacity.
        capacity: usize,
    },
}

impl Refusal {
    /// A short machine-readable name (the `error` of `WWW-Authenticate`, logs, tests).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing-token",
            Refusal::Malformed(_) => "malformed-token",
            Refusal::UnknownKey { .. } => "unknown-key",
            Refusal::BadSignature => "bad-signature",
            Refusal::Expired { .. } => "expired",
            Refusal::NotYetValid { .. } => "not-yet-valid",
            Refusal::WrongTenant { .. } => "wrong-tenant",
            Refusal::NoProof => "missing-proof",
            Refusal::ProofMalformed(_) => "malformed-proof",
            Refusal::ProofStale { .. } => "stale-proof",
            Refusal::ProofMismatch => "proof-mismatch",
            Refusal::ProofReplayed => "proof-replayed",
            Refusal::ReplayCacheFull { .. } => "proof-cache-full",
        }
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap_or(Timestamp::MIN)
}

/// Verifies a token's signature against `keys`, its issuer and type, its validity at
/// `now` and its tenant; the claims when all hold.
pub fn verify_token(
    token: &str,
    keys: &KeySet,
    tenant: &str,
    now: Timestamp,
) -> Result<AccessClaims, Refusal> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if header.alg != jsonwebtoken::Algorithm::EdDSA {
        return Err(Refusal::Malformed(format!(
            "algorithm {:?}, expected EdDSA",
            header.alg
        )));
    }
    if header.typ.as_deref() != Some(TOKEN_TYPE) {
        return Err(Refusal::Malformed(format!(
            "type {:?}, expected {TOKEN_TYPE}",
            header.typ.unwrap_or_default()
        )));
    }
    let kid = header.kid.unwrap_or_default();
    let key = keys
        .keys
        .iter()
        .find(|k| k.kid.as_deref() == Some(kid.as_str()))
        .ok_or_else(|| Refusal::UnknownKey { kid: kid.clone() })?;
    let decoding = jsonwebtoken::DecodingKey::from_ed_components(&key.x)
        .map_err(|e| Refusal::Malformed(format!("the gate's key {kid}: {e}")))?;
    // Time is ours to check (with `now`), not the library's clock.
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = Default::default();
    validation.set_issuer(&[ISSUER]);
    let data =
        jsonwebtoken::decode::<AccessClaims>(token, &decoding, &validation).map_err(|e| match e
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => Refusal::BadSignature,
            _ => Refusal::Malformed(e.to_string()),
        })?;
    let claims = data.claims;
    let now_s = now.as_second();
    if now_s >= claims.exp {
        return Err(Refusal::Expired { at: at(claims.exp) });
    }
    if now_s < claims.nbf {
        return Err(Refusal::NotYetValid { at: at(claims.nbf) });
    }
    if claims.tenant != tenant {
        return Err(Refusal::WrongTenant {
            token: claims.tenant,
            gate: tenant.to_string(),
        });
    }
    if thumbprint(&claims.cnf.jwk) != claims.cnf.jkt || jwk_raw(&claims.cnf.jwk).is_none() {
        return Err(Refusal::Malformed(
            "its cnf key and thumbprint disagree".into(),
        ));
    }
    Ok(claims)
}

/// The request a proof is about, as the client sent it.
#[derive(Clone, Copy, Debug)]
pub struct ProofTarget<'a> {
    /// `GET`, `POST`, ... (compared upper-case).
    pub method: &'a str,
    /// The `Host` the client sent (`app.example`, `127.0.0.1:8080`; compared lower-case).
    pub authority: &'a str,
    /// Path and query as sent (`/reports?q=1`).
    pub path_and_query: &'a str,
}

/// The bytes a host signs for one request: context, method, authority, path and query,
/// the time (seconds), the nonce and the sha256 of the token, one per line.
pub fn proof_message(target: &ProofTarget<'_>, time: i64, nonce: &str, token: &str) -> Vec<u8> {
    format!(
        "{PROOF_CONTEXT}\n{}\n{}\n{}\n{time}\n{nonce}\n{}",
        target.method.to_ascii_uppercase(),
        target.authority.to_ascii_lowercase(),
        target.path_and_query,
        hex::encode(Sha256::digest(token.as_bytes()))
    )
    .into_bytes()
}

/// Bytes of randomness in a proof's nonce.
const NONCE_BYTES: usize = 16;

/// The `Patchday-Proof` header value for one request, with a fresh random nonce:
/// `t=SECONDS,n=NONCE,sig=BASE64URL`.
pub fn sign_proof(key: &HostKey, target: &ProofTarget<'_>, token: &str, now: Timestamp) -> String {
    let mut raw = [0u8; NONCE_BYTES];
    // The system's randomness failing is not survivable for a signer; an all-zero nonce
    // would only make the gate refuse the second use, never admit a replay.
    let _ = aws_lc_rs::rand::fill(&mut raw);
    sign_proof_with_nonce(key, target, token, now, &URL_SAFE_NO_PAD.encode(raw))
}

/// [`sign_proof`] with a given nonce (tests, and clients with their own randomness).
pub fn sign_proof_with_nonce(
    key: &HostKey,
    target: &ProofTarget<'_>,
    token: &str,
    now: Timestamp,
    nonce: &str,
) -> String {
    let t = now.as_second();
    let sig = key.sign_bytes(&proof_message(target, t, nonce, token));
    format!("t={t},n={nonce},sig={}", URL_SAFE_NO_PAD.encode(sig))
}

/// A verified proof, as a gate remembers it: when it was made and what identifies it
/// (the sha256 of the host key's thumbprint and the nonce).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofId {
    /// The proof's time (seconds).
    pub time: i64,
    /// sha256(thumbprint, nonce).
    pub key: [u8; 32],
}

fn nonce_ok(n: &str) -> bool {
    (16..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a proof header against the token's `cnf` key, this request and `now`; what
/// identifies the proof, for the gate's [`ReplayCache`].
pub fn verify_proof(
    header: Option<&str>,
    claims: &AccessClaims,
    target: &ProofTarget<'_>,
    token: &str,
    now: Timestamp,
    window: SignedDuration,
) -> Result<ProofId, Refusal> {
    let header = header.ok_or(Refusal::NoProof)?;
    let mut t = None;
    let mut nonce = None;
    let mut sig = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.trim().parse::<i64>().ok(),
            Some(("n", v)) => nonce = Some(v.trim().to_string()).filter(|n| nonce_ok(n)),
            Some(("sig", v)) => sig = URL_SAFE_NO_PAD.decode(v.trim()).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(nonce), Some(sig)) = (t, nonce, sig) else {
        return Err(Refusal::ProofMalformed(
            "expected t=SECONDS,n=NONCE,sig=BASE64URL (a nonce of 16 to 64 base64url characters; an agent from before nonces must be updated)".into(),
        ));
    };
    let skew = now.as_second().saturating_sub(t).saturating_abs();
    if skew > window.as_secs() {
        return Err(Refusal::ProofStale {
            at: at(t),
            window: format!("{}s", window.as_secs()),
        });
    }
    let raw = jwk_raw(&claims.cnf.jwk).ok_or(Refusal::ProofMismatch)?;
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, &raw)
        .verify(&proof_message(target, t, &nonce, token), &sig)
        .map_err(|_| Refusal::ProofMismatch)?;
    let mut h = Sha256::new();
    h.update(claims.cnf.jkt.as_bytes());
    h.update(b"\n");
    h.update(nonce.as_bytes());
    Ok(ProofId {
        time: t,
        key: h.finalize().into(),
    })
}

/// The proofs a gate admitted, each remembered until its window is over (a proof is
/// refused after that anyway), at most `capacity` at once: memory is bounded by the
/// capacity, and past it proofs are refused ([`Refusal::ReplayCacheFull`]) rather than
/// forgotten early, which would let a replay through.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    /// Proof key → the second after which it is forgotten.
    seen: std::collections::HashMap<[u8; 32], i64>,
    /// (forget after, key), oldest first.
    expiry: std::collections::BTreeSet<(i64, [u8; 32])>,
}

impl ReplayCache {
    /// An empty cache for at most `capacity` proofs.
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity: capacity.max(1),
            seen: std::collections::HashMap::new(),
            expiry: std::collections::BTreeSet::new(),
        }
    }

    /// How many proofs are remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Admits a proof once within `window` of its time: forgets the proofs whose window
    /// ended before `now`, then refuses one seen before, or any when full.
    pub fn admit(
        &mut self,
        proof: &ProofId,
        now: Timestamp,
        window: SignedDuration,
    ) -> Result<(), Refusal> {
        let now_s = now.as_second();
        while let Some(&(until, key)) = self.expiry.first() {
            if until >= now_s {
                break;
            }
            self.expiry.pop_first();
            self.seen.remove(&key);
        }
        if self.seen.contains_key(&proof.key) {
            return Err(Refusal::ProofReplayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(Refusal::ReplayCacheFull {
                capacity: self.capacity,
            });
        }
        let until = proof.time.saturating_add(window.as_secs());
        self.seen.insert(proof.key, until);
        self.expiry.insert((until, proof.key));
        Ok(())
    }
}

/// The whole offline check of one request: token (signature, type, issuer, time,
/// tenant), then the proof that the sender holds the token's host key; the claims and
/// what identifies the proof (for a [`ReplayCache`]).
pub fn authorize(
    authorization: Option<&str>,
    proof: Option<&str>,
    target: &ProofTarget<'_>,
    keys: &KeySet,
    tenant: &str,
    now: Timestamp,
    window: SignedDuration,
) -> Result<(AccessClaims, ProofId), Refusal> {
    let token = authorization
        .and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or(Refusal::Missing)?;
    let claims = verify_token(token, keys, tenant, now)?;
    let id = verify_proof(proof, &claims, target, token, now, window)?;
    Ok((claims, id))
}

/// The claims for a host's token, issued at `now` for `lifetime`.
#[allow(clippy::too_many_arguments)] // each is one claim; a struct would only rename them
pub fn claims_for(
    host: &str,
    hostname: &str,
    tenant: &str,
    host_public_hex: &str,
    compliance: &str,
    now: Timestamp,
    lifetime: SignedDuration,
    jti: String,
) -> Result<AccessClaims, AccessError> {
    let jwk = jwk_from_host_hex(host_public_hex)?;
    let iat = now.as_second();
    Ok(AccessClaims {
        iss: ISSUER.into(),
        sub: host.into(),
        tenant: tenant.into(),
        hostname: hostname.into(),
        iat,
        nbf: iat,
        exp: iat.saturating_add(lifetime.as_secs()),
        jti,
        compliance: compliance.into(),
        cnf: Confirmation {
            jkt: thumbprint(&jwk),
            jwk,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const NOW: i64 = 1_796_000_000;

    fn now() -> Timestamp {
        Timestamp::from_second(NOW).unwrap()
    }

    struct World {
        _dir: tempfile::TempDir,
        server: AccessKey,
        host: HostKey,
        other_host: HostKey,
        keys: KeySet,
    }

    fn world() -> World {
        let d = tempfile::tempdir().unwrap();
        let server = AccessKey::load_or_create(&d.path().join("access/ed25519.pk8")).unwrap();
        let host = HostKey::generate(&d.path().join("host.pk8")).unwrap();
        let other_host = HostKey::generate(&d.path().join("other.pk8")).unwrap();
        let keys = KeySet {
            keys: vec![server.public().clone()],
        };
        World {
            _dir: d,
            server,
            host,
            other_host,
            keys,
        }
    }

    fn token(w: &World, host: &HostKey, tenant: &str, lifetime: i64) -> String {
        let c = claims_for(
            "web-1-ab12",
            "web-1",
            tenant,
            &host.public_hex(),
            "up-to-date",
            now(),
            SignedDuration::from_secs(lifetime),
            "j1".into(),
        )
        .unwrap();
        w.server.issue(&c).unwrap()
    }

    const TARGET: ProofTarget<'static> = ProofTarget {
        method: "GET",
        authority: "app.example:8080",
        path_and_query: "/reports?q=1",
    };

    fn check(
        w: &World,
        token: &str,
        proof: Option<&str>,
        at: Timestamp,
    ) -> Result<AccessClaims, Refusal> {
        authorize(
            Some(&format!("Bearer {token}")),
            proof,
            &TARGET,
            &w.keys,
            "acme",
            at,
            DEFAULT_PROOF_WINDOW,
        )
        .map(|(c, _)| c)
    }

    #[test]
    fn a_compliant_hosts_token_with_its_own_proof_is_accepted() {
        let w = world();
        let t = token(&w, &w.host, "acme", 600);
        let proof = sign_proof(&w.host, &TARGET, &t, now());
        let c = check(&w, &t, Some(&proof), now() + SignedDuration::from_secs(30)).unwrap();
        assert_eq!(c.sub, "web-1-ab12");
        assert_eq!(c.cnf.jwk, jwk_from_host_hex(&w.host.public_hex()).unwrap());
        // The key loads again from its file, the same key.
        let again = AccessKey::load_or_create(&w._dir.path().join("access/ed25519.pk8")).unwrap();
        assert_eq!(again.public(), w.server.public());
        assert!(!format!("{again:?}").contains("der"));
    }

    #[test]
    fn a_token_replayed_from_another_host_fails_proof_of_possession() {
        let w = world();
        let t = token(&w, &w.host, "acme", 600);
        // The thief has the token but only its own key.
        let proof = sign_proof(&w.other_host, &TARGET, &t, now());
        assert_eq!(
            check(&w, &t, Some(&proof), now()),
            Err(Refusal::ProofMismatch)
        );
        assert_eq!(check(&w, &t, None, now()), Err(Refusal::NoProof));
    }

    #[test]
    fn a_proof_for_another_request_or_token_or_too_old_is_refused() {
        let w = world();
        let t = token(&w, &w.host, "acme", 600);
        let other = ProofTarget {
            path_and_query: "/admin",
            ..TARGET
        };
        let proof = sign_proof(&w.host, &other, &t, now());
        assert_eq!(
            check(&w, &t, Some(&proof), now()),
            Err(Refusal::ProofMismatch)
        );
        let t2 = token(&w, &w.host, "acme", 601);
        let proof = sign_proof(&w.host, &TARGET, &t2, now());
        assert_eq!(
            check(&w, &t, Some(&proof), now()),
            Err(Refusal::ProofMismatch)
        );
        let proof = sign_proof(&w.host, &TARGET, &t, now());
        assert!(matches!(
            check(&w, &t, Some(&proof), now() + SignedDuration::from_secs(61)),
            Err(Refusal::ProofStale { .. })
        ));
        assert!(matches!(
            check(&w, &t, Some("t=1"), now()),
            Err(Refusal::ProofMalformed(_))
        ));
        // The format before nonces (t and sig only) is refused, saying why.
        let old = proof.replace(&format!(",n={}", proof_nonce(&proof)), "");
        assert!(matches!(
            check(&w, &t, Some(&old), now()),
            Err(Refusal::ProofMalformed(m)) if m.contains("nonce")
        ));
        // A nonce changed after signing: the signature covers it.
        let other_nonce = proof.replace(proof_nonce(&proof), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(
            check(&w, &t, Some(&other_nonce), now()),
            Err(Refusal::ProofMismatch)
        );
    }

    fn proof_nonce(proof: &str) -> &str {
        proof.split(',').find_map(|p| p.strip_prefix("n=")).unwrap()
    }

    fn admitted(w: &World, token: &str, proof: &str, at: Timestamp) -> ProofId {
        authorize(
            Some(&format!("Bearer {token}")),
            Some(proof),
            &TARGET,
            &w.keys,
            "acme",
            at,
            DEFAULT_PROOF_WINDOW,
        )
        .unwrap()
        .1
    }

    #[test]
    fn a_captured_request_replayed_within_its_window_is_refused() {
        let w = world();
        let t = token(&w, &w.host, "acme", 600);
        let mut cache = ReplayCache::new(10);
        let proof = sign_proof(&w.host, &TARGET, &t, now());
        let id = admitted(&w, &t, &proof, now());
        assert_eq!(cache.admit(&id, now(), DEFAULT_PROOF_WINDOW), Ok(()));
        // The same headers again, a second later and at the window's last second.
        let again = admitted(&w, &t, &proof, now() + SignedDuration::from_secs(1));
        assert_eq!(
            cache.admit(
                &again,
                now() + SignedDuration::from_secs(1),
                DEFAULT_PROOF_WINDOW
            ),
            Err(Refusal::ProofReplayed)
        );
        assert_eq!(
            cache.admit(
                &again,
                now() + SignedDuration::from_secs(60),
                DEFAULT_PROOF_WINDOW
            ),
            Err(Refusal::ProofReplayed)
        );
        // A new proof of the same request (a new nonce) is a new request.
        let fresh = sign_proof(&w.host, &TARGET, &t, now());
        assert_ne!(fresh, proof);
        let fresh = admitted(&w, &t, &fresh, now());
        assert_eq!(cache.admit(&fresh, now(), DEFAULT_PROOF_WINDOW), Ok(()));
        // After its window the proof is refused as stale before the cache is asked, and the
        // cache forgets it: memory follows the window.
        let late = now() + SignedDuration::from_secs(61);
        assert!(matches!(
            check(&w, &t, Some(&proof), late),
            Err(Refusal::ProofStale { .. })
        ));
        let other = sign_proof(&w.host, &TARGET, &t, late);
        let other = admitted(&w, &t, &other, late);
        assert_eq!(cache.admit(&other, late, DEFAULT_PROOF_WINDOW), Ok(()));
        assert_eq!(cache.len(), 1, "the two old proofs were forgotten");
    }

    #[test]
    fn a_full_replay_cache_refuses_rather_than_forgets() {
        let w = world();
        let t = token(&w, &w.host, "acme", 600);
        let mut cache = ReplayCache::new(2);
        for n in ["nonce-number-0001", "nonce-number-0002"] {
            let p = sign_proof_with_nonce(&w.host, &TARGET, &t, now(), n);
            let id = admitted(&w, &t, &p, now());
            assert_eq!(cache.admit(&id, now(), DEFAULT_PROOF_WINDOW), Ok(()));
        }
        let p = sign_proof_with_nonce(&w.host, &TARGET, &t, now(), "nonce-number-0003");
        let id = admitted(&w, &t, &p, now());
        assert_eq!(
            cache.admit(&id, now(), DEFAULT_PROOF_WINDOW),
            Err(Refusal::ReplayCacheFull { capacity: 2 })
        );
        // Once the window of the remembered ones is over, there is room again.
        let later = now() + SignedDuration::from_secs(61);
        let p = sign_proof_with_nonce(&w.host, &TARGET, &t, later, "nonce-number-0003");
        let id = admitted(&w, &t, &p, later);
        assert_eq!(cache.admit(&id, later, DEFAULT_PROOF_WINDOW), Ok(()));
        // Another host's proof with the same nonce is another proof.
        let t2 = token(&w, &w.other_host, "acme", 600);
        let p = sign_proof_with_nonce(&w.other_host, &TARGET, &t2, later, "nonce-number-0003");
        let id2 = admitted(&w, &t2, &p, later);
        assert_ne!(id.key, id2.key);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let w = world();
        let t = token(&w, &w.host, "acme", 60);
        let later = now() + SignedDuration::from_secs(60);
        let proof = sign_proof(&w.host, &TARGET, &t, later);
        assert!(matches!(
            check(&w, &t, Some(&proof), later),
            Err(Refusal::Expired { .. })
        ));
    }

    #[test]
    fn another_tenants_token_is_refused() {
        let w = world();
        let t = token(&w, &w.host, "globex", 600);
        let proof = sign_proof(&w.host, &TARGET, &t, now());
        assert_eq!(
            check(&w, &t, Some(&proof), now()),
            Err(Refusal::WrongTenant {
                token: "globex".into(),
                gate: "acme".into()
            })
        );
    }

    #[test]
    fn forged_altered_and_foreign_tokens_are_refused() {
        let w = world();
        let t = token(&w, &w.host, "acme", 600);
        // Another server's key (a forger's): unknown to the gate.
        let d = tempfile::tempdir().unwrap();
        let forger = AccessKey::load_or_create(&d.path().join("k.pk8")).unwrap();
        let c = claims_for(
            "web-1-ab12",
            "web-1",
            "acme",
            &w.host.public_hex(),
            "up-to-date",
            now(),
            SignedDuration::from_secs(600),
            "x".into(),
        )
        .unwrap();
        let forged = forger.issue(&c).unwrap();
        let proof = sign_proof(&w.host, &TARGET, &forged, now());
        assert!(matches!(
            check(&w, &forged, Some(&proof), now()),
            Err(Refusal::UnknownKey { .. })
        ));
        // The same, claiming the real key's id: the signature fails.
        let mut parts: Vec<String> = forged.split('.').map(String::from).collect();
        let real_header = t.split('.').next().unwrap().to_string();
        parts[0] = real_header;
        let relabelled = parts.join(".");
        let proof = sign_proof(&w.host, &TARGET, &relabelled, now());
        assert_eq!(
            check(&w, &relabelled, Some(&proof), now()),
            Err(Refusal::BadSignature)
        );
        // Claims altered after signing (another tenant).
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["exp"] = serde_json::json!(NOW + 999_999);
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let altered = parts.join(".");
        let proof = sign_proof(&w.host, &TARGET, &altered, now());
        assert_eq!(
            check(&w, &altered, Some(&proof), now()),
            Err(Refusal::BadSignature)
        );
        // No token, not a bearer token, garbage.
        assert_eq!(
            authorize(
                None,
                None,
                &TARGET,
                &w.keys,
                "acme",
                now(),
                DEFAULT_PROOF_WINDOW
            )
            .map(|(c, _)| c),
            Err(Refusal::Missing)
        );
        assert_eq!(
            authorize(
                Some("Basic abc"),
                None,
                &TARGET,
                &w.keys,
                "acme",
                now(),
                DEFAULT_PROOF_WINDOW
            )
            .map(|(c, _)| c),
            Err(Refusal::Missing)
        );
        assert!(matches!(
            check(&w, "a.b.c", None, now()),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn thumbprint_follows_rfc_7638() {
        // RFC 8037, appendix A.3: the thumbprint of the example Ed25519 key.
        let jwk = PublicJwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
            kid: None,
            alg: None,
            use_: None,
        };
        assert_eq!(
            thumbprint(&jwk),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
