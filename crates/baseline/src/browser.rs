//! Issue 13, point 4: browser policy. A `[browser]` section compiled into the enterprise
//! policy files the browsers document: Chromium reads every file in
//! `/etc/chromium/policies/managed/` (one JSON object of policy names), Firefox one
//! `policies.json` (`{"policies": {...}}`), on Debian's firefox-esr from
//! `/etc/firefox-esr/policies/` and on Mozilla's builds from `/etc/firefox/policies/`.
//!
//! What each browser can enforce differs; what one cannot is said by [`limits`] (shown by
//! `patchday baseline check`), never silently dropped.

use crate::memory::OwnedFile;
use crate::{BaselineError, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The `[browser]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Browser {
    /// Which browsers get the policy (default: both).
    #[serde(default = "both")]
    pub browsers: Vec<BrowserKind>,
    /// Where JavaScript may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub javascript: Option<JavaScript>,
    /// The extensions that may be installed; every other one is blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Extensions>,
    /// Which downloads are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloads: Option<Downloads>,
    /// Safe Browsing (malware and phishing verdicts), on and not bypassable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_browsing: Option<SafeBrowsing>,
    /// Updates forced where the browser supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates: Option<Updates>,
}

fn both() -> Vec<BrowserKind> {
    vec![BrowserKind::Chromium, BrowserKind::Firefox]
}

/// A browser the policy is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrowserKind {
    /// Chromium (and Google Chrome, which reads the same policy names).
    Chromium,
    /// Firefox and Debian's firefox-esr.
    Firefox,
}

/// `[browser.javascript]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JavaScript {
    /// `allow-list`: script runs only on `sites`; `block-list`: everywhere but `sites`.
    pub mode: ListMode,
    /// Chromium content-setting patterns: `https://intranet.example.com`,
    /// `[*.]example.org`, `http://127.0.0.2:8080`.
    #[serde(default)]
    pub sites: Vec<String>,
}

/// How a list of sites is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListMode {
    /// Only the sites listed.
    AllowList,
    /// Everywhere except the sites listed.
    BlockList,
}

/// `[browser.extensions]`: an allow-list per browser (their ids differ).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extensions {
    /// Chromium extension ids (32 letters a-p) that may be installed.
    #[serde(default)]
    pub chromium: Vec<String>,
    /// Firefox add-on ids (`uBlock0@raymondhill.net`, `{uuid}`) that may be installed.
    #[serde(default)]
    pub firefox: Vec<String>,
}

/// Which downloads are refused (Chromium's `DownloadRestrictions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Downloads {
    /// Files Safe Browsing knows to be malicious.
    BlockMalicious,
    /// Dangerous file types and files Safe Browsing flags.
    BlockDangerous,
    /// Also potentially dangerous or unwanted ones.
    BlockPotentiallyDangerous,
    /// Every download.
    BlockAll,
}

/// Safe Browsing level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SafeBrowsing {
    /// Lists checked locally.
    Standard,
    /// Real-time checks (sends URLs to the provider).
    Enhanced,
}

/// `[browser.updates]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Updates {
    /// After an update is installed (on Debian through apt, so through Patchday), the
    /// browser must be restarted within this many hours (Chromium's
    /// `RelaunchNotification`); 1 to 720.
    pub relaunch_within_hours: u32,
}

/// Where the policy files go, relative to the host's root. A parameter so that tests and
/// images can point elsewhere; [`Default`] is Debian's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowserPaths {
    /// Directories Chromium-family browsers read every file of.
    pub chromium_dirs: Vec<String>,
    /// `policies.json` files Firefox builds read (the first that exists wins, so each gets
    /// the whole document).
    pub firefox_files: Vec<String>,
}

impl Default for BrowserPaths {
    fn default() -> Self {
        BrowserPaths {
            // Debian's chromium; Google Chrome reads /etc/opt/chrome/policies/managed.
            chromium_dirs: vec![
                "etc/chromium/policies/managed".into(),
                "etc/opt/chrome/policies/managed".into(),
            ],
            // Debian's firefox-esr reads /etc/<app name>/policies (its SysConfD), Mozilla's
            // own builds /etc/firefox/policies.
            firefox_files: vec![
                "etc/firefox-esr/policies/policies.json".into(),
                "etc/firefox/policies/policies.json".into(),
            ],
        }
    }
}

/// The file name a baseline's Chromium policy has in each Chromium directory.
pub fn chromium_file_name(baseline: &str) -> String {
    format!("patchday-{baseline}.json")
}

