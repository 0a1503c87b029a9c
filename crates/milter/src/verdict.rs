//! The decision: one pure function from what was seen (and what clamd said) to a verdict.

use crate::inspect::Inspection;
use crate::policy::{Action, TenantPolicy};
use patchday_clamd::ScanResult;
use serde::Serialize;

/// What happens to a message. Ordered from mildest to strictest, so that a message for
/// several tenants gets the strictest of their verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    /// Delivered.
    Accept,
    /// Kept in the quarantine directory (the sender sees success).
    Quarantine,
    /// Refused for now (4xx): the sender's MTA keeps it and tries again.
    Tempfail,
    /// Refused (5xx) with the reason.
    Reject,
}

/// A verdict and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// What happens.
    pub kind: VerdictKind,
    /// Every reason (empty for a clean accept).
    pub reasons: Vec<String>,
}

/// What the virus scan gave, if it was needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scan {
    /// The content rules already reject: clamd was not asked.
    NotNeeded,
    /// clamd answered.
    Done(ScanResult),
    /// clamd could not answer (down, timeout, refused): never an accept.
    Failed(String),
}

/// The content rules alone (before clamd): the strictest action and its reasons.
pub fn content_verdict(policy: &TenantPolicy, seen: &Inspection) -> Verdict {
    let mut kind = VerdictKind::Accept;
    let mut reasons = Vec::new();
    let mut raise = |action: Action, reason: String, kind: &mut VerdictKind| {
        let as_kind = match action {
            Action::Accept => return,
            Action::Quarantine => VerdictKind::Quarantine,
            Action::Reject => VerdictKind::Reject,
        };
        *kind = (*kind).max(as_kind);
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    };
    for problem in &seen.problems {
        raise(Action::Reject, problem.reason(), &mut kind);
    }
    for file in &seen.files {
        if let Some(k) = file.kind.filter(|k| policy.block_types.contains(k)) {
            raise(
                Action::Reject,
                format!("{} is a blocked type ({})", file.path, k.name()),
                &mut kind,
            );
        }
        if file.macros {
            raise(
                policy.macros,
                format!("{} is an Office document with macros", file.path),
                &mut kind,
            );
        }
        if file.encrypted {
            raise(
                policy.encrypted_archives,
                format!("{} is encrypted and cannot be inspected", file.path),
                &mut kind,
            );
        }
    }
    Verdict { kind, reasons }
}

/// The whole verdict: content rules, then clamd's answer. A failed scan tempfails any
/// message the content rules did not reject.
pub fn decide(policy: &TenantPolicy, seen: &Inspection, scan: &Scan) -> Verdict {
    let mut verdict = content_verdict(policy, seen);
    if verdict.kind == VerdictKind::Reject {
        return verdict;
    }
    match scan {
        Scan::NotNeeded | Scan::Done(ScanResult::Clean) => {}
        Scan::Done(ScanResult::Found(name)) => {
            let kind = match policy.virus {
                Action::Quarantine => VerdictKind::Quarantine,
                Action::Reject | Action::Accept => VerdictKind::Reject,
            };
            verdict.kind = verdict.kind.max(kind);
            verdict.reasons.push(format!("virus found: {name}"));
        }
        Scan::Failed(why) => {
            verdict.kind = verdict.kind.max(VerdictKind::Tempfail);
            verdict
                .reasons
                .push(format!("virus scan unavailable, try again later ({why})"));
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ContentKind;
    use crate::inspect::{FileSeen, Problem};
    use crate::policy::Policy;

    fn policy(extra: &str) -> TenantPolicy {
        Policy::parse(
            &format!("[[tenant]]\nname = \"t\"\ndomains = [\"*\"]\n{extra}"),
            "test",
        )
        .unwrap()
        .tenant
        .remove(0)
    }

    fn file(path: &str, kind: Option<ContentKind>) -> FileSeen {
        FileSeen {
            path: path.into(),
            kind,
            size: 1,
            macros: false,
            encrypted: false,
        }
    }

    #[test]
    fn a_clean_message_with_a_clean_scan_is_accepted() {
        let seen = Inspection {
            files: vec![file("a.pdf", Some(ContentKind::Pdf))],
            problems: vec![],
        };
        let v = decide(&policy(""), &seen, &Scan::Done(ScanResult::Clean));
        assert_eq!(v.kind, VerdictKind::Accept);
        assert!(v.reasons.is_empty());
    }

    #[test]
    fn clamd_down_is_a_tempfail_never_an_accept() {
        let seen = Inspection::default();
        let v = decide(
            &policy(""),
            &seen,
            &Scan::Failed("connection refused".into()),
        );
        assert_eq!(v.kind, VerdictKind::Tempfail);
        // A quarantine still becomes a tempfail: the message must not be lost nor released.
        let mut m = file("m.doc", Some(ContentKind::Ole));
        m.macros = true;
        let seen = Inspection {
            files: vec![m],
            problems: vec![],
        };
        let v = decide(&policy(""), &seen, &Scan::Failed("timeout".into()));
        assert_eq!(v.kind, VerdictKind::Tempfail);
    }

    #[test]
    fn an_executable_named_pdf_is_rejected_by_content() {
        let seen = Inspection {
            files: vec![file("invoice.pdf", Some(ContentKind::Elf))],
            problems: vec![],
        };
        let v = decide(&policy(""), &seen, &Scan::NotNeeded);
        assert_eq!(v.kind, VerdictKind::Reject);
        assert_eq!(v.reasons, vec!["invoice.pdf is a blocked type (elf)"]);
    }

    #[test]
    fn macros_and_encryption_follow_the_policy() {
        let mut m = file("m.docm", Some(ContentKind::Zip));
        m.macros = true;
        let mut e = file("x.zip/secret.txt", None);
        e.encrypted = true;
        let seen = Inspection {
            files: vec![m, e],
            problems: vec![],
        };
        let clean = Scan::Done(ScanResult::Clean);
        let v = decide(
            &policy("macros = \"quarantine\"\nencrypted_archives = \"accept\""),
            &seen,
            &clean,
        );
        assert_eq!(v.kind, VerdictKind::Quarantine);
        let v = decide(
            &policy("macros = \"accept\"\nencrypted_archives = \"reject\""),
            &seen,
            &clean,
        );
        assert_eq!(v.kind, VerdictKind::Reject);
        assert_eq!(
            v.reasons,
            vec!["x.zip/secret.txt is encrypted and cannot be inspected"]
        );
    }

    #[test]
    fn what_could_not_be_inspected_is_rejected() {
        let seen = Inspection {
            files: vec![],
            problems: vec![Problem::Bomb {
                path: "bomb.zip/zeros".into(),
                limit: 10,
            }],
        };
        let v = decide(&policy(""), &seen, &Scan::NotNeeded);
        assert_eq!(v.kind, VerdictKind::Reject);
        assert!(v.reasons[0].contains("archive bomb"));
    }

    #[test]
    fn a_virus_is_rejected_or_quarantined_per_policy() {
        let found = Scan::Done(ScanResult::Found("Eicar".into()));
        let v = decide(&policy(""), &Inspection::default(), &found);
        assert_eq!(v.kind, VerdictKind::Reject);
        let v = decide(
            &policy("virus = \"quarantine\""),
            &Inspection::default(),
            &found,
        );
        assert_eq!(v.kind, VerdictKind::Quarantine);
        assert_eq!(v.reasons, vec!["virus found: Eicar"]);
    }
}
