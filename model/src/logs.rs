//! Container log lines on their way from a node's journal to the master and
//! from the master to `berth logs`.

use serde::{Deserialize, Serialize};

/// Largest body of a `POST /v1/nodes/{name}/logs` batch; larger than other
/// requests because a node catching up ships thousands of lines at once.
pub const MAX_LOG_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Most lines an agent puts in one batch.
pub const MAX_LOG_BATCH_LINES: usize = 10_000;

/// One journal entry of a container unit, as a node ships it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShippedLine {
    /// The journal's sequence-number ID (`s=` of the cursor): with `seqnum`
    /// it names the entry uniquely on its node, which makes ingest
    /// idempotent.
    pub seqnum_id: String,
    /// The entry's sequence number (`i=` of the cursor).
    pub seqnum: u64,
    /// When journald received it, microseconds since the Unix epoch.
    pub time_us: u64,
    /// syslog priority, 0 (emerg) to 7 (debug).
    pub priority: u8,
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// The line, without its newline (with U+FFFD for bytes that are not
    /// UTF-8; `raw` then has the bytes).
    pub message: String,
    /// The exact bytes, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Vec<u8>>,
}

/// `POST /v1/nodes/{name}/logs`: lines in journal order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogBatch {
    /// The lines.
    pub lines: Vec<ShippedLine>,
}

/// The master's answer to a batch, sent only once the batch is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogBatchAck {
    /// Lines stored now.
    pub stored: u64,
    /// Lines the master already had (a batch sent again after a lost ack).
    pub duplicates: u64,
}

/// A stored line as `GET /v1/logs` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// The master's ID of the line: ascending in the order lines arrived.
    pub id: u64,
    /// When journald received it, microseconds since the Unix epoch.
    pub time_us: u64,
    /// The node.
    pub node: String,
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// syslog priority.
    pub priority: u8,
    /// The line as the container printed it (not escaped), with U+FFFD for
    /// bytes that are not UTF-8; `raw` then has the bytes.
    pub message: String,
    /// The exact bytes, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Vec<u8>>,
}

impl LogLine {
    /// The bytes the container printed.
    pub fn bytes(&self) -> &[u8] {
        self.raw.as_deref().unwrap_or(self.message.as_bytes())
    }
}

impl ShippedLine {
    /// The bytes the container printed.
    pub fn bytes(&self) -> &[u8] {
        self.raw.as_deref().unwrap_or(self.message.as_bytes())
    }

    /// At least the size of the line's text and bytes in a JSON batch, so a
    /// node can keep its batches under [`MAX_LOG_BATCH_BYTES`]: control
    /// characters take six bytes there (`\u0000`) and raw bytes up to four.
    pub fn encoded_len(&self) -> usize {
        let text: usize = self
            .message
            .bytes()
            .map(|b| match b {
                0..=0x1f => 6,
                b'"' | b'\\' => 2,
                _ => 1,
            })
            .sum();
        text + self.raw.as_ref().map_or(0, |raw| 4 * raw.len())
    }
}

/// A line's bytes as the API carries them: the text, and the bytes
/// themselves only when they are not UTF-8 (JSON strings cannot hold them).
pub fn message_fields(bytes: &[u8]) -> (String, Option<Vec<u8>>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(bytes.to_vec()),
        ),
    }
}

/// A line made safe for a terminal, reversibly: printable text passes,
/// `\` doubles, tab, CR and LF read `\t`, `\r`, `\n`, any other control
/// byte or byte that is not UTF-8 reads `\xNN`, and invisible or
/// line-breaking characters (C1 controls, U+2028, U+2029, bidi and
/// zero-width marks, U+FEFF) read `\u{NNNN}`. A line cannot move the
/// cursor, clear the screen, fake another line or hide its bytes.
pub fn escape_message(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c if is_invisible(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// Characters a terminal does not show as themselves.
fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x80..=0x9f              // C1 controls
        | 0x200b..=0x200f        // zero-width and direction marks
        | 0x2028 | 0x2029        // line and paragraph separators
        | 0x202a..=0x202e        // bidi embeddings and overrides
        | 0x2060..=0x2064 | 0x2066..=0x2069
        | 0xfeff)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of microseconds since the epoch.
pub fn format_utc_micros(time_us: u64) -> String {
    let secs = time_us / 1_000_000;
    let millis = (time_us / 1000) % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil-date algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reverses [`escape_message`], to prove nothing is lost.
    fn unescape(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find('\\') {
            out.extend_from_slice(&rest.as_bytes()[..i]);
            let tail = &rest[i + 1..];
            let (bytes, used): (Vec<u8>, usize) = match tail.as_bytes()[0] {
                b'\\' => (b"\\".to_vec(), 1),
                b't' => (b"\t".to_vec(), 1),
                b'r' => (b"\r".to_vec(), 1),
                b'n' => (b"\n".to_vec(), 1),
                b'x' => (vec![u8::from_str_radix(&tail[1..3], 16).unwrap()], 3),
                b'u' => {
                    let end = tail.find('}').unwrap();
                    let c =
                        char::from_u32(u32::from_str_radix(&tail[2..end], 16).unwrap()).unwrap();
                    (c.to_string().into_bytes(), end + 1)
                }
                other => panic!("unknown escape {other}"),
            };
            out.extend(bytes);
            rest = &tail[used..];
        }
        out.extend_from_slice(rest.as_bytes());
        out
    }

    #[test]
    fn escaping_is_reversible_and_leaves_nothing_a_terminal_acts_on() {
        let hostile: &[u8] =
            b"a\0b\xff\xfe\x1b[2J\\x41 \r\n\tok \xe2\x80\xa8 \xc2\x85 \xef\xbb\xbf caf\xc3\xa9";
        let escaped = escape_message(hostile);
        assert_eq!(
            escaped,
            "a\\x00b\\xff\\xfe\\x1b[2J\\\\x41 \\r\\n\\tok \\u{2028} \\u{0085} \\u{feff} caf\u{e9}"
        );
        assert!(escaped.chars().all(|c| !c.is_control() && !is_invisible(c)));
        assert_eq!(unescape(&escaped), hostile);
    }

    #[test]
    fn only_lines_that_are_not_utf8_carry_raw_bytes() {
        assert_eq!(message_fields(b"plain"), ("plain".into(), None));
        let (text, raw) = message_fields(b"a\xffb");
        assert_eq!(text, "a\u{fffd}b");
        assert_eq!(raw.as_deref(), Some(&b"a\xffb"[..]));
    }
}

/// One answer of `GET /v1/logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    /// Lines in time order.
    pub lines: Vec<LogLine>,
    /// Pass as `from` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The highest line ID stored when this page was read: pass it as
    /// `newer-than` to follow what arrives after it.
    pub last_id: u64,
}
