//! Issue 13, point 5: the baseline that would close a host's hardening findings, proposed
//! beside the plan. Kernel settings become a `[memory]` profile, a missing firewall a
//! `[firewall]` with default-deny inbound, the browser findings a `[browser]` policy. It
//! is a proposal for an operator to review, sign and approve (`patchday catalog
//! add-baseline`), never applied by the audit; it passes `patchday baseline check` as is.

use crate::hardening::SYSCTL_RULES;
use crate::model::{BinaryReason, Facts, Finding, Outcome};
use patchday_baseline::browser::{
    Browser, BrowserKind, Downloads, Extensions, JavaScript, ListMode, SafeBrowsing, Updates,
};
use patchday_baseline::memory::{Memory, ALLOWED_SYSCTLS};
use patchday_baseline::policy::{Firewall, Header, Inbound, Protocol, Verdict};
use patchday_baseline::Policy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A proposed baseline: the policy text and the checks it closes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProposedBaseline {
    /// The failing checks it closes once applied.
    pub closes: Vec<String>,
    /// The policy, TOML as `patchday baseline check` reads it, with review notes as
    /// comments.
    pub policy: String,
}

/// A baseline name from a host name: `a-z`, `0-9`, `-`, at most 64, never empty.
fn name_for(host: &str) -> String {
    let mut n: String = host
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    n = n.trim_matches('-').to_string();
    n.truncate(48);
    if n.is_empty() {
        "audit".into()
    } else {
        format!("audit-{n}")
    }
}

