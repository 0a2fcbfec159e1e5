//! HAProxy's runtime API on its admin socket: servers change address and
//! state without a reload. After a reload the socket belongs to the new
//! worker (the master binds it before forking), so commands always reach
//! the worker that serves new connections.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// A runtime command failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The socket could not be used.
    #[error("haproxy admin socket {path}: {source}")]
    Socket {
        /// The socket.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// HAProxy answered with an error.
    #[error("haproxy refused {command:?}: {answer}")]
    Refused {
        /// The command.
        command: String,
        /// Its answer.
        answer: String,
    },
}

/// Whether an answer of the runtime API is an error message (successful
/// `set server` commands answer nothing or "... changed from ...").
fn is_error(answer: &str) -> bool {
    let lower = answer.to_ascii_lowercase();
    [
        "no such",
        "unknown",
        "require",
        "invalid",
        "failed",
        "not allowed",
        "denied",
    ]
    .iter()
    .any(|word| lower.contains(word))
}

/// Sends `commands` over one connection (`;`-separated, as the admin
/// socket takes them) and checks every answer.
pub async fn send(socket: &Path, commands: &[String]) -> Result<(), RuntimeError> {
    let io = |source| RuntimeError::Socket {
        path: socket.display().to_string(),
        source,
    };
    let mut stream = UnixStream::connect(socket).await.map_err(io)?;
    let mut line = commands.join(";");
    line.push('\n');
    stream.write_all(line.as_bytes()).await.map_err(io)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.map_err(io)?;
    // Answers follow in command order; an error in any of them fails the
    // batch, and the caller falls back to a reload.
    if is_error(&answer) {
        return Err(RuntimeError::Refused {
            command: line.trim_end().to_owned(),
            answer: answer.trim().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_error;

    #[test]
    fn recognises_haproxy_errors() {
        assert!(is_error("No such server."));
        assert!(is_error("Require 'backend/server'."));
        assert!(!is_error(""));
        assert!(!is_error(
            "IP changed from '127.0.0.1' to '10.0.0.4', port changed from '1' to '7' by 'stats socket command'"
        ));
    }
}
