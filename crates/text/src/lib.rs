//! patchday-text: untrusted text on its way to a terminal, a spreadsheet or a shell.
//!
//! Hostnames, package names, versions, state messages and audit facts come from agents,
//! which an attacker may control. Every text or table output of Patchday passes them
//! through one of these functions, written once here (issue 8, finding 5):
//!
//! - [`terminal`]: C0 and C1 control characters, DEL, line and paragraph separators and
//!   the bidirectional-text controls become visible `\u{…}` escapes, so no escape sequence
//!   (`ESC[2J`, an OSC title), carriage return, fake line or reordered text reaches a
//!   terminal. [`terminal_lines`] keeps the line breaks of a multi-line text.
//! - [`csv_cell`]: [`terminal`], then a cell that a spreadsheet would read as a formula
//!   (`= + - @`, tab, carriage return first) gets a leading `'` (OWASP's CSV injection
//!   advice). Quoting for CSV itself is the `csv` crate's job.
//! - [`shell_word`]: one argument of a suggested command, quoted for a POSIX shell when
//!   it is not a plain word.
//!
//! JSON output needs none of this: JSON encoding escapes control characters itself, and
//! JSON output stays exact. HTML output escapes its markup characters after [`terminal`].
//!
//! This crate must not touch anything but strings: no I/O, no other Patchday crate.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as it is: C0 controls (including tab, CR and
/// LF), DEL, C1 controls, the line and paragraph separators, and the bidirectional
/// controls (LRM, RLM, ALM, the embeddings and overrides U+202A–U+202E, the isolates
/// U+2066–U+2069) that reorder what an operator reads.
pub fn is_unsafe_for_terminal(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

fn escape_where(s: &str, unsafe_char: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One line of untrusted text, safe to print on a terminal: every character for which
/// [`is_unsafe_for_terminal`] holds (line breaks included) becomes a visible `\u{…}`
/// escape, e.g. ESC becomes `\u{1b}`.
pub fn terminal(s: &str) -> Cow<'_, str> {
    escape_where(s, is_unsafe_for_terminal)
}

/// Like [`terminal`], but keeps line feeds: for a multi-line text whose lines are all
/// untrusted alike (a rendered report received from the server). A carriage return is
/// still escaped, so no line can overwrite another.
pub fn terminal_lines(s: &str) -> Cow<'_, str> {
    escape_where(s, |c| c != '\n' && is_unsafe_for_terminal(c))
}

/// A CSV cell's value (before CSV quoting): [`terminal`], and a leading `'` when a
/// spreadsheet would take the cell for a formula (it starts with `=`, `+`, `-`, `@`,
/// tab or carriage return).
pub fn csv_cell(s: &str) -> Cow<'_, str> {
    let escaped = terminal(s);
    if escaped.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{escaped}"))
    } else {
        escaped
    }
}

/// One argument of a command shown to an operator to copy: unchanged when it is a plain
/// shell word, otherwise quoted for a POSIX shell (single quotes), with NUL bytes, which
/// no shell can pass, shown escaped as [`terminal`] does.
pub fn shell_word(s: &str) -> Cow<'_, str> {
    match shlex::try_quote(s) {
        Ok(quoted) => quoted,
        Err(_) => match shlex::try_quote(&terminal(s)) {
            Ok(quoted) => Cow::Owned(quoted.into_owned()),
            // Unreachable: `terminal` escapes every NUL byte.
            Err(_) => Cow::Owned(String::from("''")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in [
            "web-1.example.org",
            "Grüße, 東京",
            "a\\u{1b}b (literal)",
            "",
        ] {
            assert!(matches!(terminal(s), Cow::Borrowed(x) if x == s));
            assert!(matches!(terminal_lines(s), Cow::Borrowed(x) if x == s));
        }
    }

    #[test]
    fn clear_screen_and_osc_title_sequences_are_escaped() {
        assert_eq!(terminal("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(
            terminal("\u{1b}]0;pwned\u{7}host"),
            "\\u{1b}]0;pwned\\u{7}host"
        );
        // The one-byte C1 forms of CSI and OSC, and DEL.
        assert_eq!(
            terminal("\u{9b}2J\u{9d}0;x\u{9c}\u{7f}"),
            "\\u{9b}2J\\u{9d}0;x\\u{9c}\\u{7f}"
        );
    }

    #[test]
    fn carriage_returns_and_fake_rows_are_escaped() {
        assert_eq!(
            terminal("web-1\rroot-ok\nacme  evil  yes"),
            "web-1\\u{d}root-ok\\u{a}acme  evil  yes"
        );
        assert_eq!(terminal("a\tb\0c"), "a\\u{9}b\\u{0}c");
        assert_eq!(
            terminal("line\u{2028}sep\u{2029}"),
            "line\\u{2028}sep\\u{2029}"
        );
    }

    #[test]
    fn terminal_lines_keeps_line_feeds_only() {
        assert_eq!(
            terminal_lines("one\ntwo\r\n\u{1b}[31mthree"),
            "one\ntwo\\u{d}\n\\u{1b}[31mthree"
        );
    }

    #[test]
    fn bidi_overrides_and_marks_are_escaped() {
        let every = [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{61c}',
        ];
        for c in every {
            let s = format!("x{c}y");
            let out = terminal(&s);
            assert!(!out.contains(c), "{c:?} left in {out}");
            assert_eq!(out, format!("x\\u{{{:x}}}y", u32::from(c)));
        }
        // "evil\u{202e}gpj.exe" would read as "evilexe.jpg".
        assert_eq!(terminal("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
    }

    #[test]
    fn no_unsafe_character_survives_any_input() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        for out in [terminal(&all), csv_cell(&all)] {
            assert!(!out.chars().any(is_unsafe_for_terminal));
        }
        assert!(!terminal_lines(&all)
            .chars()
            .any(|c| c != '\n' && is_unsafe_for_terminal(c)));
    }

    #[test]
    fn formula_cells_get_a_leading_quote() {
        assert_eq!(csv_cell("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(csv_cell("+1+1"), "'+1+1");
        assert_eq!(csv_cell("-2+3"), "'-2+3");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        // Tab and CR first: escaped, so no longer a formula either way.
        assert_eq!(csv_cell("\t=1"), "\\u{9}=1");
        assert_eq!(csv_cell("\r=1"), "\\u{d}=1");
        assert_eq!(csv_cell("web-1"), "web-1");
        assert_eq!(csv_cell("a=b"), "a=b");
        assert_eq!(csv_cell("12"), "12");
    }

    #[test]
    fn shell_words_are_quoted_unless_plain() {
        assert_eq!(shell_word("libssl3"), "libssl3");
        assert_eq!(shell_word("x; rm -rf /"), "'x; rm -rf /'");
        assert_eq!(shell_word("$(reboot)"), "'$(reboot)'");
        // Whatever the word, a shell reads it back as exactly one argument.
        for w in [
            "a'b",
            "a b",
            "`id`",
            "x\ny",
            "--opt=$HOME",
            "~root",
            "\u{1b}[2J",
            "",
        ] {
            assert_eq!(
                shlex::split(&shell_word(w)),
                Some(vec![w.to_string()]),
                "{w:?}"
            );
        }
        // NUL cannot be passed: it is shown escaped, and the word stays one word.
        assert_eq!(
            shlex::split(&shell_word("a\0b")),
            Some(vec!["a\\u{0}b".to_string()])
        );
    }
}
