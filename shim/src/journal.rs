//! Container events as structured journal entries, through journald's
//! native protocol (one datagram to `/run/systemd/journal/socket`).
//!
//! journald stamps each entry with the unit it came from and a sequence
//! number, and keeps it whether or not the agent runs: the agent reads them
//! back (`MESSAGE_ID=` [`CONTAINER_EVENT_MESSAGE_ID`]) and ships them to
//! the master, checkpointing its journal cursor, so that no event is lost
//! or sent twice.

use std::os::unix::net::UnixDatagram;

/// The `MESSAGE_ID=` of every container event berth-shim writes (also in
/// the agent, which matches on it).
pub const CONTAINER_EVENT_MESSAGE_ID: &str = "6a1b9e3c5d2f4c0e8b7a94d1f3e2c580";

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The kinds of container events, as the master's API spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerEvent {
    Started,
    Exited,
    OomKilled,
    Unhealthy,
}

impl ContainerEvent {
    fn kind(self) -> &'static str {
        match self {
            ContainerEvent::Started => "ContainerStarted",
            ContainerEvent::Exited => "ContainerExited",
            ContainerEvent::OomKilled => "ContainerOOMKilled",
            ContainerEvent::Unhealthy => "ContainerUnhealthy",
        }
    }

    fn priority(self) -> u8 {
        match self {
            ContainerEvent::Started => 6,
            ContainerEvent::Exited => 5,
            ContainerEvent::OomKilled | ContainerEvent::Unhealthy => 4,
        }
    }
}

/// The journal entry of an event, in the native protocol's simple form
/// (`FIELD=value` lines), which is why values are kept to one line.
/// `run` is Docker's `State.StartedAt` of the run the event is about
/// (`BERTH_RUN=`, left out when empty): the agent finds the record of one
/// run by it.
pub fn entry(event: ContainerEvent, container: &str, run: &str, message: &str) -> String {
    let one_line = |text: &str| text.replace(['\n', '\r'], " ");
    let mut text = format!(
        "MESSAGE_ID={CONTAINER_EVENT_MESSAGE_ID}\nMESSAGE=berth-shim: {}: {}\nPRIORITY={}\nSYSLOG_IDENTIFIER=berth-shim\nBERTH_EVENT={}\nBERTH_CONTAINER={}\nBERTH_REASON={}\n",
        one_line(container),
        one_line(message),
        event.priority(),
        event.kind(),
        one_line(container),
        one_line(message),
    );
    if !run.is_empty() {
        text.push_str(&format!("BERTH_RUN={}\n", one_line(run)));
    }
    text
}

/// Records `event` about `container`'s `run` in the journal; without a
/// journal (a shim run by hand), the message goes to stderr instead.
pub fn record(event: ContainerEvent, container: &str, run: &str, message: &str) {
    let sent = UnixDatagram::unbound().and_then(|socket| {
        socket.send_to(
            entry(event, container, run, message).as_bytes(),
            JOURNAL_SOCKET,
        )
    });
    if sent.is_err() {
        eprintln!("berth-shim: {container}: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_one_field_per_line_whatever_the_message() {
        let text = entry(
            ContainerEvent::Unhealthy,
            "berth.web.app",
            "2026-11-25T01:02:03.456789012Z",
            "liveness probe failed\nBERTH_EVENT=forged",
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8, "{text}");
        assert!(lines.contains(&"BERTH_RUN=2026-11-25T01:02:03.456789012Z"));
        assert!(lines.contains(&"BERTH_EVENT=ContainerUnhealthy"));
        assert!(lines.contains(&"BERTH_REASON=liveness probe failed BERTH_EVENT=forged"));
        assert!(lines.contains(&"BERTH_CONTAINER=berth.web.app"));
    }
}
