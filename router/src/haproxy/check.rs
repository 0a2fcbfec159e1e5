//! `haproxy -c`: a configuration is checked by HAProxy itself before it is
//! applied. The error carries the exit status and HAProxy's own words.

use std::path::Path;

/// HAProxy refused a configuration, or could not be run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// `haproxy -c` said no.
    #[error("haproxy -c exited with {status}: {output}")]
    Refused {
        /// The exit status.
        status: std::process::ExitStatus,
        /// Its stdout and stderr (the alerts name the line at fault).
        output: String,
    },
    /// It could not be run at all.
    #[error("running {binary}: {source}")]
    Run {
        /// The binary.
        binary: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Checks the configuration at `config` with the HAProxy at `binary`.
pub async fn check(binary: &Path, config: &Path) -> Result<(), CheckError> {
    let output = tokio::process::Command::new(binary)
        .arg("-c")
        .arg("-q")
        .arg("-f")
        .arg(config)
        .output()
        .await
        .map_err(|source| CheckError::Run {
            binary: binary.display().to_string(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(CheckError::Refused {
        status: output.status,
        output: text.trim().to_owned(),
    })
}
