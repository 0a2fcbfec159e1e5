//! Policy webhooks, minimal: every event committed to the store is matched
//! against the configured rules (`[[webhooks]]`: an event type and a URL)
//! and POSTed as JSON to each matching URL. A failed delivery is retried
//! with exponential backoff; when the rule's attempts are used up, the
//! failure is recorded as a `WebhookFailed` event (which is never itself
//! reported as failed, so a dead URL cannot start a loop).
//!
//! Deliveries follow the store's watch from the revision the master started
//! at; events committed while no master ran are not delivered.

use std::sync::Arc;
use std::time::Duration;

use berth_model::{Event, EventKind};
use futures_util::StreamExt;
use tracing::{info, warn};

use crate::config::WebhookRule;
use crate::controller::events::{self, record};
use crate::objects::{self, EVENTS};
use crate::store::{self, Store};

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

/// Delivers every new event to the matching rules, forever.
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
    let mut after = None;
    loop {
        let from = match after {
            Some(revision) => revision,
            None => match store.revision().await {
                Ok(revision) => revision,
                Err(e) => {
                    warn!(error = %e, "webhooks cannot read the store revision");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        after = Some(from);
        let mut changes = match store.watch(EVENTS, from).await {
            Ok(changes) => changes,
            Err(e) => {
                warn!(error = %e, "webhooks cannot watch events");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(change) = changes.next().await {
            let change = match change {
                Ok(change) => change,
                Err(e) => {
                    warn!(error = %e, "the event watch broke; resuming");
                    break;
                }
            };
            after = Some(change.entry.revision);
            if change.kind == store::EventKind::Delete {
                continue;
            }
            let Ok(event) = objects::decode::<Event>(&change.entry) else {
                continue;
            };
            for rule in matching(&rules, &event.object) {
                tokio::spawn(deliver(
                    http.clone(),
                    Arc::clone(&store),
                    rule.clone(),
                    event.object.clone(),
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// POSTs `event` to the rule's URL until it is accepted (2xx) or the
/// attempts are used up.
async fn deliver(http: reqwest::Client, store: Arc<dyn Store>, rule: WebhookRule, event: Event) {
    let mut last_error = String::new();
    for attempt in 0..rule.attempts {
        tokio::time::sleep(backoff(attempt)).await;
        match http.post(&rule.url).json(&event).send().await {
            Ok(response) if response.status().is_success() => {
                info!(url = %rule.url, kind = %event.kind, object = %event.object, "webhook delivered");
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
