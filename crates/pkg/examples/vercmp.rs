//! Benchmark driver for `bench/versions.sh`: reads version pairs (`A<TAB>B` per line)
//! from stdin and compares them.
//!
//! ```text
//! vercmp deb [--dpkg] < pairs.tsv   # our ordering, timed; --dpkg: check each pair with dpkg
//! vercmp rpm < pairs.tsv            # prints A<TAB>B<TAB>-1|0|1 for comparison with librpm
//! ```

use patchday_pkg::version::{compare_deb, compare_rpm};
use std::cmp::Ordering;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn read_pairs() -> Vec<(String, String)> {
    std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| {
            let (a, b) = l.split_once('\t')?;
            Some((a.to_string(), b.to_string()))
        })
        .collect()
}

fn sign(o: Ordering) -> i32 {
    o as i32
}

/// Runs `f` over all pairs repeatedly for at least `min` and returns ns per comparison.
fn ns_per_cmp(
    pairs: &[(String, String)],
    min: Duration,
    mut f: impl FnMut(&str, &str) -> i32,
) -> f64 {
    let start = Instant::now();
    let mut rounds = 0u64;
    let mut sink = 0i64;
    while start.elapsed() < min || rounds == 0 {
        for (a, b) in pairs {
            sink += i64::from(f(std::hint::black_box(a), std::hint::black_box(b)));
        }
        rounds += 1;
    }
    std::hint::black_box(sink);
    start.elapsed().as_nanos() as f64 / (rounds as f64 * pairs.len() as f64)
}

fn dpkg(a: &str, op: &str, b: &str) -> i32 {
    Command::new("dpkg")
        .args(["--compare-versions", a, op, b])
        .stderr(Stdio::null())
        .status()
        .ok()
        .and_then(|s| s.code())
        .unwrap_or(-1)
}

/// dpkg's full answer for a pair: "<", "=", ">" or "error".
fn dpkg_answer(a: &str, b: &str) -> &'static str {
    match dpkg(a, "lt", b) {
        0 => "<",
        2 => "error",
        _ if dpkg(a, "eq", b) == 0 => "=",
        _ => ">",
    }
}

fn ours_answer(r: &Result<Ordering, patchday_pkg::PkgError>) -> &'static str {
    match r {
        Ok(Ordering::Less) => "<",
        Ok(Ordering::Equal) => "=",
        Ok(Ordering::Greater) => ">",
        Err(_) => "error",
    }
}

fn deb(pairs: &[(String, String)], check_dpkg: bool) {
    let ours_ns = ns_per_cmp(pairs, Duration::from_secs(1), |a, b| {
        compare_deb(a, b).map_or(2, sign)
    });
    // The crate the brief suggested, on the pairs it can parse, for a speed reference.
    let parsable: Vec<(String, String)> = pairs
        .iter()
        .filter(|(a, b)| {
            a.parse::<debversion::Version>().is_ok() && b.parse::<debversion::Version>().is_ok()
        })
        .cloned()
        .collect();
    let debversion_ns = ns_per_cmp(&parsable, Duration::from_secs(1), |a, b| {
        match (
            a.parse::<debversion::Version>(),
            b.parse::<debversion::Version>(),
        ) {
            (Ok(x), Ok(y)) => sign(x.cmp(&y)),
            _ => 2,
        }
    });
    let ours_parsable_ns = ns_per_cmp(&parsable, Duration::from_secs(1), |a, b| {
        compare_deb(a, b).map_or(2, sign)
    });
    println!("pairs: {}", pairs.len());
    println!("ours: {ours_ns:.1} ns per comparison (parse both + compare)");
    println!(
        "debversion crate: {debversion_ns:.1} ns per comparison on the {} pairs it parses (ours on the same: {ours_parsable_ns:.1} ns, ratio {:.1}x)",
        parsable.len(),
        debversion_ns / ours_parsable_ns
    );
    if !check_dpkg {
        return;
    }
    let mut agree = 0usize;
    let mut disagreements = Vec::new();
    let mut debversion_disagree = 0usize;
    let start = Instant::now();
    for (a, b) in pairs {
        let ours = compare_deb(a, b);
        // One spawn per pair: ask dpkg whether our answer holds; only on "no" ask more.
        let confirmed = match &ours {
            Ok(Ordering::Less) => dpkg(a, "lt", b) == 0,
            Ok(Ordering::Equal) => dpkg(a, "eq", b) == 0,
            Ok(Ordering::Greater) => dpkg(a, "gt", b) == 0,
            Err(_) => dpkg(a, "lt", b) == 2,
        };
        if confirmed {
            agree += 1;
        } else {
            disagreements.push(format!(
                "DISAGREE {a:?} vs {b:?}: ours {} dpkg {}",
                ours_answer(&ours),
                dpkg_answer(a, b)
            ));
        }
        if let (Ok(x), Ok(y), Ok(o)) = (
            a.parse::<debversion::Version>(),
            b.parse::<debversion::Version>(),
            &ours,
        ) {
            if confirmed && x.cmp(&y) != *o {
                debversion_disagree += 1;
            }
        }
    }
    let dpkg_secs = start.elapsed().as_secs_f64();
    let dpkg_ns = dpkg_secs * 1e9 / pairs.len() as f64;
    let mut out = std::io::stdout().lock();
    for d in &disagreements {
        let _ = writeln!(out, "{d}");
    }
    let _ = writeln!(
        out,
        "agreement with dpkg --compare-versions: {agree} / {} pairs ({} disagreements)",
        pairs.len(),
        disagreements.len()
    );
    let _ = writeln!(
        out,
        "dpkg spawned per pair: {:.0} ns per comparison ({dpkg_secs:.1} s total)",
        dpkg_ns
    );
    let _ = writeln!(out, "ratio dpkg-spawn / ours: {:.0}x", dpkg_ns / ours_ns);
    let _ = writeln!(
        out,
        "debversion crate disagrees with dpkg on {debversion_disagree} of the {} pairs it parses",
        parsable.len()
    );
}

fn rpm(pairs: &[(String, String)]) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (a, b) in pairs {
        let _ = writeln!(out, "{a}\t{b}\t{}", sign(compare_rpm(a, b)));
    }
    let _ = out.flush();
    let ns = ns_per_cmp(pairs, Duration::from_secs(1), |a, b| {
        sign(compare_rpm(a, b))
    });
    eprintln!(
        "ours (compare_rpm): {ns:.1} ns per comparison over {} pairs",
        pairs.len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pairs = read_pairs();
    match args.first().map(String::as_str) {
        Some("deb") => deb(&pairs, args.iter().any(|a| a == "--dpkg")),
        Some("rpm") => rpm(&pairs),
        _ => {
            eprintln!("usage: vercmp deb [--dpkg] < pairs.tsv | vercmp rpm < pairs.tsv");
            std::process::exit(2);
        }
    }
}
