//! Build contexts: a directory packed as a tar, the way `docker build`
//! sends one. The CLI packs a `--from-dir` upload with it and the agent a
//! git checkout, so both honour `.dockerignore` alike.
//!
//! The ignore rules are docker's (moby's `patternmatcher`, as the docker
//! CLI applies it): one pattern a line, `#` comments, `!` exceptions, the
//! last matching line wins, `*` and `?` stop at `/`, `**` crosses any
//! number of directories, a leading `/` or `./` is dropped, and a pattern
//! that matches a directory excludes everything below it. The Dockerfile
//! and `.dockerignore` themselves are always sent (the daemon needs the
//! first; the CLI keeps the second).
//!
//! Entries are sorted by name, mtimes and modes kept, and symlinks stored
//! as symlinks, never followed: the same tree gives the same tar.

use std::io::{self, Write};
use std::path::Path;

/// The ignore file docker reads at the context's root.
pub const DOCKERIGNORE: &str = ".dockerignore";

/// The Dockerfile's name when none is given.
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";

/// Packs `dir` into a tar held in memory, honouring its `.dockerignore`
/// when asked (a docker build's context; the default `Dockerfile` is kept).
pub fn pack_dir(dir: &Path, honour_dockerignore: bool) -> io::Result<Vec<u8>> {
    let ignore = if honour_dockerignore {
        Some(DEFAULT_DOCKERFILE)
    } else {
        None
    };
    pack_into(dir, ignore, Vec::new())
}

/// Packs `dir` into `out`; with `dockerfile` (its path in the context),
/// the context's `.dockerignore` applies and that Dockerfile is kept.
/// Returns the writer once the tar is finished.
pub fn pack_into<W: Write>(dir: &Path, dockerfile: Option<&str>, out: W) -> io::Result<W> {
    let ignore = match dockerfile {
        Some(dockerfile) => {
            let text = match std::fs::read_to_string(dir.join(DOCKERIGNORE)) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e),
            };
            let mut ignore = IgnoreRules::parse(&text);
            ignore.keep(DOCKERIGNORE);
            ignore.keep(dockerfile);
            ignore
        }
        None => IgnoreRules::default(),
    };
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    append_dir(&mut tar, dir, "", &ignore)?;
    tar.into_inner()
}

fn append_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    relative: &str,
    ignore: &IgnoreRules,
) -> io::Result<()> {
    let here = if relative.is_empty() {
        root.to_path_buf()
    } else {
        root.join(relative)
    };
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&here)? {
        let entry = entry?;
        let name = entry.file_name().into_string().map_err(|name| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: a file name that is not UTF-8",
                    here.join(name).display()
                ),
            )
        })?;
        names.push(name);
    }
    names.sort();
    for name in names {
        let path = here.join(&name);
        let inside = if relative.is_empty() {
            name
        } else {
            format!("{relative}/{name}")
        };
        let meta = std::fs::symlink_metadata(&path)?;
        let kind = meta.file_type();
        let excluded = ignore.excludes(&inside);
        if kind.is_dir() {
            // An excluded directory goes whole, unless an exception may
            // bring back something below it.
            if excluded && !ignore.has_exceptions() {
                continue;
            }
            if !excluded {
                tar.append_path_with_name(&path, &inside)?;
            }
            append_dir(tar, root, &inside, ignore)?;
        } else if (kind.is_file() || kind.is_symlink()) && !excluded {
            tar.append_path_with_name(&path, &inside)?;
        }
        // Sockets, fifos and devices are no build input.
    }
    Ok(())
}

