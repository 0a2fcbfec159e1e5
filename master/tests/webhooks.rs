//! Webhook delivery across a change of leader, on the embedded store: an
//! event whose delivery was still being retried when the delivering task
//! died is delivered by the next one, once, with its event id; and a
//! delivered event is not sent again by the task after that.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use berth_master::config::WebhookRule;
use berth_master::controller::events::{self, record};
use berth_master::store::embedded::EmbeddedStore;
use berth_master::store::Store;
use berth_master::webhooks::{self, EVENT_ID_HEADER};
use berth_model::{Event, EventKind};

/// What the receiver got, and whether it accepts.
#[derive(Default)]
struct Receiver {
    accepting: AtomicBool,
    /// Accepted deliveries: the event id header and the body.
    accepted: Mutex<Vec<(String, String)>>,
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    if !receiver.accepting.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let id = headers
        .get(EVENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    receiver
        .accepted
        .lock()
        .expect("the receiver's lock")
        .push((id, body));
    StatusCode::OK
}

fn fresh_path(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("webhooks")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("berth.db")
}

fn accepted(receiver: &Receiver) -> Vec<(String, String)> {
    receiver
        .accepted
        .lock()
        .expect("the receiver's lock")
        .clone()
}

#[tokio::test]
async fn a_pending_delivery_is_made_once_by_the_next_leader() {
    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&receiver));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&fresh_path("pending")).expect("open store"));
    let rules = vec![WebhookRule {
        event: "ServiceScaled".into(),
        url,
        attempts: 20,
    }];
    let first = tokio::spawn(webhooks::run(Arc::clone(&store), rules.clone()));
    // The first leader saves its cursor before it watches.
    for _ in 0..50 {
        if store.get(webhooks::CURSOR).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let event = Event {
        time_ms: events::now_ms(),
        kind: EventKind::ServiceScaled,
        object: "service/web".into(),
        node: None,
        reason: "scaled from 1 to 3 replicas".into(),
    };
    store.apply(vec![record(&event)]).await.unwrap();
    // Refused twice (503), then the leader dies with the delivery pending.
    tokio::time::sleep(Duration::from_millis(800)).await;
    first.abort();
    assert!(accepted(&receiver).is_empty());

    receiver.accepting.store(true, Ordering::SeqCst);
    let second = tokio::spawn(webhooks::run(Arc::clone(&store), rules.clone()));
    for _ in 0..100 {
        if !accepted(&receiver).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Room for a second delivery, were there one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.abort();
    let got = accepted(&receiver);
    assert_eq!(got.len(), 1, "{got:?}");
    let (id, body) = &got[0];
    assert!(id.starts_with("/events/"), "the event id: {id:?}");
    let delivered: Event = serde_json::from_str(body).unwrap();
    assert_eq!(delivered, event);

    // A third leader starts after the cursor moved past it: nothing again.
    let third = tokio::spawn(webhooks::run(Arc::clone(&store), rules));
    tokio::time::sleep(Duration::from_millis(500)).await;
    third.abort();
    assert_eq!(accepted(&receiver).len(), 1, "{:?}", accepted(&receiver));
}
