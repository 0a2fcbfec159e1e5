//! Which nodes are alive: the time of each node's last heartbeat, kept in
//! memory (heartbeats arrive every second; writing each one durably would
//! cost a disk sync per node per second for nothing), and whether silent
//! nodes may have their pods evicted: when many go silent at once, the
//! master is the one cut off ([`EvictionGate`], like Kubernetes'
//! `--unhealthy-zone-threshold`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_model::NodeCondition;

/// Heartbeat times and the grace period after which a silent node is
/// NotReady.
#[derive(Debug)]
pub struct Liveness {
    /// When this master started, or last became leader: a node not heard
    /// from since counts from here.
    started: Mutex<Instant>,
    grace: Duration,
    last: Mutex<HashMap<String, Instant>>,
    /// Why each node's container engine did not answer its agent, as its
    /// last heartbeat said.
    engine_errors: Mutex<HashMap<String, String>>,
    /// The memory each node last reported available (its heartbeat's
    /// usage), which the scheduler does not place beyond.
    memory_available: Mutex<HashMap<String, u64>>,
}

impl Liveness {
    /// Starts tracking with a grace period (default 3 s).
    pub fn new(grace: Duration) -> Self {
        Self {
            started: Mutex::new(Instant::now()),
            grace,
            last: Mutex::new(HashMap::new()),
            engine_errors: Mutex::new(HashMap::new()),
            memory_available: Mutex::new(HashMap::new()),
        }
    }

    /// Gives every node a fresh grace period from now, as if none had been
    /// heard from yet: a master that becomes leader judges no node on what
    /// it heard (or did not hear) before, so a failover evicts nothing.
    pub fn fresh_grace(&self) {
        if let Ok(mut started) = self.started.lock() {
            *started = Instant::now();
        }
        if let Ok(mut last) = self.last.lock() {
            last.clear();
        }
    }

    /// When tracking started, or last started afresh.
    fn started(&self) -> Instant {
        self.started.lock().map_or_else(|p| *p.into_inner(), |s| *s)
    }

    /// Records a heartbeat from `node` now.
    pub fn heartbeat(&self, node: &str) {
        if let Ok(mut last) = self.last.lock() {
            last.insert(node.to_owned(), Instant::now());
        }
    }

    /// Records what `node`'s last heartbeat said of its container engine:
    /// `Some(error)` while it does not answer.
    pub fn report_engine(&self, node: &str, error: Option<String>) {
        if let Ok(mut errors) = self.engine_errors.lock() {
            match error {
                Some(error) => errors.insert(node.to_owned(), error),
                None => errors.remove(node),
            };
        }
    }

    /// Why `node`'s container engine does not answer, if it does not.
    pub fn engine_error(&self, node: &str) -> Option<String> {
        self.engine_errors
            .lock()
            .ok()
            .and_then(|e| e.get(node).cloned())
    }

    /// The grace period.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// How long `node` has been silent: since its last heartbeat, or since
    /// the master started if it has not sent one since.
    pub fn silence(&self, node: &str) -> Duration {
        let seen = self.last.lock().ok().and_then(|l| l.get(node).copied());
        seen.unwrap_or_else(|| self.started()).elapsed()
    }

    /// Records the memory `node` measured available.
    pub fn report_memory_available(&self, node: &str, bytes: u64) {
        if let Ok(mut memory) = self.memory_available.lock() {
            memory.insert(node.to_owned(), bytes);
        }
    }

    /// The memory `node` last reported available, if it did.
    pub fn memory_available(&self, node: &str) -> Option<u64> {
        self.memory_available
            .lock()
            .ok()
            .and_then(|m| m.get(node).copied())
    }

    /// The node's condition now. A master that just started has heard from
    /// nobody yet: every node gets one grace period before it counts as
    /// NotReady, so a master restart never evicts anything.
    pub fn condition(&self, node: &str) -> NodeCondition {
        let now = Instant::now();
        let seen = self.last.lock().ok().and_then(|l| l.get(node).copied());
        let alive = match seen {
            Some(at) => now.duration_since(at) <= self.grace,
            None => now.duration_since(self.started()) <= self.grace,
        };
        if !alive {
            NodeCondition::NotReady
        } else if self.engine_error(node).is_some() {
            NodeCondition::EngineUnavailable
        } else {
            NodeCondition::Ready
        }
    }

    /// Milliseconds since the node's last heartbeat.
    pub fn since_last_ms(&self, node: &str) -> Option<u64> {
        let seen = self.last.lock().ok().and_then(|l| l.get(node).copied())?;
        u64::try_from(seen.elapsed().as_millis()).ok()
    }
}