/// A `.dockerignore`'s rules, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// An exception (`!pattern`): a match brings the path back.
    exception: bool,
    pattern: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`: one character but `/`.
    One,
    /// `*`: any run of characters without `/`.
    Star,
    /// `**` (and `**/`): any run of whole directories, or anything at the
    /// end of the pattern.
    AnyDirs,
    /// `[...]` or `[^...]`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl IgnoreRules {
    /// Reads a `.dockerignore`.
    pub fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = clean(pattern);
            if pattern.is_empty() {
                continue;
            }
            rules.push(Rule {
                exception,
                pattern: compile(&pattern),
            });
        }
        IgnoreRules { rules }
    }

    /// Makes sure `path` is sent whatever the rules say, as the docker CLI
    /// does for the Dockerfile and `.dockerignore`.
    pub fn keep(&mut self, path: &str) {
        let path = clean(path);
        if self.excludes(&path) {
            self.rules.push(Rule {
                exception: true,
                pattern: path.chars().map(literal).collect(),
            });
        }
    }

    /// Whether any rule is an exception.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// Whether `path` (relative, `/`-separated) is left out: the last rule
    /// that matches it, or one of its parent directories, decides.
    pub fn excludes(&self, path: &str) -> bool {
        let path = clean(path);
        let chars: Vec<char> = path.chars().collect();
        // The path itself and each of its parent directories.
        let mut prefixes: Vec<&[char]> = chars
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == '/')
            .map(|(i, _)| &chars[..i])
            .collect();
        prefixes.push(&chars);
        let mut excluded = false;
        for rule in &self.rules {
            if prefixes.iter().any(|p| matches(&rule.pattern, p)) {
                excluded = !rule.exception;
            }
        }
        excluded
    }
}

fn literal(c: char) -> Token {
    Token::Char(c)
}

/// Go's `filepath.Clean`, then without a leading `/`: what docker does to
/// each pattern.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

fn compile(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                // `**/` is `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(Token::AnyDirs);
                continue;
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '\\' if i + 1 < chars.len() => {
                i += 1;
                tokens.push(Token::Char(chars[i]));
            }
            '[' => {
                if let Some((class, next)) = class(&chars, i + 1) {
                    tokens.push(class);
                    i = next;
                    continue;
                }
                tokens.push(Token::Char('['));
            }
            c => tokens.push(Token::Char(c)),
        }
        i += 1;
    }
    tokens
}

/// A class from just after its `[`: the token and where the pattern goes
/// on, or `None` when it never closes (then `[` is a plain character).
fn class(chars: &[char], mut i: usize) -> Option<(Token, usize)> {
    let negated = matches!(chars.get(i), Some('^' | '!'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let mut c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        if c == '\\' {
            i += 1;
            c = *chars.get(i)?;
        }
        let mut high = c;
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|h| *h != ']') {
            high = chars[i + 2];
            i += 2;
        }
        ranges.push((c, high));
        i += 1;
    }
}

