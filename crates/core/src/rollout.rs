//! Issue 10, points 2 and 3: rings that advance on evidence. Pure decisions: which ring
//! an update goes to next, whether a ring's evidence lets the next one follow or halts
//! the update, and which hosts of a ring a wave admits. `now` is always a parameter.

use jiff::{SignedDuration, Timestamp};
use patchday_types::api::{AutoRule, Ring};
use patchday_types::{GroupId, Release, UpdateDocument, UpdateState};

/// Default success ratio (per mille of applicable hosts installed).
pub const DEFAULT_SUCCESS_PERMILLE: u32 = 950;
/// Default failure ratio above which an update halts (per mille).
pub const DEFAULT_FAILURE_PERMILLE: u32 = 50;
/// Default soak time of a ring.
pub const DEFAULT_SOAK_SECONDS: i64 = 3600;
/// Shares of a ring's hosts (per cent) that each wave admits, cumulative.
pub const WAVES_PERCENT: [u32; 3] = [10, 30, 100];

/// A ring with the defaults: `pilot:0d`-like deferral, no deadline, no rule.
pub fn ring(group: GroupId, deferral: SignedDuration) -> Ring {
    Ring {
        group,
        deferral_seconds: deferral.as_secs(),
        deadline_seconds: None,
        grace_seconds: 0,
        soak_seconds: DEFAULT_SOAK_SECONDS,
        rule: None,
        success_permille: DEFAULT_SUCCESS_PERMILLE,
        failure_permille: DEFAULT_FAILURE_PERMILLE,
        failure_count: None,
    }
}

/// Whether a ring's rule approves this update; `known_exploited`: whether it fixes a
/// CVE the KEV catalog lists.
pub fn rule_matches(rule: &AutoRule, update: &UpdateDocument, known_exploited: bool) -> bool {
    (!rule.known_exploited || known_exploited)
        && (rule.severities.is_empty() || rule.severities.contains(&update.severity))
        && (rule.classifications.is_empty()
            || rule.classifications.contains(&update.classification))
        && (rule.source_packages.is_empty()
            || update.payloads.iter().any(|p| {
                rule.source_packages
                    .iter()
                    .any(|s| s == &p.source || s == &p.package)
            }))
}

/// When a ring's turn comes: patch day (or publication, for emergency updates) plus the
/// ring's deferral; emergency updates skip the deferral, so only the gates hold them.
pub fn ring_due(ring: &Ring, release: &Release, release_at: Timestamp) -> Timestamp {
    match release {
        Release::Emergency { .. } => release_at,
        Release::Train { .. } => release_at
            .checked_add(SignedDuration::from_secs(ring.deferral_seconds.max(0)))
            .unwrap_or(Timestamp::MAX),
    }
}

/// What a ring's hosts show for an update, counted from the state read model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Hosts the update applies to (any recorded state but not-applicable/declined).
    pub applicable: u32,
    /// Installed and not waiting for a reboot.
    pub installed: u32,
    /// Failed.
    pub failed: u32,
    /// Started (downloading or later, failed included).
    pub started: u32,
}

impl Evidence {
    /// Counts the current states of a ring's hosts.
    pub fn count(states: impl IntoIterator<Item = UpdateState>) -> Evidence {
        let mut e = Evidence::default();
        for s in states {
            use UpdateState as S;
            match s {
                // Issue 10, point 3: taken back (or refused) after a decline: declined.
                S::NotApplicable | S::Declined | S::Superseded | S::Removed | S::RemoveFailed => {
                    continue
                }
                _ => e.applicable += 1,
            }
            match s {
                S::Installed => e.installed += 1,
                S::Failed => e.failed += 1,
                _ => {}
            }
            if !matches!(s, S::Needed | S::Approved) {
                e.started += 1;
            }
        }
        e
    }
}

