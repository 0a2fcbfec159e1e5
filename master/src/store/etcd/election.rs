//! Leader election on etcd, for several masters sharing one cluster: the
//! master whose transaction creates the election key, bound to its lease,
//! leads until that lease ends. Only the leader runs the controllers, and
//! every write they make is fenced: it carries a compare on the election
//! key's create revision, so a leader that lost the key (paused, cut off)
//! commits nothing.
//!
//! A leader stops acting before its lease can have expired on etcd's side:
//! a lease renewed by a keep-alive sent at `t` lives on etcd until at least
//! `t + ttl` (etcd starts counting when it receives the keep-alive, which
//! is after `t`), so the leader acts until `t + ttl - margin` and no later
//! unless a newer keep-alive was answered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{backend, header_revision, timed, EtcdStore};
use crate::store::{Entry, Op, Store, StoreError, StoreFuture, Watch};

/// The election key (a store key): its value is the leader's name, its
/// create revision identifies the leader's term.
pub const LEADER_KEY: &str = "/masters/leader";
/// Each master registers itself here, under its name, bound to its lease:
/// the key disappears when the master stops renewing it.
pub const LIVE: &str = "/masters/live/";
/// ...and here, for good: the masters that ever ran, so that a dead one is
/// listed as unhealthy rather than forgotten.
pub const KNOWN: &str = "/masters/known/";

/// How often a candidate that does not lead tries to take the election
/// key: a dead leader's key is gone when its lease ends, and the next try
/// after that wins, so this bounds the failover beyond the lease. A read
/// of one key: cheap for etcd even from many masters.
const CAMPAIGN_POLL: Duration = Duration::from_millis(100);
/// Pause before standing again after a term or a campaign ended.
const RESTAND_PAUSE: Duration = Duration::from_millis(200);
/// How long revoking the lease of an ended term may take; best effort,
/// so that the next leader need not wait the lease out.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(1);

/// When a lease of `ttl` is renewed, and until when its holder may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimes {
    ttl: Duration,
}

impl LeaseTimes {
    /// The timings of a lease of `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl }
    }

    /// What is kept back from the lease's end: a quarter of it, so that a
    /// slow scheduler wake-up or a late timer still stops the leader before
    /// etcd lets another one win.
    pub fn margin(&self) -> Duration {
        self.ttl / 4
    }

    /// Until when the holder of a lease renewed by a keep-alive (or grant)
    /// sent at `sent` may act.
    pub fn acting_until(&self, sent: Instant) -> Instant {
        sent + self.ttl - self.margin()
    }

    /// How often the lease is renewed: several renewals fit in the acting
    /// window, so one lost or slow keep-alive does not end a term.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 6
    }

    /// The lease's TTL in whole seconds, as etcd takes it.
    fn ttl_secs(&self) -> i64 {
        i64::try_from(self.ttl.as_secs().max(1)).unwrap_or(i64::MAX)
    }
}

/// What makes a leader's writes conditional on its leadership: the local
/// acting deadline and, in etcd, the election key's create revision.
#[derive(Debug, Clone)]
pub struct Fence {
    /// The etcd key of [`LEADER_KEY`].
    key: Vec<u8>,
    /// The create revision of the election key this leader made.
    created: i64,
    /// Until when this leader may act; moved on by each renewal, and to
    /// the past when a fenced write finds the key taken.
    until: Arc<Mutex<Instant>>,
    /// Wakes the election when a fenced write finds the key taken.
    deposed: Arc<Notify>,
}

impl Fence {
    /// Fails unless this leader may still act: its lease was renewed
    /// recently enough that etcd cannot have handed the lead on.
    pub fn check(&self) -> Result<(), StoreError> {
        let until = *self.until.lock().unwrap_or_else(|p| p.into_inner());
        if Instant::now() >= until {
            return Err(StoreError::NotLeader(
                "the leader lease was not renewed in time".into(),
            ));
        }
        Ok(())
    }

