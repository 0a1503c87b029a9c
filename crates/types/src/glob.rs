//! The one shell-style wildcard matcher of Patchday: TUF delegation paths (per segment),
//! mirror exclusions (package names) and group rules (hostnames, releases) all use it.
//!
//! Written here rather than taken from a crate: TUF's delegation semantics are Python's
//! `fnmatch` (classes, and a `[` without its `]` is a literal), which `glob::Pattern`
//! (rejects an unclosed `[`, gives `**` its own meaning) and `wildmatch` (no classes) do
//! not give; and patterns can come from metadata an attacker signs with a delegated key,
//! so matching must stay linear whatever the pattern (the earlier recursive matcher was
//! exponential in the number of `*`).

/// Whether letters must match in case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// `A` matches only `A` (TUF paths, package names).
    Sensitive,
    /// `A` matches `a` (hostnames, release names).
    Insensitive,
}

#[derive(Debug)]
enum Token {
    /// `*`: any run of characters, the empty one included.
    Star,
    /// `?`: exactly one character.
    Any,
    /// `[...]` / `[!...]`: one character in (or not in) the set; `a-z` is a range.
    Class { negated: bool, set: Vec<char> },
    /// Every other character matches itself.
    Literal(char),
}

impl Token {
    /// Whether this one-character token matches `c` (never called for `Star`).
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Star | Token::Any => true,
            Token::Literal(l) => *l == c,
            Token::Class { negated, set } => set_contains(set, c) != *negated,
        }
    }
}

/// `*` any run, `?` one character, `[abc]`, `[a-z]`, `[!abc]` one character of (not of)
/// the set (a `]` first in the set is a member); a `[` without a closing `]` is a literal.
/// `*` crosses every character, `/` included: split paths into segments first where it
/// must not (as TUF does). Time is at most pattern length × text length.
pub fn matches(pattern: &str, text: &str, case: Case) -> bool {
    let fold = |s: &str| -> Vec<char> {
        match case {
            Case::Sensitive => s.chars().collect(),
            Case::Insensitive => s.chars().flat_map(char::to_lowercase).collect(),
        }
    };
    let tokens = tokens(&fold(pattern));
    let text = fold(text);
    // Greedy matching that, on a mismatch, lets the last `*` swallow one more character.
    // Every other token matches exactly one character, so no earlier `*` ever needs to
    // be retried: one backtracking point is enough (the classic linear wildcard match).
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(tok) if text.get(t).is_some_and(|c| tok.matches(*c)) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    tokens
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|tok| matches!(tok, Token::Star))
}

fn tokens(p: &[char]) -> Vec<Token> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while let Some(c) = p.get(i) {
        i += 1;
        out.push(match c {
            '*' => Token::Star,
            '?' => Token::Any,
            '[' => match class(p.get(i..).unwrap_or_default()) {
                Some((negated, set, used)) => {
                    i += used;
                    Token::Class { negated, set }
                }
                None => Token::Literal('['),
            },
            c => Token::Literal(*c),
        });
    }
    out
}

/// Parses a class after its `[`: (negated, members, characters used including `]`).
fn class(p: &[char]) -> Option<(bool, Vec<char>, usize)> {
    let (negated, start) = match p.first() {
        Some('!') => (true, 1),
        _ => (false, 0),
    };
    let body = p.get(start..)?;
    // As in fnmatch, a `]` first in the class is a member; the class ends at the next one.
    let close = body.iter().skip(1).position(|c| *c == ']')? + 1;
    Some((negated, body.get(..close)?.to_vec(), start + close + 1))
}

fn set_contains(set: &[char], c: char) -> bool {
    let mut i = 0;
    while let Some(x) = set.get(i) {
        match (set.get(i + 1), set.get(i + 2)) {
            (Some('-'), Some(hi)) => {
                if *x <= c && c <= *hi {
                    return true;
                }
                i += 3;
            }
            _ => {
                if *x == c {
                    return true;
                }
                i += 1;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::{matches, Case};

    fn yes(p: &str, t: &str) -> bool {
        matches(p, t, Case::Sensitive)
    }

    #[test]
    fn stars_question_marks_and_literals() {
        assert!(yes("*", ""));
        assert!(yes("*", "anything/at all"));
        assert!(yes("*-dbg", "linux-image-6.1.0-28-amd64-dbg"));
        assert!(!yes("*-dbg", "linux-image-6.1.0-28-amd64"));
        assert!(yes("linux-image-*-rt-*", "linux-image-6.1-rt-amd64"));
        assert!(yes("foo-?.tgz", "foo-1.tgz"));
        assert!(!yes("foo-?.tgz", "foo-alpha.tgz"));
        assert!(!yes("foo-?.tgz", "foo-.tgz"));
        assert!(yes("a*b*c", "abc"));
        assert!(yes("a*b*c", "a-b-b-c"));
        assert!(!yes("a*b*c", "a-b-b-"));
        assert!(!yes("abc", "abcd"));
        assert!(!yes("abcd", "abc"));
        assert!(yes("ab**", "ab"));
    }

    #[test]
    fn classes_as_fnmatch_has_them() {
        assert!(yes("v[0-9].[!a]", "v3.b"));
        assert!(!yes("v[0-9].[!a]", "v3.a"));
        assert!(!yes("v[0-9]", "vx"));
        assert!(yes("[]x]", "]"));
        assert!(yes("[!]x]", "y"));
        assert!(!yes("[!]x]", "]"));
        // No closing bracket: a literal `[`.
        assert!(yes("a[b", "a[b"));
        assert!(!yes("a[b", "ab"));
        assert!(yes("*[ab]", "xxb"));
    }

    #[test]
    fn case_is_folded_only_when_asked() {
        assert!(!yes("*.md", "README.MD"));
        assert!(matches("WEB-*", "web-01", Case::Insensitive));
        assert!(matches("web-?1", "WEB-01", Case::Insensitive));
        assert!(matches("[A-Z]*", "web", Case::Insensitive));
    }

    #[test]
    fn a_hostile_pattern_stays_linear() {
        // The recursive matcher needed ~C(60, 30) steps here; this one needs 60 × 61.
        let pattern = "*a".repeat(30) + "b";
        let text = "a".repeat(60);
        assert!(!yes(&pattern, &text));
        assert!(yes(&pattern, &(text + "b")));
    }
}
