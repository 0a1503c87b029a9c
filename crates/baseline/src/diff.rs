//! The operator's view of a new baseline version against the published one: a line diff
//! (`-` removed, `+` added, ` ` kept), shown before it is approved.

/// A unified-style line diff of `old` and `new` (every line, each with its mark).
pub fn lines(old: &str, new: &str) -> Vec<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Longest common subsequence table, from the end.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!("  {}", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removed lines before the added lines that replace them, as diff(1) shows.
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    out
}

/// Whether a diff from [`lines`] changes anything.
pub fn changes(diff: &[String]) -> bool {
    diff.iter().any(|l| !l.starts_with("  "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_added_and_removed_lines() {
        let d = lines("a\nb\nc\n", "a\nc\nd\n");
        assert_eq!(d, vec!["  a", "- b", "  c", "+ d"]);
        assert_eq!(lines("v = 1\n", "v = 2\n"), vec!["- v = 1", "+ v = 2"]);
        assert!(changes(&d));
        assert!(!changes(&lines("x\n", "x\n")));
    }
}
