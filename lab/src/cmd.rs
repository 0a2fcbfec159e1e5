//! A small runner for the command-line tools the lab drives (`ip`, `tar`,
//! `nsenter`). A failure carries the command, its status and its output.

use std::fmt;
use std::process::{Command, Output};

/// A command that could not be run or exited with a failure.
#[derive(Debug, thiserror::Error)]
pub struct CommandError {
    /// The command line, for the message.
    pub command: String,
    /// How it ended, or why it could not start.
    pub outcome: String,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.command, self.outcome)?;
        let stderr = self.stderr.trim();
        if !stderr.is_empty() {
            write!(f, ": {stderr}")?;
        }
        Ok(())
    }
}

fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs `cmd` to completion, capturing its output, and fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<Output, CommandError> {
    let output = cmd.output().map_err(|e| CommandError {
        command: describe(cmd),
        outcome: format!("could not start: {e}"),
        stdout: String::new(),
        stderr: String::new(),
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(CommandError {
            command: describe(cmd),
            outcome: format!("failed ({})", output.status),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// Builds a [`Command`] from a program and its arguments.
pub fn command<I, S>(program: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}