    /// The compare every fenced transaction carries.
    pub(super) fn compare(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.created)
    }

    /// The etcd key of the election.
    pub(super) fn key(&self) -> &[u8] {
        &self.key
    }

    /// After a failed fenced transaction: whether the election key, whose
    /// create revision was `held` (`None`: missing) in that transaction,
    /// is still this leader's. If not, this leader stops acting at once.
    pub fn verify(&self, held: Option<i64>) -> Result<(), StoreError> {
        if held == Some(self.created) {
            return Ok(());
        }
        *self.until.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.deposed.notify_one();
        Err(StoreError::NotLeader(match held {
            Some(other) => format!(
                "the election key belongs to the term created at revision {other}, not to this one ({})",
                self.created
            ),
            None => format!(
                "the election key of this term ({}) is gone",
                self.created
            ),
        }))
    }
}

/// One master's term as leader.
#[derive(Debug, Clone)]
pub struct Term {
    fence: Fence,
}

impl Term {
    /// The election key's create revision: it names the term.
    pub fn created(&self) -> i64 {
        self.fence.created
    }

    /// `store` with every write fenced on this term.
    pub fn fenced(&self, store: &EtcdStore) -> FencedStore {
        FencedStore {
            store: store.clone(),
            fence: self.fence.clone(),
        }
    }
}

/// A master as it registers itself under [`LIVE`] and [`KNOWN`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The master's name (its host name).
    pub name: String,
    /// The URL its API is reached at.
    pub url: String,
}

/// The etcd store with every write conditional on one leader's term; reads
/// and watches are the store's own.
#[derive(Debug, Clone)]
pub struct FencedStore {
    store: EtcdStore,
    fence: Fence,
}

impl Store for FencedStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>> {
        self.store.get(key)
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, (Vec<Entry>, u64)> {
        self.store.list(prefix)
    }

    fn apply<'a>(&'a self, ops: Vec<Op>) -> StoreFuture<'a, u64> {
        Box::pin(self.store.apply_ops(ops, Some(&self.fence)))
    }

    fn watch<'a>(&'a self, prefix: &'a str, after: u64) -> StoreFuture<'a, Watch> {
        self.store.watch(prefix, after)
    }

    fn revision(&self) -> StoreFuture<'_, u64> {
        self.store.revision()
    }
}

/// Registers `me` and campaigns for the lead until `stop` turns true:
/// publishes each term this master wins on `terms`, and `None` as soon as
/// it ends (the lease could not be renewed in time, or a fenced write
/// found the key taken), with a warning that says why; then stands again.
/// On stop it revokes its lease, so that another master leads at once.
pub async fn campaign(
    store: EtcdStore,
    me: Member,
    ttl: Duration,
    terms: watch::Sender<Option<Term>>,
    mut stop: watch::Receiver<bool>,
) {
    let times = LeaseTimes::new(ttl);
    let mut hold_back = HoldBack::new(Instant::now() + ttl);
    // Its own crashed run's key may expire just as this master first
    // polls: finding another master live already counts as finding the
    // lead held, so the warm ones win that race.
    match store.list(LIVE).await {
        Ok((live, _)) => {
            let mine = format!("{LIVE}{}", me.name);
            if live.iter().any(|entry| entry.key != mine) {
                hold_back.found_held();
            }
        }
        Err(e) => warn!(error = %e, "could not list the live masters; campaigning at once"),
    }
    loop {
        let (reason, led) = store
            .stand(&me, (times, &mut hold_back), &terms, &mut stop)
            .await;
        let stopped = *stop.borrow();
        if stopped {
            return info!(led, "left the election: this master is stopping");
        }
        if led {
            warn!(reason = %reason, "stepped down as leader; campaigning again");
        } else {
            warn!(reason = %reason, "campaign for the lead failed; trying again");
        }
        tokio::time::sleep(RESTAND_PAUSE).await;
    }
}

/// Whether a master that just started may claim the lead. One that finds
/// the lead held when it starts (by a live master, or by its own previous
/// run that crashed), or other masters live, leaves the next term to the
/// masters that were waiting already, for one lease: they are warm, and a
/// master that crashes again and again does not keep taking the lead. A
/// master that finds no leader (a new cluster, a graceful handover) claims
/// at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldBack {
    until: Instant,
    found_held: bool,
}

impl HoldBack {
    /// Holding back until `until`, if the lead is found held before then.
    pub fn new(until: Instant) -> Self {
        Self {
            until,
            found_held: false,
        }
    }

    /// Notes that a claim found the lead held.
    pub fn found_held(&mut self) {
        self.found_held = true;
    }

