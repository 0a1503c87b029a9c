//! Renders a plan: terminal text, JSON, and a self-contained HTML page (inline CSS, no
//! scripts, no external assets) that a service provider can hand to a customer.

use crate::model::Finding;
use crate::plan::{Action, Plan, Section};
use patchday_text::terminal as t;
use std::fmt::Write as _;

/// Output formats of a report.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Terminal text.
    Text,
    /// The plan as JSON.
    Json,
    /// A self-contained HTML page.
    Html,
}

/// Renders `plan` in `format`.
pub fn render(plan: &Plan, format: Format) -> Result<String, serde_json::Error> {
    Ok(match format {
        Format::Text => text(plan),
        Format::Json => json(plan)?,
        Format::Html => html(plan),
    })
}

/// The plan as pretty-printed JSON.
pub fn json(plan: &Plan) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string_pretty(plan)?;
    s.push('\n');
    Ok(s)
}

const SECTIONS: [Section; 6] = [
    Section::EndOfLife,
    Section::KnownExploited,
    Section::AvailableFixes,
    Section::RebootNeeded,
    Section::Hardening,
    Section::Informational,
];

fn id_list(ids: &[String], max: usize) -> String {
    let mut s = ids.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if ids.len() > max {
        let _ = write!(s, " (+{} more)", ids.len() - max);
    }
    s
}

fn summary_line(plan: &Plan) -> String {
    let s = &plan.summary;
    format!(
        "{} failing, {} passed, {} not applicable; {} actions close {} vulnerabilities ({} informational)",
        s.failed, s.passed, s.not_applicable, s.actions, s.ids_closed, s.informational
    )
}

/// The plan as terminal text. Every fact-derived field goes through
/// `patchday_text::terminal`: an agent's hostname, package names or reasons cannot move
/// the cursor, clear the screen or start a fake line (issue 8, finding 5).
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Security plan for {}{}, {}",
        if plan.host.is_empty() {
            "host".into()
        } else {
            t(&plan.host)
        },
        if plan.release.is_empty() {
            String::new()
        } else {
            format!(" ({})", t(&plan.release))
        },
        plan.generated_at
    );
    let _ = writeln!(out, "{}", summary_line(plan));
    let mut n = 0;
    for section in SECTIONS {
        let actions: Vec<&Action> = plan.section(section).collect();
        if actions.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n== {} ({}) ==", section.title(), actions.len());
        for a in actions {
            n += 1;
            let mut tags = Vec::new();
            if let Some(s) = &a.severity {
                tags.push(t(s).into_owned());
            }
            if a.known_exploited {
                tags.push("known exploited".into());
            }
            if a.exposed {
                tags.push("listening".into());
            }
            let tags = if tags.is_empty() {
                String::new()
            } else {
                format!("[{}] ", tags.join(", "))
            };
            let _ = writeln!(out, "{n:>3}. {tags}{}", t(&a.title));
            if !a.ids.is_empty() {
                let _ = writeln!(out, "       ids: {}", t(&id_list(&a.ids, 8)));
            }
            for f in a.findings.iter().take(3) {
                let _ = writeln!(out, "       why: {}", t(&f.reason));
            }
            if a.findings.len() > 3 {
                let _ = writeln!(out, "       ... and {} more findings", a.findings.len() - 3);
            }
            if !a.remediation.is_empty()
                && a.remediation != a.title
                && section != Section::Informational
            {
                let _ = writeln!(out, "       do:  {}", t(&a.remediation));
            }
        }
    }
    if !plan.not_applicable.is_empty() {
        let _ = writeln!(
            out,
            "\n== Not applicable ({}) ==",
            plan.not_applicable.len()
        );
        for f in &plan.not_applicable {
            let _ = writeln!(
                out,
                "  - {} {}: {}",
                t(&f.check),
                t(&f.subject),
                t(&f.reason)
            );
        }
    }
    if let Some(p) = &plan.proposed_baseline {
        let _ = writeln!(
            out,
            "\n== Proposed baseline (closes {} checks; review, then `patchday catalog add-baseline`) ==",
            p.closes.len()
        );
        for line in p.policy.lines() {
            let _ = writeln!(out, "  {}", t(line));
        }
    }
    if plan.summary.actions == 0 {
        let _ = writeln!(
            out,
            "\nNothing to do: no failing check outside the informational items."
        );
    }
    out
}

