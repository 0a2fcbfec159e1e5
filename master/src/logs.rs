//! Container logs as the master keeps them: a SQLite database of its own
//! (`<state-dir>/logs.db`), apart from the cluster store (which may be etcd
//! and is no place for millions of lines).
//!
//! A batch is committed (WAL, `synchronous=FULL`) before it is acknowledged,
//! so an acknowledged line survives a crash. Each line is keyed by its node
//! and journal sequence number: a batch sent again after a lost
//! acknowledgement is stored once. Retention drops lines older than the
//! configured age and the oldest lines beyond the configured size.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use berth_model::logs::{message_fields, LogBatch, LogBatchAck, LogLine, LogPage, ShippedLine};
use rusqlite::{params, Connection};
use tokio::sync::watch;

use crate::config::LogsConfig;

/// Most lines in one page of a query.
pub const PAGE_LINES: usize = 5_000;

/// Most lines `tail` returns.
pub const MAX_TAIL: usize = 100_000;

/// Rows one query looks at before it answers with what it found (a
/// `grep` that matches rarely must not hold the database for long).
const SCAN_LIMIT: usize = 200_000;

/// Failures of the log database.
#[derive(Debug, thiserror::Error)]
#[error("log database: {0}")]
pub struct LogStoreError(#[from] rusqlite::Error);

/// Which lines a query asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One pod's lines.
    Pod(String),
    /// The lines of every pod of a service (`<service>-<n>`), past ones too.
    Service(String),
}

impl Selection {
    /// Whether `pod` is selected.
    pub fn selects(&self, pod: &str) -> bool {
        match self {
            Self::Pod(name) => pod == name,
            Self::Service(service) => pod
                .strip_prefix(service.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        }
    }

    /// The range of pod names that can match, for the index: `[low, high)`.
    fn pod_range(&self) -> (String, String) {
        match self {
            Self::Pod(name) => (name.clone(), format!("{name}\0")),
            // `-` is 0x2d and `.` 0x2e: every `<service>-...` sorts between.
            Self::Service(service) => (format!("{service}-"), format!("{service}.")),
        }
    }
}

/// A query, parsed and checked by the API.
#[derive(Debug, Clone)]
pub struct LogQuery {
    /// Whose lines.
    pub selection: Selection,
    /// Only this container's.
    pub container: Option<String>,
    /// Only lines at or after this time (microseconds since the epoch).
    pub since_us: Option<u64>,
    /// Only lines matching.
    pub grep: Option<regex::Regex>,
    /// Which lines, and in which order.
    pub mode: Mode,
}

/// How a query walks the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Time order, a page at a time, after the position `from` (a line's
    /// time and ID) if given.
    History {
        /// Exclusive start: `(time_us, id)`.
        from: Option<(u64, u64)>,
    },
    /// The last `n` lines, in time order.
    Tail(usize),
    /// Lines that arrived after the line ID, in arrival order: following.
    NewerThan(u64),
}

