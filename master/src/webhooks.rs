//! Policy webhooks, minimal: every event committed to the store is matched
//! against the configured rules (`[[webhooks]]`: an event type and a URL)
//! and POSTed as JSON to each matching URL. A failed delivery is retried
//! with exponential backoff; when the rule's attempts are used up, the
//! failure is recorded as a `WebhookFailed` event (which is never itself
//! reported as failed, so a dead URL cannot start a loop).
//!
//! Delivery resumes across restarts and leader changes. The leader keeps a
//! cursor in the store (`/webhooks/cursor`, a store revision): every event
//! at or below it has been handled, delivered or recorded as failed. The
//! cursor only moves past an event once all of its deliveries have ended,
//! and it is written through the leader's store, which is fenced on its
//! term, so a deposed leader cannot move it. A new leader (or a restarted
//! single master) watches the events from the cursor on, so an event that
//! was pending when the last leader died is delivered by the next.
//!
//! The guarantee is at least once, and once in practice: a second delivery
//! needs the leader to die between the receiver's 2xx and the cursor's
//! commit, which follows at once. Every POST carries the event's store key
//! as `X-Berth-Event-Id`, the same on every attempt and on every master, so
//! a receiver that must never act twice drops what it has seen.
//!
//! With no cursor yet (the first start), delivery starts at the store's
//! revision; if the history since the cursor was compacted away, at the
//! oldest revision kept, with a warning.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_model::{Event, EventKind};
use futures_util::StreamExt;
use tracing::{info, warn};

use crate::config::WebhookRule;
use crate::controller::events::{self, record};
use crate::objects::{self, EVENTS};
use crate::store::{self, Op, Store, StoreError};

/// The key of the delivery cursor: the store revision up to which every
/// event has been handled.
pub const CURSOR: &str = "/webhooks/cursor";
/// The header that carries the event's id (its store key).
pub const EVENT_ID_HEADER: &str = "X-Berth-Event-Id";
/// How often a cursor that only moved past events no rule matched is saved.
const CURSOR_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// The wait before the first retry; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one POST may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The rules that match `event`.
pub fn matching<'a>(rules: &'a [WebhookRule], event: &Event) -> Vec<&'a WebhookRule> {
    rules
        .iter()
        .filter(|rule| {
            rule.event == "*"
                || rule
                    .event
                    .parse::<EventKind>()
                    .is_ok_and(|kind| kind == event.kind)
        })
        .collect()
}

/// The wait before attempt `attempt` (0 is the first, which does not wait).
pub fn backoff(attempt: u32) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let factor = 2u32.saturating_pow(attempt - 1);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// The event that records a delivery of `event` to `rule` that failed for
/// good, or `None` for an event about a failed delivery itself.
pub fn failure_event(rule: &WebhookRule, event: &Event, why: &str, now_ms: u64) -> Option<Event> {
    (event.kind != EventKind::WebhookFailed).then(|| Event {
        time_ms: now_ms,
        kind: EventKind::WebhookFailed,
        object: event.object.clone(),
        node: event.node.clone(),
        reason: format!(
            "POST {} of {} failed {} times: {why}",
            rule.url, event.kind, rule.attempts
        ),
    })
}

/// Deliveries under way, by the revision of their event: the cursor may
/// not pass the oldest.
#[derive(Debug, Default)]
pub struct InFlight {
    /// Deliveries not ended yet, per event revision.
    pending: BTreeMap<u64, usize>,
    /// The last event revision seen on the watch.
    seen: u64,
}

impl InFlight {
    /// Starts at `cursor`: everything at or below it was handled.
    pub fn new(cursor: u64) -> Self {
        Self {
            pending: BTreeMap::new(),
            seen: cursor,
        }
    }

    /// The watch got to `revision`, with `deliveries` started for it.
    pub fn saw(&mut self, revision: u64, deliveries: usize) {
        self.seen = self.seen.max(revision);
        if deliveries > 0 {
            *self.pending.entry(revision).or_default() += deliveries;
        }
    }

    /// One delivery of the event at `revision` ended.
    pub fn ended(&mut self, revision: u64) {
        if let Some(left) = self.pending.get_mut(&revision) {
            *left -= 1;
            if *left == 0 {
                self.pending.remove(&revision);
            }
        }
    }

    /// The revision up to which everything was handled.
    pub fn cursor(&self) -> u64 {
        match self.pending.keys().next() {
            Some(oldest) => oldest - 1,
            None => self.seen,
        }
    }
}