/// How often agents send heartbeats.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// The default share of nodes that may go silent at once before evictions
/// are held back: Kubernetes' `--unhealthy-zone-threshold` (55%).
pub const DEFAULT_UNHEALTHY_THRESHOLD: f64 = 0.55;

/// After a mass silence ends, evictions stay held this many grace periods,
/// so that nodes whose heartbeats come back a few seconds apart after a
/// heal (each agent retries on its own schedule) are not evicted in between.
const SETTLE_GRACE_PERIODS: u32 = 2;

/// How long a node must be silent to count towards a mass silence: one
/// heartbeat short of the grace period. Nodes cut off together fall silent
/// up to one heartbeat apart, and counting only NotReady ones would see the
/// first of them alone for a round, and evict it.
pub fn suspect_after(grace: Duration) -> Duration {
    grace.saturating_sub(HEARTBEAT_INTERVAL).max(grace / 2)
}

/// A mass silence: which nodes went silent and out of how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MassSilence {
    /// The silent nodes, by name.
    pub silent: Vec<String>,
    /// All nodes.
    pub total: usize,
}

impl MassSilence {
    /// Why evictions are held, in words.
    pub fn reason(&self, threshold: f64) -> String {
        format!(
            "{} of {} nodes ({}) went silent within one grace period, more than {:.0}% of the \
             cluster: the master is more likely cut off than they are down, so no pod is \
             evicted until they are back (master.toml unhealthy-node-threshold)",
            self.silent.len(),
            self.total,
            self.silent.join(", "),
            threshold * 100.0
        )
    }
}

/// Whether `silences` (each node's time since its last heartbeat) are a
/// mass silence: at least one node is past the grace period, and more than
/// `threshold` of all nodes (the master's own host like any other) are
/// silent for at least [`suspect_after`]. Pure.
pub fn mass_silence(
    silences: &[(String, Duration)],
    grace: Duration,
    threshold: f64,
) -> Option<MassSilence> {
    let total = silences.len();
    if !silences.iter().any(|(_, s)| *s > grace) {
        return None;
    }
    let silent: Vec<String> = silences
        .iter()
        .filter(|(_, s)| *s > suspect_after(grace))
        .map(|(n, _)| n.clone())
        .collect();
    #[allow(clippy::cast_precision_loss)] // node counts are far below 2^52
    let share = silent.len() as f64 / total as f64;
    (share > threshold).then_some(MassSilence { silent, total })
}

/// What the gate says this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateChange {
    /// Evictions are held from now on, and why.
    Held(String),
    /// Evictions are allowed again, and why.
    Resumed(String),
}

/// Holds evictions back while a mass silence lasts, and for a settling
/// time after it ends. Its state is in memory: a master that restarts
/// gives every node a grace period anyway.
#[derive(Debug)]
pub struct EvictionGate {
    grace: Duration,
    threshold: f64,
    /// Since when evictions are held, and since when the silence has been
    /// below the threshold (if it is).
    held: Option<Option<Instant>>,
}

impl EvictionGate {
    /// A gate for nodes with `grace` that holds back when more than
    /// `threshold` (0 to 1) of them go silent at once.
    pub fn new(grace: Duration, threshold: f64) -> Self {
        Self {
            grace,
            threshold,
            held: None,
        }
    }

    /// Whether evictions are held now.
    pub fn held(&self) -> bool {
        self.held.is_some()
    }