/// The evidence gate's verdict on one ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Enough installed, soaked long enough: the next ring may follow.
    Passed,
    /// Not yet; why.
    Waiting(String),
    /// Too many failures: halt the update everywhere; why.
    Halt(String),
}

/// Judges a ring's evidence for an update approved for it at `approved_at`.
pub fn judge(ring: &Ring, e: Evidence, approved_at: Timestamp, now: Timestamp) -> Gate {
    let over_ratio =
        u64::from(e.failed) * 1000 > u64::from(ring.failure_permille) * u64::from(e.applicable);
    let over_count = ring.failure_count.is_some_and(|n| e.failed >= n.max(1));
    if e.failed > 0 && (over_ratio || over_count) {
        return Gate::Halt(format!(
            "{} of {} applicable host(s) in ring {} failed (threshold {}‰{})",
            e.failed,
            e.applicable,
            ring.group,
            ring.failure_permille,
            ring.failure_count
                .map(|n| format!(" or {n} host(s)"))
                .unwrap_or_default()
        ));
    }
    let enough =
        u64::from(e.installed) * 1000 >= u64::from(ring.success_permille) * u64::from(e.applicable);
    if !enough {
        return Gate::Waiting(format!(
            "{} of {} applicable host(s) in ring {} installed, {}‰ needed",
            e.installed, e.applicable, ring.group, ring.success_permille
        ));
    }
    let soaked = approved_at
        .checked_add(SignedDuration::from_secs(ring.soak_seconds.max(0)))
        .unwrap_or(Timestamp::MAX);
    if now < soaked {
        return Gate::Waiting(format!("ring {} soaks until {soaked}", ring.group));
    }
    Gate::Passed
}

/// What the rollout does next for one update in one tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Approve for ring `ring` (index) now, by its rule.
    Approve {
        /// Index into the rings.
        ring: usize,
        /// The approval's deadline, from the ring's deadline.
        deadline: Option<Timestamp>,
    },
    /// Halt the update everywhere.
    Halt(String),
    /// Nothing to do now; why.
    Wait(String),
}

/// The next step for `update` over `rings`, given per ring when it was approved (by
/// anyone, the emergency lane included) and its evidence.
pub fn next_step(
    update: &UpdateDocument,
    known_exploited: bool,
    rings: &[Ring],
    progress: &[(Option<Timestamp>, Evidence)],
    release_at: Timestamp,
    now: Timestamp,
) -> Step {
    // Any approved ring's failures halt, whoever approved it.
    for (ring, (approved, e)) in rings.iter().zip(progress) {
        if let Some(at) = approved {
            if let Gate::Halt(why) = judge(ring, *e, *at, now) {
                return Step::Halt(why);
            }
        }
    }
    let Some(next) = progress.iter().position(|(a, _)| a.is_none()) else {
        return Step::Wait("every ring has it".into());
    };
    let ring = &rings[next];
    let Some(rule) = &ring.rule else {
        return Step::Wait(format!("ring {} approves by hand only", ring.group));
    };
    if !rule_matches(rule, update, known_exploited) {
        return Step::Wait(format!(
            "ring {}'s rule does not match {}",
            ring.group, update.id
        ));
    }
    let due = ring_due(ring, &update.release, release_at);
    if now < due {
        return Step::Wait(format!("ring {}'s turn comes at {due}", ring.group));
    }
    if next > 0 {
        let (prev_at, prev_e) = &progress[next - 1];
        let prev_at = prev_at.unwrap_or(Timestamp::MAX);
        match judge(&rings[next - 1], *prev_e, prev_at, now) {
            Gate::Passed => {}
            Gate::Waiting(why) | Gate::Halt(why) => return Step::Wait(why),
        }
    }
    let deadline = ring
        .deadline_seconds
        .and_then(|s| now.checked_add(SignedDuration::from_secs(s)).ok());
    Step::Approve {
        ring: next,
        deadline,
    }
}

