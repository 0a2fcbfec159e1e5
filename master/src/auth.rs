//! Who may call the API. The cluster's administrator carries the admin
//! token; users and robot accounts carry tokens of their own
//! (`u:<name>:<secret>`), which their roles in projects confine; nodes
//! carry their own credential, got by trading a one-time join token. The
//! master keeps only SHA-256 hashes of tokens and credentials, and
//! compares in constant time.

use std::io::Read;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The holder of the admin token: everything.
    Admin,
    /// A node, by name: its own assignments and status only.
    Node(String),
    /// A user or robot account, by name: what its roles allow.
    User(String),
}

impl std::fmt::Display for Caller {
    /// Who made a change, as records name them: `admin`, `node/h1`, or the
    /// user's name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Admin => f.write_str("admin"),
            Caller::Node(node) => write!(f, "node/{node}"),
            Caller::User(user) => f.write_str(user),
        }
    }
}

/// The prefix of users' tokens, which tells them from node credentials
/// (`<node>.<secret>`) without a lookup.
pub const USER_TOKEN_PREFIX: &str = "u:";

/// A new token for `user`.
pub fn new_user_token(user: &str) -> std::io::Result<String> {
    Ok(format!("{USER_TOKEN_PREFIX}{user}:{}", new_secret()?))
}

/// The user a user's token names, if it is one.
pub fn user_of_token(token: &str) -> Option<&str> {
    let (user, secret) = token.strip_prefix(USER_TOKEN_PREFIX)?.split_once(':')?;
    (!user.is_empty() && !secret.is_empty()).then_some(user)
}

/// A new random secret: 32 bytes from the kernel, hex.
pub fn new_secret() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex(&bytes))
}

/// SHA-256 of a secret, hex: what the store keeps.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Compares two secrets without leaking where they differ through timing.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: &str) -> Option<&str> {
    header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), a);
    }

    #[test]
    fn user_tokens_name_their_user() {
        let token = new_user_token("alice").unwrap();
        assert_eq!(user_of_token(&token), Some("alice"));
        assert_eq!(user_of_token("h1.secret"), None);
        assert_eq!(user_of_token("u:alice"), None);
        assert_eq!(user_of_token("u::x"), None);
    }

    #[test]
    fn compares_secrets() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn reads_bearer_tokens() {
        assert_eq!(bearer("Bearer xyz"), Some("xyz"));
        assert_eq!(bearer("Basic xyz"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
