//! Copies the attached container's output to the journal, a line at a time.
//!
//! Without a TTY Docker multiplexes both streams on one connection: each
//! frame is an 8-byte header (stream id, three zero bytes, big-endian
//! length) followed by that many bytes. Frames do not follow lines, so
//! each stream keeps its unfinished line until its newline arrives.

use std::io::Read;

use crate::journal::{OutputJournal, OutputStream};

/// The longest line kept as one journal entry; a longer one is cut into
/// entries of this size. It bounds the shim's memory, and keeps every line
/// well inside the master's log batches (16 MiB).
pub const LINE_MAX: usize = 1024 * 1024;

/// Where finished lines go.
pub trait LineSink {
    /// One line of `stream`, without its newline.
    fn line(&mut self, stream: OutputStream, line: &[u8]);
}

impl LineSink for OutputJournal {
    fn line(&mut self, stream: OutputStream, line: &[u8]) {
        OutputJournal::line(self, stream, line);
    }
}

/// Relays until the container closes the stream (it exited).
pub fn relay(stream: impl Read, tty: bool, journal: &mut OutputJournal) {
    relay_to(stream, tty, journal);
}

/// Relays `stream` into `sink`, line by line. A last line without a newline
/// is still a line.
pub fn relay_to(mut stream: impl Read, tty: bool, sink: &mut impl LineSink) {
    let mut lines = Lines::default();
    let mut buffer = vec![0u8; 64 * 1024];
    if tty {
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            lines.push(OutputStream::Stdout, &buffer[..n], sink);
        }
        lines.finish(sink);
        return;
    }
    let mut header = [0u8; 8];
    'frames: while stream.read_exact(&mut header).is_ok() {
        let mut remaining =
            u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let target = if header[0] == 2 {
            OutputStream::Stderr
        } else {
            OutputStream::Stdout
        };
        while remaining > 0 {
            let want = remaining.min(buffer.len());
            let n = match stream.read(&mut buffer[..want]) {
                Ok(0) | Err(_) => break 'frames,
                Ok(n) => n,
            };
            lines.push(target, &buffer[..n], sink);
            remaining -= n;
        }
    }
    lines.finish(sink);
}

/// The unfinished line of each stream.
#[derive(Debug, Default)]
struct Lines {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Lines {
    fn push(&mut self, stream: OutputStream, mut bytes: &[u8], sink: &mut impl LineSink) {
        let pending = match stream {
            OutputStream::Stdout => &mut self.stdout,
            OutputStream::Stderr => &mut self.stderr,
        };
        while !bytes.is_empty() {
            // A newline right after a full line still ends that line.
            let room = LINE_MAX - pending.len();
            match bytes.iter().take(room + 1).position(|b| *b == b'\n') {
                Some(end) => {
                    if pending.is_empty() {
                        sink.line(stream, &bytes[..end]);
                    } else {
                        pending.extend_from_slice(&bytes[..end]);
                        sink.line(stream, pending);
                        pending.clear();
                    }
                    bytes = &bytes[end + 1..];
                }
                None if bytes.len() > room => {
                    pending.extend_from_slice(&bytes[..room]);
                    sink.line(stream, pending);
                    pending.clear();
                    bytes = &bytes[room..];
                }
                None => {
                    pending.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
        }
    }

    fn finish(&mut self, sink: &mut impl LineSink) {
        for (stream, pending) in [
            (OutputStream::Stdout, &mut self.stdout),
            (OutputStream::Stderr, &mut self.stderr),
        ] {
            if !pending.is_empty() {
                sink.line(stream, pending);
                pending.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorded(Vec<(OutputStream, Vec<u8>)>);

    impl LineSink for Recorded {
        fn line(&mut self, stream: OutputStream, line: &[u8]) {
            self.0.push((stream, line.to_vec()));
        }
    }

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn relayed(data: &[u8], tty: bool) -> Vec<(OutputStream, Vec<u8>)> {
        let mut sink = Recorded::default();
        relay_to(data, tty, &mut sink);
        sink.0
    }

    use OutputStream::{Stderr, Stdout};

    #[test]
    fn splits_multiplexed_frames_into_lines_of_each_stream() {
        let mut data = frame(1, b"hel");
        data.extend(frame(2, b"oops\n"));
        data.extend(frame(1, b"lo\nworld\n"));
        assert_eq!(
            relayed(&data, false),
            [
                (Stderr, b"oops".to_vec()),
                (Stdout, b"hello".to_vec()),
                (Stdout, b"world".to_vec())
            ]
        );
    }

    #[test]
    fn keeps_every_byte_and_a_last_line_without_newline() {
        let data = frame(1, b"a\0b\n\xff\xfe\x1b[2J\r\nend");
        assert_eq!(
            relayed(&data, false),
            [
                (Stdout, b"a\0b".to_vec()),
                (Stdout, b"\xff\xfe\x1b[2J\r".to_vec()),
                (Stdout, b"end".to_vec())
            ]
        );
    }

    #[test]
    fn a_long_line_is_one_line_up_to_the_limit() {
        let mut data = Vec::new();
        let line = vec![b'x'; LINE_MAX];
        for chunk in line.chunks(70_000) {
            data.extend(frame(1, chunk));
        }
        data.extend(frame(1, b"\nshort\n"));
        let lines = relayed(&data, false);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].1.len(), LINE_MAX);
        assert_eq!(lines[1].1, b"short");

        let over = vec![b'y'; LINE_MAX + 10];
        let lines = relayed(&frame(1, &over), false);
        assert_eq!(
            lines.iter().map(|l| l.1.len()).collect::<Vec<_>>(),
            [LINE_MAX, 10]
        );
    }

    #[test]
    fn stops_at_a_truncated_frame() {
        let mut data = frame(1, b"complete\n");
        data.extend(&frame(1, b"cut short")[..12]);
        assert_eq!(
            relayed(&data, false),
            [(Stdout, b"complete".to_vec()), (Stdout, b"cut ".to_vec())]
        );
    }

    #[test]
    fn splits_a_tty_stream_into_lines() {
        assert_eq!(
            relayed(b"raw\x01bytes\nmore", true),
            [
                (Stdout, b"raw\x01bytes".to_vec()),
                (Stdout, b"more".to_vec())
            ]
        );
    }
}
