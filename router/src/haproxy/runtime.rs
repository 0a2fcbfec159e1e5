//! HAProxy's runtime API on its admin socket: servers change address and
//! state without a reload.
//!
//! Right after a reload the old worker and the new one can both accept on
//! the socket (the new one inherits it, the old one lets go when it is
//! told to stop), and `systemctl reload` returns before either happens. A
//! command the old worker takes is lost to the new one. So each batch ends
//! with `show info`, whose `description` names the reload of the worker
//! that answered (see `render`): an answer from another reload fails the
//! batch, and the caller reloads instead.

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
    /// A worker of another configuration took the commands: the one
    /// serving new connections may not have them.
    #[error("an old haproxy worker took the commands (its reload is {found:?}, the current one {expected:?})")]
    OldWorker {
        /// The reload of the running configuration.
        expected: String,
        /// The reload of the worker that answered.
        found: String,
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

/// How `show info` starts: what comes before is the commands' answers.
const INFO_START: &str = "Name: HAProxy";

/// The commands' answers and `show info`'s, from the answer to a batch
/// that ends with it.
fn split_info(answer: &str) -> (&str, &str) {
    answer
        .find(INFO_START)
        .map_or((answer, ""), |at| answer.split_at(at))
}

/// The `description` line of `show info`: the reload of the configuration
/// the answering worker runs.
fn description(info: &str) -> &str {
    info.lines()
        .find_map(|line| line.strip_prefix("description:"))
        .unwrap_or_default()
        .trim()
}

/// Sends `commands` over one connection (`;`-separated, as the admin
/// socket takes them) and checks every answer, and that the worker that
/// took them runs the configuration of reload `reload_mark`.
pub async fn send(
    socket: &Path,
    commands: &[String],
    reload_mark: &str,
) -> Result<(), RuntimeError> {
    let io = |source| RuntimeError::Socket {
        path: socket.display().to_string(),
        source,
    };
    let mut stream = UnixStream::connect(socket).await.map_err(io)?;
    let mut line = commands.join(";");
    line.push_str(";show info\n");
    stream.write_all(line.as_bytes()).await.map_err(io)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.map_err(io)?;
    // Answers follow in command order; an error in any of them fails the
    // batch, and the caller falls back to a reload.
    let (answers, info) = split_info(&answer);
    if is_error(answers) {
        return Err(RuntimeError::Refused {
            command: line.trim_end().to_owned(),
            answer: answers.trim().to_owned(),
        });
    }
    let found = description(info);
    if found != reload_mark {
        return Err(RuntimeError::OldWorker {
            expected: reload_mark.to_owned(),
            found: found.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{description, is_error, split_info};

    #[test]
    fn show_info_names_the_reload_of_the_worker_that_answered() {
        // As HAProxy 2.6 answers `set server ...;show info`.
        let answer = "IP changed from '127.0.0.1' to '127.0.0.2' by 'stats socket command'\n\n\
                      Name: HAProxy\nVersion: 2.6.12\nPid: 7067\nPoolFailed: 0\n\
                      node: h1\ndescription: berth-router 1733500000\nStopping: 0\n";
        let (answers, info) = split_info(answer);
        assert!(
            !is_error(answers),
            "PoolFailed is show info's, not an error"
        );
        assert!(answers.starts_with("IP changed"));
        assert_eq!(description(info), "berth-router 1733500000");
        assert_eq!(description(""), "", "no show info answer");
    }

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