/// Whether `tokens` match all of `text`.
fn matches(tokens: &[Token], text: &[char]) -> bool {
    let Some((token, rest)) = tokens.split_first() else {
        return text.is_empty();
    };
    match token {
        Token::Char(c) => text.first() == Some(c) && matches(rest, &text[1..]),
        Token::One => text.first().is_some_and(|c| *c != '/') && matches(rest, &text[1..]),
        Token::Class { negated, ranges } => {
            text.first().is_some_and(|c| {
                *c != '/' && ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated
            }) && matches(rest, &text[1..])
        }
        Token::Star => {
            for taken in 0..=text.len() {
                if matches(rest, &text[taken..]) {
                    return true;
                }
                if text.get(taken) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Token::AnyDirs if rest.is_empty() => true,
        // Nothing, or whole directories (each ending in `/`).
        Token::AnyDirs => {
            matches(rest, text)
                || text
                    .iter()
                    .enumerate()
                    .any(|(i, c)| *c == '/' && matches(rest, &text[i + 1..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(rules: &str, path: &str) -> bool {
        IgnoreRules::parse(rules).excludes(path)
    }

    #[test]
    fn comments_blank_lines_and_leading_slashes_are_as_docker_reads_them() {
        let rules = "# a comment\n\n  /build  \n./tmp/*.log\n";
        assert!(excluded(rules, "build"));
        assert!(
            excluded(rules, "build/out/app"),
            "a directory's contents go"
        );
        assert!(excluded(rules, "tmp/a.log"));
        assert!(!excluded(rules, "tmp/sub/a.log"), "* stops at /");
        assert!(!excluded(rules, "# a comment"));
        assert!(!excluded(rules, "src/build"), "patterns are rooted");
    }

    #[test]
    fn stars_and_question_marks_stay_within_a_name() {
        assert!(excluded("*.md", "README.md"));
        assert!(!excluded("*.md", "docs/README.md"));
        assert!(excluded("*/*.md", "docs/README.md"));
        assert!(excluded("file?.txt", "file1.txt"));
        assert!(!excluded("file?.txt", "file10.txt"));
        assert!(excluded("[a-c]x", "bx"));
        assert!(!excluded("[^a-c]x", "bx"));
        assert!(excluded("\\*", "*"));
        assert!(!excluded("\\*", "a"));
    }

    #[test]
    fn a_double_star_crosses_directories() {
        assert!(excluded("**/*.go", "main.go"));
        assert!(excluded("**/*.go", "a/b/c.go"));
        assert!(excluded("a/**/z", "a/z"));
        assert!(excluded("a/**/z", "a/b/c/z"));
        assert!(!excluded("a/**/z", "ab/z"));
        assert!(excluded("a/**", "a/b/c"));
        assert!(excluded("**", "anything/at/all"));
    }

    #[test]
    fn the_last_matching_line_wins_and_exceptions_bring_files_back() {
        let rules = "*.md\n!README.md\n";
        assert!(excluded(rules, "CHANGES.md"));
        assert!(!excluded(rules, "README.md"));
        let rules = "!README.md\n*.md\n";
        assert!(excluded(rules, "README.md"));
        let rules = "docs\n!docs/keep.txt\n";
        assert!(excluded(rules, "docs/other.txt"));
        assert!(!excluded(rules, "docs/keep.txt"));
    }

    #[test]
    fn the_dockerfile_and_the_ignore_file_are_always_kept() {
        let mut rules = IgnoreRules::parse("*\n");
        rules.keep("Dockerfile");
        rules.keep("./docker/Build.df");
        assert!(!rules.excludes("Dockerfile"));
        assert!(!rules.excludes("docker/Build.df"));
        assert!(rules.excludes("src/main.rs"));
    }

    fn names(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let kind = if e.header().entry_type().is_symlink() {
                    format!(" -> {}", e.link_name().unwrap().unwrap().to_string_lossy())
                } else {
                    String::new()
                };
                format!("{}{kind}", e.path().unwrap().display())
            })
            .collect()
    }

    #[test]
    fn a_directory_is_packed_sorted_with_symlinks_kept_and_ignores_honoured() {
        let dir = std::env::temp_dir().join(format!("berth-pack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::create_dir_all(dir.join("target/debug")).unwrap();
        std::fs::write(dir.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.join(".dockerignore"), "target\n*.log\n.dockerignore\n").unwrap();
        std::fs::write(dir.join("src/b.rs"), "b").unwrap();
        std::fs::write(dir.join("src/a.rs"), "a").unwrap();
        std::fs::write(dir.join("debug.log"), "x").unwrap();
        std::fs::write(dir.join("target/debug/app"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();

        let all = names(&pack_dir(&dir, false).unwrap());
        assert!(all.contains(&"target/debug/app".to_owned()), "{all:?}");
        assert!(all.contains(&"link -> /etc/passwd".to_owned()), "{all:?}");

        let tar = pack_dir(&dir, true).unwrap();
        assert_eq!(
            names(&tar),
            [
                ".dockerignore",
                "Dockerfile",
                "link -> /etc/passwd",
                "src",
                "src/a.rs",
                "src/b.rs"
            ]
        );
        assert_eq!(
            tar,
            pack_dir(&dir, true).unwrap(),
            "the same tree, the same tar"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
