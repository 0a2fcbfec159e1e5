//! An acknowledged write survives SIGKILL of the process that made it.
//!
//! The test runs its own binary again as a child that writes keys one by
//! one and prints each key once `apply` has resolved; the parent kills the
//! child mid-stream, reopens the store and looks for every printed key.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_master::store::embedded::EmbeddedStore;
use berth_master::store::{Op, Store};

/// Set in the child: the database it writes to.
const CHILD_ENV: &str = "BERTH_STORE_DURABILITY_DB";
/// Acknowledgements the parent waits for before the kill.
const ACKS_BEFORE_KILL: usize = 300;
/// The child stops by itself after this long, should the parent be gone.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

fn value_of(i: u64) -> Vec<u8> {
    format!("value-{i}").into_bytes()
}

/// The child's side; does nothing in an ordinary test run.
#[test]
fn child_writer() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = EmbeddedStore::open(&PathBuf::from(path)).unwrap();
        let started = Instant::now();
        let mut i = 0u64;
        while started.elapsed() < CHILD_LIFETIME {
            let key = format!("/durability/{i:08}");
            let revision = store
                .apply(vec![Op::Create {
                    key: key.clone(),
                    value: value_of(i),
                }])
                .await
                .unwrap();
            // println! flushes on the newline only if stdout is a terminal;
            // the parent reads a pipe, so flush explicitly.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "ack {i} {key} {revision}").unwrap();
            out.flush().unwrap();
            i += 1;
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store_durability");
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("berth.db");

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();

    let mut acks: Vec<(u64, String, u64)> = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        // The test harness prints its own lines too.
        let Some(ack) = line.strip_prefix("ack ") else {
            continue;
        };
        let fields: Vec<&str> = ack.split(' ').collect();
        let [i, key, revision] = fields[..] else {
            panic!("malformed acknowledgement {line:?}");
        };
        acks.push((
            i.parse().unwrap(),
            key.to_owned(),
            revision.parse().unwrap(),
        ));
        if acks.len() == ACKS_BEFORE_KILL {
            // std's kill is SIGKILL: no destructor, no checkpoint, no
            // flush; the child dies wherever it is, likely inside a write.
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert_eq!(acks.len(), ACKS_BEFORE_KILL, "the child stopped early");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = EmbeddedStore::open(&path).unwrap();
        let mut previous = 0;
        for (i, key, revision) in &acks {
            assert!(*revision > previous, "revision {revision} after {previous}");
            previous = *revision;
            let entry = store
                .get(key)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged {key} is lost"));
            assert_eq!(entry.value, value_of(*i), "{key}");
            assert_eq!(entry.revision, *revision, "{key}");
        }
        // The child goes on writing until the kill lands, so writes past
        // the acks may have made it too (more than one on a busy machine):
        // each whole, and none missing before it.
        let (entries, revision) = store.list("/durability/").await.unwrap();
        assert!(entries.len() >= acks.len());
        for (i, entry) in entries.iter().enumerate() {
            let i = i as u64;
            assert_eq!(entry.key, format!("/durability/{i:08}"), "a hole before it");
            assert_eq!(entry.value, value_of(i), "{}", entry.key);
        }
        assert!(revision >= previous);
    });
}