    /// Takes this round's silences at `now`; says when the gate changed.
    pub fn observe(&mut self, silences: &[(String, Duration)], now: Instant) -> Option<GateChange> {
        let mass = mass_silence(silences, self.grace, self.threshold);
        match (&mut self.held, mass) {
            (None, None) => None,
            (None, Some(mass)) => {
                self.held = Some(None);
                Some(GateChange::Held(mass.reason(self.threshold)))
            }
            (Some(calm_since), Some(_)) => {
                *calm_since = None;
                None
            }
            (Some(calm_since), None) => {
                let suspect = suspect_after(self.grace);
                let all_back = silences.iter().all(|(_, s)| *s <= suspect);
                let calm = *calm_since.get_or_insert(now);
                let settled = now.duration_since(calm) >= self.grace * SETTLE_GRACE_PERIODS;
                if all_back || settled {
                    self.held = None;
                    Some(GateChange::Resumed(if all_back {
                        "every node's heartbeats arrive again".to_owned()
                    } else {
                        format!(
                            "fewer than {:.0}% of the nodes have been silent for {:?}",
                            self.threshold * 100.0,
                            self.grace * SETTLE_GRACE_PERIODS
                        )
                    }))
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(3);

    fn silences(of: &[(&str, u64)]) -> Vec<(String, Duration)> {
        of.iter()
            .map(|(n, ms)| ((*n).to_owned(), Duration::from_millis(*ms)))
            .collect()
    }

    #[test]
    fn a_new_leader_gives_every_node_a_fresh_grace() {
        let liveness = Liveness::new(Duration::from_millis(50));
        liveness.heartbeat("h1");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(liveness.condition("h1"), NodeCondition::NotReady);
        assert_eq!(liveness.condition("h2"), NodeCondition::NotReady);
        liveness.fresh_grace();
        assert_eq!(liveness.condition("h1"), NodeCondition::Ready);
        assert_eq!(liveness.condition("h2"), NodeCondition::Ready);
        assert!(liveness.silence("h1") < Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(
            liveness.condition("h1"),
            NodeCondition::NotReady,
            "one grace only"
        );
    }

    #[test]
    fn one_silent_node_of_three_is_evicted_two_are_held() {
        let one = silences(&[("h1", 300), ("h2", 900), ("h3", 3_100)]);
        assert_eq!(mass_silence(&one, GRACE, 0.55), None);
        let two = silences(&[("h1", 300), ("h2", 3_200), ("h3", 3_100)]);
        let mass = mass_silence(&two, GRACE, 0.55).expect("2 of 3 is a mass silence");
        assert_eq!(mass.silent, ["h2", "h3"]);
        assert!(mass.reason(0.55).contains("2 of 3 nodes (h2, h3)"));
    }

    #[test]
    fn nodes_cut_off_together_count_before_the_second_is_not_ready() {
        // h3's last beat came a second after h2's: h3 is not NotReady yet.
        let racing = silences(&[("h1", 100), ("h2", 3_100), ("h3", 2_200)]);
        assert!(mass_silence(&racing, GRACE, 0.55).is_some());
    }

    #[test]
    fn a_late_cluster_is_no_news_until_a_node_is_not_ready() {
        let slow = silences(&[("h1", 2_500), ("h2", 2_500), ("h3", 2_900)]);
        assert_eq!(mass_silence(&slow, GRACE, 0.55), None);
    }

    #[test]
    fn a_single_node_and_half_of_two_nodes() {
        assert!(mass_silence(&silences(&[("h1", 4_000)]), GRACE, 0.55).is_some());
        let half = silences(&[("h1", 100), ("h2", 4_000)]);
        assert_eq!(mass_silence(&half, GRACE, 0.55), None);
    }

    #[test]
    fn the_gate_holds_through_a_staggered_heal_and_releases_when_all_are_back() {
        let mut gate = EvictionGate::new(GRACE, 0.55);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let cut = silences(&[("h1", 100), ("h2", 3_100), ("h3", 2_500)]);
        assert!(matches!(
            gate.observe(&cut, at(0)),
            Some(GateChange::Held(_))
        ));
        assert_eq!(gate.observe(&cut, at(5)), None);
        // h2 is back, h3 a few seconds later: still held in between.
        let half_healed = silences(&[("h1", 100), ("h2", 100), ("h3", 20_000)]);
        assert_eq!(gate.observe(&half_healed, at(10)), None);
        assert!(gate.held());
        assert_eq!(gate.observe(&half_healed, at(13)), None);
        let healed = silences(&[("h1", 100), ("h2", 100), ("h3", 100)]);
        assert_eq!(
            gate.observe(&healed, at(14)),
            Some(GateChange::Resumed(
                "every node's heartbeats arrive again".into()
            ))
        );
        assert!(!gate.held());
    }

    #[test]
    fn the_gate_resumes_after_settling_when_a_node_stays_down() {
        let mut gate = EvictionGate::new(GRACE, 0.55);
        let t0 = Instant::now();
        let cut = silences(&[("h1", 100), ("h2", 4_000), ("h3", 4_000)]);
        assert!(gate.observe(&cut, t0).is_some());
        let one_left = silences(&[("h1", 100), ("h2", 100), ("h3", 30_000)]);
        assert_eq!(gate.observe(&one_left, t0 + Duration::from_secs(1)), None);
        assert!(matches!(
            gate.observe(&one_left, t0 + Duration::from_secs(7)),
            Some(GateChange::Resumed(_))
        ));
    }
}