/// The log database.
pub struct LogStore {
    conn: Mutex<Connection>,
    last_id: watch::Sender<u64>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Arc<Self>, LogStoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS lines (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 node TEXT NOT NULL,
                 seqnum_id TEXT NOT NULL,
                 seqnum INTEGER NOT NULL,
                 time_us INTEGER NOT NULL,
                 pod TEXT NOT NULL,
                 container TEXT NOT NULL,
                 priority INTEGER NOT NULL,
                 message TEXT NOT NULL,
                 UNIQUE (node, seqnum_id, seqnum)
             );
             CREATE INDEX IF NOT EXISTS lines_by_pod ON lines (pod, time_us, id);",
        )?;
        let last: u64 =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM lines", [], |r| r.get(0))?;
        Ok(Arc::new(Self {
            conn: Mutex::new(conn),
            last_id: watch::channel(last).0,
        }))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores a node's batch durably; lines it already has are skipped.
    pub fn ingest(&self, node: &str, batch: &LogBatch) -> Result<LogBatchAck, LogStoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut stored = 0u64;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO lines
                     (node, seqnum_id, seqnum, time_us, pod, container, priority, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for line in &batch.lines {
                stored += insert.execute(params![
                    node,
                    line.seqnum_id,
                    line.seqnum,
                    line.time_us,
                    line.pod,
                    line.container,
                    line.priority,
                    stored_message(line),
                ])? as u64;
            }
        }
        tx.commit()?;
        let last: u64 =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM lines", [], |r| r.get(0))?;
        self.last_id.send_replace(last);
        Ok(LogBatchAck {
            stored,
            duplicates: batch.lines.len() as u64 - stored,
        })
    }

    /// Watches the highest stored line ID (for following).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last_id.subscribe()
    }

    /// Answers a query with one page.
    pub fn query(&self, query: &LogQuery) -> Result<LogPage, LogStoreError> {
        let conn = self.conn();
        let last_id: u64 =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM lines", [], |r| r.get(0))?;
        let (low, high) = query.selection.pod_range();
        let columns = "id, time_us, node, pod, container, priority, message";
        let (sql, bound): (String, Vec<rusqlite::types::Value>) = match query.mode {
            Mode::History { from } => {
                let (time, id) = from.unwrap_or((0, 0));
                (
                    format!(
                        "SELECT {columns} FROM lines WHERE pod >= ?1 AND pod < ?2 \
                         AND time_us >= ?3 AND (time_us, id) > (?4, ?5) ORDER BY time_us, id"
                    ),
                    vec![
                        low.into(),
                        high.into(),
                        (query.since_us.unwrap_or(0) as i64).into(),
                        (time as i64).into(),
                        (id as i64).into(),
                    ],
                )
            }
            Mode::Tail(_) => (
                format!(
                    "SELECT {columns} FROM lines WHERE pod >= ?1 AND pod < ?2 \
                     AND time_us >= ?3 ORDER BY time_us DESC, id DESC"
                ),
                vec![
                    low.into(),
                    high.into(),
                    (query.since_us.unwrap_or(0) as i64).into(),
                ],
            ),
            Mode::NewerThan(after) => (
                format!(
                    "SELECT {columns} FROM lines WHERE id > ?3 AND pod >= ?1 AND pod < ?2 \
                     ORDER BY id"
                ),
                vec![low.into(), high.into(), (after as i64).into()],
            ),
        };
        let wanted = match query.mode {
            Mode::Tail(n) => n.min(MAX_TAIL),
            _ => PAGE_LINES,
        };
        let mut statement = conn.prepare_cached(&sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(bound))?;
        let mut lines = Vec::new();
        let mut scanned = 0usize;
        let mut more = false;
        let mut position = None;
        while let Some(row) = rows.next()? {
            scanned += 1;
            let bytes = row.get_ref(6)?.as_bytes().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    6,
                    rusqlite::types::Type::Blob,
                    Box::new(e),
                )
            })?;
            let (message, raw) = message_fields(bytes);
            let line = LogLine {
                id: row.get(0)?,
                time_us: row.get(1)?,
                node: row.get(2)?,
                pod: row.get(3)?,
                container: row.get(4)?,
                priority: row.get(5)?,
                message,
                raw,
            };
            position = Some((line.time_us, line.id));
            if query.since_us.is_some_and(|since| line.time_us < since) {
                continue;
            }
            if wants(query, &line) {
                lines.push(line);
            }
            if lines.len() >= wanted || scanned >= SCAN_LIMIT {
                more = true;
                break;
            }
        }
        if matches!(query.mode, Mode::Tail(_)) {
            lines.reverse();
            more = false;
        } else if matches!(query.mode, Mode::NewerThan(_)) {
            // Arrival order, shown in time order within the page.
            lines.sort_by_key(|l| (l.time_us, l.id));
        }
        let next = match (query.mode, more, position) {
            (Mode::History { .. }, true, Some((time, id))) => Some(format!("{time}:{id}")),
            _ => None,
        };
        // A follower resumes after the last line it was shown (or scanned).
        let last_id = match query.mode {
            Mode::NewerThan(after) if more => position.map_or(after, |(_, id)| id),
            _ => last_id,
        };
        Ok(LogPage {
            lines,
            next,
            last_id,
        })
    }

    /// Applies retention: drops lines older than the configured age, then
    /// the oldest lines while the database is larger than the configured
    /// size. Returns how many lines went.
    pub fn prune(&self, config: &LogsConfig, now_us: u64) -> Result<u64, LogStoreError> {
        let conn = self.conn();
        let oldest_kept = now_us.saturating_sub(config.max_age_hours * 3_600_000_000);
        let mut dropped = conn.execute(
            "DELETE FROM lines WHERE time_us < ?1",
            params![oldest_kept as i64],
        )? as u64;
        let page_size: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages: u64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: u64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let rows: u64 = conn.query_row("SELECT COUNT(*) FROM lines", [], |r| r.get(0))?;
        let excess = rows_over_size(
            (pages - free) * page_size,
            config.max_megabytes * 1024 * 1024,
            rows,
        );
        if excess > 0 {
            dropped += conn.execute(
                "DELETE FROM lines WHERE id IN (SELECT id FROM lines ORDER BY id LIMIT ?1)",
                params![excess as i64],
            )? as u64;
        }
        Ok(dropped)
    }
}

