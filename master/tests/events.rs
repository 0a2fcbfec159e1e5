//! Cluster events through the master's API, in-process on 127.0.0.1:0 with
//! the embedded store: the controller records what it does, `GET
//! /v1/events` lists it and `?watch=true` streams it.

use std::time::{Duration, Instant};

use berth_model::{Event, EventKind};
use serde_json::{json, Value};

mod common;

use common::Master;

async fn start(name: &str) -> Master {
    common::start(&format!("master-events-{name}"), 1).await
}

impl Master {
    /// Joins `node` and keeps it Ready with a heartbeat every 200 ms until
    /// the returned task is aborted; the node's credential.
    async fn join(&self, node: &str) -> (String, tokio::task::JoinHandle<()>) {
        let credential = self.join_node(node).await;
        let (http, url, name, token) = (
            self.http.clone(),
            self.url.clone(),
            node.to_owned(),
            credential.clone(),
        );
        let heartbeats = tokio::spawn(async move {
            let beat =
                json!({"capacity": {"memoryBytes": 8u64 << 30, "cpuMillis": 8000}, "pods": []});
            loop {
                let _ = http
                    .put(format!("{url}/v1/nodes/{name}/heartbeat"))
                    .bearer_auth(&token)
                    .json(&beat)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        (credential, heartbeats)
    }

    async fn events(&self, query: &str) -> Vec<Event> {
        let (status, events) = self
            .admin(reqwest::Method::GET, &format!("/v1/events{query}"), None)
            .await;
        assert_eq!(status, 200, "{events}");
        serde_json::from_value(events).expect("test")
    }

    /// Polls the list until `done` holds of it.
    async fn wait_for_events(&self, query: &str, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events(query).await;
            if done(&events) {
                return events;
            }
            assert!(Instant::now() < deadline, "events so far: {events:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens a watch stream.
    async fn watch(&self, query: &str) -> EventStream {
        let response = self
            .http
            .get(format!("{}/v1/events?watch=true{query}", self.url))
            .bearer_auth(&self.admin)
            .send()
            .await
            .expect("test");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().expect("test"),
            "application/x-ndjson"
        );
        EventStream {
            response,
            buffer: Vec::new(),
        }
    }
}

/// A watch's body, read line by line.
struct EventStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl EventStream {
    /// The next event, or a failure after `wait`.
    async fn next(&mut self, wait: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return serde_json::from_slice(&line).expect("one event per line");
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("no event in time")
                .expect("test")
                .expect("the stream ended");
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

fn web(replicas: u32) -> Value {
    json!({"name": "web", "replicas": replicas, "template": {"name": "web", "containers": [{"name": "web", "image": "local/busybox", "command": ["httpd", "-f"]}]}})
}

fn scheduled(events: &[Event]) -> Vec<&str> {
    let mut pods: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::PodScheduled)
        .map(|e| e.object.as_str())
        .collect();
    pods.sort_unstable();
    pods
}

#[tokio::test]
async fn placements_are_listed_and_streamed_as_events() {
    let master = start("scheduled").await;
    let (credential, _heartbeats) = master.join("h1").await;
    let mut stream = master.watch("").await;
    let mut filtered = master.watch("&type=podscheduled&node=h1").await;

    let (status, answer) = master
        .admin(reqwest::Method::POST, "/v1/services", Some(web(2)))
        .await;
    assert_eq!(status, 201, "{answer}");

    let listed = master
        .wait_for_events("", |events| scheduled(events).len() == 2)
        .await;
    assert_eq!(scheduled(&listed), ["pod/web-0", "pod/web-1"]);
    for event in listed.iter().filter(|e| e.kind == EventKind::PodScheduled) {
        assert_eq!(event.node.as_deref(), Some("h1"), "{event:?}");
        assert!(event.reason.contains("nodes fit"), "{event:?}");
    }
    let times: Vec<u64> = listed.iter().map(|e| e.time_ms).collect();
    assert!(times.is_sorted(), "oldest first: {listed:?}");

    // The same events arrive on both streams; the filtered one has nothing
    // else to say.
    for watch in [&mut stream, &mut filtered] {
        let mut seen = Vec::new();
        while scheduled(&seen).len() < 2 {
            seen.push(watch.next(Duration::from_secs(10)).await);
        }
        assert_eq!(scheduled(&seen), ["pod/web-0", "pod/web-1"]);
    }

    // Scaling is recorded with the service, and the pod it removes after.
    let (status, answer) = master
        .admin(
            reqwest::Method::POST,
            "/v1/services/web/scale",
            Some(json!({"replicas": 1})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let scaled = stream.next(Duration::from_secs(10)).await;
    assert_eq!(
        (scaled.kind, scaled.object.as_str(), scaled.reason.as_str()),
        (
            EventKind::ServiceScaled,
            "service/web",
            "scaled from 2 to 1 replicas"
        )
    );
    // The admin's change is audited; the controller's deletion may come
    // before or after that record.
    let mut next_two = vec![
        stream.next(Duration::from_secs(10)).await,
        stream.next(Duration::from_secs(10)).await,
    ];
    let at = next_two
        .iter()
        .position(|e| e.kind == EventKind::Audit)
        .expect("an audit event for the scale");
    let audit = next_two.remove(at);
    assert_eq!(
        (audit.object.as_str(), audit.reason.as_str()),
        ("service/web", "admin: POST /v1/services/{name}/scale")
    );
    let deleted = next_two.remove(0);
    assert_eq!(
        (
            deleted.kind,
            deleted.object.as_str(),
            deleted.node.as_deref()
        ),
        (EventKind::PodDeleted, "pod/web-1", Some("h1"))
    );

    // Filters apply to the list too.
    let only_deleted = master.events("?type=PodDeleted").await;
    assert_eq!(only_deleted, [deleted]);
    assert!(master.events("?node=h9").await.is_empty());

    // From a revision, a watch replays what came after it first.
    let mut replay = master.watch("&after=0&type=PodScheduled").await;
    let mut replayed = Vec::new();
    for _ in 0..2 {
        replayed.push(replay.next(Duration::from_secs(10)).await);
    }
    assert_eq!(scheduled(&replayed), ["pod/web-0", "pod/web-1"]);

    // Admin only; bad queries name the field.
    let (status, _) = master
        .call(reqwest::Method::GET, "/v1/events", Some(&credential), None)
        .await;
    assert_eq!(status, 403);
    let (status, answer) = master
        .admin(reqwest::Method::GET, "/v1/events?type=Exploded", None)
        .await;
    assert_eq!(status, 400);
    assert_eq!(answer["fields"][0]["field"], "type", "{answer}");
    let (status, answer) = master
        .admin(reqwest::Method::GET, "/v1/events?watch=maybe", None)
        .await;
    assert_eq!(status, 400);
    assert_eq!(answer["fields"][0]["field"], "query", "{answer}");
}

#[tokio::test]
async fn a_silent_node_is_reported_and_its_pods_evicted() {
    let master = start("not-ready").await;
    let _h1 = master.join("h1").await;
    let (_, h2) = master.join("h2").await;
    master
        .wait_for_events("?type=NodeReady&node=h2", |e| !e.is_empty())
        .await;
    let (status, answer) = master
        .admin(reqwest::Method::POST, "/v1/services", Some(web(2)))
        .await;
    assert_eq!(status, 201, "{answer}");
    master
        .wait_for_events("?type=PodScheduled&node=h2", |e| !e.is_empty())
        .await;

    // h2 goes silent: after the grace period it is NotReady, and its pod
    // is evicted (and placed again on h1).
    h2.abort();
    let events = master
        .wait_for_events("", |e| e.iter().any(|e| e.kind == EventKind::PodEvicted))
        .await;
    let not_ready = events
        .iter()
        .position(|e| e.kind == EventKind::NodeNotReady && e.object == "node/h2")
        .expect("NodeNotReady for h2");
    let evicted = events
        .iter()
        .position(|e| e.kind == EventKind::PodEvicted)
        .expect("test");
    assert!(not_ready < evicted, "{events:?}");
    assert_eq!(events[evicted].node.as_deref(), Some("h2"));
}

#[tokio::test]
async fn node_reported_events_are_kept_once_and_checked_by_field() {
    let master = start("reported").await;
    let (credential, heartbeats) = master.join("h1").await;
    let batch = json!({"events": [
        {"id": "0a-1", "event": {"timeMs": 1_000, "kind": "ContainerStarted", "object": "pod/web-0", "reason": "container web: started"}},
        {"id": "0a-2", "event": {"timeMs": 2_000, "kind": "ContainerOOMKilled", "object": "pod/web-0", "reason": "container web: killed: out of memory"}},
    ]});
    let post = |body: Value, token: String| {
        let master = &master;
        async move {
            master
                .call(
                    reqwest::Method::POST,
                    "/v1/nodes/h1/events",
                    Some(&token),
                    Some(body),
                )
                .await
        }
    };
    let (status, answer) = post(batch.clone(), credential.clone()).await;
    assert_eq!((status, answer), (200, json!({"recorded": 2})));
    // A resend (the agent crashed before saving its cursor) adds nothing.
    let (status, answer) = post(batch.clone(), credential.clone()).await;
    assert_eq!((status, answer), (200, json!({"recorded": 0})));
    let kept = master.events("?node=h1").await;
    let reported: Vec<(EventKind, &str)> = kept
        .iter()
        .filter(|e| e.object == "pod/web-0")
        .map(|e| (e.kind, e.reason.as_str()))
        .collect();
    assert_eq!(
        reported,
        [
            (EventKind::ContainerStarted, "container web: started"),
            (
                EventKind::ContainerOomKilled,
                "container web: killed: out of memory"
            ),
        ]
    );

    // Nodes report what happens to containers, nothing else, and each
    // problem names its field.
    let forged = json!({"events": [
        {"id": "bad id!", "event": {"timeMs": 3, "kind": "NodeReady", "object": "node/h2", "reason": ""}},
    ]});
    let (status, answer) = post(forged, credential.clone()).await;
    assert_eq!(status, 400, "{answer}");
    let fields: Vec<&str> = answer["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "events[0].id",
            "events[0].event.kind",
            "events[0].event.object"
        ]
    );
    // And only for themselves.
    let (status, _) = master
        .call(
            reqwest::Method::POST,
            "/v1/nodes/h2/events",
            Some(&credential),
            Some(batch),
        )
        .await;
    assert_eq!(status, 403);
    heartbeats.abort();
}
