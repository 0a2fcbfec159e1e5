//! Copies the attached container's output to the shim's stdout and stderr.
//!
//! Without a TTY Docker multiplexes both streams on one connection: each
//! frame is an 8-byte header (stream id, three zero bytes, big-endian
//! length) followed by that many bytes.

use std::io::{self, Read, Write};

/// Relays until the container closes the stream (it exited).
pub fn relay(stream: impl Read, tty: bool) {
    let stdout = io::stdout();
    let stderr = io::stderr();
    relay_to(stream, tty, &mut stdout.lock(), &mut stderr.lock());
}

/// Relays `stream` into `out` and `err`.
pub fn relay_to(mut stream: impl Read, tty: bool, out: &mut impl Write, err: &mut impl Write) {
    if tty {
        let _ = io::copy(&mut stream, out);
        return;
    }
    let mut header = [0u8; 8];
    let mut buffer = vec![0u8; 16 * 1024];
    while stream.read_exact(&mut header).is_ok() {
        let mut remaining =
            u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let target: &mut dyn Write = if header[0] == 2 { &mut *err } else { &mut *out };
        while remaining > 0 {
            let want = remaining.min(buffer.len());
            let n = match stream.read(&mut buffer[..want]) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // A journal that went away must not stop the relay: the
            // container's pipe would fill and block it.
            let _ = target.write_all(&buffer[..n]);
            remaining -= n;
        }
        let _ = target.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn splits_multiplexed_frames_into_stdout_and_stderr() {
        let mut data = frame(1, b"hello\n");
        data.extend(frame(2, b"oops\n"));
        data.extend(frame(1, b"world\n"));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        relay_to(&data[..], false, &mut out, &mut err);
        assert_eq!(out, b"hello\nworld\n");
        assert_eq!(err, b"oops\n");
    }

    #[test]
    fn stops_at_a_truncated_frame() {
        let mut data = frame(1, b"complete\n");
        data.extend(&frame(1, b"cut short")[..12]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        relay_to(&data[..], false, &mut out, &mut err);
        assert_eq!(out, b"complete\ncut ");
        assert!(err.is_empty());
    }

    #[test]
    fn passes_a_tty_stream_through() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        relay_to(&b"raw\x01bytes"[..], true, &mut out, &mut err);
        assert_eq!(out, b"raw\x01bytes");
    }
}
