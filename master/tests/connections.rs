//! The API's connection limits in-process: slow headers and bodies are cut
//! off by their timeouts, connections over the cap get a clear 503, and a
//! watch streams on well past every timeout.

use std::time::{Duration, Instant};

use berth_master::config::{ConnectionsConfig, MasterConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A master on 127.0.0.1 with `connections`; its address and admin token.
async fn start(name: &str, connections: ConnectionsConfig) -> (String, String) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("master-conn-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    let config = MasterConfig {
        state_dir: dir.clone(),
        connections,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a port");
    let address = listener.local_addr().expect("local address").to_string();
    tokio::spawn(berth_master::run(config, listener, std::future::pending()));
    let token_path = dir.join("admin.token");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !token_path.exists() {
        assert!(Instant::now() < deadline, "master did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let admin = std::fs::read_to_string(token_path).expect("admin token");
    (address, admin.trim().to_owned())
}

fn quick(connections: ConnectionsConfig) -> ConnectionsConfig {
    ConnectionsConfig {
        header_read_timeout_secs: 1,
        request_body_timeout_secs: 1,
        ..connections
    }
}

/// Reads until the master closes the connection (or `within` passes):
/// what it sent and when it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, Option<Instant>) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&got).into(), Some(Instant::now()))
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into(), None),
        }
    }
}

#[tokio::test]
async fn headers_sent_a_byte_at_a_time_are_cut_off_by_the_header_timeout() {
    let (address, _) = start("headers", quick(ConnectionsConfig::default())).await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(&address).await.expect("connecting");
    let trickle = tokio::spawn(async move {
        for byte in b"GET /v1/openapi.json HTTP/1.1\r\nHost: master\r\nX-Slow: aaaaaaaaaaaaaaaa" {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        slow
    });
    let mut silent = TcpStream::connect(&address).await.expect("connecting");
    let (_, silent_closed) = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    let silent_after = silent_closed.expect("a silent connection stayed open") - started;
    assert!(
        silent_after >= Duration::from_millis(900),
        "closed too early: {silent_after:?}"
    );
    let mut slow = trickle.await.expect("the trickle");
    let (_, slow_closed) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    let slow_after = slow_closed.expect("a slow connection stayed open") - started;
    assert!(
        slow_after < Duration::from_secs(8),
        "the slow headers were not cut off: {slow_after:?}"
    );
    // A normal request is unaffected.
    let answer = reqwest::get(format!("http://{address}/v1/openapi.json"))
        .await
        .expect("a request");
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn a_body_sent_too_slowly_is_refused_and_its_connection_closed() {
    let (address, _) = start("body", quick(ConnectionsConfig::default())).await;
    let mut stream = TcpStream::connect(&address).await.expect("connecting");
    stream
        .write_all(b"POST /v1/join HTTP/1.1\r\nHost: master\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"token\"")
        .await
        .expect("writing");
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "the connection stayed open: {answer}");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("request-body-timeout-secs"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn connections_over_the_cap_get_a_503_that_says_why() {
    let limits = ConnectionsConfig {
        max_connections: 3,
        ..ConnectionsConfig::default()
    };
    let (address, _) = start("cap", limits).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&address).await.expect("connecting"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = TcpStream::connect(&address).await.expect("connecting");
    let (answer, closed) = read_until_closed(&mut over, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "the refused connection stayed open");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("3 API connections open") && answer.contains("max-connections"),
        "{answer}"
    );
    drop(held.pop());
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = client
            .get(format!("http://{address}/v1/openapi.json"))
            .send()
            .await;
        if answer.is_ok_and(|a| a.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot was not reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_watch_streams_on_past_every_timeout() {
    let (address, admin) = start("watch", quick(ConnectionsConfig::default())).await;
    let client = reqwest::Client::new();
    let mut watch = client
        .get(format!("http://{address}/v1/nodes?watch=true"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("a watch");
    assert_eq!(watch.status(), 200);
    // Three header and body timeouts pass with nothing to stream.
    if let Ok(chunk) = tokio::time::timeout(Duration::from_secs(3), watch.chunk()).await {
        let chunk = chunk.expect("the watch failed");
        assert!(chunk.is_some(), "the watch ended");
    }
    let token: serde_json::Value = client
        .post(format!("http://{address}/v1/join-tokens"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("a token")
        .json()
        .await
        .expect("json");
    let join = json!({"token": token["token"], "node": {"name": "h1", "address": "10.0.0.1", "capacity": {"memoryBytes": 1, "cpuMillis": 1}}});
    let joined = client
        .post(format!("http://{address}/v1/join"))
        .json(&join)
        .send()
        .await
        .expect("a join");
    assert_eq!(joined.status(), 201);
    let mut seen = String::new();
    while !seen.contains("\"h1\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), watch.chunk())
            .await
            .expect("the watch went quiet")
            .expect("the watch failed")
            .expect("the watch ended");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let (address, _) = start("big-headers", ConnectionsConfig::default()).await;
    let mut stream = TcpStream::connect(&address).await.expect("connecting");
    let request = format!(
        "GET /v1/openapi.json HTTP/1.1\r\nHost: master\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    // The master may close before all of it is written.
    let _ = stream.write_all(request.as_bytes()).await;
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "the connection stayed open");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
}
