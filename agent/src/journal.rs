//! The journal, the one place that runs `journalctl` or writes to
//! journald: container output followed for shipping ([`follow`]) and read
//! for `logs` ([`unit_output`]), berth's events followed ([`follow_events`],
//! [`shim_says_oom_killed`]) and the agent's own pod events written
//! ([`record_pod_event`]).
//!
//! Container output is read through `journalctl -o export --follow`: every
//! entry of berth's container units, resumable from a cursor.
//!
//! Why a `journalctl` subprocess rather than sd-journal: it needs no C
//! bindings (the crate forbids `unsafe`), it follows journal rotation and
//! vacuuming itself, and the export format is its fastest output (about
//! 150,000 entries/s on the lab hosts, against 44,000 for `-o json`). The
//! pipe between it and the agent is the buffer: while the master is away the
//! agent stops reading, `journalctl` blocks, and the journal keeps the lines.
//!
//! The pod and container come from `_SYSTEMD_UNIT`, a field journald sets
//! itself (a container cannot forge it), parsed back from the escaped unit
//! name `berth-<pod>-<container>.service`.

use std::future::Future;
use std::process::Stdio;

use anyhow::{bail, Context};
use berth_model::EventKind;
use berth_shim::message_ids::{CONTAINER_EVENT, POD_EVENT, RESTART_SCHEDULED};
use serde_json::Value;

use berth_model::logs::ShippedLine;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use tracing::{debug, info, warn};

use crate::systemd::Systemd;

/// The journald drop-in that lifts journald's rate limit. Its default
/// (10,000 lines per 30 s per unit) drops container output silently, and a
/// per-unit `LogRateLimitIntervalSec=0` did not lift it on systemd 252 in
/// the lab. It lives under /run, so it is rewritten at every boot.
pub const RATE_LIMIT_DROP_IN: &str = "/run/systemd/journald.conf.d/50-berth.conf";

const RATE_LIMIT_DROP_IN_TEXT: &str =
    "# Written by berth-agent: container output must never be dropped.\n\
[Journal]\nRateLimitIntervalSec=0\nRateLimitBurst=0\n";

/// Makes sure journald runs without a rate limit: writes the drop-in and
/// restarts journald once if the drop-in was missing. Streams of running
/// units survive the restart (journald keeps them in systemd's fd store).
pub async fn lift_rate_limit(systemd: &Systemd) {
    let path = std::path::Path::new(RATE_LIMIT_DROP_IN);
    if std::fs::read_to_string(path).ok().as_deref() == Some(RATE_LIMIT_DROP_IN_TEXT) {
        return;
    }
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(path, RATE_LIMIT_DROP_IN_TEXT));
    if let Err(e) = written {
        warn!(error = %e, path = RATE_LIMIT_DROP_IN, "cannot lift journald's rate limit; fast containers may lose lines");
        return;
    }
    match systemd.restart("systemd-journald.service").await {
        Ok(()) => info!("journald's rate limit lifted"),
        Err(e) => warn!(error = %e, "restarting journald to lift its rate limit failed"),
    }
}

/// One journal entry, with the fields berth keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// `__CURSOR`: where to resume after this entry.
    pub cursor: String,
    /// `__REALTIME_TIMESTAMP`, microseconds since the epoch.
    pub realtime_us: u64,
    /// `PRIORITY` (6, info, when missing).
    pub priority: u8,
    /// `_SYSTEMD_UNIT`.
    pub unit: Option<String>,
    /// `MESSAGE`, as bytes (it need not be UTF-8).
    pub message: Vec<u8>,
    /// `MESSAGE_ID`, set on structured entries (berth-shim's container
    /// events), never on a container's own output.
    pub message_id: Option<String>,
}