/// Why the hosts a ring's waves admitted so far halt the update, if they do: their
/// failures cross the ring's threshold counted over the admitted hosts, not the whole
/// ring (a wave of 50 with one failure is 2%, whatever the ring's size: waiting for the
/// ring's ratio would wait for ever, since the rest is held until the wave passes).
pub fn wave_halt(ring: &Ring, admitted: Evidence) -> Option<String> {
    match judge(ring, admitted, Timestamp::MIN, Timestamp::MIN) {
        Gate::Halt(why) => Some(why),
        Gate::Passed | Gate::Waiting(_) => None,
    }
}

/// How many of a ring's `hosts` the waves admit, given the evidence of the hosts
/// admitted so far (`admitted` of them, the last at `last_admitted`): the next wave
/// opens once those reach the ring's success ratio without tripping its failure
/// threshold, and have soaked for the ring's soak time.
pub fn wave_size(
    ring: &Ring,
    hosts: u32,
    admitted: u32,
    e: Evidence,
    last_admitted: Option<Timestamp>,
    now: Timestamp,
) -> u32 {
    let share = |p: u32| {
        (u64::from(hosts) * u64::from(p))
            .div_ceil(100)
            .max(1)
            .min(u64::from(hosts)) as u32
    };
    let first = share(WAVES_PERCENT[0]);
    if admitted < first {
        return first;
    }
    let since = last_admitted.unwrap_or(Timestamp::MIN);
    let passed = matches!(judge(ring, e, since, now), Gate::Passed);
    if !passed {
        return admitted;
    }
    WAVES_PERCENT
        .iter()
        .map(|p| share(*p))
        .find(|n| *n > admitted)
        .unwrap_or(hosts.max(admitted))
}

// ---- Rings as an operator writes them (the CLI's `ring set` and the console's form) ----

/// Rings as an operator writes them: `GROUP:DEFERRAL[:DEADLINE[:GRACE]]` each, pilot
/// first, and the options every ring shares.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RingsSpec {
    /// The rings, pilot first.
    pub rings: Vec<String>,
    /// Approve matching updates by rule (implied by any match option).
    pub auto: bool,
    /// Rule: these severities only.
    pub severities: Vec<patchday_types::Severity>,
    /// Rule: these classifications only.
    pub classifications: Vec<patchday_types::Classification>,
    /// Rule: updates of these source packages only.
    pub source_packages: Vec<String>,
    /// Rule: only updates fixing a known-exploited CVE.
    pub known_exploited: bool,
    /// Soak time (`1h`).
    pub soak: String,
    /// Per cent of applicable hosts that must be installed.
    pub success_percent: f64,
    /// Per cent of failed hosts above which the update halts.
    pub failure_percent: f64,
    /// Failed hosts at which the update halts, whatever the share.
    pub failure_count: Option<u32>,
}

impl RingsSpec {
    /// The rings, or what is wrong with the spec in words an operator can act on.
    pub fn build(&self) -> Result<Vec<Ring>, String> {
        let auto = self.auto
            || !self.severities.is_empty()
            || !self.classifications.is_empty()
            || !self.source_packages.is_empty()
            || self.known_exploited;
        let soak = duration_seconds(&self.soak)?;
        let success = permille("success", self.success_percent)?;
        let failure = permille("failure", self.failure_percent)?;
        let mut out = Vec::new();
        for spec in &self.rings {
            let mut r = parse_ring(spec)?;
            r.soak_seconds = soak;
            r.success_permille = success;
            r.failure_permille = failure;
            r.failure_count = self.failure_count;
            r.rule = auto.then(|| AutoRule {
                severities: self.severities.clone(),
                classifications: self.classifications.clone(),
                source_packages: self.source_packages.clone(),
                known_exploited: self.known_exploited,
            });
            out.push(r);
        }
        Ok(out)
    }
}