impl Browser {
    /// Checks lists and values.
    pub fn check(&self) -> Result<()> {
        let err = |m: String| Err(BaselineError::Policy(m));
        if self.browsers.is_empty() {
            return err("browser.browsers is empty; name \"chromium\", \"firefox\" or both".into());
        }
        if let Some(js) = &self.javascript {
            if js.sites.len() > 1000 {
                return err("browser.javascript.sites: at most 1000 sites".into());
            }
            for s in &js.sites {
                let ok = !s.is_empty()
                    && s.len() <= 256
                    && s.bytes()
                        .all(|b| b.is_ascii_graphic() && !b"\"\\<>".contains(&b));
                if !ok {
                    return err(format!(
                        "browser.javascript.sites: {s:?} is not a site pattern (e.g. https://intranet.example.com, [*.]example.org, http://127.0.0.2:8080)"
                    ));
                }
            }
        }
        if let Some(x) = &self.extensions {
            for id in &x.chromium {
                if id.len() != 32 || !id.bytes().all(|b| (b'a'..=b'p').contains(&b)) {
                    return err(format!(
                        "browser.extensions.chromium: {id:?} is not a Chromium extension id (32 letters a to p, as chrome://extensions shows it)"
                    ));
                }
            }
            for id in &x.firefox {
                let ok = !id.is_empty()
                    && id.len() <= 255
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"@._-{}+".contains(&b));
                if !ok {
                    return err(format!(
                        "browser.extensions.firefox: {id:?} is not a Firefox add-on id (e.g. uBlock0@raymondhill.net or {{uuid}}, as about:support shows it)"
                    ));
                }
            }
        }
        if let Some(u) = &self.updates {
            if !(1..=720).contains(&u.relaunch_within_hours) {
                return err(format!(
                    "browser.updates.relaunch_within_hours = {} must be 1 to 720",
                    u.relaunch_within_hours
                ));
            }
        }
        Ok(())
    }

    fn has(&self, b: BrowserKind) -> bool {
        self.browsers.contains(&b)
    }
}

/// Chromium's policy document: policy name to value.
pub fn chromium_policies(b: &Browser) -> Map<String, Value> {
    let mut p = Map::new();
    if let Some(js) = &b.javascript {
        match js.mode {
            ListMode::AllowList => {
                // 2 = do not allow any site to run JavaScript, except those listed.
                p.insert("DefaultJavaScriptSetting".into(), json!(2));
                p.insert("JavaScriptAllowedForUrls".into(), json!(js.sites));
            }
            ListMode::BlockList => {
                p.insert("DefaultJavaScriptSetting".into(), json!(1));
                p.insert("JavaScriptBlockedForUrls".into(), json!(js.sites));
            }
        }
    }
    if let Some(x) = &b.extensions {
        p.insert("ExtensionInstallBlocklist".into(), json!(["*"]));
        p.insert("ExtensionInstallAllowlist".into(), json!(x.chromium));
    }
    if let Some(d) = b.downloads {
        let level = match d {
            Downloads::BlockDangerous => 1,
            Downloads::BlockPotentiallyDangerous => 2,
            Downloads::BlockAll => 3,
            Downloads::BlockMalicious => 4,
        };
        p.insert("DownloadRestrictions".into(), json!(level));
    }
    if let Some(s) = b.safe_browsing {
        let level = match s {
            SafeBrowsing::Standard => 1,
            SafeBrowsing::Enhanced => 2,
        };
        p.insert("SafeBrowsingProtectionLevel".into(), json!(level));
        p.insert("DisableSafeBrowsingProceedAnyway".into(), json!(true));
    }
    if let Some(u) = &b.updates {
        // 2 = the user must relaunch; the period is in milliseconds.
        p.insert("RelaunchNotification".into(), json!(2));
        p.insert(
            "RelaunchNotificationPeriod".into(),
            json!(u64::from(u.relaunch_within_hours) * 3_600_000),
        );
        p.insert("ComponentUpdatesEnabled".into(), json!(true));
    }
    p
}

