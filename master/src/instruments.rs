//! The master's own Prometheus figures: API requests, store commits,
//! scheduler decisions, controller rounds and open watches. Counted in
//! memory as they happen; the cluster's gauges (nodes by state, pods by
//! phase) are read from the store when `/metrics` is scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets: 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or below each bound (not cumulative here; summed when
    /// rendered).
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// How many observations there were.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// What a request was, for its counters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestKey {
    /// `GET`, `POST`, ... (`OTHER` for anything else).
    pub method: &'static str,
    /// The route's template (`/v1/pods/{name}`), or `unmatched`.
    pub route: String,
    /// The answer's status code.
    pub code: u16,
}

/// A long-lived request kind whose open count is a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streaming {
    /// `?watch=true`: a newline-delimited JSON stream.
    Watch,
    /// `?after=REV` without watch: one answer, once something changed.
    LongPoll,
}

/// The master's counters, shared by the API, the store and the controller.
#[derive(Debug, Default)]
pub struct Instruments {
    requests: Mutex<BTreeMap<RequestKey, u64>>,
    request_latency: Mutex<BTreeMap<String, Histogram>>,
    /// Store commits (one `apply`), however they ended.
    pub store_commits: Histogram,
    store_commit_failures: AtomicU64,
    scheduled: AtomicU64,
    unschedulable: AtomicU64,
    /// One controller round: read, plan, commit.
    pub controller_rounds: Histogram,
    watches: AtomicI64,
    long_polls: AtomicI64,
}

/// Decrements an open-stream gauge when the stream ends.
#[derive(Debug)]
pub struct OpenStream {
    kind: Streaming,
    instruments: std::sync::Arc<Instruments>,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.instruments
            .gauge(self.kind)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Instruments {
    /// Counts one answered request and its latency.
    pub fn request(&self, key: RequestKey, elapsed: Duration) {
        self.request_latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.route.clone())
            .or_default()
            .observe(elapsed);
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default() += 1;
    }

    /// Counts a store commit that failed (a conflict or the backend).
    pub fn store_commit_failed(&self) {
        self.store_commit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts committed scheduler decisions: pods placed, and pods that
    /// fit nowhere.
    pub fn scheduler_decisions(&self, placed: u64, unschedulable: u64) {
        self.scheduled.fetch_add(placed, Ordering::Relaxed);
        self.unschedulable
            .fetch_add(unschedulable, Ordering::Relaxed);
    }

    /// Counts an open watch or long poll until the guard drops.
    pub fn open_stream(self: &std::sync::Arc<Self>, kind: Streaming) -> OpenStream {
        self.gauge(kind).fetch_add(1, Ordering::Relaxed);
        OpenStream {
            kind,
            instruments: std::sync::Arc::clone(self),
        }
    }

    fn gauge(&self, kind: Streaming) -> &AtomicI64 {
        match kind {
            Streaming::Watch => &self.watches,
            Streaming::LongPoll => &self.long_polls,
        }
    }

    /// The Prometheus text page: these counters and the cluster's gauges.
    pub fn render(&self, cluster: &ClusterGauges) -> String {
        let mut out = String::new();
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };

        header(
            &mut out,
            "berth_master_http_requests_total",
            "counter",
            "API requests answered, by method, route template and status code.",
        );
        for (key, count) in self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "berth_master_http_requests_total{{method=\"{}\",route=\"{}\",code=\"{}\"}} {count}",
                key.method,
                escape_label(&key.route),
                key.code
            );
        }
        header(
            &mut out,
            "berth_master_http_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its answer's headers, by route template.",
        );
        for (route, histogram) in self
            .request_latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            histogram.render(
                &mut out,
                "berth_master_http_request_duration_seconds",
                &format!("route=\"{}\"", escape_label(route)),
            );
        }

        header(
            &mut out,
            "berth_master_store_commit_duration_seconds",
            "histogram",
            "Time of one atomic store commit, durable when it returns.",
        );
        self.store_commits
            .render(&mut out, "berth_master_store_commit_duration_seconds", "");
        header(
            &mut out,
            "berth_master_store_commit_failures_total",
            "counter",
            "Store commits refused (a compare-and-swap conflict) or failed.",
        );
        let _ = writeln!(
            out,
            "berth_master_store_commit_failures_total {}",
            self.store_commit_failures.load(Ordering::Relaxed)
        );

        header(
            &mut out,
            "berth_master_scheduler_decisions_total",
            "counter",
            "Scheduler decisions committed, by result.",
        );
        for (result, counter) in [
            ("placed", &self.scheduled),
            ("unschedulable", &self.unschedulable),
        ] {
            let _ = writeln!(
                out,
                "berth_master_scheduler_decisions_total{{result=\"{result}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }

        header(
            &mut out,
            "berth_master_controller_round_duration_seconds",
            "histogram",
            "Time of one controller round: read the cluster, plan, commit.",
        );
        self.controller_rounds.render(
            &mut out,
            "berth_master_controller_round_duration_seconds",
            "",
        );

        header(
            &mut out,
            "berth_master_open_requests",
            "gauge",
            "Watches (?watch=true) and long polls (?after=) open now.",
        );
        for (kind, gauge) in [("watch", &self.watches), ("long_poll", &self.long_polls)] {
            let _ = writeln!(
                out,
                "berth_master_open_requests{{kind=\"{kind}\"}} {}",
                gauge.load(Ordering::Relaxed)
            );
        }

        header(
            &mut out,
            "berth_master_nodes",
            "gauge",
            "Registered nodes, by state.",
        );
        for (state, count) in &cluster.nodes_by_state {
            let _ = writeln!(
                out,
                "berth_master_nodes{{state=\"{}\"}} {count}",
                escape_label(state)
            );
        }
        header(&mut out, "berth_master_pods", "gauge", "Pods, by phase.");
        for (phase, count) in &cluster.pods_by_phase {
            let _ = writeln!(
                out,
                "berth_master_pods{{phase=\"{}\"}} {count}",
                escape_label(phase)
            );
        }
        out
    }
}

