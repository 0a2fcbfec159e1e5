//! A thin runner for `iptables-save` and `iptables-restore --noflush -w`:
//! the script goes in on stdin (never through a shell), and a failure
//! carries the exit status, stdout and stderr. It runs in whatever network
//! namespace the calling thread is in (see [`super::netns`]).

use std::io::Write as _;
use std::process::{Command, Stdio};

/// A command that failed.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    /// It could not be started.
    #[error("running {program}: {source}")]
    Spawn {
        /// The program.
        program: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("{program} exited with {status}: {stderr}{stdout}")]
    Failed {
        /// The program.
        program: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed.
        stdout: String,
        /// What it complained.
        stderr: String,
    },
}

fn run(program: &'static str, args: &[&str], input: Option<&str>) -> Result<String, IptablesError> {
    let spawn = |source| IptablesError::Spawn { program, source };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes()).map_err(spawn)?;
    }
    let output = child.wait_with_output().map_err(spawn)?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(IptablesError::Failed {
            program,
            status: output.status,
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(stdout)
}

/// `iptables-save -t <table>` for each table, concatenated.
pub fn save(tables: &[&str]) -> Result<String, IptablesError> {
    let mut all = String::new();
    for table in tables {
        all.push_str(&run("iptables-save", &["-t", table], None)?);
    }
    Ok(all)
}

/// Applies `script` atomically per table, leaving every chain it does not
/// name alone; waits for the xtables lock rather than failing on it.
pub fn restore(script: &str) -> Result<(), IptablesError> {
    run("iptables-restore", &["--noflush", "-w", "5"], Some(script)).map(drop)
}