/// Firefox's `policies.json` content (inside `{"policies": ...}`).
pub fn firefox_policies(b: &Browser) -> Map<String, Value> {
    let mut p = Map::new();
    let mut prefs = Map::new();
    let mut lock = |name: &str, value: Value| {
        prefs.insert(name.into(), json!({"Value": value, "Status": "locked"}));
    };
    if let Some(x) = &b.extensions {
        let mut settings = Map::new();
        settings.insert(
            "*".into(),
            json!({
                "installation_mode": "blocked",
                "blocked_install_message": "Your administrator's baseline allows only listed extensions."
            }),
        );
        for id in &x.firefox {
            settings.insert(id.clone(), json!({"installation_mode": "allowed"}));
        }
        p.insert("ExtensionSettings".into(), Value::Object(settings));
    }
    if b.safe_browsing.is_some() {
        p.insert(
            "DisableSecurityBypass".into(),
            json!({"SafeBrowsing": true}),
        );
        lock("browser.safebrowsing.malware.enabled", json!(true));
        lock("browser.safebrowsing.phishing.enabled", json!(true));
    }
    if let Some(d) = b.downloads {
        lock("browser.safebrowsing.downloads.enabled", json!(true));
        lock(
            "browser.safebrowsing.downloads.remote.block_dangerous",
            json!(true),
        );
        lock(
            "browser.safebrowsing.downloads.remote.block_dangerous_host",
            json!(true),
        );
        let wider = matches!(
            d,
            Downloads::BlockPotentiallyDangerous | Downloads::BlockAll
        );
        lock(
            "browser.safebrowsing.downloads.remote.block_potentially_unwanted",
            json!(wider),
        );
        lock(
            "browser.safebrowsing.downloads.remote.block_uncommon",
            json!(wider),
        );
    }
    if b.updates.is_some() {
        p.insert("AppAutoUpdate".into(), json!(true));
        p.insert("ExtensionUpdate".into(), json!(true));
    }
    if !prefs.is_empty() {
        p.insert("Preferences".into(), Value::Object(prefs));
    }
    p
}

/// What the policy asks that a browser cannot enforce, one line each.
pub fn limits(b: &Browser) -> Vec<String> {
    let mut out = Vec::new();
    if b.has(BrowserKind::Firefox) {
        if b.javascript.is_some() {
            out.push("firefox: no enterprise policy sets JavaScript per site; the JavaScript list applies to Chromium only".into());
        }
        if b.downloads == Some(Downloads::BlockAll) {
            out.push("firefox: no policy blocks every download; Firefox blocks dangerous, unwanted and uncommon ones instead".into());
        }
        if b.updates.is_some() {
            out.push("firefox: Debian's firefox-esr updates through apt (so through Patchday), not itself; AppAutoUpdate matters for Mozilla's builds".into());
        }
    }
    if b.has(BrowserKind::Chromium) && b.updates.is_some() {
        out.push("chromium: Debian's chromium updates through apt (so through Patchday); the policy forces the relaunch that activates an update".into());
    }
    out
}

/// The files a `[browser]` section of baseline `name` needs, at `paths` (relative to the
/// host's root).
pub fn compile(name: &str, b: &Browser, paths: &BrowserPaths) -> Result<Vec<OwnedFile>> {
    let mut out = Vec::new();
    let text = |v: &Value| {
        serde_json::to_string_pretty(v)
            .map(|s| s + "\n")
            .map_err(|e| BaselineError::Policy(format!("browser policy as JSON: {e}")))
    };
    if b.has(BrowserKind::Chromium) {
        let content = text(&Value::Object(chromium_policies(b)))?;
        for dir in &paths.chromium_dirs {
            out.push(OwnedFile {
                path: format!("{}/{}", dir.trim_end_matches('/'), chromium_file_name(name)),
                content: content.clone(),
            });
        }
    }
    if b.has(BrowserKind::Firefox) {
        let content = text(&json!({ "policies": firefox_policies(b) }))?;
        for f in &paths.firefox_files {
            out.push(OwnedFile {
                path: f.clone(),
                content: content.clone(),
            });
        }
    }
    Ok(out)
}