/// `90s`, `30m`, `12h`, `5d`, `2w` as seconds.
pub fn duration_seconds(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let unit = s.chars().last().unwrap_or('?');
    let bad = || format!("{s:?} is not a duration (90s, 30m, 12h, 5d, 2w)");
    let n: i64 = s
        .get(..s.len().saturating_sub(unit.len_utf8()))
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(bad)?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return Err(bad()),
    };
    Ok(n.saturating_mul(unit))
}

/// Seconds as the shortest of `5d`, `12h`, `90s`.
pub fn duration_text(secs: i64) -> String {
    if secs % 86_400 == 0 {
        format!("{}d", secs / 86_400)
    } else if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else {
        format!("{secs}s")
    }
}

fn permille(what: &str, percent: f64) -> Result<u32, String> {
    if !(0.0..=100.0).contains(&percent) {
        return Err(format!("{what} is a percentage, 0 to 100"));
    }
    Ok((percent * 10.0).round() as u32)
}

/// `GROUP:DEFERRAL[:DEADLINE[:GRACE]]` as a ring with the defaults.
pub fn parse_ring(spec: &str) -> Result<Ring, String> {
    let mut parts = spec.split(':');
    let group = parts.next().unwrap_or_default();
    let group = GroupId::new(group).map_err(|e| format!("ring {spec:?}: {e}"))?;
    let deferral = duration_seconds(parts.next().unwrap_or("0d"))?;
    let mut r = ring(group, SignedDuration::from_secs(deferral));
    r.deadline_seconds = parts.next().map(duration_seconds).transpose()?;
    r.grace_seconds = parts.next().map(duration_seconds).transpose()?.unwrap_or(0);
    if parts.next().is_some() {
        return Err(format!(
            "ring {spec:?}: write GROUP:DEFERRAL[:DEADLINE[:GRACE]], e.g. pilot:0d or broad:5d:3d:1d"
        ));
    }
    Ok(r)
}

