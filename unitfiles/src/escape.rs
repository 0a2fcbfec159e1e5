//! Escaping of values for systemd unit files.
//!
//! The rules are systemd's (checked against systemd 252):
//!
//! - Unit names: `systemd-escape` turns every byte outside `[A-Za-z0-9:_.]`
//!   into `\xNN`, and a leading `.` too. `-` must be escaped because it
//!   separates levels in slice names.
//! - `ExecStart=` words (systemd.service(5), "Command lines"): the line is
//!   split into words with the quoting of systemd.syntax(7) (double quotes,
//!   C escapes), `%` starts a specifier (systemd.unit(5)), so `%%` is a
//!   literal `%`, and `$` starts a variable when the command runs, so `$$`
//!   is a literal `$`.
//! - `Environment=` (systemd.exec(5)): the same quoting and specifiers, but
//!   "`$` has no special meaning" there: doubling it would put `$$` into the
//!   value, so it is left alone.
//! - Settings taken verbatim after specifier expansion, like `Description=`,
//!   know no quoting at all: see [`escape_free_text`].
//!
//! A line ending in an unpaired `\` continues on the next line, and `\n` or
//! `\r` ends a line: the quoting functions never emit either raw.

use std::fmt::Write as _;

/// Why a value cannot be written into a unit file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscapeError {
    /// systemd rejects `\x00` and a raw NUL would end the value, so a string
    /// holding NUL has no spelling in a unit file.
    #[error("contains a NUL character, which a unit file cannot hold")]
    Nul,
    /// The name of an `Environment=` assignment is not
    /// `[A-Za-z_][A-Za-z0-9_]*`; systemd would ignore the assignment.
    #[error("invalid environment variable name {0:?}")]
    InvalidEnvName(String),
}

/// Escapes one component of a unit name the way `systemd-escape` does, except
/// that `/` is escaped as `\x2f` rather than turned into `-`: a component is
/// not a path, and `-` is the slice hierarchy separator.
///
/// `"my-pod"` becomes `"my\x2dpod"`, so `berth-my\x2dpod.slice` sits directly
/// under `berth.slice`.
pub fn escape_unit_name_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, byte) in s.bytes().enumerate() {
        let plain =
            byte.is_ascii_alphanumeric() || byte == b':' || byte == b'_' || (byte == b'.' && i > 0);
        if plain {
            out.push(char::from(byte));
        } else {
            // Lowercase hex, as systemd writes it, so names compare equal.
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// Quotes `s` as one word of an `ExecStart=` line; systemd hands the program
/// exactly `s` as that argument.
///
/// The word is wrapped in double quotes; `\` and `"` are backslash-escaped,
/// newline and tab become `\n` and `\t`, other control characters `\xNN`
/// (or `\uNNNN` outside ASCII), `%` becomes `%%` and `$` becomes `$$`.
/// Fails only for NUL.
pub fn quote_exec_arg(s: &str) -> Result<String, EscapeError> {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    push_quoted_body(&mut out, s, Dollar::Double)?;
    out.push('"');
    Ok(out)
}

/// Quotes one `Environment=` assignment, `"NAME=value"`, so that the process
/// gets exactly `value` in `NAME`.
///
/// Same escaping as [`quote_exec_arg`] except that `$` is left alone:
/// systemd does not expand variables in `Environment=`. Fails for a NUL in
/// the value or a name that is not `[A-Za-z_][A-Za-z0-9_]*`.
///
/// `Environment=` is readable by anyone over D-Bus: never pass secrets.
pub fn quote_env_assignment(name: &str, value: &str) -> Result<String, EscapeError> {
    if !berth_model::is_env_name(name) {
        return Err(EscapeError::InvalidEnvName(name.to_owned()));
    }
    let mut out = String::with_capacity(name.len() + value.len() + 3);
    out.push('"');
    out.push_str(name);
    out.push('=');
    push_quoted_body(&mut out, value, Dollar::Keep)?;
    out.push('"');
    Ok(out)
}

/// Makes `s` safe for a setting that systemd takes verbatim after specifier
/// expansion, such as `Description=`.
///
/// Such settings have no quoting or escapes, so not every string can be
/// written exactly; the text is for people, so it is kept readable instead:
/// `%` becomes `%%`, control characters (newlines included) become spaces,
/// and surrounding whitespace and trailing backslashes (which would join the
/// next line) are dropped, as systemd would drop the whitespace anyway.
pub fn escape_free_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%%"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.trim_start()
        .trim_end_matches(|c: char| c == '\\' || c.is_whitespace())
        .to_owned()
}

/// Whether `$` is special where the quoted text goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dollar {
    Double,
    Keep,
}

