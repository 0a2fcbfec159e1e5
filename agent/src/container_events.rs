//! Container events, from the journal to the master.
//!
//! berth-shim writes each container event (started, exited, OOM-killed,
//! unhealthy) as a structured journal entry, and systemd writes one each
//! time it schedules a unit's restart. Both stay in the journal whether or
//! not the agent runs. The agent reads them after its cursor
//! (see [`journal::follow_events`]), sends them to the master in
//! batches and saves the cursor only once the master has acknowledged the
//! batch. Each event's id is its journal sequence number, which the master
//! keeps one event per: a batch resent after a crash or a lost answer is
//! not recorded twice, and nothing is skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use berth_model::api::{EventBatch, ReportedEvent};
use berth_model::{Event, EventKind};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tracing::{debug, warn};

use crate::journal;
use berth_client::Joined;

pub use berth_shim::message_ids::{
    CONTAINER_EVENT as SHIM_EVENT_MESSAGE_ID, POD_EVENT as POD_EVENT_MESSAGE_ID,
    RESTART_SCHEDULED as RESTART_SCHEDULED_MESSAGE_ID,
};

/// The kinds the agent records about a pod it could not start.
const POD_EVENT_KINDS: [EventKind; 4] = [
    EventKind::ImagePullFailed,
    EventKind::HostPortConflict,
    EventKind::StartFailed,
    EventKind::PodRefused,
];

/// Events sent in one request.
const BATCH: usize = 200;

/// Turns journal entries into events. Remembers, per container, why it
/// last ended, so that systemd's restart entry (which does not know) says
/// why the container was restarted.
#[derive(Debug, Default)]
pub struct Translator {
    last_end: HashMap<(String, String), String>,
}

/// One journal entry read back, with its cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Where to resume after this entry.
    pub cursor: String,
    /// The event it records, if it is one berth reports.
    pub event: Option<ReportedEvent>,
}

impl Translator {
    /// One line `journalctl` printed, with the event it records, if it is
    /// a journal entry.
    fn entry(&mut self, line: &str) -> Option<Entry> {
        let (cursor, entry) = journal::event_entry(line)?;
        let event = self.translate(&entry);
        Some(Entry { cursor, event })
    }

    /// The event a journal entry (as [`journal::follow_events`] prints it)
    /// records, if any.
    pub fn translate(&mut self, entry: &Value) -> Option<ReportedEvent> {
        let id = event_id(&journal::field(entry, "__CURSOR")?)?;
        let time_ms = journal::field(entry, "__REALTIME_TIMESTAMP")?
            .parse::<u64>()
            .ok()?
            / 1000;
        let (kind, pod, container, reason) = match journal::field(entry, "MESSAGE_ID")?.as_str() {
            SHIM_EVENT_MESSAGE_ID => {
                let kind: EventKind = journal::field(entry, "BERTH_EVENT")?.parse().ok()?;
                let (pod, container) = crate::reconcile::desired::pod_of_docker_name(
                    &journal::field(entry, "BERTH_CONTAINER")?,
                )?;
                let reason = journal::field(entry, "BERTH_REASON").unwrap_or_default();
                if matches!(
                    kind,
                    EventKind::ContainerExited
                        | EventKind::ContainerOomKilled
                        | EventKind::ContainerUnhealthy
                ) {
                    self.last_end
                        .insert((pod.clone(), container.clone()), reason.clone());
                }
                (kind, pod, container, reason)
            }
            RESTART_SCHEDULED_MESSAGE_ID => {
                let (pod, container) =
                    crate::unit::name::container_of_unit(&journal::field(entry, "UNIT")?)?;
                let count = journal::field(entry, "N_RESTARTS").unwrap_or_else(|| "?".into());
                let reason = match self.last_end.get(&(pod.clone(), container.clone())) {
                    Some(why) => format!("restart {count} by systemd; it had {}", past(why)),
                    None => format!("restart {count} by systemd"),
                };
                (EventKind::ContainerRestarted, pod, container, reason)
            }
            // Only root writes these (journald sets `_UID` itself): no
            // other process of the host can make one up.
            POD_EVENT_MESSAGE_ID if journal::field(entry, "_UID").as_deref() == Some("0") => {
                let kind: EventKind = journal::field(entry, "BERTH_EVENT")?.parse().ok()?;
                if !POD_EVENT_KINDS.contains(&kind) {
                    return None;
                }
                return Some(ReportedEvent {
                    id,
                    event: Event {
                        time_ms,
                        kind,
                        object: format!("pod/{}", journal::field(entry, "BERTH_POD")?),
                        node: None,
                        reason: journal::field(entry, "BERTH_REASON").unwrap_or_default(),
                    },
                });
            }
            _ => return None,
        };
        Some(ReportedEvent {
            id,
            event: Event {
                time_ms,
                kind,
                object: format!("pod/{pod}"),
                node: None,
                reason: format!("container {container}: {reason}"),
            },
        })
    }
}

