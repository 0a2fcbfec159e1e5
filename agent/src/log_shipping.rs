//! Ships container log lines from the journal to the master.
//!
//! A reader task parses `journalctl -o export` (see [`crate::journal`]); the
//! shipper gathers lines into batches, posts each to the master until it is
//! acknowledged (the master stores a batch durably before it answers), and
//! only then checkpoints the journal cursor of the batch's last entry. After
//! a crash the agent resumes from the checkpoint; what was shipped but not
//! checkpointed is sent again and the master drops it as a duplicate, so
//! nothing is lost and nothing is stored twice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use berth_model::logs::{LogBatch, LogBatchAck, ShippedLine, MAX_LOG_BATCH_LINES};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::journal;
use berth_client::Joined;

/// How long a batch waits for more lines once it has one.
const BATCH_WINDOW: Duration = Duration::from_millis(100);

/// A batch is sent once its messages reach this many bytes.
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How often a cursor that moved past other units' entries only is saved.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(5);

/// Where the journal cursor of the last acknowledged entry is kept.
pub fn checkpoint_path(state_dir: &Path) -> PathBuf {
    state_dir.join("journal.cursor")
}

/// The saved cursor, if any.
pub fn load_checkpoint(state_dir: &Path) -> Option<String> {
    crate::private_file::read_line(&checkpoint_path(state_dir))
}

/// Saves the cursor atomically (write, fsync, rename, fsync the directory),
/// 0600.
pub fn save_checkpoint(state_dir: &Path, cursor: &str) -> anyhow::Result<()> {
    crate::private_file::write(&checkpoint_path(state_dir), cursor.as_bytes())
}

/// What the reader hands the shipper: each journal entry's cursor, with the
/// line when the entry is a container's.
struct Read {
    cursor: String,
    line: Option<ShippedLine>,
}

/// Ships forever; restarts `journalctl` from the checkpoint if it ends.
pub async fn run(http: reqwest::Client, joined: Joined, state_dir: PathBuf) {
    // After a failure shipping resumes at the next master (HA masters).
    let masters = joined.masters();
    loop {
        let master = masters.current().to_owned();
        let url = format!("{master}/v1/nodes/{}/logs", joined.node);
        let cursor = load_checkpoint(&state_dir);
        match ship_from(&http, &url, &joined.credential, &state_dir, cursor).await {
            Ok(()) => warn!("journalctl ended; restarting it from the checkpoint"),
            Err(e) => {
                warn!(error = %format!("{e:#}"), "log shipping stopped; restarting from the checkpoint");
                masters.failed(&master);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn ship_from(
    http: &reqwest::Client,
    url: &str,
    credential: &str,
    state_dir: &Path,
    cursor: Option<String>,
) -> anyhow::Result<()> {
    let mut child = journal::follow(cursor.as_deref()).context("starting journalctl")?;
    let stdout = child.stdout.take().context("journalctl has no stdout")?;
    let mut stderr = child.stderr.take().context("journalctl has no stderr")?;
    info!(
        resume = cursor.is_some(),
        "shipping container logs to the master"
    );
    // Lines in flight are bounded: when the master is away the reader stops,
    // and journalctl blocks on its full pipe.
    let (sender, mut entries) = mpsc::channel::<Read>(2 * MAX_LOG_BATCH_LINES);
    let reader = tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::with_capacity(256 * 1024, stdout);
        let mut buffer = Vec::new();
        loop {
            match journal::next_entry(&mut reader, &mut buffer).await {
                Ok(Some(entry)) => {
                    let line = journal::shipped_line(&entry);
                    let read = Read {
                        cursor: entry.cursor,
                        line,
                    };
                    if sender.send(read).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });

    let mut last_saved = Instant::now();
    let mut saved_cursor = cursor;
    loop {
        let Some(first) = entries.recv().await else {
            break;
        };
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut cursor = first.cursor;
        if let Some(line) = first.line {
            bytes += line.encoded_len();
            batch.push(line);
        }
        let deadline = Instant::now() + BATCH_WINDOW;
        while batch.len() < MAX_LOG_BATCH_LINES && bytes < BATCH_BYTES {
            let next = tokio::select! {
                next = entries.recv() => next,
                () = tokio::time::sleep_until(deadline) => None,
            };
            let Some(read) = next else { break };
            cursor = read.cursor;
            if let Some(line) = read.line {
                bytes += line.encoded_len();
                batch.push(line);
            }
        }
        if batch.is_empty() {
            // Only other units' entries: remember how far, now and then.
            if last_saved.elapsed() >= IDLE_CHECKPOINT && saved_cursor.as_deref() != Some(&cursor) {
                save_checkpoint(state_dir, &cursor)?;
                saved_cursor = Some(cursor);
                last_saved = Instant::now();
            }
            continue;
        }
        deliver(http, url, credential, batch).await;
        save_checkpoint(state_dir, &cursor)?;
        saved_cursor = Some(cursor);
        last_saved = Instant::now();
    }
    let read = reader.await.context("the journal reader failed")?;
    let mut complaint = String::new();
    let _ = stderr.read_to_string(&mut complaint).await;
    let status = child.wait().await?;
    read.with_context(|| format!("journalctl ({status}): {}", complaint.trim()))?;
    Ok(())
}

/// Posts one batch until the master acknowledges it, backing off while it
/// is unreachable.
async fn deliver(http: &reqwest::Client, url: &str, credential: &str, lines: Vec<ShippedLine>) {
    let batch = LogBatch { lines };
    let body = match serde_json::to_vec(&batch) {
        Ok(body) => body,
        Err(e) => {
            warn!(error = %e, "cannot encode a log batch; dropping it");
            return;
        }
    };
    let mut delay = Duration::from_millis(100);
    loop {
        let sent = http
            .post(url)
            .bearer_auth(credential)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(Duration::from_secs(30))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => match r.json::<LogBatchAck>().await {
                Ok(_) => return,
                Err(e) => {
                    warn!(error = %e, "the master's log acknowledgement was cut; sending again")
                }
            },
            Ok(r) => warn!(status = %r.status(), "the master refused a log batch; retrying"),
            Err(e) => warn!(error = %e, "cannot ship logs; the master is unreachable"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
