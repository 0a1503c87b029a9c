//! Issue 14, points 1 and 2: the host's compliance access token and the per-request
//! proof that goes with it.
//!
//! The agent asks the server for a token (a request signed with the host key like a
//! check-in), writes it to `--access-token-file` (mode 0644: the token alone opens
//! nothing, every request also needs the host key's proof, and it names only the host,
//! its tenant and expiry), and renews it after two thirds of its lifetime. A host that
//! is not compliant gets no token: the file is removed and the server's reason printed.
//! `patchday-agent access-proof` signs one request with the host key (root only, like
//! the key) and prints the two headers a client sends.

use crate::run::AgentConfig;
use crate::state::StateDir;
use anyhow::Context;
use patchday_types::api::{AccessTokenAnswer, AccessTokenRequest};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the token goes when `--access-token-file` is not given.
pub fn default_token_file(cfg: &AgentConfig) -> PathBuf {
    cfg.state_dir.join("access-token")
}

/// What a token request ended with.
#[derive(Debug)]
pub enum Fetched {
    /// A token, written to the file.
    Token(AccessTokenAnswer),
    /// The server refused: the host is not compliant (its words); the file is removed.
    NotCompliant(String),
}

/// Asks the server for a token now and writes it to `out`.
pub async fn fetch(cfg: &AgentConfig, out: &Path) -> anyhow::Result<Fetched> {
    let state = StateDir::open(&cfg.state_dir)?;
    let id = state
        .identity()?
        .context("this agent is not enrolled: run it once with an enrolment token first")?;
    let client = crate::signed::host_client(cfg, &state, &id)?;
    let resp = client
        .post_response("v1/agent/access-token", &AccessTokenRequest {})
        .await?;
    if resp.status() == reqwest::StatusCode::FORBIDDEN {
        // A refusal decodes to an error carrying the server's words.
        let why = match crate::client::decode_capped::<serde_json::Value>(resp, 64 << 10).await {
            Err(e) => format!("{e:#}"),
            Ok(v) => format!("server refused (403): {v}"),
        };
        // A token of a host that lapsed must not linger for local clients to send.
        match std::fs::remove_file(out) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", out.display())),
        }
        return Ok(Fetched::NotCompliant(why));
    }
    let answer: AccessTokenAnswer = crate::client::decode(resp).await?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::state::write_atomic(out, format!("{}\n", answer.token).as_bytes(), 0o644)?;
    Ok(Fetched::Token(answer))
}

/// When to renew a token of this lifetime: after two thirds of it (at least a second).
pub fn renew_after(lifetime_seconds: u64) -> Duration {
    Duration::from_secs((lifetime_seconds.saturating_mul(2) / 3).max(1))
}

/// Keeps the token file current until the process ends (the daemon's companion task).
pub async fn keep_fresh(cfg: AgentConfig, out: PathBuf, retry: Duration) {
    loop {
        let pause = match fetch(&cfg, &out).await {
            Ok(Fetched::Token(a)) => {
                println!("access token renewed, valid until {}", a.expires_at);
                renew_after(a.lifetime_seconds)
            }
            Ok(Fetched::NotCompliant(why)) => {
                println!("no access token: {why}");
                retry
            }
            Err(e) => {
                // The old token stays: it expires by itself, and gates ask the server.
                eprintln!("error: renewing the access token: {e:#}");
                retry
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// The two headers for one request to `url` with `method`, signed now: `Authorization`
/// with the token read from `token_file` (`-`: standard input), and `Patchday-Proof`.
pub fn proof_headers(
    cfg: &AgentConfig,
    method: &str,
    url: &str,
    token_file: &Path,
) -> anyhow::Result<String> {
    let token = if token_file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
            .context("reading the token from standard input")?
    } else {
        std::fs::read_to_string(token_file).with_context(|| {
            format!(
                "reading the access token {}: does the host have one? (`patchday-agent access-token` says why not)",
                token_file.display()
            )
        })?
    };
    let token = token.trim();
    let url = url::Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
    let host = url.host_str().context("the URL has no host")?;
    // What the client sends as `Host`: the port only when it is not the scheme's own.
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let path_and_query = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let key = StateDir::open(&cfg.state_dir)?.host_key()?;
    let proof = patchday_trust::access::sign_proof(
        &key,
        &patchday_trust::access::ProofTarget {
            method,
            authority: &authority,
            path_and_query: &path_and_query,
        },
        token,
        crate::run::clock_now(),
    );
    Ok(format!(
        "Authorization: Bearer {token}\nPatchday-Proof: {proof}\n"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_renewed_after_two_thirds_of_their_life() {
        assert_eq!(super::renew_after(600).as_secs(), 400);
        assert_eq!(super::renew_after(1).as_secs(), 1);
    }
}