    /// Whether a claim may be tried at `now`.
    pub fn may_claim(&self, now: Instant) -> bool {
        !self.found_held || now >= self.until
    }
}

/// Resolves once `stop` turns true (never, if its sender is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    loop {
        let stopped = *stop.borrow_and_update();
        if stopped {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl EtcdStore {
    /// One lease's life: grant it, register, campaign and lead while it is
    /// renewed. Returns why it ended, and whether it led.
    async fn stand(
        &self,
        me: &Member,
        (times, hold_back): (LeaseTimes, &mut HoldBack),
        terms: &watch::Sender<Option<Term>>,
        stop: &mut watch::Receiver<bool>,
    ) -> (StoreError, bool) {
        let mut leases = self.lease.clone();
        let sent = Instant::now();
        let lease = match timed(|| {
            let mut leases = self.lease.clone();
            async move { leases.grant(times.ttl_secs(), None).await }
        })
        .await
        {
            Ok(granted) => granted.id(),
            Err(e) => return (e, false),
        };
        let until = Arc::new(Mutex::new(times.acting_until(sent)));
        let reason = match self
            .hold(lease, me, (times, hold_back), &until, terms, stop)
            .await
        {
            Ok(never) => match never {},
            Err(e) => e,
        };
        // Stop acting before anything else, then free the key for the
        // next leader (if etcd still answers).
        *until.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        let led = terms.send_replace(None).is_some();
        let _ = tokio::time::timeout(REVOKE_TIMEOUT, leases.revoke(lease)).await;
        (reason, led)
    }

    async fn hold(
        &self,
        lease: i64,
        me: &Member,
        (times, hold_back): (LeaseTimes, &mut HoldBack),
        until: &Arc<Mutex<Instant>>,
        terms: &watch::Sender<Option<Term>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<std::convert::Infallible, StoreError> {
        let (mut keeper, mut answers) = timed(|| {
            let mut leases = self.lease.clone();
            async move { leases.keep_alive(lease).await }
        })
        .await?;
        let registration = serde_json::to_vec(me)
            .map_err(|e| backend(format!("encoding this master's registration: {e}")))?;
        let known = self.etcd_key(&format!("{KNOWN}{}", me.name))?;
        timed(|| {
            let mut kv = self.kv.clone();
            let (known, registration) = (known.clone(), registration.clone());
            async move { kv.put(known, registration, None).await }
        })
        .await?;
        let live = self.etcd_key(&format!("{LIVE}{}", me.name))?;
        timed(|| {
            let mut kv = self.kv.clone();
            let (live, registration) = (live.clone(), registration.clone());
            let options = PutOptions::new().with_lease(lease);
            async move { kv.put(live, registration, Some(options)).await }
        })
        .await?;
        let deposed = Arc::new(Notify::new());
        let mut leading = false;
        let mut renew = tokio::time::interval(times.renew_every());
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(CAMPAIGN_POLL);
        loop {
            tokio::select! {
                _ = renew.tick() => {
                    let sent = Instant::now();
                    let deadline = *until.lock().unwrap_or_else(|p| p.into_inner());
                    // A keep-alive answered after the deadline is no use: the
                    // term ends when the deadline passes, answer or not.
                    let answer = tokio::time::timeout_at(deadline, async {
                        keeper.keep_alive().await?;
                        answers.message().await
                    })
                    .await;
                    match answer {
                        Err(_) => return Err(StoreError::NotLeader(format!(
                            "lease {lease:x} not renewed for {:?}: stopped acting before it could expire on etcd",
                            times.ttl - times.margin()
                        ))),
                        Ok(Err(e)) => return Err(super::etcd(e)),
                        Ok(Ok(None)) => return Err(backend("etcd ended the keep-alive stream".into())),
                        Ok(Ok(Some(answer))) if answer.ttl() <= 0 => {
                            return Err(StoreError::NotLeader(format!("lease {lease:x} expired on etcd")));
                        }
                        Ok(Ok(Some(_))) => {
                            *until.lock().unwrap_or_else(|p| p.into_inner()) = times.acting_until(sent);
                        }
                    }
                }
                _ = poll.tick(), if !leading && hold_back.may_claim(Instant::now()) => {
                    let Some(created) = self.claim(lease, &me.name).await? else {
                        hold_back.found_held();
                        continue;
                    };
                    leading = true;
                    info!(term = created, lease = format!("{lease:x}"), "elected leader");
                    terms.send_replace(Some(Term {
                        fence: Fence {
                            key: self.etcd_key(LEADER_KEY)?,
                            created,
                            until: Arc::clone(until),
                            deposed: Arc::clone(&deposed),
                        },
                    }));
                }
                () = stopping(stop) => {
                    return Err(StoreError::NotLeader("this master is stopping".into()));
                }
                () = deposed.notified() => {
                    return Err(StoreError::NotLeader(
                        "a fenced write found the election key taken by another term".into(),
                    ));
                }
            }
        }
    }

    /// Creates the election key bound to `lease` unless it exists; returns
    /// its create revision (the term) when this master made it.
    async fn claim(&self, lease: i64, name: &str) -> Result<Option<i64>, StoreError> {
        let key = self.etcd_key(LEADER_KEY)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                name.as_bytes().to_vec(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let response = timed(|| {
            let mut kv = self.kv.clone();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await?;
        if !response.succeeded() {
            return Ok(None);
        }
        // The put is the transaction's only write: the key's create
        // revision is the transaction's revision.
        let created = header_revision(response.header())?;
        i64::try_from(created)
            .map(Some)
            .map_err(|_| backend(format!("etcd revision {created} out of range")))
    }

    /// Writes `value` at `key` whatever was there: for reports that every
    /// master writes and nobody updates from what it read (heartbeats).
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        let etcd_key = self.etcd_key(key)?;
        let response = timed(|| {
            let mut kv = self.kv.clone();
            let (etcd_key, value) = (etcd_key.clone(), value.clone());
            async move { kv.put(etcd_key, value, None).await }
        })
        .await?;
        header_revision(response.header())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(created: i64, until: Instant) -> Fence {
        Fence {
            key: b"/berth/masters/leader".to_vec(),
            created,
            until: Arc::new(Mutex::new(until)),
            deposed: Arc::new(Notify::new()),
        }
    }

    #[test]
    fn a_leader_acts_only_until_before_its_lease_can_end() {
        let times = LeaseTimes::new(Duration::from_secs(3));
        let sent = Instant::now();
        let until = times.acting_until(sent);
        assert!(until < sent + Duration::from_secs(3), "acts past the lease");
        assert_eq!(until - sent, Duration::from_millis(2250));
        // A renewal is due several times before the acting window closes.
        assert!(times.renew_every() * 4 < until - sent);
    }

    #[tokio::test]
    async fn a_master_that_starts_under_a_leader_lets_the_waiting_ones_go_first() {
        let started = Instant::now();
        let lease = Duration::from_secs(2);
        let mut fresh = HoldBack::new(started + lease);
        assert!(
            fresh.may_claim(started),
            "no leader found yet: claims at once"
        );
        fresh.found_held();
        assert!(!fresh.may_claim(started + lease / 2));
        assert!(fresh.may_claim(started + lease));
    }

    #[tokio::test]
    async fn a_fence_whose_deadline_passed_refuses_writes() {
        let now = Instant::now();
        assert!(fence(7, now + Duration::from_secs(1)).check().is_ok());
        let late = fence(7, now).check().expect_err("past its deadline");
        assert!(matches!(late, StoreError::NotLeader(_)), "{late}");
        assert!(late.to_string().contains("not renewed in time"), "{late}");
    }

    #[tokio::test]
    async fn a_fence_that_finds_another_term_deposes_its_leader() {
        let fence = fence(7, Instant::now() + Duration::from_secs(1));
        assert!(fence.verify(Some(7)).is_ok(), "its own key");
        let taken = fence.verify(Some(9)).expect_err("another term's key");
        assert!(taken.to_string().contains("revision 9"), "{taken}");
        // From then on it refuses every write without asking etcd, and the
        // election is told to step down.
        assert!(fence.check().is_err());
        tokio::time::timeout(Duration::from_secs(1), fence.deposed.notified())
            .await
            .expect("the election is woken");
        assert!(fence
            .verify(None)
            .expect_err("gone")
            .to_string()
            .contains("gone"));
    }
}