/// Chromium gives the file whose name sorts last the say over a policy two files set, and
/// Google calls the outcome undefined: another file in a Chromium directory that sets a
/// policy the baseline sets can override it. Returns `(file name, policy names)` of each
/// such file in `dir_listing` (name and content of every file in the directory, the
/// baseline's own file included).
pub fn chromium_overrides(
    own_file: &str,
    own: &Map<String, Value>,
    dir_listing: &[(String, String)],
) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (name, content) in dir_listing {
        if name == own_file {
            continue;
        }
        // Chromium reads a file that is not valid JSON as nothing, so it overrides nothing.
        let Ok(Value::Object(theirs)) = serde_json::from_str::<Value>(content) else {
            continue;
        };
        let clash: Vec<String> = theirs
            .keys()
            .filter(|k| own.contains_key(*k))
            .cloned()
            .collect();
        if !clash.is_empty() {
            out.push((name.clone(), clash));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Browser {
        Browser {
            browsers: both(),
            javascript: Some(JavaScript {
                mode: ListMode::AllowList,
                sites: vec!["http://127.0.0.2:8080".into(), "[*.]example.org".into()],
            }),
            extensions: Some(Extensions {
                chromium: vec!["cjpalhdlnbpafiamejdnhcphjbkeiagm".into()],
                firefox: vec!["uBlock0@raymondhill.net".into()],
            }),
            downloads: Some(Downloads::BlockDangerous),
            safe_browsing: Some(SafeBrowsing::Standard),
            updates: Some(Updates {
                relaunch_within_hours: 24,
            }),
        }
    }

    #[test]
    fn chromium_gets_the_documented_policy_names() {
        let p = chromium_policies(&policy());
        assert_eq!(p["DefaultJavaScriptSetting"], json!(2));
        assert_eq!(
            p["JavaScriptAllowedForUrls"],
            json!(["http://127.0.0.2:8080", "[*.]example.org"])
        );
        assert_eq!(p["ExtensionInstallBlocklist"], json!(["*"]));
        assert_eq!(
            p["ExtensionInstallAllowlist"],
            json!(["cjpalhdlnbpafiamejdnhcphjbkeiagm"])
        );
        assert_eq!(p["DownloadRestrictions"], json!(1));
        assert_eq!(p["SafeBrowsingProtectionLevel"], json!(1));
        assert_eq!(p["RelaunchNotification"], json!(2));
        assert_eq!(p["RelaunchNotificationPeriod"], json!(86_400_000u64));
        let mut b = policy();
        b.javascript = Some(JavaScript {
            mode: ListMode::BlockList,
            sites: vec!["http://127.0.0.1:9".into()],
        });
        let p = chromium_policies(&b);
        assert_eq!(p["DefaultJavaScriptSetting"], json!(1));
        assert!(p.contains_key("JavaScriptBlockedForUrls"));
        assert!(!p.contains_key("JavaScriptAllowedForUrls"));
    }

    #[test]
    fn firefox_gets_extension_settings_and_locked_preferences() {
        let p = firefox_policies(&policy());
        assert_eq!(
            p["ExtensionSettings"]["*"]["installation_mode"],
            json!("blocked")
        );
        assert_eq!(
            p["ExtensionSettings"]["uBlock0@raymondhill.net"]["installation_mode"],
            json!("allowed")
        );
        assert_eq!(
            p["Preferences"]["browser.safebrowsing.downloads.remote.block_dangerous"],
            json!({"Value": true, "Status": "locked"})
        );
        assert_eq!(p["DisableSecurityBypass"], json!({"SafeBrowsing": true}));
        assert!(limits(&policy())
            .iter()
            .any(|l| l.contains("JavaScript per site")));
    }

    #[test]
    fn files_land_at_the_given_paths() {
        let paths = BrowserPaths {
            chromium_dirs: vec!["x/chromium/".into()],
            firefox_files: vec!["y/policies.json".into()],
        };
        let files = compile("desk", &policy(), &paths).unwrap();
        assert_eq!(files[0].path, "x/chromium/patchday-desk.json");
        assert_eq!(files[1].path, "y/policies.json");
        let v: Value = serde_json::from_str(&files[1].content).unwrap();
        assert!(v["policies"]["ExtensionSettings"].is_object());
        let mut only = policy();
        only.browsers = vec![BrowserKind::Chromium];
        assert_eq!(compile("desk", &only, &paths).unwrap().len(), 1);
        assert_eq!(
            BrowserPaths::default().firefox_files[0],
            "etc/firefox-esr/policies/policies.json"
        );
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let mut b = policy();
        b.extensions.as_mut().unwrap().chromium = vec!["not-an-id".into()];
        assert!(b.check().unwrap_err().to_string().contains("not-an-id"));
        let mut b = policy();
        b.javascript.as_mut().unwrap().sites = vec!["http://a b".into()];
        assert!(b.check().unwrap_err().to_string().contains("site pattern"));
        let mut b = policy();
        b.updates = Some(Updates {
            relaunch_within_hours: 0,
        });
        assert!(b.check().unwrap_err().to_string().contains("1 to 720"));
        let mut b = policy();
        b.browsers.clear();
        assert!(b.check().is_err());
        policy().check().unwrap();
    }

    #[test]
    fn another_file_setting_the_same_policy_is_an_override() {
        let own = chromium_policies(&policy());
        let listing = vec![
            ("patchday-desk.json".to_string(), "{}".to_string()),
            (
                "zz-local.json".to_string(),
                r#"{"DefaultJavaScriptSetting": 1, "HomepageLocation": "x"}"#.to_string(),
            ),
            ("broken.json".to_string(), "{".to_string()),
            (
                "other.json".to_string(),
                r#"{"ShowHomeButton": true}"#.to_string(),
            ),
        ];
        let found = chromium_overrides("patchday-desk.json", &own, &listing);
        assert_eq!(
            found,
            vec![(
                "zz-local.json".to_string(),
                vec!["DefaultJavaScriptSetting".to_string()]
            )]
        );
    }
}
