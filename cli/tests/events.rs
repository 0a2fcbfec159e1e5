//! `berth events` run as a process against a fake master: a small hyper
//! server on 127.0.0.1 that lists canned events, or streams them as
//! newline-delimited JSON when watched.

#[allow(dead_code)] // Each test file uses part of it.
mod fake;

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tokio::sync::Notify;

use fake::{FakeServer, Handler};
use hyper::body::Frame;
use hyper::Response;

/// `berth ARGS` logged in to `master` through the environment, with an
/// empty home of its own.
fn berth(master: &FakeServer, test: &str, args: &[&str]) -> Command {
    let home: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-events-{test}"));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).expect("home");
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .args(args)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("BERTH_URL", &master.url)
        .env("BERTH_TOKEN", "good");
    for proxy in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
        command.env_remove(proxy);
    }
    command
}

fn event(time_ms: u64, kind: &str, object: &str, node: &str) -> serde_json::Value {
    json!({"timeMs": time_ms, "kind": kind, "object": object, "node": node, "reason": "why"})
}

#[test]
fn events_are_listed_as_a_table_with_filters_in_the_query() {
    let master = FakeServer::tcp(Arc::new(|_| {
        let body = json!([
            event(1_777_637_107_000, "PodEvicted", "pod/web-1", "h3"),
            event(1_777_637_108_000, "PodScheduled", "pod/web-2", "h1"),
        ]);
        Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())).boxed())
            .expect("response")
    }));
    let output = berth(
        &master,
        "list",
        &["events", "--type", "podevicted", "--node", "h3"],
    )
    .output()
    .expect("run berth");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "\
TIME (UTC)            TYPE           OBJECT      NODE   REASON
2026-05-01 12:05:07   PodEvicted     pod/web-1   h3     why
2026-05-01 12:05:08   PodScheduled   pod/web-2   h1     why
"
    );
    assert_eq!(master.uris(), ["/v1/events?type=PodEvicted&node=h3"]);
}

#[test]
fn watched_events_are_printed_as_they_arrive() {
    let release = Arc::new(Notify::new());
    let released_by_test = Arc::new(AtomicBool::new(false));
    let handler: Handler = {
        let release = Arc::clone(&release);
        let released_by_test = Arc::clone(&released_by_test);
        Arc::new(move |_| {
            let (mut sender, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(4);
            let release = Arc::clone(&release);
            let released_by_test = Arc::clone(&released_by_test);
            tokio::spawn(async move {
                let first = format!("{}\n", event(1000, "NodeNotReady", "node/h3", "h3"));
                // Split mid-line: berth must wait for the whole line.
                let (a, b) = first.split_at(10);
                let _ = sender.send(Frame::data(Bytes::from(a.to_owned()))).await;
                let _ = sender.send(Frame::data(Bytes::from(b.to_owned()))).await;
                // If berth held output back, the test could not see the
                // first event and would never release us.
                let released =
                    tokio::time::timeout(Duration::from_secs(20), release.notified()).await;
                released_by_test.store(released.is_ok(), Ordering::SeqCst);
                let second = format!("{}\n", event(2000, "PodEvicted", "pod/web-1", "h3"));
                let _ = sender.send(Frame::data(Bytes::from(second))).await;
            });
            Response::builder()
                .header("content-type", "application/x-ndjson")
                .body(body.boxed())
                .expect("response")
        })
    };
    let master = FakeServer::tcp(handler);
    let mut child = berth(&master, "watch", &["events", "-w", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&first).expect("json line"),
        event(1000, "NodeNotReady", "node/h3", "h3")
    );
    release.notify_one();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("read");
    assert_eq!(rest.lines().count(), 1, "{rest}");
    assert!(rest.contains("\"PodEvicted\""), "{rest}");

    // The stream ending is the master going away: worth a word and a
    // failure.
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "berth: the berth master ended the event stream\n"
    );
    assert!(released_by_test.load(Ordering::SeqCst));
    assert_eq!(master.uris(), ["/v1/events?watch=true"]);
}