/// Escapes text for HTML element content and attribute values: markup characters, and
/// (through `patchday_text::terminal`) control and bidirectional-override characters,
/// which would otherwise reorder what a reader sees (issue 8, finding 5).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in t(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root { --ink:#1b1f24; --muted:#5b6470; --line:#d8dde3; --bg:#f6f7f9; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
header { border-bottom: 3px solid var(--ink); margin-bottom: 16px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; }
.meta { color: var(--muted); margin: 0 0 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; min-width: 140px; }
.card b { display: block; font-size: 22px; }
table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; vertical-align: top; padding: 8px 10px; border-bottom: 1px solid var(--line); }
th { background: #eef1f4; font-weight: 600; }
td.n { width: 2.5em; color: var(--muted); }
.sev { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; background: #7a8490; }
.sev-critical { background: #9b1c1c; } .sev-high { background: #c2410c; }
.sev-medium { background: #a16207; } .sev-low { background: #3f6212; } .sev-unimportant { background: #6b7280; }
.tag { display: inline-block; padding: 1px 6px; margin-left: 4px; border-radius: 4px; font-size: 12px; border: 1px solid currentColor; }
.kev { color: #9b1c1c; } .exposed { color: #1d4ed8; }
.ids { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; color: var(--muted); word-break: break-word; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; background: #eef1f4; padding: 1px 4px; border-radius: 3px; }
details { margin-top: 4px; } summary { cursor: pointer; color: var(--muted); }
details ul { margin: 4px 0; padding-left: 20px; }
.ok { background: #fff; border: 1px solid var(--line); padding: 12px; }
footer { color: var(--muted); font-size: 12px; margin-top: 32px; }
@media print { body { background: #fff; } details { display: block; } }
"#;

fn findings_list(findings: &[Finding]) -> String {
    let mut s = String::from("<ul>");
    for f in findings {
        let _ = write!(
            s,
            "<li><code>{}</code> {}</li>",
            escape_html(&f.check),
            escape_html(&f.reason)
        );
    }
    s.push_str("</ul>");
    s
}

/// The plan as one self-contained HTML page.
pub fn html(plan: &Plan) -> String {
    let e = escape_html;
    let host = if plan.host.is_empty() {
        "host"
    } else {
        &plan.host
    };
    let s = &plan.summary;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Security plan: {host}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n\
         <header><h1>Security plan for {host}</h1>\
         <p class=\"meta\">{release} &middot; generated {generated}</p></header>\n\
         <section class=\"cards\" id=\"summary\">\
         <div class=\"card\"><b id=\"count-actions\">{actions}</b>actions to take</div>\
         <div class=\"card\"><b id=\"count-ids\">{ids}</b>vulnerabilities closed by them</div>\
         <div class=\"card\"><b id=\"count-failed\">{failed}</b>failing checks</div>\
         <div class=\"card\"><b id=\"count-passed\">{passed}</b>passed checks</div>\
         <div class=\"card\"><b id=\"count-info\">{info}</b>informational items</div>\
         </section>\n",
        host = e(host),
        release = e(&plan.release),
        generated = e(&plan.generated_at.to_string()),
        actions = s.actions,
        ids = s.ids_closed,
        failed = s.failed,
        passed = s.passed,
        info = s.informational,
    );
    if s.actions == 0 {
        out.push_str(
            "<p class=\"ok\" id=\"nothing-to-do\">Nothing to do: no failing check outside \
             the informational items.</p>\n",
        );
    }
    let mut n = 0;
    for section in SECTIONS {
        let actions: Vec<&Action> = plan.section(section).collect();
        if actions.is_empty() {
            continue;
        }
        let slug = match section {
            Section::EndOfLife => "end-of-life",
            Section::KnownExploited => "known-exploited",
            Section::AvailableFixes => "available-fixes",
            Section::RebootNeeded => "reboot-needed",
            Section::Hardening => "hardening",
            Section::Informational => "informational",
        };
        let _ = write!(
            out,
            "<section id=\"{slug}\" data-section=\"{slug}\">\n<h2>{} ({})</h2>\n<table>\n\
             <thead><tr><th>#</th><th>Severity</th><th>Action</th><th>Ids</th></tr></thead>\n<tbody>\n",
            e(section.title()),
            actions.len()
        );
        for a in actions {
            n += 1;
            let sev = a.severity.as_deref().unwrap_or("unrated");
            let mut tags = String::new();
            if a.known_exploited {
                tags.push_str("<span class=\"tag kev\">known exploited</span>");
            }
            if a.exposed {
                tags.push_str("<span class=\"tag exposed\">listening service</span>");
            }
            let remediation = if a.remediation.is_empty()
                || a.remediation == a.title
                || section == Section::Informational
            {
                String::new()
            } else {
                format!("<div>Do: <code>{}</code></div>", e(&a.remediation))
            };
            let _ = writeln!(
                out,
                "<tr class=\"action\" data-subject=\"{subject}\"><td class=\"n\">{n}</td>\
                 <td><span class=\"sev sev-{sevc}\">{sev}</span></td>\
                 <td><div class=\"title\">{title}{tags}</div>{remediation}\
                 <details><summary>{count} finding{plural}</summary>{list}</details></td>\
                 <td class=\"ids\">{ids}</td></tr>",
                subject = e(&a.subject),
                sevc = e(sev),
                sev = e(sev),
                title = e(&a.title),
                count = a.findings.len(),
                plural = if a.findings.len() == 1 { "" } else { "s" },
                list = findings_list(&a.findings),
                ids = e(&id_list(&a.ids, 12)),
            );
        }
        out.push_str("</tbody>\n</table>\n</section>\n");
    }
    for (id, title, list) in [
        ("passed", "Passed checks", &plan.passed),
        ("not-applicable", "Not applicable", &plan.not_applicable),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<section id=\"{id}\"><h2>{title} ({})</h2><details><summary>show</summary><ul>",
            list.len()
        );
        for f in list.iter() {
            let _ = write!(
                out,
                "<li><code>{}</code> {}: {}</li>",
                e(&f.check),
                e(&f.subject),
                e(&f.reason)
            );
        }
        out.push_str("</ul></details></section>\n");
    }
    if let Some(p) = &plan.proposed_baseline {
        let _ = write!(
            out,
            "<section id=\"proposed-baseline\"><h2>Proposed baseline (closes {} checks)</h2>\
             <p class=\"meta\">Review it, then sign it with <code>patchday catalog add-baseline</code>.</p><pre>",
            p.closes.len()
        );
        for line in p.policy.lines() {
            let _ = writeln!(out, "{}", e(line));
        }
        out.push_str("</pre></section>\n");
    }
    out.push_str(
        "<footer>Produced by Patchday's security audit. Severity comes from the advisory \
         feeds (CVSS, Debian urgency); \"listening service\" marks packages that own a \
         program with an open network socket.</footer>\n</main>\n</body>\n</html>\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Facts, FindingKind, Fix, Outcome};

    fn sample_plan() -> Plan {
        let mut v = Finding {
            check: "known-vulnerability".into(),
            kind: FindingKind::Vulnerability,
            outcome: Outcome::Fail,
            subject: "openssl".into(),
            reason: "source openssl <3.0> is affected by CVE-2024-0001 & more".into(),
            remediation: "Upgrade source package openssl to 3.0.15-1~deb12u1 or later".into(),
            ids: vec!["CVE-2024-0001".into(), "DSA-5001-1".into()],
            severity: Some("high".into()),
            known_exploited: true,
            fix: Some(Fix {
                source: "openssl".into(),
                version: "3.0.15-1~deb12u1".into(),
            }),
        };
        let mut na = v.clone();
        na.outcome = Outcome::NotApplicable;
        na.check = "end-of-life.release".into();
        na.reason = "no distro-info".into();
        let mut hard = v.clone();
        hard.kind = FindingKind::Hardening;
        hard.check = "hardening.sysctl.kernel.kptr_restrict".into();
        hard.subject = "kernel.kptr_restrict".into();
        hard.fix = None;
        hard.ids.clear();
        hard.known_exploited = false;
        hard.severity = Some("low".into());
        hard.remediation = "sysctl -w kernel.kptr_restrict=1".into();
        v.subject = "openssl".into();
        let facts = Facts {
            hostname: "web<1>".into(),
            ..Facts::default()
        };
        crate::plan::build(
            &facts,
            vec![v, na, hard],
            "2026-11-10T09:00:00Z".parse().unwrap(),
        )
    }

    #[test]
    fn text_report_lists_sections_in_order() {
        let t = text(&sample_plan());
        let kev = t.find("== Known exploited").unwrap();
        let hard = t.find("== Hardening").unwrap();
        assert!(kev < hard);
        assert!(t.contains("[high, known exploited] Upgrade openssl to 3.0.15-1~deb12u1"));
        assert!(t.contains("ids: CVE-2024-0001, DSA-5001-1"));
        assert!(t.contains("== Not applicable (1) =="));
    }

    /// Issue 8, finding 5: an agent's facts (hostname, release, package names and the
    /// reasons built from them) with escape sequences, CR, fake lines and bidi overrides.
    #[test]
    fn agent_text_with_escape_sequences_is_escaped_in_text_and_html() {
        let hostile =
            "web\u{1b}[2J\u{1b}]0;pwned\u{7}\r  1. [low] fake\nline\u{202e}gpj.exe\u{9b}m";
        let mut plan = sample_plan();
        plan.host = hostile.into();
        plan.release = hostile.into();
        for a in &mut plan.actions {
            a.title = hostile.into();
            a.remediation = format!("apt-get install --only-upgrade {hostile}");
            for f in &mut a.findings {
                f.reason = hostile.into();
            }
        }
        for f in &mut plan.not_applicable {
            f.subject = hostile.into();
        }
        let unsafe_char = |c: char| c != '\n' && patchday_text::is_unsafe_for_terminal(c);
        let text = text(&plan);
        assert!(!text.chars().any(unsafe_char), "{text:?}");
        assert!(text.starts_with(
            "Security plan for web\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{d}  1. [low] fake\\u{a}line\\u{202e}gpj.exe\\u{9b}m ("
        ));
        assert!(
            !text.lines().any(|l| l.starts_with("line")),
            "no fake line: {text}"
        );
        let html = html(&plan);
        assert!(!html.chars().any(unsafe_char), "{html:?}");
        assert!(
            html.contains("<h1>Security plan for web\\u{1b}[2J"),
            "{html}"
        );
        // JSON stays exact.
        let back: Plan = serde_json::from_str(&json(&plan).unwrap()).unwrap();
        assert_eq!(back.host, hostile);
    }

    #[test]
    fn json_round_trips() {
        let p = sample_plan();
        let back: Plan = serde_json::from_str(&json(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    fn find_chromium() -> Option<std::path::PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|d| ["chromium", "chromium-browser", "google-chrome"].map(|n| d.join(n)))
            .find(|p| p.is_file())
    }

    fn chromium(
        browser: &Path,
        profile: &Path,
        extra: &[&str],
        page: &Path,
    ) -> std::process::Output {
        // A hung browser must not hang the test run: coreutils' timeout when present.
        let mut cmd = if Path::new("/usr/bin/timeout").is_file() {
            let mut c = std::process::Command::new("/usr/bin/timeout");
            c.arg("120").arg(browser);
            c
        } else {
            std::process::Command::new(browser)
        };
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap()
    }

    use std::path::Path;

    /// The HTML plan renders in headless Chromium: the DOM after parsing has every
    /// section in plan order, the counts, and a screenshot is produced.
    #[test]
    fn html_plan_renders_in_headless_chromium() {
        let Some(browser) = find_chromium() else {
            patchday_lab::skip_or_fail(patchday_lab::Requirement::Chromium, "");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("plan.html");
        let plan = sample_plan();
        std::fs::write(&page, html(&plan)).unwrap();
        let out = chromium(
            &browser,
            &dir.path().join("profile"),
            &["--dump-dom"],
            &page,
        );
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(
            dom.contains("<main>"),
            "chromium printed no DOM; status {:?}, stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(dom.contains("Security plan for web&lt;1&gt;"));
        assert!(dom.contains(&format!(
            "<b id=\"count-actions\">{}</b>",
            plan.summary.actions
        )));
        let kev = dom.find("id=\"known-exploited\"").unwrap();
        let hard = dom.find("id=\"hardening\"").unwrap();
        let na = dom.find("id=\"not-applicable\"").unwrap();
        assert!(kev < hard && hard < na);
        assert!(dom.contains("data-subject=\"openssl\""));
        assert!(dom.contains("Upgrade openssl to 3.0.15-1~deb12u1"));
        assert_eq!(
            dom.matches("<tr class=\"action\"").count(),
            plan.actions.len()
        );

        let shot = dir.path().join("plan.png");
        let arg = format!("--screenshot={}", shot.display());
        let out = chromium(
            &browser,
            &dir.path().join("profile2"),
            &[&arg, "--window-size=1200,900", "--hide-scrollbars"],
            &page,
        );
        let png = std::fs::read(&shot).unwrap_or_else(|e| {
            panic!(
                "no screenshot ({e}); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{} bytes",
            png.len()
        );
    }

    #[test]
    fn html_is_escaped_and_self_contained() {
        let h = html(&sample_plan());
        assert!(h.contains("web&lt;1&gt;"));
        assert!(h.contains("&lt;3.0&gt;"));
        assert!(!h.contains("<script"));
        assert!(!h.contains("http://") && !h.contains("https://") && !h.contains("src="));
        assert!(h.contains("id=\"known-exploited\""));
    }
}
