//! Issue 13, point 5: the browser items of a baseline checked on any host, managed or
//! not: what Chromium and Firefox read from their enterprise policy files (collected by
//! [`collect`]) against what a `[browser]` baseline sets (JavaScript limited to a list of
//! sites, an extension allow-list, dangerous downloads refused, Safe Browsing on and not
//! bypassable, forced relaunch after updates).

use crate::model::{BrowserPolicyFacts, Facts, Finding, FindingKind, Outcome};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Chromium's policy directories, relative to the root (Debian's chromium, Google Chrome).
pub const CHROMIUM_DIRS: &[&str] = &[
    "etc/chromium/policies/managed",
    "etc/opt/chrome/policies/managed",
];

/// Where Firefox builds look for `policies.json`, in the order they prefer
/// (`/etc/<app name>/policies` first, then the installation's `distribution`).
pub const FIREFOX_FILES: &[&str] = &[
    "etc/firefox-esr/policies/policies.json",
    "etc/firefox/policies/policies.json",
    "usr/lib/firefox-esr/distribution/policies.json",
    "usr/lib/firefox/distribution/policies.json",
];

/// A policy file larger than this is not read (no browser policy is near it).
const MAX_FILE: u64 = 1 << 20;

fn read_small(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The policies the browsers under `root` read: Chromium's directory merged as Chromium
/// merges it (every file, the name sorting last winning a policy two files set), and the
/// first Firefox `policies.json` that exists.
pub fn collect(root: &Path) -> BrowserPolicyFacts {
    let mut facts = BrowserPolicyFacts::default();
    // The first directory Chromium itself reads; Chrome's is read by Chrome only.
    if let Some(dir) = CHROMIUM_DIRS.first() {
        let mut names: Vec<_> = std::fs::read_dir(root.join(dir))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        for path in names {
            let Some(Ok(Value::Object(map))) =
                read_small(&path).map(|t| serde_json::from_str::<Value>(&t))
            else {
                continue;
            };
            for (k, v) in map {
                facts.chromium.insert(k, v);
            }
        }
    }
    for f in FIREFOX_FILES {
        let Some(text) = read_small(&root.join(f)) else {
            continue;
        };
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            if let Some(Value::Object(p)) = v.get("policies") {
                facts.firefox = p.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            }
        }
        // Firefox reads the first file that exists, valid or not.
        break;
    }
    facts
}

fn installed(facts: &Facts, names: &[&str]) -> bool {
    facts
        .packages
        .iter()
        .any(|p| names.contains(&p.name.as_str()))
}

/// The remediation every browser finding shares.
pub const REMEDIATION: &str = "apply a browser baseline (patchday baseline new --kind browser, or the one `patchday audit --propose-baseline` writes)";

fn finding(check: &str, subject: &str, ok: Option<bool>, pass: &str, fail: &str) -> Finding {
    let (outcome, reason, severity, remediation) = match ok {
        None => (
            Outcome::NotApplicable,
            format!("{subject} is not installed"),
            None,
            String::new(),
        ),
        Some(true) => (Outcome::Pass, pass.to_string(), None, String::new()),
        Some(false) => (
            Outcome::Fail,
            fail.to_string(),
            Some("medium".to_string()),
            REMEDIATION.to_string(),
        ),
    };
    Finding {
        check: check.to_string(),
        kind: FindingKind::Hardening,
        outcome,
        subject: subject.to_string(),
        reason,
        remediation,
        ids: Vec::new(),
        severity,
        known_exploited: false,
        fix: None,
    }
}

fn int(p: &BTreeMap<String, Value>, k: &str) -> Option<i64> {
    p.get(k).and_then(Value::as_i64)
}