/// A ring as `GROUP:DEFERRAL[:DEADLINE[:GRACE]]`, the inverse of [`parse_ring`].
pub fn ring_spec(r: &Ring) -> String {
    let mut s = format!("{}:{}", r.group, duration_text(r.deferral_seconds));
    if let Some(d) = r.deadline_seconds {
        s.push(':');
        s.push_str(&duration_text(d));
        if r.grace_seconds != 0 {
            s.push(':');
            s.push_str(&duration_text(r.grace_seconds));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchday_types::{Classification, PayloadKind, PayloadRef, Severity, UpdateId};

    fn update(release: Release) -> UpdateDocument {
        UpdateDocument {
            id: UpdateId::new("PD-2026-0001").unwrap(),
            title: "t".into(),
            product: "debian-12".into(),
            classification: Classification::Security,
            severity: Severity::Important,
            cves: vec![],
            supersedes: vec![],
            release,
            payloads: vec![PayloadRef {
                target: "x".into(),
                kind: PayloadKind::Deb,
                package: "libfoo1".into(),
                version: "1.1".into(),
                architecture: "amd64".into(),
                source: "foo".into(),
                source_version: "1.1".into(),
            }],
            description: String::new(),
            tenants: vec![],
            upstream: None,
        }
    }

    fn train() -> Release {
        Release::Train {
            month: "2026-12".parse().unwrap(),
        }
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn rings() -> Vec<Ring> {
        let mut r: Vec<Ring> = [("pilot", 0), ("early", 1), ("broad", 5)]
            .iter()
            .map(|(g, d)| {
                ring(
                    GroupId::new(*g).unwrap(),
                    SignedDuration::from_hours(24 * d),
                )
            })
            .collect();
        for x in &mut r {
            x.rule = Some(AutoRule::default());
        }
        r
    }

    fn ev(applicable: u32, installed: u32, failed: u32) -> Evidence {
        Evidence {
            applicable,
            installed,
            failed,
            started: installed + failed,
        }
    }

    fn step(
        u: &UpdateDocument,
        r: &[Ring],
        p: &[(Option<Timestamp>, Evidence)],
        release: Timestamp,
        now: Timestamp,
    ) -> Step {
        next_step(u, false, r, p, release, now)
    }

    #[test]
    fn a_known_exploited_rule_takes_only_updates_fixing_a_kev_cve() {
        let mut r = rings();
        r[0].rule = Some(AutoRule {
            known_exploited: true,
            ..AutoRule::default()
        });
        let u = update(train());
        let none = vec![(None, Evidence::default()); 3];
        let s = next_step(&u, false, &r, &none, t(PATCH_DAY), t(PATCH_DAY));
        assert!(
            matches!(&s, Step::Wait(w) if w.contains("does not match")),
            "{s:?}"
        );
        let s = next_step(&u, true, &r, &none, t(PATCH_DAY), t(PATCH_DAY));
        assert_eq!(
            s,
            Step::Approve {
                ring: 0,
                deadline: None
            }
        );
    }

    const PATCH_DAY: &str = "2026-12-08T09:00:00Z";

    #[test]
    fn pilot_is_approved_on_patch_day_and_not_before() {
        let u = update(train());
        let none = vec![(None, Evidence::default()); 3];
        let before = step(&u, &rings(), &none, t(PATCH_DAY), t("2026-12-08T08:59:59Z"));
        assert!(matches!(before, Step::Wait(_)), "{before:?}");
        let on = step(&u, &rings(), &none, t(PATCH_DAY), t(PATCH_DAY));
        assert_eq!(
            on,
            Step::Approve {
                ring: 0,
                deadline: None
            }
        );
    }

    #[test]
    fn early_waits_for_its_deferral_and_for_the_pilots_evidence() {
        let u = update(train());
        let approved = t(PATCH_DAY);
        // Pilot installed everywhere, but early's day has not come.
        let p = vec![
            (Some(approved), ev(10, 10, 0)),
            (None, Evidence::default()),
            (None, Evidence::default()),
        ];
        let s = step(&u, &rings(), &p, t(PATCH_DAY), t("2026-12-09T08:00:00Z"));
        assert!(
            matches!(&s, Step::Wait(w) if w.contains("turn comes")),
            "{s:?}"
        );
        // Its day has come, pilot at 90%: wait.
        let p2 = vec![
            (Some(approved), ev(10, 9, 0)),
            (None, Evidence::default()),
            (None, Evidence::default()),
        ];
        let s = step(&u, &rings(), &p2, t(PATCH_DAY), t("2026-12-09T10:00:00Z"));
        assert!(
            matches!(&s, Step::Wait(w) if w.contains("9 of 10")),
            "{s:?}"
        );
        // At 100% and soaked: early now.
        let s = step(&u, &rings(), &p, t(PATCH_DAY), t("2026-12-09T10:00:00Z"));
        assert_eq!(
            s,
            Step::Approve {
                ring: 1,
                deadline: None
            }
        );
    }

    #[test]
    fn a_ring_that_has_not_soaked_holds_the_next() {
        let mut r = rings();
        r[0].soak_seconds = 7200;
        r[1].deferral_seconds = 0;
        let u = update(train());
        let p = vec![
            (Some(t(PATCH_DAY)), ev(4, 4, 0)),
            (None, Evidence::default()),
            (None, Evidence::default()),
        ];
        let s = step(&u, &r, &p, t(PATCH_DAY), t("2026-12-08T10:00:00Z"));
        assert!(matches!(&s, Step::Wait(w) if w.contains("soaks")), "{s:?}");
        let s = step(&u, &r, &p, t(PATCH_DAY), t("2026-12-08T11:00:00Z"));
        assert_eq!(
            s,
            Step::Approve {
                ring: 1,
                deadline: None
            }
        );
    }

    #[test]
    fn failures_over_the_threshold_halt_even_an_emergency_approval() {
        let u = update(Release::Emergency {
            reason: "exploited".into(),
        });
        // pilot approved (say, through the operator's emergency lane): 1 of 10 failed.
        let p = vec![
            (Some(t(PATCH_DAY)), ev(10, 9, 1)),
            (None, Evidence::default()),
            (None, Evidence::default()),
        ];
        let s = step(&u, &rings(), &p, t(PATCH_DAY), t(PATCH_DAY));
        assert!(
            matches!(&s, Step::Halt(w) if w.contains("1 of 10")),
            "{s:?}"
        );
        // 1 of 20 is exactly 5%: not over.
        assert!(!matches!(
            judge(&rings()[0], ev(20, 19, 1), t(PATCH_DAY), t(PATCH_DAY)),
            Gate::Halt(_)
        ));
    }

    #[test]
    fn an_absolute_failure_count_halts_a_big_ring() {
        let mut r = rings();
        r[0].failure_count = Some(3);
        assert!(matches!(
            judge(&r[0], ev(1000, 10, 3), t(PATCH_DAY), t(PATCH_DAY)),
            Gate::Halt(_)
        ));
        assert!(!matches!(
            judge(&r[0], ev(1000, 10, 2), t(PATCH_DAY), t(PATCH_DAY)),
            Gate::Halt(_)
        ));
    }

    #[test]
    fn emergency_updates_skip_the_deferrals_but_not_the_gates() {
        let u = update(Release::Emergency {
            reason: "exploited".into(),
        });
        let published = t("2026-12-15T12:00:00Z");
        let p = vec![
            (Some(published), ev(5, 5, 0)),
            (None, Evidence::default()),
            (None, Evidence::default()),
        ];
        let mut r = rings();
        r[0].soak_seconds = 0;
        assert_eq!(
            step(&u, &r, &p, published, published),
            Step::Approve {
                ring: 1,
                deadline: None
            }
        );
        let p = vec![
            (Some(published), ev(5, 1, 0)),
            (None, Evidence::default()),
            (None, Evidence::default()),
        ];
        assert!(matches!(
            step(&u, &r, &p, published, published),
            Step::Wait(_)
        ));
    }

    #[test]
    fn a_rule_that_does_not_match_leaves_the_ring_to_the_operator() {
        let mut r = rings();
        r[0].rule = Some(AutoRule {
            severities: vec![Severity::Critical],
            ..AutoRule::default()
        });
        let u = update(train());
        let none = vec![(None, Evidence::default()); 3];
        assert!(
            matches!(step(&u, &r, &none, t(PATCH_DAY), t(PATCH_DAY)), Step::Wait(w) if w.contains("does not match"))
        );
        r[0].rule = Some(AutoRule {
            source_packages: vec!["foo".into()],
            classifications: vec![Classification::Security],
            ..AutoRule::default()
        });
        assert!(matches!(
            step(&u, &r, &none, t(PATCH_DAY), t(PATCH_DAY)),
            Step::Approve { ring: 0, .. }
        ));
        r[0].rule = None;
        assert!(
            matches!(step(&u, &r, &none, t(PATCH_DAY), t(PATCH_DAY)), Step::Wait(w) if w.contains("by hand"))
        );
    }

    #[test]
    fn the_rings_deadline_is_counted_from_its_approval() {
        let mut r = rings();
        r[0].deadline_seconds = Some(3600);
        let u = update(train());
        let none = vec![(None, Evidence::default()); 3];
        assert_eq!(
            step(&u, &r, &none, t(PATCH_DAY), t(PATCH_DAY)),
            Step::Approve {
                ring: 0,
                deadline: Some(t("2026-12-08T10:00:00Z"))
            }
        );
    }

    #[test]
    fn waves_grow_only_on_evidence() {
        let r = &rings()[0]; // soak: one hour
        let at = Some(t(PATCH_DAY));
        let later = t("2026-12-08T10:00:00Z");
        assert_eq!(wave_size(r, 100, 0, Evidence::default(), None, later), 10);
        assert_eq!(wave_size(r, 100, 10, ev(10, 5, 0), at, later), 10);
        assert_eq!(wave_size(r, 100, 10, ev(10, 10, 0), at, later), 30);
        assert_eq!(
            wave_size(r, 100, 10, ev(10, 10, 0), at, t("2026-12-08T09:59:59Z")),
            10,
            "a wave soaks before the next opens"
        );
        assert_eq!(wave_size(r, 100, 30, ev(30, 30, 0), at, later), 100);
        assert_eq!(
            wave_size(r, 100, 10, ev(10, 8, 2), at, later),
            10,
            "a failing wave opens no next"
        );
        assert_eq!(wave_size(r, 3, 0, Evidence::default(), None, later), 1);
        assert_eq!(wave_size(r, 0, 0, Evidence::default(), None, later), 0);
    }

    #[test]
    fn a_wave_whose_failures_cross_the_threshold_halts_whatever_the_rings_size() {
        let mut r = rings()[0].clone();
        r.failure_permille = 5; // 0.5%
                                // The benchmark's case: a first wave of 50 in a ring of 500, one install failed.
        let why = wave_halt(&r, ev(50, 49, 1)).expect("2% of the wave fails: halt");
        assert!(why.contains("1 of 50"), "{why}");
        assert_eq!(wave_halt(&r, ev(50, 50, 0)), None, "no failure, no halt");
        assert_eq!(
            wave_halt(&r, ev(50, 10, 0)),
            None,
            "still installing: no halt"
        );
        r.failure_permille = 50; // 5%
        assert_eq!(wave_halt(&r, ev(50, 48, 2)), None, "4% is under 5%");
        assert!(wave_halt(&r, ev(50, 47, 3)).is_some(), "6% is over 5%");
        r.failure_count = Some(2);
        assert!(
            wave_halt(&r, ev(50, 48, 2)).is_some(),
            "the absolute count counts too"
        );
    }

    #[test]
    fn evidence_counts_reboots_as_not_yet_installed() {
        use UpdateState as S;
        let e = Evidence::count([
            S::Installed,
            S::InstalledPendingReboot,
            S::Failed,
            S::Needed,
            S::NotApplicable,
        ]);
        assert_eq!(
            e,
            Evidence {
                applicable: 4,
                installed: 1,
                failed: 1,
                started: 3
            }
        );
    }

    #[test]
    fn rings_as_written_round_trip_and_errors_say_what_to_write() {
        let spec = RingsSpec {
            rings: vec!["pilot:0d".into(), "broad:5d:3d:1d".into()],
            severities: vec![patchday_types::Severity::Critical],
            soak: "2h".into(),
            success_percent: 90.0,
            failure_percent: 2.5,
            ..RingsSpec::default()
        };
        let rings = spec.build().unwrap();
        assert_eq!(rings.len(), 2);
        assert_eq!(rings[1].deferral_seconds, 5 * 86_400);
        assert_eq!(rings[1].deadline_seconds, Some(3 * 86_400));
        assert_eq!(rings[1].grace_seconds, 86_400);
        assert_eq!(rings[0].soak_seconds, 7200);
        assert_eq!(
            (rings[0].success_permille, rings[0].failure_permille),
            (900, 25)
        );
        assert!(rings[0].rule.is_some(), "a severity implies the rule");
        let back: Vec<String> = rings.iter().map(ring_spec).collect();
        assert_eq!(back, ["pilot:0d", "broad:5d:3d:1d"]);
        let bad = RingsSpec {
            rings: vec!["pilot:soon".into()],
            soak: "1h".into(),
            ..RingsSpec::default()
        };
        assert!(bad.build().unwrap_err().contains("not a duration"));
        let bad = RingsSpec {
            rings: vec!["a:1d:1d:1d:1d".into()],
            soak: "1h".into(),
            ..RingsSpec::default()
        };
        assert!(bad.build().unwrap_err().contains("GROUP:DEFERRAL"));
    }
}
