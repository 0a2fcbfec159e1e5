//! Container events as structured journal entries, through journald's
//! native protocol (one datagram to `/run/systemd/journal/socket`).
//!
//! journald stamps each entry with the unit it came from and a sequence
//! number, and keeps it whether or not the agent runs: the agent reads them
//! back (`MESSAGE_ID=` [`CONTAINER_EVENT_MESSAGE_ID`]) and ships them to
//! the master, checkpointing its journal cursor, so that no event is lost
//! or sent twice.

use std::io::{IoSlice, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

use berth_shim::message_ids::CONTAINER_EVENT as CONTAINER_EVENT_MESSAGE_ID;

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

/// Which of the container's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Writes a container's output lines to the journal, each as one entry of
/// journald's native protocol with a binary-safe `MESSAGE`: a long line
/// stays one entry (a stream connection splits at `LineMax=`, 48 KiB), and
/// NUL, invalid UTF-8 or a terminal escape is kept byte for byte. journald
/// still files each entry under the pod unit (`_SYSTEMD_UNIT=`): it reads
/// that from the sender's cgroup, which is the unit's.
#[derive(Debug)]
pub struct OutputJournal {
    socket: Option<UnixDatagram>,
    identifier: String,
}

impl OutputJournal {
    /// A writer for `container`'s lines; without a journal (a shim run by
    /// hand) lines go to stdout.
    pub fn new(container: &str) -> Self {
        let socket = UnixDatagram::unbound()
            .ok()
            .filter(|_| std::path::Path::new(JOURNAL_SOCKET).exists());
        Self {
            socket,
            identifier: container.replace(['\n', '\r'], " "),
        }
    }

    /// Writes one line (without its newline).
    pub fn line(&mut self, stream: OutputStream, line: &[u8]) {
        let Some(socket) = &self.socket else {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(line)
                .and_then(|()| stdout.write_all(b"\n"));
            return;
        };
        let datagram = output_entry(&self.identifier, stream, line);
        match socket.send_to(&datagram, JOURNAL_SOCKET) {
            Ok(_) => {}
            // Larger than a datagram may be: journald takes the entry from
            // a sealed memfd instead, as sd_journal_sendv does.
            Err(e) if e.raw_os_error() == Some(nix::libc::EMSGSIZE) => {
                if let Err(e) = send_in_memfd(socket, &datagram) {
                    eprintln!(
                        "berth-shim: a {} byte line could not reach the journal: {e}",
                        line.len()
                    );
                }
            }
            Err(e) => eprintln!("berth-shim: a line could not reach the journal: {e}"),
        }
    }
}

/// The native-protocol entry of one output line: simple fields, then
/// `MESSAGE` as a binary field (name, newline, 64-bit little-endian length,
/// the bytes, newline), which may hold any byte.
pub fn output_entry(identifier: &str, stream: OutputStream, line: &[u8]) -> Vec<u8> {
    let (priority, name) = match stream {
        OutputStream::Stdout => (6, "stdout"),
        OutputStream::Stderr => (3, "stderr"),
    };
    let mut entry = format!(
        "PRIORITY={priority}\nSYSLOG_IDENTIFIER={identifier}\nBERTH_STREAM={name}\nMESSAGE\n"
    )
    .into_bytes();
    entry.extend_from_slice(&(line.len() as u64).to_le_bytes());
    entry.extend_from_slice(line);
    entry.push(b'\n');
    entry
}

fn send_in_memfd(socket: &UnixDatagram, entry: &[u8]) -> Result<(), String> {
    let fd = memfd_create(
        c"berth-shim-line",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(|e| format!("memfd_create: {e}"))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(entry)
        .map_err(|e| format!("writing the memfd: {e}"))?;
    fcntl(
        file.as_raw_fd(),
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_WRITE
                | SealFlag::F_SEAL_SEAL,
        ),
    )
    .map_err(|e| format!("sealing the memfd: {e}"))?;
    let address = UnixAddr::new(JOURNAL_SOCKET).map_err(|e| e.to_string())?;
    let fds = [file.as_raw_fd()];
    sendmsg(
        socket.as_raw_fd(),
        &[] as &[IoSlice<'_>],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        Some(&address),
    )
    .map_err(|e| format!("sending the memfd: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_line_is_one_binary_safe_message_field() {
        let entry = output_entry("berth.web.app", OutputStream::Stderr, b"a\0b\n\xff");
        let head = b"PRIORITY=3\nSYSLOG_IDENTIFIER=berth.web.app\nBERTH_STREAM=stderr\nMESSAGE\n";
        assert_eq!(&entry[..head.len()], head);
        let rest = &entry[head.len()..];
        assert_eq!(rest[..8], 5u64.to_le_bytes());
        assert_eq!(&rest[8..], b"a\0b\n\xff\n");
    }

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