fn push_quoted_body(out: &mut String, s: &str, dollar: Dollar) -> Result<(), EscapeError> {
    for c in s.chars() {
        match c {
            '\0' => return Err(EscapeError::Nul),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '%' => out.push_str("%%"),
            '$' if dollar == Dollar::Double => out.push_str("$$"),
            // `\xNN` yields a raw byte, which is only a whole character in
            // ASCII; the C1 controls need a code point escape.
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_name_components_match_systemd_escape() {
        // Expected values produced by systemd-escape 252 (for input without '/').
        let cases = [
            ("web", "web"),
            ("my-pod", "my\\x2dpod"),
            ("a.b:c_d", "a.b:c_d"),
            (".hidden", "\\x2ehidden"),
            ("a..b.", "a..b."),
            ("-x", "\\x2dx"),
            ("a b%$\\", "a\\x20b\\x25\\x24\\x5c"),
            ("é", "\\xc3\\xa9"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(escape_unit_name_component(input), expected, "{input:?}");
        }
        // Not a path: '/' must not become the '-' level separator.
        assert_eq!(escape_unit_name_component("a/b"), "a\\x2fb");
    }

    #[test]
    fn exec_args_are_quoted_and_escaped() {
        let cases = [
            ("plain", r#""plain""#),
            ("", r#""""#),
            ("two words", r#""two words""#),
            ("100%", r#""100%%""#),
            ("%n", r#""%%n""#),
            ("$HOME ${X} $$", r#""$$HOME $${X} $$$$""#),
            (r"back\slash\", r#""back\\slash\\""#),
            (r#"say "hi""#, r#""say \"hi\"""#),
            ("it's", r#""it's""#),
            ("a\nb\tc", r#""a\nb\tc""#),
            ("\r\u{1}\u{1b}\u{7f}", r#""\x0d\x01\x1b\x7f""#),
            ("\u{85}", r#""\u0085""#),
            (";", r#"";""#),
            ("café ✓", r#""café ✓""#),
        ];
        for (input, expected) in cases {
            assert_eq!(quote_exec_arg(input).as_deref(), Ok(expected), "{input:?}");
        }
        assert_eq!(quote_exec_arg("a\0b"), Err(EscapeError::Nul));
    }

    #[test]
    fn quoted_words_never_hold_a_raw_line_break() {
        let nasty = "x\\\n\r\u{b}\u{c}\u{85}\\";
        let quoted = quote_exec_arg(nasty).unwrap();
        assert!(
            !quoted.contains(['\n', '\r', '\u{b}', '\u{c}', '\u{85}']),
            "{quoted}"
        );
        assert!(quoted.ends_with("\\\\\""), "{quoted}");
    }

    #[test]
    fn env_assignments_keep_dollar_signs() {
        assert_eq!(quote_env_assignment("A", "b").as_deref(), Ok(r#""A=b""#));
        assert_eq!(
            quote_env_assignment("EMPTY", "").as_deref(),
            Ok(r#""EMPTY=""#)
        );
        assert_eq!(
            quote_env_assignment("NASTY", "$HOME 50% \"q\" 'q' \\ =\nend\t").as_deref(),
            Ok(r#""NASTY=$HOME 50%% \"q\" 'q' \\ =\nend\t""#)
        );
        assert_eq!(
            quote_env_assignment("_X1", "\u{7}").as_deref(),
            Ok(r#""_X1=\x07""#)
        );
    }

    #[test]
    fn env_assignments_reject_what_systemd_would_ignore() {
        for bad in ["", "1A", "A-B", "A=B", "A B", "É"] {
            assert_eq!(
                quote_env_assignment(bad, "v"),
                Err(EscapeError::InvalidEnvName(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(quote_env_assignment("A", "\0"), Err(EscapeError::Nul));
    }

    #[test]
    fn free_text_stays_on_one_line() {
        let cases = [
            ("berth pod web", "berth pod web"),
            ("50% of %n", "50%% of %%n"),
            ("two\nlines\r\n", "two lines"),
            ("  padded\t", "padded"),
            (r"ends in \", "ends in"),
            ("ends in \\\\ \\", "ends in"),
            (
                r#"keeps "quotes", 'quotes', $vars and \back\slashes"#,
                r#"keeps "quotes", 'quotes', $vars and \back\slashes"#,
            ),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(escape_free_text(input), expected, "{input:?}");
        }
    }

    #[test]
    fn error_messages_are_lowercase_without_period() {
        for error in [
            EscapeError::Nul,
            EscapeError::InvalidEnvName("1".to_owned()),
        ] {
            let text = error.to_string();
            assert!(
                text.starts_with(|c: char| c.is_lowercase()) && !text.ends_with('.'),
                "{text}"
            );
        }
    }
}