/// "exited with status 1" reads "it had exited with status 1"; "liveness
/// probe ... failed" reads "it had: liveness probe ... failed".
fn past(why: &str) -> String {
    if why.starts_with("exited") || why.starts_with("killed") {
        why.to_owned()
    } else {
        format!("ended: {why}")
    }
}

/// The id of the entry at `cursor`: the journal's sequence number ID and
/// the entry's sequence number (`s=` and `i=`), unique on the host and the
/// same however often the entry is read.
pub fn event_id(cursor: &str) -> Option<String> {
    let part = |key: &str| {
        cursor
            .split(';')
            .find_map(|p| p.strip_prefix(key))
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    Some(format!("{}-{}", part("s=")?, part("i=")?))
}

fn cursor_path(state_dir: &Path) -> PathBuf {
    state_dir.join("events.cursor")
}

fn load_cursor(state_dir: &Path) -> Option<String> {
    crate::private_file::read_line(&cursor_path(state_dir))
}

/// Saves the cursor atomically and durably: after a crash the agent
/// resumes exactly after the last batch the master acknowledged.
fn save_cursor(state_dir: &Path, cursor: &str) -> anyhow::Result<()> {
    crate::private_file::write(&cursor_path(state_dir), cursor.as_bytes())
}

/// Ships container events to the master, forever: follows the journal
/// from the saved cursor and, if `journalctl` ends or the master cannot
/// take a batch, starts again from the cursor after a back-off.
pub async fn run(http: reqwest::Client, joined: Joined, state_dir: PathBuf) {
    // After a failure the next round goes to the next master (HA masters).
    let masters = joined.masters();
    let mut translator = Translator::default();
    let mut cursor = load_cursor(&state_dir);
    let mut backoff = Duration::from_secs(1);
    loop {
        let master = masters.current().to_owned();
        let url = format!("{master}/v1/nodes/{}/events", joined.node);
        let followed = follow_and_ship(
            &http,
            &url,
            &joined,
            &state_dir,
            &mut translator,
            &mut cursor,
        )
        .await;
        match followed {
            Ok(Followed { shipped: true }) => backoff = Duration::from_secs(1),
            Ok(Followed { shipped: false }) => {}
            Err(e) => {
                warn!(error = %format!("{e:#}"), "shipping container events; retrying");
                masters.failed(&master);
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// How one run of `journalctl` went.
struct Followed {
    /// Whether any batch reached the master.
    shipped: bool,
}

/// How long a batch waits for more entries once it has one: a burst of
/// events (a node's pods starting) goes in one request.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

async fn follow_and_ship(
    http: &reqwest::Client,
    url: &str,
    joined: &Joined,
    state_dir: &Path,
    translator: &mut Translator,
    cursor: &mut Option<String>,
) -> anyhow::Result<Followed> {
    let mut child = journal::follow_events(cursor.as_deref()).context("starting journalctl")?;
    let stdout = child.stdout.take().context("journalctl has no stdout")?;
    let mut stderr = child.stderr.take().context("journalctl has no stderr")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut followed = Followed { shipped: false };
    let mut read_any = false;
    // `next_line` is cancel safe: a line cut off by the window is read whole
    // by the next call.
    while let Some(first) = lines.next_line().await.context("reading journalctl")? {
        read_any = true;
        let mut entries: Vec<Entry> = translator.entry(&first).into_iter().collect();
        let mut ended = false;
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while !ended && entries.len() < BATCH {
            match tokio::time::timeout_at(deadline, lines.next_line()).await {
                Ok(Ok(Some(line))) => entries.extend(translator.entry(&line)),
                Ok(Ok(None)) => ended = true,
                Ok(Err(e)) => return Err(e).context("reading journalctl"),
                Err(_) => break,
            }
        }
        ship(http, url, joined, state_dir, &entries, cursor).await?;
        followed.shipped = true;
        if ended {
            break;
        }
    }
    let mut complaint = String::new();
    let _ = stderr.read_to_string(&mut complaint).await;
    let status = child.wait().await.context("waiting for journalctl")?;
    if !status.success() && !read_any && cursor.is_some() {
        // A cursor the journal no longer knows (rotated away): read
        // everything again; the master drops what it already has.
        warn!(
            complaint = complaint.trim(),
            "journal cursor unusable; reading from the start"
        );
        *cursor = None;
        return Ok(followed);
    }
    bail!("journalctl ended ({status}): {}", complaint.trim())
}

/// Sends the events among `entries` and, once the master has them, saves
/// the last entry's cursor.
async fn ship(
    http: &reqwest::Client,
    url: &str,
    joined: &Joined,
    state_dir: &Path,
    entries: &[Entry],
    cursor: &mut Option<String>,
) -> anyhow::Result<()> {
    let events: Vec<ReportedEvent> = entries.iter().filter_map(|e| e.event.clone()).collect();
    if !events.is_empty() {
        let response = http
            .post(url)
            .bearer_auth(&joined.credential)
            .timeout(Duration::from_secs(10))
            .json(&EventBatch { events })
            .send()
            .await
            .context("reaching the master")?;
        if !response.status().is_success() {
            bail!("the master answered {}", response.status());
        }
    }
    if let Some(last) = entries.last() {
        save_cursor(state_dir, &last.cursor).context("saving the journal cursor")?;
        debug!(events = entries.len(), "container events acknowledged");
        *cursor = Some(last.cursor.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn shim_entry(seq: u32, kind: &str, container: &str, reason: &str) -> Value {
        json!({
            "__CURSOR": format!("s=0123abcd;i={seq:x};b=ff;m=1;t=2;x=3"),
            "__REALTIME_TIMESTAMP": "1700000000123456",
            "MESSAGE_ID": SHIM_EVENT_MESSAGE_ID,
            "BERTH_EVENT": kind,
            "BERTH_CONTAINER": container,
            "BERTH_REASON": reason,
        })
    }

    #[test]
    fn shim_entries_become_pod_events_with_stable_ids() {
        let mut translator = Translator::default();
        let entry = shim_entry(
            26,
            "ContainerOOMKilled",
            "berth.web-1.app",
            "killed: out of memory",
        );
        let event = translator.translate(&entry).unwrap();
        assert_eq!(event.id, "0123abcd-1a");
        assert_eq!(event.event.kind, EventKind::ContainerOomKilled);
        assert_eq!(event.event.object, "pod/web-1");
        assert_eq!(event.event.time_ms, 1_700_000_000_123);
        assert_eq!(event.event.reason, "container app: killed: out of memory");
        assert_eq!(translator.translate(&entry).unwrap().id, event.id);
    }

    #[test]
    fn a_restart_says_why_the_container_ended() {
        let mut translator = Translator::default();
        let restart = json!({
            "__CURSOR": "s=0123abcd;i=30;b=ff",
            "__REALTIME_TIMESTAMP": "1700000001000000",
            "MESSAGE_ID": RESTART_SCHEDULED_MESSAGE_ID,
            "UNIT": "berth-my\\x2dweb-app.service",
            "N_RESTARTS": "1",
        });
        let before = translator.translate(&restart).unwrap();
        assert_eq!(before.event.reason, "container app: restart 1 by systemd");
        assert_eq!(before.event.object, "pod/my-web");

        translator.translate(&shim_entry(
            40,
            "ContainerUnhealthy",
            "berth.my-web.app",
            "liveness probe exec cat /tmp/ok failed 2 times: exit status 1",
        ));
        let after = translator.translate(&restart).unwrap();
        assert_eq!(after.event.kind, EventKind::ContainerRestarted);
        assert_eq!(
            after.event.reason,
            "container app: restart 1 by systemd; it had ended: liveness probe exec cat /tmp/ok failed 2 times: exit status 1"
        );
    }

    #[test]
    fn the_agents_pod_events_count_only_when_root_wrote_them() {
        let mut translator = Translator::default();
        let entry = |uid: &str, kind: &str| {
            json!({
                "__CURSOR": "s=0123abcd;i=41",
                "__REALTIME_TIMESTAMP": "1700000002000000",
                "MESSAGE_ID": POD_EVENT_MESSAGE_ID,
                "_UID": uid,
                "BERTH_EVENT": kind,
                "BERTH_POD": "x-0",
                "BERTH_REASON": "pull nosuch/image:1: not found (attempt 1; next in 2s)",
            })
        };
        let event = translator
            .translate(&entry("0", "ImagePullFailed"))
            .unwrap();
        assert_eq!(event.event.kind, EventKind::ImagePullFailed);
        assert_eq!(event.event.object, "pod/x-0");
        assert_eq!(
            event.event.reason,
            "pull nosuch/image:1: not found (attempt 1; next in 2s)"
        );
        assert_eq!(
            translator.translate(&entry("1000", "ImagePullFailed")),
            None
        );
        assert_eq!(translator.translate(&entry("0", "NodeReady")), None);
    }

    #[test]
    fn other_entries_and_network_units_are_not_events() {
        let mut translator = Translator::default();
        let holder = json!({
            "__CURSOR": "s=01;i=2",
            "__REALTIME_TIMESTAMP": "1",
            "MESSAGE_ID": RESTART_SCHEDULED_MESSAGE_ID,
            "UNIT": "berth-web.service",
        });
        assert_eq!(translator.translate(&holder), None);
        let other =
            json!({"__CURSOR": "s=01;i=3", "__REALTIME_TIMESTAMP": "1", "MESSAGE_ID": "00"});
        assert_eq!(translator.translate(&other), None);
        assert_eq!(event_id("s=zz;i=1"), None);
    }
}