fn non_empty_list(p: &BTreeMap<String, Value>, k: &str) -> bool {
    p.get(k)
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// Every browser check over the facts.
pub fn check(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    let c = &facts.browser_policy.chromium;
    let chromium = installed(facts, &["chromium"]).then_some(());
    let on = |ok: bool| chromium.map(|()| ok);
    out.push(finding(
        "baseline.browser.chromium.javascript",
        "chromium",
        on(int(c, "DefaultJavaScriptSetting") == Some(2)
            || non_empty_list(c, "JavaScriptBlockedForUrls")),
        "JavaScript is limited by policy (an allow-list, or a block-list of sites)",
        "JavaScript runs on every site: no DefaultJavaScriptSetting = 2 with an allow-list, nor a JavaScriptBlockedForUrls list, in /etc/chromium/policies/managed",
    ));
    out.push(finding(
        "baseline.browser.chromium.extensions",
        "chromium",
        on(c.get("ExtensionInstallBlocklist")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "*"))),
        "extensions are blocked except an allow-list",
        "any extension can be installed: ExtensionInstallBlocklist does not hold \"*\"",
    ));
    out.push(finding(
        "baseline.browser.chromium.downloads",
        "chromium",
        on(matches!(int(c, "DownloadRestrictions"), Some(1..=4))),
        "dangerous downloads are refused by policy (DownloadRestrictions)",
        "dangerous downloads are not refused: DownloadRestrictions is not set to 1 to 4",
    ));
    out.push(finding(
        "baseline.browser.chromium.safe_browsing",
        "chromium",
        on(matches!(int(c, "SafeBrowsingProtectionLevel"), Some(1 | 2))
            && c.get("DisableSafeBrowsingProceedAnyway") == Some(&Value::Bool(true))),
        "Safe Browsing is on by policy and its warnings cannot be bypassed",
        "Safe Browsing is not enforced: SafeBrowsingProtectionLevel 1 or 2 with DisableSafeBrowsingProceedAnyway is not set (users can turn it off or click through)",
    ));
    out.push(finding(
        "baseline.browser.chromium.updates",
        "chromium",
        on(int(c, "RelaunchNotification") == Some(2)),
        "a relaunch is required after an update (RelaunchNotification = 2)",
        "an installed update waits for the user to restart the browser: RelaunchNotification is not 2",
    ));

    let f = &facts.browser_policy.firefox;
    let firefox = installed(facts, &["firefox-esr", "firefox"]).then_some(());
    let on = |ok: bool| firefox.map(|()| ok);
    let locked_true = |pref: &str| {
        f.get("Preferences")
            .and_then(|p| p.get(pref))
            .is_some_and(|v| v.get("Value") == Some(&Value::Bool(true)))
    };
    out.push(finding(
        "baseline.browser.firefox.extensions",
        "firefox",
        on(f.get("ExtensionSettings")
            .and_then(|s| s.get("*"))
            .and_then(|s| s.get("installation_mode"))
            == Some(&Value::String("blocked".into()))),
        "add-ons are blocked except an allow-list",
        "any add-on can be installed: ExtensionSettings has no \"*\" with installation_mode blocked",
    ));
    out.push(finding(
        "baseline.browser.firefox.safe_browsing",
        "firefox",
        on(f.get("DisableSecurityBypass")
            .and_then(|d| d.get("SafeBrowsing"))
            == Some(&Value::Bool(true))
            && locked_true("browser.safebrowsing.malware.enabled")),
        "Safe Browsing is on by policy and its warnings cannot be bypassed",
        "Safe Browsing is not enforced: DisableSecurityBypass.SafeBrowsing and the locked browser.safebrowsing.malware.enabled preference are not set",
    ));
    out.push(finding(
        "baseline.browser.firefox.downloads",
        "firefox",
        on(locked_true("browser.safebrowsing.downloads.remote.block_dangerous")),
        "dangerous downloads are refused by policy",
        "dangerous downloads are not refused: browser.safebrowsing.downloads.remote.block_dangerous is not locked on",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchday_types::InstalledPackage;

    fn with(names: &[&str]) -> Facts {
        Facts {
            packages: names
                .iter()
                .map(|n| InstalledPackage {
                    name: (*n).into(),
                    version: "1".into(),
                    architecture: "amd64".into(),
                    source: (*n).into(),
                    source_version: "1".into(),
                })
                .collect(),
            ..Facts::default()
        }
    }

    #[test]
    fn chromium_merge_lets_the_last_file_win_and_firefox_reads_the_first_file() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join(CHROMIUM_DIRS[0]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.json"),
            r#"{"DefaultJavaScriptSetting": 2, "X": 1}"#,
        )
        .unwrap();
        std::fs::write(dir.join("b.json"), r#"{"DefaultJavaScriptSetting": 1}"#).unwrap();
        std::fs::write(dir.join("c.json"), "{ not json").unwrap();
        let ff = d.path().join(FIREFOX_FILES[0]);
        std::fs::create_dir_all(ff.parent().unwrap()).unwrap();
        std::fs::write(&ff, r#"{"policies": {"ExtensionUpdate": true}}"#).unwrap();
        let later = d.path().join(FIREFOX_FILES[1]);
        std::fs::create_dir_all(later.parent().unwrap()).unwrap();
        std::fs::write(&later, r#"{"policies": {"AppAutoUpdate": true}}"#).unwrap();
        let p = collect(d.path());
        assert_eq!(p.chromium["DefaultJavaScriptSetting"], 1);
        assert_eq!(p.chromium["X"], 1);
        assert!(p.firefox.contains_key("ExtensionUpdate"));
        assert!(!p.firefox.contains_key("AppAutoUpdate"));
    }

    #[test]
    fn checks_fail_without_policy_pass_with_it_and_skip_absent_browsers() {
        let none = check(&Facts::default());
        assert!(none.iter().all(|f| f.outcome == Outcome::NotApplicable));
        let mut facts = with(&["chromium", "firefox-esr"]);
        let bare = check(&facts);
        assert!(bare.iter().all(|f| f.outcome == Outcome::Fail), "{bare:?}");
        let c = &mut facts.browser_policy.chromium;
        c.insert("DefaultJavaScriptSetting".into(), 2.into());
        c.insert("ExtensionInstallBlocklist".into(), serde_json::json!(["*"]));
        let js = check(&facts);
        let outcome = |id: &str| js.iter().find(|f| f.check == id).unwrap().outcome;
        assert_eq!(
            outcome("baseline.browser.chromium.javascript"),
            Outcome::Pass
        );
        assert_eq!(
            outcome("baseline.browser.chromium.extensions"),
            Outcome::Pass
        );
        assert_eq!(
            outcome("baseline.browser.chromium.downloads"),
            Outcome::Fail
        );
    }
}
