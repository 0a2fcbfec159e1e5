//! What can go wrong asking the master, as the node.

use berth_model::ApiError;
use reqwest::StatusCode;

/// Longest piece of an unexpected, non-JSON answer kept for messages.
const MAX_SHOWN_BODY_CHARS: usize = 200;

/// A request to the master that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pinned CA is not a PEM certificate.
    #[error("reading the master's CA")]
    Ca(#[source] reqwest::Error),
    /// A CA certificate that is not PEM.
    #[error("parsing the CA certificate")]
    Certificate(#[source] rustls_pki_types::pem::Error),
    /// The master's CA is not the one pinned: nothing secret is sent.
    #[error(
        "the master's CA is {found}, not the pinned {pinned}: refusing to send the join token"
    )]
    CaMismatch {
        /// The hash of the CA the master served.
        found: String,
        /// The hash given at join.
        pinned: String,
    },
    /// The HTTP client could not be set up (no TLS backend, for one).
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    /// No answer: the master is unreachable, refused the connection, timed
    /// out, or the connection broke.
    #[error("reaching the master at {url}")]
    Send {
        /// The master's URL.
        url: String,
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },
    /// The master answered with an error status.
    #[error("master answered {status}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Answered {
        /// The HTTP status of the answer.
        status: StatusCode,
        /// The master's explanation ([`ApiError::error`]), or the start of
        /// a body that is not one; empty when there was none.
        message: String,
    },
    /// The answer's body was not what was expected.
    #[error("reading the master's answer")]
    Decode(#[source] reqwest::Error),
}

impl Error {
    /// Whether the master refused this node's credential (or join token).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Answered { status, .. } if *status == StatusCode::UNAUTHORIZED)
    }

    /// The error an unsuccessful answer stands for.
    pub(crate) async fn of_answer(response: reqwest::Response) -> Self {
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        Self::Answered {
            status,
            message: message_of(&body),
        }
    }
}

/// `error` and its causes on one line, `: `-separated, for logs.
pub fn report(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        line.push_str(": ");
        line.push_str(&e.to_string());
        cause = e.source();
    }
    line
}

/// The master's explanation in `body`, or the start of the body as text.
fn message_of(body: &[u8]) -> String {
    if let Ok(error) = serde_json::from_slice::<ApiError>(body) {
        return error.error;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX_SHOWN_BODY_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_show_the_masters_explanation_or_the_start_of_the_body() {
        let api = Error::Answered {
            status: StatusCode::UNAUTHORIZED,
            message: message_of(br#"{"error":"unknown node credential"}"#),
        };
        assert_eq!(
            api.to_string(),
            "master answered 401 Unauthorized: unknown node credential"
        );
        assert!(api.is_unauthorized());
        let bare = Error::Answered {
            status: StatusCode::BAD_GATEWAY,
            message: message_of(b"  \n"),
        };
        assert_eq!(bare.to_string(), "master answered 502 Bad Gateway");
        assert!(!bare.is_unauthorized());
        let long = message_of("x".repeat(500).as_bytes());
        assert_eq!(long.len(), MAX_SHOWN_BODY_CHARS + 3);
    }
}