/// The baseline that closes the failing findings a baseline can close, or `None` when
/// there are none.
pub fn propose(facts: &Facts, findings: &[Finding]) -> Option<ProposedBaseline> {
    let failing: BTreeSet<&str> = findings
        .iter()
        .filter(|f| f.outcome == Outcome::Fail)
        .map(|f| f.check.as_str())
        .collect();
    let mut closes = Vec::new();
    let mut notes = Vec::new();

    let mut memory = Memory::default();
    for rule in SYSCTL_RULES {
        let id = format!("hardening.sysctl.{}", rule.key);
        if failing.contains(id.as_str()) && ALLOWED_SYSCTLS.contains(&rule.key) {
            memory.sysctls.insert(rule.key.to_string(), rule.set);
            closes.push(id);
        }
    }

    let firewall = failing.contains("hardening.firewall").then(|| {
        closes.push("hardening.firewall".to_string());
        let mut inbound = Vec::new();
        if !facts.sshd.is_empty() {
            inbound.push(Inbound {
                name: "ssh".into(),
                zone: None,
                protocol: Protocol::Tcp,
                ports: vec![22],
            });
        }
        let listening: BTreeSet<&str> = facts
            .binaries
            .iter()
            .filter(|b| b.reason == BinaryReason::Listening)
            .map(|b| b.path.as_str())
            .collect();
        if !listening.is_empty() {
            notes.push(format!(
                "inbound is default-deny: add a [[firewall.inbound]] for each service that must stay reachable; listening now: {}",
                listening.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        Firewall {
            guard_seconds: 60,
            icmp: true,
            outbound_default: Verdict::Accept,
            zones: Vec::new(),
            inbound,
            outbound: Vec::new(),
        }
    });

    let mut browser = Browser {
        browsers: Vec::new(),
        javascript: None,
        extensions: None,
        downloads: None,
        safe_browsing: None,
        updates: None,
    };
    for (kind, prefix) in [
        (BrowserKind::Chromium, "baseline.browser.chromium."),
        (BrowserKind::Firefox, "baseline.browser.firefox."),
    ] {
        let mine: Vec<&str> = failing
            .iter()
            .copied()
            .filter(|c| c.starts_with(prefix))
            .collect();
        if mine.is_empty() {
            continue;
        }
        browser.browsers.push(kind);
        for check in mine {
            closes.push(check.to_string());
            match check.trim_start_matches(prefix) {
                "javascript" => {
                    notes.push("JavaScript is allowed on the listed sites only: list the sites your users need before signing".into());
                    browser.javascript = Some(JavaScript {
                        mode: ListMode::AllowList,
                        sites: Vec::new(),
                    });
                }
                "extensions" => browser.extensions = Some(Extensions::default()),
                "downloads" => browser.downloads = Some(Downloads::BlockDangerous),
                "safe_browsing" => browser.safe_browsing = Some(SafeBrowsing::Standard),
                "updates" => {
                    browser.updates = Some(Updates {
                        relaunch_within_hours: 24,
                    })
                }
                _ => {}
            }
        }
    }

    if closes.is_empty() {
        return None;
    }
    let policy = Policy {
        baseline: Header {
            name: name_for(&facts.hostname),
            version: "1".into(),
            description: format!(
                "proposed by patchday audit for {}",
                patchday_text::terminal(&facts.hostname)
            ),
        },
        firewall,
        memory: (!memory.sysctls.is_empty()).then_some(memory),
        browser: (!browser.browsers.is_empty()).then_some(browser),
        scan: None,
    };
    let body = policy.to_toml().ok()?;
    let mut text = String::from(
        "# Proposed by `patchday audit`: review, then sign with `patchday catalog add-baseline`.\n",
    );
    for c in &closes {
        text.push_str(&format!("# closes: {c}\n"));
    }
    for n in &notes {
        text.push_str(&format!("# review: {n}\n"));
    }
    text.push_str(&body);
    // What is proposed must be what `baseline check` accepts.
    Policy::parse(&text).ok()?;
    Some(ProposedBaseline {
        closes,
        policy: text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BinaryFacts;
    use patchday_types::InstalledPackage;

    #[test]
    fn failing_items_become_one_baseline_that_checks_and_closes_them() {
        let facts = Facts {
            hostname: "Web 1.example".into(),
            packages: vec![InstalledPackage {
                name: "chromium".into(),
                version: "1".into(),
                architecture: "amd64".into(),
                source: "chromium".into(),
                source_version: "1".into(),
            }],
            sysctl: [
                ("kernel.kptr_restrict".to_string(), "0".to_string()),
                ("fs.protected_symlinks".to_string(), "1".to_string()),
            ]
            .into_iter()
            .collect(),
            firewall_loaded: Some(false),
            sshd: [("permitrootlogin".to_string(), "no".to_string())]
                .into_iter()
                .collect(),
            binaries: vec![BinaryFacts {
                path: "/usr/sbin/nginx".into(),
                reason: BinaryReason::Listening,
                ..BinaryFacts::default()
            }],
            kernel_running: "6.1".into(),
            ..Facts::default()
        };
        let mut findings = crate::hardening::check(&facts);
        findings.extend(crate::browser::check(&facts));
        let p = propose(&facts, &findings).unwrap();
        let policy = Policy::parse(&p.policy).unwrap();
        assert_eq!(policy.baseline.name, "audit-web-1-example");
        assert_eq!(
            policy.memory.as_ref().unwrap().sysctls["kernel.kptr_restrict"],
            1
        );
        assert!(!policy
            .memory
            .as_ref()
            .unwrap()
            .sysctls
            .contains_key("fs.protected_symlinks"));
        let fw = policy.firewall.unwrap();
        assert_eq!(fw.inbound[0].ports, vec![22]);
        assert!(
            p.policy.contains("listening now: /usr/sbin/nginx"),
            "{}",
            p.policy
        );
        let b = policy.browser.unwrap();
        assert_eq!(b.browsers, vec![BrowserKind::Chromium]);
        assert!(p
            .closes
            .contains(&"baseline.browser.chromium.javascript".to_string()));
        assert!(p.closes.contains(&"hardening.firewall".to_string()));

        // Applied, the browser part closes what it claims: compile it into a root, read
        // the facts back from there, check again.
        let root = tempfile::tempdir().unwrap();
        for f in patchday_baseline::browser::compile(
            &policy.baseline.name,
            &b,
            &patchday_baseline::browser::BrowserPaths::default(),
        )
        .unwrap()
        {
            let path = root.path().join(&f.path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, f.content).unwrap();
        }
        let mut after = facts.clone();
        after.browser_policy = crate::browser::collect(root.path());
        for f in crate::browser::check(&after) {
            if f.subject == "chromium" {
                assert_eq!(f.outcome, Outcome::Pass, "{f:?}");
            }
        }
    }

    #[test]
    fn nothing_to_close_proposes_nothing() {
        assert!(propose(&Facts::default(), &[]).is_none());
    }
}
