//! Unified diffs of two texts, line by line, as `diff -u` prints them:
//! what `berth diff` shows for each object that would change. The texts
//! are objects of a few hundred lines at most, so a plain longest common
//! subsequence table is fast enough and easy to trust.

use std::fmt::Write as _;

/// Lines of unchanged context around each change.
const CONTEXT: usize = 3;

/// One line of the edit script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// The unified diff from `before` to `after`, headed `--- from` and
/// `+++ to`; empty when the texts are equal.
pub fn unified(before: &str, after: &str, from: &str, to: &str) -> String {
    let old: Vec<&str> = before.lines().collect();
    let new: Vec<&str> = after.lines().collect();
    let script = edit_script(&old, &new);
    if script.iter().all(|l| matches!(l, Line::Same(_))) {
        return String::new();
    }
    let mut out = format!("--- {from}\n+++ {to}\n");
    for hunk in hunks(&script) {
        write_hunk(&mut out, &script, hunk);
    }
    out
}

/// The shortest edit script from `old` to `new`: removals before
/// additions where both happen at one place, as diff prints them.
fn edit_script<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Line<'a>> {
    // common[i][j]: length of the longest common subsequence of old[i..]
    // and new[j..].
    let mut common = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut script = Vec::with_capacity(old.len() + new.len());
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            script.push(Line::Same(old[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < old.len() && (j == new.len() || common[i + 1][j] >= common[i][j + 1]) {
            script.push(Line::Removed(old[i]));
            i += 1;
        } else {
            script.push(Line::Added(new[j]));
            j += 1;
        }
    }
    script
}

/// The ranges of `script` each hunk shows: every change with up to
/// [`CONTEXT`] lines around it, hunks that touch merged.
fn hunks(script: &[Line<'_>]) -> Vec<std::ops::Range<usize>> {
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    for (at, line) in script.iter().enumerate() {
        if matches!(line, Line::Same(_)) {
            continue;
        }
        let start = at.saturating_sub(CONTEXT);
        let end = (at + 1 + CONTEXT).min(script.len());
        match ranges.last_mut() {
            Some(last) if start <= last.end => last.end = end,
            _ => ranges.push(start..end),
        }
    }
    ranges
}

fn write_hunk(out: &mut String, script: &[Line<'_>], hunk: std::ops::Range<usize>) {
    // Line numbers (1-based) where the hunk starts in each text.
    let before = &script[..hunk.start];
    let old_start = 1 + before
        .iter()
        .filter(|l| !matches!(l, Line::Added(_)))
        .count();
    let new_start = 1 + before
        .iter()
        .filter(|l| !matches!(l, Line::Removed(_)))
        .count();
    let lines = &script[hunk];
    let old_len = lines
        .iter()
        .filter(|l| !matches!(l, Line::Added(_)))
        .count();
    let new_len = lines
        .iter()
        .filter(|l| !matches!(l, Line::Removed(_)))
        .count();
    // `diff -u` numbers an empty side by the line before it.
    let number = |start: usize, len: usize| if len == 0 { start - 1 } else { start };
    let _ = writeln!(
        out,
        "@@ -{},{old_len} +{},{new_len} @@",
        number(old_start, old_len),
        number(new_start, new_len)
    );
    for line in lines {
        let _ = match line {
            Line::Same(text) => writeln!(out, " {text}"),
            Line::Removed(text) => writeln!(out, "-{text}"),
            Line::Added(text) => writeln!(out, "+{text}"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "x", "y"), "");
    }

    #[test]
    fn a_changed_line_is_shown_with_its_context() {
        let before = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let after = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        assert_eq!(
            unified(
                before,
                after,
                "service/web (master)",
                "service/web (web.yaml)"
            ),
            "--- service/web (master)\n+++ service/web (web.yaml)\n\
             @@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
        );
    }

    #[test]
    fn distant_changes_are_separate_hunks_and_near_ones_merge() {
        let before: String = (1..=20).map(|n| format!("line{n}\n")).collect();
        let after = before
            .replace("line2\n", "two\n")
            .replace("line19\n", "nineteen\n");
        let diff = unified(&before, &after, "a", "b");
        assert_eq!(diff.matches("@@ -").count(), 2, "{diff}");
        let after = before
            .replace("line2\n", "two\n")
            .replace("line6\n", "six\n");
        let diff = unified(&before, &after, "a", "b");
        assert_eq!(diff.matches("@@ -").count(), 1, "{diff}");
    }

    #[test]
    fn a_new_object_is_all_additions() {
        assert_eq!(
            unified("", "kind: Route\nname: www\n", "/dev/null", "route/www"),
            "--- /dev/null\n+++ route/www\n@@ -0,0 +1,2 @@\n+kind: Route\n+name: www\n"
        );
    }
}