/// Problems with what `journalctl` printed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading its output failed.
    #[error("reading journalctl's output: {0}")]
    Io(#[from] std::io::Error),
    /// Its output is not the export format.
    #[error("journalctl's export output is malformed: {0}")]
    Malformed(&'static str),
}

/// Reads the next entry of journal export format from `reader`; `None` at
/// the end of the stream. Not cancel-safe: a partly read entry is lost if
/// the future is dropped, so it runs in a task of its own.
pub async fn next_entry<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> Result<Option<Entry>, JournalError> {
    let mut entry = Entry {
        priority: 6,
        ..Entry::default()
    };
    let mut fields = 0usize;
    loop {
        line.clear();
        if reader.read_until(b'\n', line).await? == 0 {
            return if fields == 0 {
                Ok(None)
            } else {
                Err(JournalError::Malformed("the stream ended inside an entry"))
            };
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.is_empty() {
            if fields == 0 {
                continue;
            }
            return Ok(Some(entry));
        }
        fields += 1;
        match line.iter().position(|b| *b == b'=') {
            Some(eq) => {
                let value = &line[eq + 1..];
                keep_field(&mut entry, &line[..eq], value);
            }
            None => {
                // A binary field: the name, a 64-bit little-endian length,
                // the data and a newline.
                let name = std::mem::take(line);
                let mut size = [0u8; 8];
                reader.read_exact(&mut size).await?;
                let size = u64::from_le_bytes(size);
                if size > 16 * 1024 * 1024 {
                    return Err(JournalError::Malformed("a binary field claims over 16 MiB"));
                }
                let mut value = vec![0u8; size as usize + 1];
                reader.read_exact(&mut value).await?;
                if value.pop() != Some(b'\n') {
                    return Err(JournalError::Malformed("a binary field lacks its newline"));
                }
                keep_field(&mut entry, &name, &value);
                *line = name;
            }
        }
    }
}

fn keep_field(entry: &mut Entry, name: &[u8], value: &[u8]) {
    match name {
        b"__CURSOR" => entry.cursor = String::from_utf8_lossy(value).into_owned(),
        b"__REALTIME_TIMESTAMP" => {
            entry.realtime_us = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
        b"PRIORITY" => {
            if let Some(p) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                entry.priority = p;
            }
        }
        b"_SYSTEMD_UNIT" => entry.unit = Some(String::from_utf8_lossy(value).into_owned()),
        b"MESSAGE" => entry.message = value.to_vec(),
        b"MESSAGE_ID" => entry.message_id = Some(String::from_utf8_lossy(value).into_owned()),
        _ => {}
    }
}

/// The sequence-number ID and number of a journal cursor (`s=` and `i=`).
pub fn cursor_seqnum(cursor: &str) -> Option<(String, u64)> {
    let mut id = None;
    let mut number = None;
    for part in cursor.split(';') {
        if let Some(s) = part.strip_prefix("s=") {
            id = Some(s.to_owned());
        } else if let Some(i) = part.strip_prefix("i=") {
            number = u64::from_str_radix(i, 16).ok();
        }
    }
    Some((id?, number?))
}

/// The line to ship for an entry, if it is a container's output: an
/// entry of a container unit that is not one of berth-shim's container
/// events (those go to the master as events, not as log lines).
pub fn shipped_line(entry: &Entry) -> Option<ShippedLine> {
    if entry.message_id.as_deref() == Some(CONTAINER_EVENT) {
        return None;
    }
    let (pod, container) = crate::unit::name::container_of_unit(entry.unit.as_deref()?)?;
    let (seqnum_id, seqnum) = cursor_seqnum(&entry.cursor)?;
    let (message, raw) = berth_model::logs::message_fields(&entry.message);
    Some(ShippedLine {
        seqnum_id,
        seqnum,
        time_us: entry.realtime_us,
        priority: entry.priority,
        pod,
        container,
        message,
        raw,
    })
}

/// Starts `journalctl` following the journal after `cursor` (from the
/// journal's start without one), printing only the fields berth keeps.
pub fn follow(cursor: Option<&str>) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new("journalctl");
    cmd.args([
        "--output=export",
        "--output-fields=MESSAGE,MESSAGE_ID,PRIORITY,_SYSTEMD_UNIT",
        "--follow",
        "--no-tail",
        "--quiet",
        "--system",
    ]);
    if let Some(cursor) = cursor {
        cmd.arg(format!("--after-cursor={cursor}"));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
}

/// Starts `journalctl` printing the entries of `units` in export format,
/// merged in time order: the last `tail` of them, then, with `follow`,
/// each new one until the child is dropped. The export format carries each
/// `MESSAGE` as it was written, bytes and all; journalctl's text formats
/// print `[33B blob data]` for a line with one control character in it.
pub fn unit_output(
    units: &[String],
    tail: Option<u32>,
    follow: bool,
) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new("journalctl");
    cmd.args([
        "--no-pager",
        "--output=export",
        "--output-fields=MESSAGE,MESSAGE_ID,_SYSTEMD_UNIT",
        "--quiet",
    ]);
    for unit in units {
        cmd.arg(format!("--unit={unit}"));
    }
    if let Some(tail) = tail {
        cmd.arg(format!("--lines={tail}"));
    }
    if follow {
        cmd.arg("--follow");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

/// Records an event about `pod` in the journal, where it is kept whether or
/// not the master is reachable and read back like the shim's. Without a
/// journal (an agent run by hand), the warning the caller logs is all.
pub fn record_pod_event(kind: EventKind, pod: &str, reason: &str) {
    let one_line = |text: &str| text.replace(['\n', '\r'], " ");
    let entry = format!(
        "MESSAGE_ID={POD_EVENT}\nMESSAGE=berth-agent: pod {}: {kind}: {}\nPRIORITY=4\nSYSLOG_IDENTIFIER=berth-agent\nBERTH_EVENT={kind}\nBERTH_POD={}\nBERTH_REASON={}\n",
        one_line(pod),
        one_line(reason),
        one_line(pod),
        one_line(reason),
    );
    let sent = std::os::unix::net::UnixDatagram::unbound()
        .and_then(|socket| socket.send_to(entry.as_bytes(), "/run/systemd/journal/socket"));
    if let Err(e) = sent {
        debug!(error = %e, "cannot write the pod event to the journal");
    }
}

/// Starts `journalctl` following berth's events (the shim's container
/// events, systemd's restarts, the agent's pod events) after `cursor` (from
/// the journal's start without one), one JSON entry per line, each with its
/// `__CURSOR`. One long-lived child, not one per poll: spawning
/// `journalctl` every second was most of an idle agent's CPU.
pub fn follow_events(cursor: Option<&str>) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new("journalctl");
    cmd.args([
        "--output=json",
        "--no-pager",
        "--quiet",
        "--follow",
        "--no-tail",
    ]);
    if let Some(cursor) = cursor {
        cmd.arg(format!("--after-cursor={cursor}"));
    }
    // Matches on the same field: any of them.
    cmd.arg(format!("MESSAGE_ID={CONTAINER_EVENT}"));
    cmd.arg(format!("MESSAGE_ID={RESTART_SCHEDULED}"));
    cmd.arg(format!("MESSAGE_ID={POD_EVENT}"));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
}

/// One line of [`follow_events`]' output: the entry's cursor and the
/// entry, or `None` for a line that is not a journal entry.
pub fn event_entry(line: &str) -> Option<(String, Value)> {
    let entry = serde_json::from_str::<Value>(line).ok()?;
    let cursor = field(&entry, "__CURSOR")?;
    Some((cursor, entry))
}

/// What berth-shim recorded about the end of the run of `container`
/// (Docker name) that started at `run` (Docker's `State.StartedAt`):
/// `Some(true)` if the OOM killer ended it, `Some(false)` if it exited
/// otherwise, `None` if the shim has not said yet. The shim asks Docker's
/// event log as well as its OOMKilled flag, which Docker 20.10 leaves
/// false when containerd's OOM event trails the exit.
pub async fn shim_says_oom_killed(container: &str, run: &str) -> anyhow::Result<Option<bool>> {
    let output = tokio::process::Command::new("journalctl")
        .args(["--output=json", "--no-pager", "--quiet", "--lines=1"])
        .arg(format!("MESSAGE_ID={CONTAINER_EVENT}"))
        .arg(format!("BERTH_CONTAINER={container}"))
        .arg(format!("BERTH_RUN={run}"))
        .arg("BERTH_EVENT=ContainerExited")
        .arg("BERTH_EVENT=ContainerOOMKilled")
        .output()
        .await
        .context("running journalctl")?;
    if !output.status.success() {
        bail!(
            "journalctl: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let last = output
        .stdout
        .split(|b| *b == b'\n')
        .rev()
        .find_map(|line| serde_json::from_slice::<Value>(line).ok());
    Ok(last
        .and_then(|entry| field(&entry, "BERTH_EVENT"))
        .map(|kind| kind == "ContainerOOMKilled"))
}

/// A string field of a `journalctl -o json` entry (binary fields come as
/// byte arrays and are read lossily).
pub fn field(entry: &Value, name: &str) -> Option<String> {
    match entry.get(name)? {
        Value::String(text) => Some(text.clone()),
        Value::Array(bytes) => {
            let bytes: Vec<u8> = bytes
                .iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        _ => None,
    }
}

/// What the runtime asks of the journal: the shim's word on how a run
/// ended, and a place to record why a pod did not start.
/// [`SystemJournal`] is the real one; tests use a recording fake.
pub trait EventJournal: Send + Sync {
    /// See [`shim_says_oom_killed`].
    fn shim_says_oom_killed(
        &self,
        container: &str,
        run: &str,
    ) -> impl Future<Output = anyhow::Result<Option<bool>>> + Send;
    /// See [`record_pod_event`].
    fn record_pod_event(&self, kind: EventKind, pod: &str, reason: &str);
}

/// The host's journal, through `journalctl` and journald's socket.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemJournal;

impl EventJournal for SystemJournal {
    async fn shim_says_oom_killed(
        &self,
        container: &str,
        run: &str,
    ) -> anyhow::Result<Option<bool>> {
        shim_says_oom_killed(container, run).await
    }
    fn record_pod_event(&self, kind: EventKind, pod: &str, reason: &str) {
        record_pod_event(kind, pod, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shims_container_events_are_not_shipped_as_log_lines() {
        let output = Entry {
            cursor: "s=ab;i=10".into(),
            unit: Some("berth-web-app.service".into()),
            message: b"hello".to_vec(),
            ..Entry::default()
        };
        assert!(shipped_line(&output).is_some());
        let event = Entry {
            message_id: Some(CONTAINER_EVENT.into()),
            message: b"berth-shim: berth.web.app: started (pid 7)".to_vec(),
            ..output
        };
        assert_eq!(shipped_line(&event), None);
    }

    #[test]
    fn cursors_carry_the_sequence_number() {
        let cursor = "s=208d781e12424ceaad960725033d41bb;i=9217;b=12a4;m=1e9c;t=6610;x=dfb3";
        assert_eq!(
            cursor_seqnum(cursor),
            Some(("208d781e12424ceaad960725033d41bb".into(), 0x9217))
        );
        assert_eq!(cursor_seqnum("b=1;m=2"), None);
    }

    #[tokio::test]
    async fn reads_text_and_binary_fields() {
        let mut stream = Vec::new();
        stream.extend_from_slice(
            b"__CURSOR=s=ab;i=10\n__REALTIME_TIMESTAMP=1700000000000001\nPRIORITY=3\n\
              _SYSTEMD_UNIT=berth-web-app.service\nMESSAGE=hello\n\n",
        );
        stream.extend_from_slice(b"__CURSOR=s=ab;i=11\n__REALTIME_TIMESTAMP=1700000000000002\n");
        stream.extend_from_slice(b"_SYSTEMD_UNIT=berth-web-app.service\nMESSAGE\n");
        let message = b"tab\there\x1b[31m\nnext line";
        stream.extend_from_slice(&(message.len() as u64).to_le_bytes());
        stream.extend_from_slice(message);
        stream.extend_from_slice(b"\n\n");
        stream.extend_from_slice(b"__CURSOR=s=ab;i=12\nMESSAGE=not ours\n\n");

        let mut reader = &stream[..];
        let mut line = Vec::new();
        let first = next_entry(&mut reader, &mut line).await.unwrap().unwrap();
        assert_eq!(first.priority, 3);
        assert_eq!(first.message, b"hello");
        let shipped = shipped_line(&first).unwrap();
        assert_eq!((shipped.seqnum, shipped.time_us), (0x10, 1700000000000001));
        assert_eq!(
            (shipped.pod.as_str(), shipped.container.as_str()),
            ("web", "app")
        );

        let second = next_entry(&mut reader, &mut line).await.unwrap().unwrap();
        assert_eq!(second.message, message);
        assert_eq!(second.priority, 6);

        let third = next_entry(&mut reader, &mut line).await.unwrap().unwrap();
        assert_eq!(third.cursor, "s=ab;i=12");
        assert!(
            shipped_line(&third).is_none(),
            "no unit: not a container's line"
        );
        assert!(next_entry(&mut reader, &mut line).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_cut_entry_is_an_error() {
        let mut reader = &b"__CURSOR=s=ab;i=10\nMESSAGE=hel"[..];
        let mut line = Vec::new();
        assert!(next_entry(&mut reader, &mut line).await.is_err());
    }
}
