//! Object names: every pod, container and service name ends up in a systemd
//! unit name, a Docker container name and an iptables comment, so names are
//! held to DNS-1123 labels.

use crate::limits::MAX_ENV_NAME_LEN;

/// Longest name a DNS-1123 label may have.
pub const MAX_DNS_LABEL_LEN: usize = 63;

/// Why a name is not a DNS-1123 label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("must not be empty")]
    Empty,
    /// The name is longer than 63 characters.
    #[error("must be at most {MAX_DNS_LABEL_LEN} characters, got {0}")]
    TooLong(usize),
    /// The name holds a character outside `[a-z0-9-]`.
    #[error("must consist of lowercase letters, digits and '-', found {0:?}")]
    BadCharacter(char),
    /// The name starts or ends with '-'.
    #[error("must start and end with a lowercase letter or digit")]
    BadEdge,
}

/// Checks that `name` is a DNS-1123 label: 1 to 63 characters of `[a-z0-9-]`,
/// starting and ending with a letter or digit.
pub fn validate_dns_label(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_DNS_LABEL_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(NameError::BadCharacter(bad));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(NameError::BadEdge);
    }
    Ok(())
}

/// Whether `name` is `[A-Za-z_][A-Za-z0-9_]*`: a variable name that a
/// shell, Docker and systemd's `Environment=` all accept.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks an environment variable's name: not empty, at most
/// [`MAX_ENV_NAME_LEN`] bytes, and [`is_env_name`]. The one rule for a
/// container's variables, a service's and the values it publishes.
pub fn validate_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > MAX_ENV_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_ENV_NAME_LEN} bytes, got {}",
            name.len()
        ));
    }
    if !is_env_name(name) {
        return Err("must match [A-Za-z_][A-Za-z0-9_]*".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        for good in ["A", "_", "a_b", "PATH", "X1", "_9"] {
            assert!(is_env_name(good), "{good}");
            assert_eq!(validate_env_name(good), Ok(()), "{good}");
        }
        for bad in ["1A", "A-B", "A B", "A=B", "É", "a.b"] {
            assert!(!is_env_name(bad), "{bad}");
            assert_eq!(
                validate_env_name(bad),
                Err("must match [A-Za-z_][A-Za-z0-9_]*".to_owned()),
                "{bad}"
            );
        }
        assert_eq!(validate_env_name(""), Err("must not be empty".to_owned()));
        assert_eq!(
            validate_env_name(&"A".repeat(256)),
            Err("must be at most 255 bytes, got 256".to_owned())
        );
        assert_eq!(validate_env_name(&"A".repeat(255)), Ok(()));
    }

    #[test]
    fn accepts_labels() {
        for ok in ["a", "web", "db-1", "0abc", &"x".repeat(63)] {
            assert_eq!(validate_dns_label(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_non_labels() {
        assert_eq!(validate_dns_label(""), Err(NameError::Empty));
        assert_eq!(
            validate_dns_label(&"x".repeat(64)),
            Err(NameError::TooLong(64))
        );
        assert_eq!(validate_dns_label("Web"), Err(NameError::BadCharacter('W')));
        assert_eq!(validate_dns_label("a_b"), Err(NameError::BadCharacter('_')));
        assert_eq!(
            validate_dns_label("a\nb"),
            Err(NameError::BadCharacter('\n'))
        );
        assert_eq!(validate_dns_label("-a"), Err(NameError::BadEdge));
        assert_eq!(validate_dns_label("a-"), Err(NameError::BadEdge));
    }
}
