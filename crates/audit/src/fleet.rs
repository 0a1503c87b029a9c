//! Fleet aggregation per tenant. Work is deduplicated by (release, source package,
//! version): each distinct triple is matched against the advisories once, and hosts
//! only carry small integer ids, so 100,000 hosts cost little more than their distinct
//! packages.

use crate::advisory::{host_ecosystems, AdvisoryDb, Severity, VersionScheme};
use crate::model::Facts;
use crate::plan::{severity_rank, Section};
use serde::{Deserialize, Serialize};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, HashMap};

/// A distinct (release, source package, source version), interned by a [`Fleet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PackageVersionId(pub u32);

#[derive(Clone, Debug, Default)]
struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    fn get(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.ids.insert(s.into(), i);
        self.names.push(s.into());
        i
    }

    fn name(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("", |s| s)
    }
}

#[derive(Clone, Debug)]
struct Host {
    tenant: u32,
    name: String,
    release: u32,
    packages: Vec<u32>,
}

/// The hosts of every tenant, with their packages as interned ids.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    strings: Interner,
    tenants: Interner,
    triples: HashMap<(u32, u32, u32), u32>,
    triple_list: Vec<(u32, u32, u32)>,
    hosts: Vec<Host>,
}

/// One deduplicated piece of work for a tenant: upgrade one source package in one
/// release to one version, on these hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetAction {
    /// Plan section (known exploited, available fixes, informational).
    pub section: Section,
    /// OSV release (`Debian:12`).
    pub release: String,
    /// Source package.
    pub source: String,
    /// Version to upgrade to; None for unfixed (informational) items.
    pub fix: Option<String>,
    /// Installed versions this action replaces.
    pub installed: Vec<String>,
    /// Vulnerability ids it closes.
    pub ids: Vec<String>,
    /// Highest severity.
    pub severity: Option<String>,
    /// Any id is known exploited.
    pub known_exploited: bool,
    /// Indexes into [`FleetReport::host_names`] of the hosts that need it.
    pub hosts: Vec<u32>,
}

/// One tenant's aggregated plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantReport {
    /// Tenant name.
    pub tenant: String,
    /// Number of hosts.
    pub hosts: usize,
    /// Hosts per release.
    pub releases: BTreeMap<String, usize>,
    /// Actions in plan order.
    pub actions: Vec<FleetAction>,
}

/// One action of a tenant's plan as a table row, its hosts by name (issue 11: the
/// console's audit page and the customer report show the same rows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetActionLine {
    /// Plan section, as its title.
    pub section: String,
    /// Source package and release.
    pub package: String,
    /// Version to upgrade to, or `no fix yet`.
    pub fix: String,
    /// Highest severity.
    pub severity: String,
    /// Any id is known exploited.
    pub known_exploited: bool,
    /// Vulnerability ids it closes, space-separated.
    pub ids: String,
    /// The hosts that need it, by name.
    pub hosts: String,
}

impl FleetReport {
    /// The plan of `tenant`, if any of its hosts reported facts.
    pub fn tenant(&self, tenant: &str) -> Option<&TenantReport> {
        self.tenants.iter().find(|r| r.tenant == tenant)
    }

