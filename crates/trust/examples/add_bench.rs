//! Publishing cost against catalog size (issue 9, point 6): a catalog is filled to N
//! updates (each an update document and one payload), and the time to add one more update
//! (`patchday_trust::add_targets`, as `patchday catalog add-*` calls it: one more
//! signed document and payload, snapshot and timestamp) is measured at 10 updates and at
//! 10,000, as the median of several adds, with the metadata's size on disk.
//!
//! `cargo run --release -p patchday-trust --example add_bench -- [SMALL LARGE ADDS]`
//! (defaults 10 10000 9). Target (printed as PASS/FAIL): the add at LARGE takes at most
//! 1.5x the add at SMALL ("adding the 10,000th update as fast as the 10th").

use patchday_trust::{add_targets, generate_keys, init_catalog, Expiries, KeyPaths, NewTarget};
use std::path::Path;
use std::time::{Duration, Instant};

#[allow(clippy::disallowed_methods)] // a benchmark reads the clock
fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn update(files: &Path, i: usize) -> anyhow::Result<Vec<NewTarget>> {
    let id = format!("PD-BENCH-{i:05}");
    let payload = format!("libbench{i}_1.0-{}_amd64.deb", 1 + i % 3);
    let doc = files.join(format!("update-{id}.json"));
    std::fs::write(
        &doc,
        format!(r#"{{"id":"{id}","payloads":[{{"target":"{payload}"}}]}}"#),
    )?;
    let deb = files.join(&payload);
    std::fs::write(&deb, format!("payload bytes of {payload}\n"))?;
    Ok(vec![
        NewTarget {
            name: format!("update-{id}.json"),
            path: doc,
            custom: serde_json::json!({"type": "update", "id": id}),
        },
        NewTarget {
            name: payload,
            path: deb,
            custom: serde_json::json!({"type": "payload", "kind": "deb",
                "package": format!("libbench{i}"), "version": "1.0", "architecture": "amd64",
                "source": format!("bench{i}"), "release_counter": 1}),
        },
    ])
}

fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        total += e?.metadata()?.len();
    }
    Ok(total)
}

/// Fills the catalog to `n` updates (in batches), then times `adds` single adds.
async fn measure(
    keys: &KeyPaths,
    root: &Path,
    n: usize,
    adds: usize,
) -> anyhow::Result<(Duration, u64, usize)> {
    let repo = root.join(format!("catalog-{n}"));
    let files = root.join(format!("files-{n}"));
    std::fs::create_dir_all(&files)?;
    init_catalog(keys, &repo, now(), &Expiries::default()).await?;
    let mut batch = Vec::new();
    for i in 0..n.saturating_sub(1) {
        batch.extend(update(&files, i)?);
        if batch.len() >= 2000 {
            add_targets(
                keys,
                &repo,
                std::mem::take(&mut batch),
                now(),
                &Expiries::default(),
            )
            .await?;
        }
    }
    if !batch.is_empty() {
        add_targets(keys, &repo, batch, now(), &Expiries::default()).await?;
    }
    let mut times = Vec::new();
    for k in 0..adds {
        let new = update(&files, n + k)?;
        let t = Instant::now();
        add_targets(keys, &repo, new, now(), &Expiries::default()).await?;
        times.push(t.elapsed());
    }
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let meta = repo.join("metadata");
    let files_n = std::fs::read_dir(&meta)?.count();
    Ok((median, dir_bytes(&meta)?, files_n))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (small, large, adds) = (arg(1, 10), arg(2, 10_000), arg(3, 9).max(1));
    let tmp = tempfile::tempdir()?;
    let keys = generate_keys(&tmp.path().join("keys"))?;
    println!("add-bench: the {small}th and the {large}th update, median of {adds} adds each");
    let (t_small, b_small, f_small) = measure(&keys, tmp.path(), small, adds).await?;
    println!(
        "  at {small:>6} updates: {:>8.2} ms per add; metadata {} files, {:.1} KiB",
        t_small.as_secs_f64() * 1e3,
        f_small,
        b_small as f64 / 1024.0
    );
    let (t_large, b_large, f_large) = measure(&keys, tmp.path(), large, adds).await?;
    println!(
        "  at {large:>6} updates: {:>8.2} ms per add; metadata {} files, {:.1} KiB",
        t_large.as_secs_f64() * 1e3,
        f_large,
        b_large as f64 / 1024.0
    );
    let ratio = t_large.as_secs_f64() / t_small.as_secs_f64().max(1e-9);
    let pass = ratio <= 1.5;
    println!(
        "{}: the add at {large} updates takes {ratio:.2}x the add at {small} (target <= 1.5x)",
        if pass { "PASS" } else { "FAIL" }
    );
    if !pass {
        std::process::exit(1);
    }
    Ok(())
}