/// A line as the database keeps it: text when it is UTF-8, a blob of its
/// exact bytes when it is not.
fn stored_message(line: &ShippedLine) -> rusqlite::types::Value {
    match &line.raw {
        Some(raw) => rusqlite::types::Value::Blob(raw.clone()),
        None => rusqlite::types::Value::Text(line.message.clone()),
    }
}

fn wants(query: &LogQuery, line: &LogLine) -> bool {
    query.selection.selects(&line.pod)
        && query
            .container
            .as_deref()
            .is_none_or(|c| c == line.container)
        && query
            .grep
            .as_ref()
            .is_none_or(|re| re.is_match(&line.message))
}

/// How many of the oldest `rows` to drop so that `used` bytes fit in `max`,
/// assuming lines of about equal size; a tenth more, so retention does not
/// run on every batch once the database is full.
pub fn rows_over_size(used: u64, max: u64, rows: u64) -> u64 {
    if used <= max || rows == 0 || used == 0 {
        return 0;
    }
    let excess = (u128::from(used - max) * u128::from(rows)).div_ceil(u128::from(used)) as u64;
    (excess + rows / 10).min(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seqnum: u64, time_us: u64, pod: &str, message: &str) -> ShippedLine {
        ShippedLine {
            seqnum_id: "s1".into(),
            seqnum,
            time_us,
            priority: 6,
            pod: pod.into(),
            container: "app".into(),
            message: message.into(),
            raw: None,
        }
    }

    fn store() -> Arc<LogStore> {
        LogStore::open(Path::new(":memory:")).unwrap()
    }

    fn query(selection: Selection, mode: Mode) -> LogQuery {
        LogQuery {
            selection,
            container: None,
            since_us: None,
            grep: None,
            mode,
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_come_back_exactly() {
        let store = store();
        let hostile: &[u8] = b"a\0b\xff\xfe \xe2\x80\xa8";
        let mut odd = line(1, 10, "web-0", "");
        (odd.message, odd.raw) = berth_model::logs::message_fields(hostile);
        let batch = LogBatch {
            lines: vec![odd, line(2, 11, "web-0", "plain")],
        };
        store.ingest("h1", &batch).unwrap();
        let page = store
            .query(&query(
                Selection::Pod("web-0".into()),
                Mode::History { from: None },
            ))
            .unwrap();
        assert_eq!(page.lines[0].bytes(), hostile);
        assert_eq!(page.lines[1].bytes(), b"plain");
        assert_eq!(page.lines[1].raw, None);
    }

    #[test]
    fn a_batch_sent_twice_is_stored_once() {
        let store = store();
        let batch = LogBatch {
            lines: vec![line(1, 10, "web-0", "a"), line(2, 11, "web-0", "b")],
        };
        assert_eq!(store.ingest("h1", &batch).unwrap().stored, 2);
        let again = store.ingest("h1", &batch).unwrap();
        assert_eq!((again.stored, again.duplicates), (0, 2));
        // The same sequence numbers on another node are other lines.
        assert_eq!(store.ingest("h2", &batch).unwrap().stored, 2);
        let page = store
            .query(&query(
                Selection::Pod("web-0".into()),
                Mode::History { from: None },
            ))
            .unwrap();
        assert_eq!(page.lines.len(), 4);
    }

    #[test]
    fn services_merge_their_pods_in_time_order() {
        let store = store();
        let h1 = LogBatch {
            lines: vec![line(1, 10, "web-0", "one"), line(2, 30, "web-0", "three")],
        };
        let h2 = LogBatch {
            lines: vec![
                line(7, 20, "web-1", "two"),
                line(8, 25, "web-other", "not web's"),
                line(9, 26, "webx-1", "not web's either"),
            ],
        };
        store.ingest("h1", &h1).unwrap();
        store.ingest("h2", &h2).unwrap();
        let page = store
            .query(&query(
                Selection::Service("web".into()),
                Mode::History { from: None },
            ))
            .unwrap();
        let messages: Vec<_> = page.lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["one", "two", "three"]);
        let tail = store
            .query(&query(Selection::Service("web".into()), Mode::Tail(2)))
            .unwrap();
        let messages: Vec<_> = tail.lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["two", "three"]);
        let mut grep = query(
            Selection::Service("web".into()),
            Mode::History { from: None },
        );
        grep.grep = Some(regex::Regex::new("^t").unwrap());
        let page = store.query(&grep).unwrap();
        assert_eq!(page.lines.len(), 2);
    }

    #[test]
    fn history_pages_and_following_see_every_line_once() {
        let store = store();
        let lines: Vec<_> = (0..(PAGE_LINES as u64 * 2 + 7))
            .map(|i| line(i, 1000 + i / 3, "big", &i.to_string()))
            .collect();
        store.ingest("h1", &LogBatch { lines }).unwrap();
        let mut seen = Vec::new();
        let mut from = None;
        let last_id = loop {
            let page = store
                .query(&query(Selection::Pod("big".into()), Mode::History { from }))
                .unwrap();
            seen.extend(page.lines.iter().map(|l| l.message.parse::<u64>().unwrap()));
            match page.next {
                Some(next) => {
                    let (t, i) = next.split_once(':').unwrap();
                    from = Some((t.parse().unwrap(), i.parse().unwrap()));
                }
                None => break page.last_id,
            }
        };
        assert_eq!(seen, (0..(PAGE_LINES as u64 * 2 + 7)).collect::<Vec<_>>());
        store
            .ingest(
                "h1",
                &LogBatch {
                    lines: vec![line(99_999, 5, "big", "late")],
                },
            )
            .unwrap();
        let follow = store
            .query(&query(
                Selection::Pod("big".into()),
                Mode::NewerThan(last_id),
            ))
            .unwrap();
        assert_eq!(follow.lines.len(), 1);
        assert_eq!(follow.lines[0].message, "late");
    }

    #[test]
    fn retention_drops_old_lines() {
        let store = store();
        let hour = 3_600_000_000;
        let batch = LogBatch {
            lines: vec![line(1, hour, "p", "old"), line(2, 10 * hour, "p", "new")],
        };
        store.ingest("h1", &batch).unwrap();
        let config = LogsConfig {
            max_age_hours: 2,
            max_megabytes: 1024,
        };
        assert_eq!(store.prune(&config, 11 * hour).unwrap(), 1);
        let page = store
            .query(&query(
                Selection::Pod("p".into()),
                Mode::History { from: None },
            ))
            .unwrap();
        assert_eq!(page.lines.len(), 1);
        assert_eq!(page.lines[0].message, "new");
    }

    #[test]
    fn size_retention_drops_the_excess_and_a_tenth() {
        assert_eq!(rows_over_size(100, 200, 50), 0);
        assert_eq!(rows_over_size(200, 100, 100), 60);
        assert_eq!(rows_over_size(1000, 1, 10), 10);
    }
}