    /// The actions of `tenant`'s plan as rows naming their hosts.
    pub fn lines(&self, tenant: &str) -> Vec<FleetActionLine> {
        let Some(r) = self.tenant(tenant) else {
            return Vec::new();
        };
        r.actions
            .iter()
            .map(|a| FleetActionLine {
                section: a.section.title().to_string(),
                package: format!("{} ({})", a.source, a.release),
                fix: a.fix.clone().unwrap_or_else(|| "no fix yet".into()),
                severity: a.severity.clone().unwrap_or_default(),
                known_exploited: a.known_exploited,
                ids: a.ids.join(" "),
                hosts: a
                    .hosts
                    .iter()
                    .filter_map(|h| self.host_names.get(*h as usize).map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect()
    }
}

/// The fleet's aggregated plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetReport {
    /// Per tenant, sorted by name.
    pub tenants: Vec<TenantReport>,
    /// Host names, indexed by [`FleetAction::hosts`].
    pub host_names: Vec<String>,
    /// Distinct (release, source, version) triples matched against advisories.
    pub distinct_package_versions: usize,
    /// Package entries across all hosts (what a per-host scan would have matched).
    pub package_entries: usize,
}

#[derive(Clone, Debug)]
struct Work {
    section: Section,
    fix: Option<String>,
    ids: Vec<String>,
    severity: Option<Severity>,
    known_exploited: bool,
}

const NONE: u32 = u32::MAX;

impl Fleet {
    /// An empty fleet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Interns a (release, source, version) triple; the same triple gets the same id.
    pub fn package_version(
        &mut self,
        release: &str,
        source: &str,
        version: &str,
    ) -> PackageVersionId {
        let key = (
            self.strings.get(release),
            self.strings.get(source),
            self.strings.get(version),
        );
        if let Some(&i) = self.triples.get(&key) {
            return PackageVersionId(i);
        }
        let i = self.triple_list.len() as u32;
        self.triples.insert(key, i);
        self.triple_list.push(key);
        PackageVersionId(i)
    }

    /// Adds a host with its packages (duplicates are dropped).
    pub fn add_host(
        &mut self,
        tenant: &str,
        host: &str,
        release: &str,
        packages: &[PackageVersionId],
    ) {
        let mut pkgs: Vec<u32> = packages.iter().map(|p| p.0).collect();
        pkgs.sort_unstable();
        pkgs.dedup();
        let tenant = self.tenants.get(tenant);
        let release = self.strings.get(release);
        self.hosts.push(Host {
            tenant,
            name: host.to_string(),
            release,
            packages: pkgs,
        });
    }

    /// Adds a host from its facts: its release and each (source, source version).
    pub fn add_facts(&mut self, tenant: &str, facts: &Facts) {
        let release = host_ecosystems(&facts.os)
            .into_iter()
            .next()
            .unwrap_or_default();
        let ids: Vec<PackageVersionId> = facts
            .packages
            .iter()
            .map(|p| self.package_version(&release, &p.source, &p.source_version))
            .collect();
        self.add_host(tenant, &facts.hostname, &release, &ids);
    }

    /// Number of hosts.
    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// Number of distinct (release, source, version) triples.
    pub fn distinct_package_versions(&self) -> usize {
        self.triple_list.len()
    }

    /// Matches each distinct triple once, then aggregates hosts per tenant and action.
    pub fn audit(&self, db: &AdvisoryDb) -> FleetReport {
        // 1. Each distinct triple once: which action (if any) closes its findings.
        let mut action_keys: HashMap<(u32, u32, Option<String>), u32> = HashMap::new();
        let mut actions: Vec<(u32, u32, Work)> = Vec::new();
        let mut action_of = vec![NONE; self.triple_list.len()];
        for (i, &(rel, src, ver)) in self.triple_list.iter().enumerate() {
            let (release, source, version) = (
                self.strings.name(rel),
                self.strings.name(src),
                self.strings.name(ver),
            );
            if !db.has_package(release, source) {
                continue;
            }
            let matches = db.matches(release, source, version);
            if matches.is_empty() {
                continue;
            }
            let actionable: Vec<_> = matches
                .iter()
                .filter(|m| {
                    m.known_exploited
                        || (m.fixed.is_some()
                            && m.informational.is_none()
                            && m.severity != Some(Severity::Unimportant))
                })
                .collect();
            let chosen: Vec<_> = if actionable.is_empty() {
                matches.iter().collect()
            } else {
                actionable
            };
            let scheme = VersionScheme::for_ecosystem(release);
            let fix = if chosen.len() == matches.len() && chosen.iter().all(|m| m.fixed.is_none()) {
                None
            } else {
                chosen
                    .iter()
                    .filter_map(|m| m.fixed.clone())
                    .max_by(|a, b| scheme.compare(a, b))
            };
            let known_exploited = chosen.iter().any(|m| m.known_exploited);
            let section = if known_exploited {
                Section::KnownExploited
            } else if fix.is_some() && !chosen.iter().all(|m| m.informational.is_some()) {
                Section::AvailableFixes
            } else {
                Section::Informational
            };
            let mut ids: Vec<String> = chosen.iter().flat_map(|m| m.ids.iter().cloned()).collect();
            ids.sort();
            ids.dedup();
            let work = Work {
                section,
                fix: fix.clone(),
                ids,
                severity: chosen.iter().filter_map(|m| m.severity).max(),
                known_exploited,
            };
            let key = (rel, src, fix);
            let a = match action_keys.get(&key) {
                Some(&a) => {
                    // Two installed versions, one target: the action closes both sets.
                    let w = &mut actions[a as usize].2;
                    w.ids.extend(work.ids);
                    w.ids.sort();
                    w.ids.dedup();
                    w.severity = w.severity.max(work.severity);
                    w.known_exploited |= work.known_exploited;
                    w.section = w.section.min(work.section);
                    a
                }
                None => {
                    let a = actions.len() as u32;
                    action_keys.insert(key, a);
                    actions.push((rel, src, work));
                    a
                }
            };
            action_of[i] = a;
        }

        // 2. Hosts: integer work only. Hosts are visited tenant by tenant so that one
        //    dense action -> cell table (reset between tenants) replaces any hashing.
        let mut order: Vec<u32> = (0..self.hosts.len() as u32).collect();
        order.sort_by_key(|&h| self.hosts[h as usize].tenant);
        let mut cell_of = vec![NONE; actions.len()];
        // (tenant, action, hosts, installed triples)
        let mut cells: Vec<(u32, u32, Vec<u32>, Vec<u32>)> = Vec::new();
        let mut releases: BTreeMap<(u32, u32), usize> = BTreeMap::new();
        let mut tenant_hosts = vec![0usize; self.tenants.names.len()];
        let mut package_entries = 0usize;
        let mut tenant_start = 0usize;
        let mut current_tenant = NONE;
        for &h in &order {
            let host = &self.hosts[h as usize];
            if host.tenant != current_tenant {
                for c in &cells[tenant_start..] {
                    cell_of[c.1 as usize] = NONE;
                }
                tenant_start = cells.len();
                current_tenant = host.tenant;
            }
            tenant_hosts[host.tenant as usize] += 1;
            *releases.entry((host.tenant, host.release)).or_default() += 1;
            package_entries += host.packages.len();
            for &p in &host.packages {
                let a = action_of[p as usize];
                if a == NONE {
                    continue;
                }
                let mut c = cell_of[a as usize];
                if c == NONE {
                    c = cells.len() as u32;
                    cell_of[a as usize] = c;
                    cells.push((host.tenant, a, Vec::new(), Vec::new()));
                }
                let (_, _, hosts, installed) = &mut cells[c as usize];
                if hosts.last() != Some(&h) {
                    hosts.push(h);
                }
                if !installed.contains(&p) {
                    installed.push(p);
                }
            }
        }

        // 3. Reports.
        let mut tenants: Vec<TenantReport> = self
            .tenants
            .names
            .iter()
            .enumerate()
            .map(|(t, name)| TenantReport {
                tenant: name.to_string(),
                hosts: tenant_hosts[t],
                releases: BTreeMap::new(),
                actions: Vec::new(),
            })
            .collect();
        for ((t, rel), n) in releases {
            tenants[t as usize]
                .releases
                .insert(self.strings.name(rel).to_string(), n);
        }
        for (t, a, hosts, installed) in cells {
            let (rel, src, w) = &actions[a as usize];
            let mut installed: Vec<String> = installed
                .iter()
                .map(|&p| {
                    self.strings
                        .name(self.triple_list[p as usize].2)
                        .to_string()
                })
                .collect();
            installed.sort();
            tenants[t as usize].actions.push(FleetAction {
                section: w.section,
                release: self.strings.name(*rel).to_string(),
                source: self.strings.name(*src).to_string(),
                fix: w.fix.clone(),
                installed,
                ids: w.ids.clone(),
                severity: w.severity.map(|s| s.as_str().to_string()),
                known_exploited: w.known_exploited,
                hosts,
            });
        }
        for t in &mut tenants {
            t.actions.sort_by(compare_fleet_actions);
        }
        tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        FleetReport {
            tenants,
            host_names: self.hosts.iter().map(|h| h.name.clone()).collect(),
            distinct_package_versions: self.triple_list.len(),
            package_entries,
        }
    }
}

/// The support status of one release in one tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseSupport {
    /// Tenant name.
    pub tenant: String,
    /// OSV release (`Debian:11`).
    pub release: String,
    /// Hosts of the tenant on it.
    pub hosts: usize,
    /// The end-of-life finding for the release (pass, fail or not applicable).
    pub finding: crate::model::Finding,
}

impl Fleet {
    /// End of life per (tenant, release), from distro-info-data: one check per
    /// distinct release, however many hosts run it. Failing ones first.
    pub fn end_of_life(
        &self,
        distro: &crate::checks::DistroInfo,
        now: jiff::Timestamp,
    ) -> Vec<ReleaseSupport> {
        let mut counts: BTreeMap<(u32, u32), usize> = BTreeMap::new();
        for h in &self.hosts {
            *counts.entry((h.tenant, h.release)).or_default() += 1;
        }
        let mut per_release: HashMap<u32, crate::model::Finding> = HashMap::new();
        let mut out: Vec<ReleaseSupport> = counts
            .into_iter()
            .map(|((t, r), hosts)| {
                let finding = per_release
                    .entry(r)
                    .or_insert_with(|| {
                        let release = self.strings.name(r);
                        let (name, version) = release.split_once(':').unwrap_or((release, ""));
                        let facts = Facts {
                            os: patchday_types::OsRelease {
                                id: name.to_ascii_lowercase(),
                                version_id: version.to_string(),
                                version_codename: version.to_string(),
                                pretty_name: release.to_string(),
                            },
                            ..Facts::default()
                        };
                        crate::checks::end_of_life(&facts, distro, now)
                            .into_iter()
                            .next()
                            .unwrap_or_else(|| crate::model::Finding {
                                check: "end-of-life.release".into(),
                                kind: crate::model::FindingKind::EndOfLife,
                                outcome: crate::model::Outcome::NotApplicable,
                                subject: release.to_string(),
                                reason: "no end-of-life data".into(),
                                remediation: String::new(),
                                ids: Vec::new(),
                                severity: None,
                                known_exploited: false,
                                fix: None,
                            })
                    })
                    .clone();
                ReleaseSupport {
                    tenant: self.tenants.name(t).to_string(),
                    release: self.strings.name(r).to_string(),
                    hosts,
                    finding,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            a.finding
                .outcome
                .cmp(&b.finding.outcome)
                .then_with(|| a.tenant.cmp(&b.tenant))
                .then_with(|| a.release.cmp(&b.release))
        });
        out
    }
}

fn compare_fleet_actions(a: &FleetAction, b: &FleetAction) -> Ordering {
    a.section
        .cmp(&b.section)
        .then_with(|| {
            Reverse(severity_rank(a.severity.as_deref()))
                .cmp(&Reverse(severity_rank(b.severity.as_deref())))
        })
        .then_with(|| Reverse(a.hosts.len()).cmp(&Reverse(b.hosts.len())))
        .then_with(|| a.release.cmp(&b.release))
        .then_with(|| a.source.cmp(&b.source))
        .then_with(|| a.fix.cmp(&b.fix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchday_types::{InstalledPackage, OsRelease};

    fn facts(host: &str, pkgs: &[(&str, &str)]) -> Facts {
        Facts {
            hostname: host.into(),
            os: OsRelease {
                id: "debian".into(),
                version_id: "12".into(),
                version_codename: "bookworm".into(),
                pretty_name: String::new(),
            },
            packages: pkgs
                .iter()
                .flat_map(|(s, v)| {
                    // Two binaries per source: both map to one triple.
                    ["", "-bin"].map(|suffix| InstalledPackage {
                        name: format!("{s}{suffix}"),
                        version: v.to_string(),
                        architecture: "amd64".into(),
                        source: s.to_string(),
                        source_version: v.to_string(),
                    })
                })
                .collect(),
            ..Facts::default()
        }
    }

    fn db() -> AdvisoryDb {
        let mut db = AdvisoryDb::new();
        db.import_osv_str(
            r#"[{"id": "DSA-1", "aliases": ["CVE-1"], "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.15-1~deb12u1"}]}]}]},
                {"id": "DSA-2", "aliases": ["CVE-2"], "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "3.0.14-1~deb12u1"}, {"fixed": "3.0.15-1~deb12u1"}]}]}]},
                {"id": "CVE-3", "affected": [{"package": {"ecosystem": "Debian:12", "name": "zlib"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]}]"#,
        )
        .unwrap();
        db.import_kev_str(r#"{"vulnerabilities": [{"cveID": "CVE-2"}]}"#)
            .unwrap();
        db
    }

    #[test]
    fn dedups_by_release_source_version_and_aggregates_per_tenant() {
        let mut fleet = Fleet::new();
        for i in 0..50 {
            let v = if i % 2 == 0 {
                "3.0.14-1~deb12u2"
            } else {
                "3.0.13-1~deb12u1"
            };
            fleet.add_facts(
                "acme",
                &facts(
                    &format!("a{i}"),
                    &[
                        ("openssl", v),
                        ("zlib", "1:1.2.13.dfsg-1"),
                        ("bash", "5.2.15-2"),
                    ],
                ),
            );
        }
        fleet.add_facts(
            "beta",
            &facts(
                "b0",
                &[("openssl", "3.0.15-1~deb12u1"), ("zlib", "1:1.2.13.dfsg-1")],
            ),
        );
        // 4 distinct triples for acme's 150 source entries, +1 for beta's openssl.
        assert_eq!(fleet.distinct_package_versions(), 5);
        let r = fleet.audit(&db());
        assert_eq!(r.package_entries, 152);
        let acme = &r.tenants[0];
        assert_eq!(acme.tenant, "acme");
        assert_eq!(acme.hosts, 50);
        assert_eq!(acme.releases.get("Debian:12"), Some(&50));
        // Both installed openssl versions need the same upgrade: one action, 50 hosts.
        let ssl = &acme.actions[0];
        assert_eq!(ssl.section, Section::KnownExploited);
        assert_eq!(ssl.source, "openssl");
        assert_eq!(ssl.fix.as_deref(), Some("3.0.15-1~deb12u1"));
        assert_eq!(ssl.hosts.len(), 50);
        assert_eq!(ssl.installed, vec!["3.0.13-1~deb12u1", "3.0.14-1~deb12u2"]);
        assert_eq!(ssl.ids, vec!["CVE-1", "CVE-2", "DSA-1", "DSA-2"]);
        let zlib = &acme.actions[1];
        assert_eq!(zlib.section, Section::Informational);
        assert_eq!(zlib.fix, None);
        let csv = "version,codename,series,created,release,eol,eol-lts,eol-elts\n\
                   12,Bookworm,bookworm,2021-08-14,2023-06-10,2026-07-11,2028-06-30,2033-06-30\n";
        let distro = crate::checks::DistroInfo::parse(csv).unwrap();
        let eol = fleet.end_of_life(&distro, "2026-08-01T00:00:00Z".parse().unwrap());
        assert_eq!(eol.len(), 2);
        assert_eq!(eol[0].tenant, "acme");
        assert_eq!(eol[0].hosts, 50);
        assert_eq!(eol[0].finding.outcome, crate::model::Outcome::Fail);
        let beta = &r.tenants[1];
        assert_eq!(beta.actions.len(), 1);
        assert_eq!(beta.actions[0].source, "zlib");
        assert_eq!(r.host_names[beta.actions[0].hosts[0] as usize], "b0");
    }
}