/// The cluster's figures, read from the store when scraped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClusterGauges {
    /// `Ready`, `NotReady`, `Cordoned`... with how many nodes are in each.
    pub nodes_by_state: BTreeMap<String, u64>,
    /// `Pending`, `Running`, ... with how many pods are in each.
    pub pods_by_phase: BTreeMap<String, u64>,
}

/// Escapes a label value as the text format asks: `\`, `"` and newlines.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_cumulative_and_counts_everything() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(20));
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "");
        assert!(out.contains("x_seconds_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_count 3\n"), "{out}");
    }

    #[test]
    fn every_family_has_help_and_type_once_and_labels_are_escaped() {
        let instruments = std::sync::Arc::new(Instruments::default());
        for code in [200, 404] {
            instruments.request(
                RequestKey {
                    method: "GET",
                    route: "/v1/pods/{name}".into(),
                    code,
                },
                Duration::from_millis(2),
            );
        }
        instruments.scheduler_decisions(1, 0);
        let open = instruments.open_stream(Streaming::Watch);
        let mut gauges = ClusterGauges::default();
        gauges.nodes_by_state.insert("Ready".into(), 2);
        gauges.pods_by_phase.insert("odd\"phase".into(), 1);
        let page = instruments.render(&gauges);
        for family in [
            "berth_master_http_requests_total",
            "berth_master_http_request_duration_seconds",
            "berth_master_store_commit_duration_seconds",
            "berth_master_scheduler_decisions_total",
            "berth_master_controller_round_duration_seconds",
            "berth_master_open_requests",
            "berth_master_nodes",
            "berth_master_pods",
        ] {
            assert_eq!(
                page.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family} in {page}"
            );
        }
        assert!(page.contains(
            "berth_master_http_requests_total{method=\"GET\",route=\"/v1/pods/{name}\",code=\"404\"} 1\n"
        ));
        assert!(page.contains("berth_master_scheduler_decisions_total{result=\"placed\"} 1\n"));
        assert!(page.contains("berth_master_open_requests{kind=\"watch\"} 1\n"));
        assert!(page.contains("berth_master_pods{phase=\"odd\\\"phase\"} 1\n"));
        drop(open);
        let page = instruments.render(&gauges);
        assert!(page.contains("berth_master_open_requests{kind=\"watch\"} 0\n"));
    }
}
