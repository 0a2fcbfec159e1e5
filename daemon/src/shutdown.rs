//! Graceful shutdown: a daemon stops serving on SIGTERM (systemd's stop)
//! or Ctrl-C (a terminal).

use tokio::signal::unix::{signal, SignalKind};

/// Resolves on the first SIGTERM or Ctrl-C; never, when SIGTERM cannot be
/// watched (the daemon is then stopped the hard way).
pub async fn signal_received() {
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