/// The saved cursor and the revision of its key, if there is one.
async fn load_cursor(store: &dyn Store) -> Result<Option<(u64, u64)>, StoreError> {
    Ok(store.get(CURSOR).await?.and_then(|entry| {
        let text = String::from_utf8(entry.value).ok()?;
        Some((text.trim().parse().ok()?, entry.revision))
    }))
}

/// Saves `cursor` over the key last written at `key_revision` (`None`:
/// create it); returns the key's new revision.
async fn save_cursor(
    store: &dyn Store,
    cursor: u64,
    key_revision: Option<u64>,
) -> Result<u64, StoreError> {
    let value = cursor.to_string().into_bytes();
    let op = match key_revision {
        Some(expected) => Op::Update {
            key: CURSOR.into(),
            value,
            expected,
        },
        None => Op::Create {
            key: CURSOR.into(),
            value,
        },
    };
    store.apply(vec![op]).await
}

/// Delivers every event after the saved cursor to the matching rules,
/// forever, moving the cursor as deliveries end.
pub async fn run(store: Arc<dyn Store>, rules: Vec<WebhookRule>) {
    if rules.is_empty() {
        return;
    }
    let http = match reqwest::Client::builder().timeout(DELIVERY_TIMEOUT).build() {
        Ok(http) => http,
        Err(e) => {
            warn!(error = %e, "cannot build the webhook client; webhooks are off");
            return;
        }
    };
    let rules = Arc::new(rules);
    let (mut saved, mut key_revision) = loop {
        let loaded = match load_cursor(store.as_ref()).await {
            Ok(Some(found)) => Ok(found),
            Ok(None) => match store.revision().await {
                Ok(now) => save_cursor(store.as_ref(), now, None)
                    .await
                    .map(|key| (now, key)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match loaded {
            Ok(found) => break found,
            // Deposed before it began: the next leader delivers.
            Err(StoreError::NotLeader(_)) => return,
            Err(e) => {
                warn!(error = %e, "webhooks cannot read their cursor");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    info!(
        cursor = saved,
        "webhook delivery resumes after the saved cursor"
    );
    let mut in_flight = InFlight::new(saved);
    // Owned here, so that stopping this task (the term ended) stops every
    // delivery it started: a deposed leader must not go on retrying what
    // the next leader delivers.
    let mut deliveries: tokio::task::JoinSet<u64> = tokio::task::JoinSet::new();
    let mut save_tick = tokio::time::interval(CURSOR_SAVE_INTERVAL);
    save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut after = saved;
    loop {
        let mut changes = match store.watch(EVENTS, after).await {
            Ok(changes) => changes,
            Err(StoreError::Compacted { oldest, .. }) => {
                warn!(
                    cursor = after,
                    oldest,
                    "events after the webhook cursor were compacted; some are not delivered"
                );
                after = oldest.saturating_sub(1).max(after);
                in_flight.saw(after, 0);
                continue;
            }
            Err(e) => {
                warn!(error = %e, "webhooks cannot watch events");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            // A delivery that ended may let the cursor move at once: the
            // sooner it is saved, the smaller the window for a second
            // delivery after a failover.
            let save_now = tokio::select! {
                change = changes.next() => {
                    let change = match change {
                        Some(Ok(change)) => change,
                        // etcd reports compaction on the stream.
                        Some(Err(StoreError::Compacted { oldest, .. })) => {
                            warn!(
                                cursor = after,
                                oldest, "events after the webhook cursor were compacted; some are not delivered"
                            );
                            after = oldest.saturating_sub(1).max(after);
                            in_flight.saw(after, 0);
                            break;
                        }
                        Some(Err(e)) => {
                            warn!(error = %e, "the event watch broke; resuming");
                            break;
                        }
                        None => break,
                    };
                    let revision = change.entry.revision;
                    after = revision;
                    let mut started = 0;
                    if change.kind == store::EventKind::Put {
                        if let Ok(event) = objects::decode::<Event>(&change.entry) {
                            for rule in matching(&rules, &event.object) {
                                started += 1;
                                let delivery = deliver(
                                    http.clone(),
                                    Arc::clone(&store),
                                    rule.clone(),
                                    change.entry.key.clone(),
                                    event.object.clone(),
                                );
                                deliveries.spawn(async move {
                                    delivery.await;
                                    revision
                                });
                            }
                        }
                    }
                    in_flight.saw(revision, started);
                    false
                }
                Some(ended) = deliveries.join_next(), if !deliveries.is_empty() => {
                    match ended {
                        Ok(revision) => in_flight.ended(revision),
                        // Its event stays pending: the next leader sends it.
                        Err(e) => warn!(error = %e, "a webhook delivery panicked"),
                    }
                    true
                }
                _ = save_tick.tick() => true,
            };
            let cursor = in_flight.cursor();
            if save_now && cursor > saved {
                match save_cursor(store.as_ref(), cursor, Some(key_revision)).await {
                    Ok(revision) => {
                        saved = cursor;
                        key_revision = revision;
                    }
                    // Another leader owns the cursor now; this term's
                    // tasks are being stopped.
                    Err(StoreError::NotLeader(_)) => return,
                    Err(e) => {
                        warn!(error = %e, "cannot save the webhook cursor");
                        if let Ok(Some((_, revision))) = load_cursor(store.as_ref()).await {
                            key_revision = revision;
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// POSTs `event` (whose store key is `id`) to the rule's URL until it is
/// accepted (2xx) or the attempts are used up.
async fn deliver(
    http: reqwest::Client,
    store: Arc<dyn Store>,
    rule: WebhookRule,
    id: String,
    event: Event,
) {
    let mut last_error = String::new();
    for attempt in 0..rule.attempts {
        tokio::time::sleep(backoff(attempt)).await;
        let request = http
            .post(&rule.url)
            .header(EVENT_ID_HEADER, &id)
            .json(&event);
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                info!(url = %rule.url, id = %id, kind = %event.kind, object = %event.object, "webhook delivered");
                return;
            }
            Ok(response) => last_error = format!("answered {}", response.status()),
            Err(e) => last_error = error_chain(&e),
        }
        warn!(url = %rule.url, attempt = attempt + 1, error = %last_error, "webhook delivery failed");
    }
    if let Some(failed) = failure_event(&rule, &event, &last_error, events::now_ms()) {
        if let Err(e) = store.apply(vec![record(&failed)]).await {
            warn!(error = %e, "cannot record the failed webhook");
        }
    }
}

/// An error with its causes, which reqwest keeps apart ("error sending
/// request" alone says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(event: &str) -> WebhookRule {
        WebhookRule {
            event: event.into(),
            url: format!("http://hooks/{event}"),
            attempts: 3,
        }
    }

    fn event(kind: EventKind) -> Event {
        Event {
            time_ms: 1,
            kind,
            object: "pod/web-0".into(),
            node: Some("h2".into()),
            reason: "container app: killed: out of memory".into(),
        }
    }

    #[test]
    fn rules_match_by_type_in_any_case_or_all() {
        let rules = [rule("containeroomkilled"), rule("*"), rule("NodeReady")];
        let urls = |kind| -> Vec<String> {
            matching(&rules, &event(kind))
                .iter()
                .map(|r| r.url.clone())
                .collect()
        };
        assert_eq!(
            urls(EventKind::ContainerOomKilled),
            ["http://hooks/containeroomkilled", "http://hooks/*"]
        );
        assert_eq!(urls(EventKind::PodScheduled), ["http://hooks/*"]);
    }

    #[test]
    fn the_cursor_stops_before_the_oldest_delivery_under_way() {
        let mut in_flight = InFlight::new(10);
        assert_eq!(in_flight.cursor(), 10);
        in_flight.saw(12, 2);
        in_flight.saw(13, 0);
        in_flight.saw(15, 1);
        assert_eq!(in_flight.cursor(), 11, "12 is not delivered yet");
        in_flight.ended(12);
        assert_eq!(in_flight.cursor(), 11, "one of 12's two rules is left");
        in_flight.ended(12);
        assert_eq!(in_flight.cursor(), 14, "15 is under way");
        in_flight.ended(15);
        in_flight.saw(16, 0);
        assert_eq!(in_flight.cursor(), 16);
    }

    #[test]
    fn backoff_doubles_up_to_a_ceiling() {
        let waits: Vec<u128> = (0..9).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(waits, [0, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    }

    #[test]
    fn a_failed_delivery_is_an_event_unless_it_was_about_one() {
        let failed = failure_event(
            &rule("*"),
            &event(EventKind::ContainerOomKilled),
            "connection refused",
            7,
        )
        .unwrap();
        assert_eq!(failed.kind, EventKind::WebhookFailed);
        assert_eq!(failed.object, "pod/web-0");
        assert_eq!(
            failed.reason,
            "POST http://hooks/* of ContainerOOMKilled failed 3 times: connection refused"
        );
        assert_eq!(
            failure_event(&rule("*"), &failed, "again", 8),
            None,
            "no loop"
        );
    }
}
