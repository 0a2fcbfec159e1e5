//! `haproxy -c`: a configuration is checked by HAProxy itself before it is
//! applied. The error carries the exit status and HAProxy's own words.

use std::path::Path;

/// HAProxy refused a configuration, or could not be run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// `haproxy -c` said no.
    #[error("haproxy -c refused it ({status}): {alerts}")]
    Refused {
        /// The exit status.
        status: std::process::ExitStatus,
        /// HAProxy's alerts, one line each joined by "; " (they name the
        /// line and the file at fault).
        alerts: String,
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
        alerts: alerts(&text),
    })
}

/// The `[ALERT]` lines of HAProxy's output without their prefix, and
/// without the closing summary lines; all of it if there are none.
fn alerts(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("[ALERT]"))
        .map(|l| l.split_once(") : ").map_or(l, |(_, rest)| rest).trim())
        .filter(|l| {
            !l.contains("Error(s) found in configuration") && !l.contains("Fatal errors found")
        })
        .collect();
    if lines.is_empty() {
        output.trim().to_owned()
    } else {
        lines.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::alerts;

    #[test]
    fn keeps_the_alerts_that_say_what_is_wrong() {
        let output = "[NOTICE]   (1) : haproxy version is 2.6.12\n\
            [ALERT]    (1) : config : parsing [h.cfg:7] : unable to load SSL certificate '/c.pem'.\n\
            [ALERT]    (1) : config : Error(s) found in configuration file : h.cfg\n\
            [ALERT]    (1) : config : Fatal errors found in configuration.\n";
        assert_eq!(
            alerts(output),
            "config : parsing [h.cfg:7] : unable to load SSL certificate '/c.pem'."
        );
        assert_eq!(alerts("something else\n"), "something else");
    }
}
