//! Fleet aggregation benchmark: N synthetic hosts over D distinct (release, source,
//! version) triples, aggregated with deduplication, compared in the same run with a
//! per-host scan (every host's packages matched one by one) on a sample of hosts.
//!
//! `cargo run --release -p patchday-audit --example fleet_bench -- 100000 2000 200 100`
//! (hosts, distinct package versions, packages per host, tenants).

use patchday_audit::advisory::AdvisoryDb;
use patchday_audit::fleet::{Fleet, PackageVersionId};
use std::fmt::Write as _;

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the stat line: 11 and 12 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// A small deterministic generator (no dependency, same numbers every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn main() -> anyhow::Result<()> {
    let arg = |i: usize, d: usize| -> usize {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (hosts, distinct, per_host, tenants) =
        (arg(1, 100_000), arg(2, 2_000), arg(3, 200), arg(4, 100));
    let sources = distinct / 2;

    // Advisories: a third of the sources have a fixed vulnerability in version -1,
    // a seventh an unfixed one; every 50th is known exploited.
    let mut osv = String::from("[");
    let mut kev = String::from("{\"vulnerabilities\": [");
    let mut first = true;
    for s in 0..sources {
        for (kind, fixed) in [(3usize, true), (7, false)] {
            if s % kind != 0 {
                continue;
            }
            if !first {
                osv.push(',');
            }
            first = false;
            let fix = if fixed {
                format!(r#",{{"fixed": "1.{s}-2"}}"#)
            } else {
                String::new()
            };
            write!(
                osv,
                r#"{{"id": "DSA-{s}-{kind}", "aliases": ["CVE-2099-{s}{kind}"], "affected": [{{"package": {{"ecosystem": "Debian:12", "name": "src{s}"}},
                   "ranges": [{{"type": "ECOSYSTEM", "events": [{{"introduced": "0"}}{fix}]}}]}}]}}"#
            )?;
            if s % 50 == 0 && fixed {
                write!(
                    kev,
                    "{}{{\"cveID\": \"CVE-2099-{s}{kind}\"}}",
                    if s == 0 { "" } else { "," }
                )?;
            }
        }
    }
    osv.push(']');
    kev.push_str("]}");
    let mut db = AdvisoryDb::new();
    db.import_osv_str(&osv)?;
    db.import_kev_str(&kev)?;

    let t0 = cpu_seconds();
    let mut fleet = Fleet::new();
    let ids: Vec<PackageVersionId> = (0..distinct)
        .map(|i| {
            fleet.package_version(
                "Debian:12",
                &format!("src{}", i / 2),
                &format!("1.{}-{}", i / 2, 1 + i % 2),
            )
        })
        .collect();
    let mut rng = Lcg(42);
    let mut sample: Vec<Vec<(String, String)>> = Vec::new();
    let mut pkgs = Vec::with_capacity(per_host);
    for h in 0..hosts {
        pkgs.clear();
        for _ in 0..per_host {
            pkgs.push(ids[(rng.next() as usize) % distinct]);
        }
        let tenant = format!("tenant{}", h % tenants.max(1));
        fleet.add_host(&tenant, &format!("host{h}"), "Debian:12", &pkgs);
        if h % 100 == 0 {
            sample.push(
                pkgs.iter()
                    .map(|p| {
                        let i = p.0 as usize;
                        (
                            format!("src{}", i / 2),
                            format!("1.{}-{}", i / 2, 1 + i % 2),
                        )
                    })
                    .collect(),
            );
        }
    }
    let t1 = cpu_seconds();
    let report = fleet.audit(&db);
    let t2 = cpu_seconds();

    // Peer: the same matching done per host, without deduplication, on 1% of hosts.
    let mut naive_hits = 0usize;
    for host in &sample {
        for (s, v) in host {
            naive_hits += db.matches("Debian:12", s, v).len();
        }
    }
    let t3 = cpu_seconds();
    let naive_full = (t3 - t2) * hosts as f64 / sample.len().max(1) as f64;

    let actions: usize = report.tenants.iter().map(|t| t.actions.len()).sum();
    let host_actions: usize = report
        .tenants
        .iter()
        .flat_map(|t| t.actions.iter())
        .map(|a| a.hosts.len())
        .sum();
    println!("hosts={hosts} tenants={tenants} distinct_package_versions={} package_entries={} advisories={}", report.distinct_package_versions, report.package_entries, db.len());
    println!(
        "tenant_actions={actions} host_action_pairs={host_actions} sample_matches={naive_hits}"
    );
    println!("cpu_build_fleet_s={:.2}", t1 - t0);
    println!("cpu_aggregate_s={:.2}", t2 - t1);
    println!(
        "cpu_per_host_scan_estimate_s={naive_full:.2} (measured on {} hosts, scaled)",
        sample.len()
    );
    if t2 - t1 > 0.0 {
        println!("ratio_per_host_over_dedup={:.1}", naive_full / (t2 - t1));
    }
    Ok(())
}
