//! What one agent's facts cost on the wire and on the server, the whole way (agents
//! before issue 12) against by parts (issue 12, point 7), for this host's real facts
//! (its dpkg status and apt lists). Used by `bench/facts.sh`.
//!
//! Usage: `facts_upload [--root DIR] [--rounds N]`

use patchday_audit::facts::{self, CollectOptions};
use patchday_audit::model::Facts;
use patchday_audit::upload::{self, FactsUpload};
use std::time::Instant;

#[allow(clippy::disallowed_methods)] // a binary edge: timing is its purpose
fn main() -> anyhow::Result<()> {
    let mut opts = CollectOptions::host();
    let mut rounds = 20u32;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--root" => opts = CollectOptions::image(args.next().unwrap_or_default()),
            "--rounds" => rounds = args.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let facts = facts::collect(&opts)?;
    let whole = serde_json::to_vec(&facts)?;
    let (mut up, contents) = upload::split(facts.clone());
    let parts_only = serde_json::to_vec(&up)?;
    up.contents = contents;
    let with_contents = serde_json::to_vec(&up)?;
    let z = |b: &[u8]| zstd::encode_all(b, 3).map(|v| v.len());
    println!(
        "facts: {} packages, {} apt suites",
        facts.packages.len(),
        facts.apt_suites.len()
    );
    println!(
        "wire bytes, whole facts (before):            {:>9}",
        whole.len()
    );
    println!(
        "wire bytes, by parts, first host (zstd):     {:>9}  ({} uncompressed)",
        z(&with_contents)?,
        with_contents.len()
    );
    println!(
        "wire bytes, by parts, suites held (zstd):    {:>9}  ({} uncompressed)",
        z(&parts_only)?,
        parts_only.len()
    );
    println!("wire bytes, unchanged facts:                 {:>9}", 0);

    // Server work per upload: before, parse the whole and serialise it again to store;
    // now, parse the upload, check each sent suite's digest, serialise and compress the
    // document (suites held: nothing else).
    let time = |f: &dyn Fn() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let start = Instant::now();
        for _ in 0..rounds {
            f()?;
        }
        Ok(start.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds))
    };
    let before = time(&|| {
        let f: Facts = serde_json::from_slice(&whole)?;
        let stored = serde_json::to_string(&f)?;
        std::hint::black_box(stored);
        Ok(())
    })?;
    let held = time(&|| {
        let u: FactsUpload = serde_json::from_slice(&parts_only)?;
        let doc = serde_json::to_vec(&u.facts)?;
        std::hint::black_box((
            upload::sha256_hex(&doc),
            zstd::encode_all(doc.as_slice(), 3)?,
        ));
        Ok(())
    })?;
    let first = time(&|| {
        let u: FactsUpload = serde_json::from_slice(&with_contents)?;
        for (d, s) in &u.contents {
            anyhow::ensure!(upload::suite_sha256(s) == *d);
            std::hint::black_box(zstd::encode_all(upload::suite_bytes(s).as_slice(), 3)?);
        }
        let doc = serde_json::to_vec(&u.facts)?;
        std::hint::black_box(zstd::encode_all(doc.as_slice(), 3)?);
        Ok(())
    })?;
    println!("server ms per upload, whole facts (before):  {before:>9.2}");
    println!("server ms per upload, by parts, first host:  {first:>9.2}");
    println!("server ms per upload, by parts, suites held: {held:>9.2}");
    println!("server ms per upload, unchanged facts:       {:>9.2}", 0.0);
    Ok(())
}
