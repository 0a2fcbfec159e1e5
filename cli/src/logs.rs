//! `berth logs SERVICE|POD`: what a service's pods (or one pod) printed, as
//! the master collected it from every node's journal, merged in time order.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use berth_model::logs::{escape_message, format_utc_micros, LogLine};
use clap::{Args, ValueEnum};

use crate::cluster;
use crate::master_client::MasterClient;

/// How long one follow request waits at the master for new lines.
const FOLLOW_WAIT: Duration = Duration::from_secs(20);

/// `berth logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// A service (the lines of all its pods, past ones included) or a pod.
    pub target: String,

    /// Follow: print new lines as they arrive, until interrupted.
    #[arg(short, long)]
    pub follow: bool,

    /// Only lines since then: a duration ago (30s, 5m, 2h, 1d) or a Unix
    /// time in seconds (@1700000000).
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<u64>,

    /// Only the last N lines (then, with -f, what follows).
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,

    /// Only lines matching this regular expression.
    #[arg(long, value_name = "RE")]
    pub grep: Option<String>,

    /// Only this container's lines.
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,

    /// Start each line with the time journald received it (UTC).
    #[arg(short, long)]
    pub timestamps: bool,

    /// `text`: `pod@node | line`, every byte a terminal would act on
    /// escaped reversibly (`\xff`, `\u{2028}`, `\\`); `raw`: exactly the
    /// bytes the containers printed, a newline after each line.
    #[arg(short, long, value_enum, default_value_t = LogFormat::Text)]
    pub output: LogFormat,
}

/// How `berth logs` prints a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Escaped, with pod and node.
    Text,
    /// The bytes as printed, nothing added but the newline.
    Raw,
}

/// How lines are printed.
#[derive(Debug, Clone, Copy)]
struct Style {
    format: LogFormat,
    timestamps: bool,
}

/// Runs `berth logs`.
pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let client = cluster::client()?;
    let mut filters = vec![("target", args.target.clone())];
    if let Some(since) = args.since {
        filters.push(("since", since.to_string()));
    }
    if let Some(grep) = &args.grep {
        filters.push(("grep", grep.clone()));
    }
    if let Some(container) = &args.container {
        filters.push(("container", container.clone()));
    }
    let style = Style {
        format: args.output,
        timestamps: args.timestamps,
    };
    let what = format!("cannot read the logs of {}", args.target);
    let mut last_id = match args.tail {
        Some(tail) => {
            let mut query = filters.clone();
            query.push(("tail", tail.to_string()));
            let page = client
                .read_logs(&query, Duration::ZERO)
                .await
                .context(what.clone())?;
            print_lines(&page.lines, style)?;
            page.last_id
        }
        None => history(&client, &filters, style)
            .await
            .context(what.clone())?,
    };
    if !args.follow {
        return Ok(());
    }
    loop {
        let mut query = filters.clone();
        query.push(("newer-than", last_id.to_string()));
        query.push(("wait", FOLLOW_WAIT.as_secs().to_string()));
        let page = client
            .read_logs(&query, FOLLOW_WAIT)
            .await
            .context(what.clone())?;
        print_lines(&page.lines, style)?;
        last_id = page.last_id.max(last_id);
    }
}

/// Prints every stored line, page by page; returns the last line ID the
/// master had when it answered the first page's query.
async fn history(
    client: &MasterClient,
    filters: &[(&str, String)],
    style: Style,
) -> anyhow::Result<u64> {
    let mut from = None;
    let mut first_last_id = None;
    loop {
        let mut query = filters.to_vec();
        if let Some(from) = from.take() {
            query.push(("from", from));
        }
        let page = client.read_logs(&query, Duration::ZERO).await?;
        print_lines(&page.lines, style)?;
        // Lines arriving while the pages are read are followed from the
        // first page's mark; some may print twice, none go missing.
        let last_id = *first_last_id.get_or_insert(page.last_id);
        match page.next {
            Some(next) => from = Some(next),
            None => return Ok(last_id),
        }
    }
}

/// Prints the lines' messages alone (a build's log, whose one pod needs
/// no naming), escaped as `berth logs` escapes them.
pub fn print_messages(lines: &[LogLine]) -> anyhow::Result<()> {
    let mut text = String::new();
    for line in lines {
        text.push_str(&escape_message(line.bytes()));
        text.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

fn print_lines(lines: &[LogLine], style: Style) -> anyhow::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut bytes = Vec::new();
    for line in lines {
        match style.format {
            LogFormat::Text => bytes.extend(format_line(line, style.timestamps).into_bytes()),
            LogFormat::Raw => bytes.extend_from_slice(line.bytes()),
        }
        bytes.push(b'\n');
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&bytes)
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

/// One line as printed: `[time ]pod@node | message`, the message escaped
/// by [`escape_message`] so a line cannot move the cursor, clear the screen,
/// fake another line or lose a byte.
pub fn format_line(line: &LogLine, timestamps: bool) -> String {
    let mut out = String::with_capacity(line.message.len() + 32);
    if timestamps {
        out.push_str(&format_utc_micros(line.time_us));
        out.push(' ');
    }
    out.push_str(&line.pod);
    out.push('@');
    out.push_str(&line.node);
    out.push_str(" | ");
    out.push_str(&escape_message(line.bytes()));
    out
}

/// `--since`: microseconds since the epoch.
fn parse_since(value: &str) -> Result<u64, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    since_at(value, now)
}

fn since_at(value: &str, now: Duration) -> Result<u64, String> {
    if let Some(secs) = value.strip_prefix('@') {
        let secs: u64 = secs
            .parse()
            .map_err(|_| format!("{value:?} is not @ and a Unix time in seconds"))?;
        return Ok(secs * 1_000_000);
    }
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{value:?} needs a unit: s, m, h or d"))?;
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} does not start with a number"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{value:?}: the unit must be s, m, h or d")),
    };
    let ago = Duration::from_secs(number.saturating_mul(unit_secs));
    Ok(now.saturating_sub(ago).as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: &str) -> LogLine {
        LogLine {
            id: 1,
            time_us: 1_700_000_000_123_456,
            node: "h2".into(),
            pod: "web-1".into(),
            container: "web".into(),
            priority: 6,
            message: message.into(),
            raw: None,
        }
    }

    #[test]
    fn lines_name_pod_and_host_and_escape_controls() {
        assert_eq!(format_line(&line("hello"), false), "web-1@h2 | hello");
        assert_eq!(
            format_line(&line("a\x1b[2Jb\rc\td\u{85}é\x7f"), false),
            "web-1@h2 | a\\x1b[2Jb\\rc\\td\\u{0085}é\\x7f"
        );
        let mut invalid = line("a\u{fffd}b");
        invalid.raw = Some(b"a\xffb".to_vec());
        assert_eq!(format_line(&invalid, false), "web-1@h2 | a\\xffb");
        assert_eq!(
            format_line(&line("x"), true),
            "2023-11-14T22:13:20.123Z web-1@h2 | x"
        );
    }

    #[test]
    fn since_takes_durations_and_unix_times() {
        let now = Duration::from_secs(10_000);
        assert_eq!(since_at("30s", now), Ok(9_970_000_000));
        assert_eq!(since_at("2h", now), Ok(2_800_000_000));
        assert_eq!(since_at("@1700000000", now), Ok(1_700_000_000_000_000));
        assert!(since_at("5", now).is_err());
        assert!(since_at("5w", now).is_err());
        assert!(since_at("m", now).is_err());
    }
}
