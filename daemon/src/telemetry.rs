//! How berth's daemons log. Under systemd, straight to the journal with
//! every tracing field as a journal field of its own (`POD=web`,
//! `NODE=h2`), so `journalctl -u berth-agent POD=web` finds a pod's story;
//! anywhere else, lines of text on stderr.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Starts logging for the daemon `identifier` (its syslog identifier in
/// the journal). The level comes from `BERTH_LOG` (or `RUST_LOG`), default
/// `info`.
pub fn init(identifier: &str) {
    let filter = std::env::var("BERTH_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::new(filter);
    // systemd sets JOURNAL_STREAM when stderr is the journal: then the
    // journal's native protocol keeps the fields apart.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            let journald = journald
                .with_syslog_identifier(identifier.to_owned())
                .with_field_prefix(None);
            tracing_subscriber::registry()
                .with(filter)
                .with(journald)
                .init();
            return;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
