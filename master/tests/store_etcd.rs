//! The etcd backend against a real etcd (Debian's etcd-server, run as a
//! child process on 127.0.0.1): the shared conformance suite, and what
//! only etcd has: compaction by etcd, a watch that outlives an etcd
//! restart, prefixes that keep clusters apart, and a clear error when etcd
//! is not there.
//!
//! These tests never skip: without `/usr/bin/etcd` they fail and say what
//! to install.

mod conformance;

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_master::config::{MasterConfig, StoreBackend, StoreConfig};
use berth_master::store::etcd::election::{self, Member, Term};
use berth_master::store::etcd::EtcdStore;
use berth_master::store::{open_store, Event, EventKind, Op, Store, StoreError, Watch};
use futures_util::StreamExt;

const ETCD: &str = "/usr/bin/etcd";
/// How long etcd may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Operations per transaction the tests' etcd allows, as berth's docs ask
/// of a production etcd (etcd's default of 128 is less than some of the
/// conformance checks' batches).
const MAX_TXN_OPS: usize = 1024;
/// How long a test waits for one watch event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// One etcd member in a directory of its own, killed and removed on drop.
struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
}

impl Etcd {
    /// Starts a fresh etcd for `test` and waits until it answers.
    fn start(test: &str) -> Etcd {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: the etcd store tests need a real etcd; \
             install Debian's etcd-server (apt-get install -y etcd-server)"
        );
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("store_etcd")
            .join(test);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove {}: {e}", dir.display()),
        }
        std::fs::create_dir_all(&dir).expect("create the etcd test directory");
        let mut etcd = Etcd {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.spawn();
        etcd
    }

    fn endpoints(&self) -> Vec<String> {
        vec![format!("http://127.0.0.1:{}", self.client_port)]
    }

    /// Runs etcd on this member's directory and ports, and waits until its
    /// client port accepts connections.
    fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the etcd log");
        let mut command = Command::new(ETCD);
        command
            .arg("--name=berth-test")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=berth-test={peer}"))
            .arg("--initial-cluster-state=new")
            .arg(format!("--max-txn-ops={MAX_TXN_OPS}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the etcd log"))
            .stderr(log);
        // The tests' etcd takes its settings from its flags alone.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD") {
                command.env_remove(name);
            }
        }
        let mut child = command.spawn().expect("start etcd");
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.client_port)).is_err() {
            if let Some(status) = child.try_wait().expect("poll etcd") {
                panic!("etcd exited with {status}:\n{}", self.log_tail());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "etcd did not listen within {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Kills etcd (as a crash would) and waits for it to exit.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A store on this etcd under `prefix`, once etcd serves requests.
    async fn store(&self, prefix: &str) -> EtcdStore {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match EtcdStore::connect(&self.endpoints(), prefix).await {
                Ok(store) => return store,
                Err(e) if Instant::now() > deadline => {
                    panic!("etcd does not answer: {e}\n{}", self.log_tail())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// A raw etcd client, for what the store does not do (compaction).
    async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect(self.endpoints(), None)
            .await
            .expect("connect a raw etcd client")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nobody listens on right now: bound, read and released.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free port")
        .port()
}

fn create(key: &str, value: &str) -> Op {
    Op::Create {
        key: key.to_owned(),
        value: value.as_bytes().to_vec(),
    }
}

async fn next_event(watch: &mut Watch) -> Result<Event, StoreError> {
    tokio::time::timeout(EVENT_TIMEOUT, watch.next())
        .await
        .expect("a watch event in time")
        .expect("the watch goes on")
}

/// Every conformance check, one after another on one etcd (they compare
/// the store revision, which etcd shares between prefixes, so they must
/// not run at once), each with a store under its own etcd prefix.
#[tokio::test]
async fn conformance_checks() {
    let etcd = Etcd::start("conformance");
    let started = Instant::now();
    macro_rules! check {
        ($($name:ident),+ $(,)?) => {$(
            let store = etcd.store(concat!("/berth-", stringify!($name))).await;
            let at = Instant::now();
            if let Err(failure) = conformance::$name(&store).await {
                panic!("{}: {failure}", stringify!($name));
            }
            println!("{}: {:?}", stringify!($name), at.elapsed());
        )+};
    }
    check!(
        create_get_list,
        cas_update_and_conflict,
        atomic_batch_all_or_nothing,
        delete_with_and_without_revision,
        watch_replays_history_then_live_without_gaps,
        watch_from_current_revision,
        watch_slow_consumer_loses_nothing,
        prefix_isolation,
    );

    // The whole suite twice under one prefix: the checks clean up after
    // earlier runs, here through etcd's ranges and transactions.
    let store = etcd.store("/berth-run-all").await;
    for run in 1..=2 {
        let at = Instant::now();
        if let Err(failure) = conformance::run_all(&store).await {
            panic!("run_all, run {run}: {failure}");
        }
        println!("run_all (run {run}): {:?}", at.elapsed());
    }
    println!("etcd conformance in all: {:?}", started.elapsed());
}

/// After etcd compacts its history, a watch from before the compaction
/// gets `Compacted` (and ends), and one from after it replays the rest.
#[tokio::test]
async fn watch_from_a_compacted_revision_is_refused() {
    let etcd = Etcd::start("compaction");
    let store = etcd.store("/berth").await;
    let mut revisions = Vec::new();
    for i in 0..10 {
        revisions.push(
            store
                .apply(vec![create(&format!("/k/{i}"), "v")])
                .await
                .expect("create"),
        );
    }
    let compacted = revisions[4];
    etcd.client()
        .await
        .compact(
            i64::try_from(compacted).expect("revision"),
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .expect("compact");

    let mut old = store.watch("/k/", 0).await.expect("watch");
    match next_event(&mut old).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (1, compacted));
        }
        other => panic!("watch from revision 0 gave {other:?}"),
    }
    let end = tokio::time::timeout(EVENT_TIMEOUT, old.next()).await;
    assert!(matches!(end, Ok(None)), "a failed watch ends, got {end:?}");

    let mut recent = store.watch("/k/", compacted).await.expect("watch");
    for (i, expected) in revisions.iter().enumerate().skip(5) {
        let event = next_event(&mut recent).await.expect("event");
        assert_eq!(event.kind, EventKind::Put);
        assert_eq!(
            (event.entry.key.as_str(), event.entry.revision),
            (format!("/k/{i}").as_str(), *expected)
        );
    }
}

/// A watch open while etcd crashes and comes back resumes where it was:
/// the writes made while it was away and after arrive once each, in order.
#[tokio::test]
async fn watch_resumes_after_etcd_restarts() {
    let mut etcd = Etcd::start("restart");
    let store = etcd.store("/berth").await;
    let from = store.revision().await.expect("revision");
    let mut watch = store.watch("/pods/", from).await.expect("watch");
    let mut written = Vec::new();
    for i in 0..3 {
        let key = format!("/pods/before-{i}");
        written.push((
            store.apply(vec![create(&key, "v")]).await.expect("create"),
            key,
        ));
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = next_event(&mut watch).await.expect("event");
        seen.push((event.entry.revision, event.entry.key));
    }

    etcd.kill();
    let down = Instant::now();
    etcd.spawn();
    // A store of its own for the writes: the first request on the old
    // connection may fail while it reconnects, and a retried create would
    // not be the same write.
    let writer = etcd.store("/berth").await;
    for i in 0..3 {
        let key = format!("/pods/after-{i}");
        written.push((
            writer.apply(vec![create(&key, "v")]).await.expect("create"),
            key,
        ));
    }
    for _ in 0..3 {
        let event = next_event(&mut watch)
            .await
            .expect("event after the restart");
        seen.push((event.entry.revision, event.entry.key));
    }
    println!("watch resumed {:?} after etcd was killed", down.elapsed());
    assert_eq!(seen, written);

    // Nothing more, in particular no replay of what was delivered.
    let extra = tokio::time::timeout(Duration::from_millis(500), watch.next()).await;
    assert!(extra.is_err(), "unexpected event after resuming: {extra:?}");
}

/// Two clusters on one etcd, under `/berth` and `/berth2`: neither lists
/// nor watches the other's keys, even with the empty prefix, and the keys
/// sit in etcd under their prefixes.
#[tokio::test]
async fn prefixes_keep_clusters_apart() {
    let etcd = Etcd::start("prefixes");
    let one = etcd.store("/berth").await;
    let two = etcd.store("/berth2/").await;
    let since = one.revision().await.expect("revision");
    let mut watch = one.watch("", since).await.expect("watch");

    two.apply(vec![create("/pods/a", "two")])
        .await
        .expect("two");
    let r = one
        .apply(vec![create("/pods/a", "one")])
        .await
        .expect("one");

    let (entries, _) = one.list("").await.expect("list");
    let keys: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_slice()))
        .collect();
    assert_eq!(keys, [("/pods/a", &b"one"[..])]);
    let (entries, _) = two.list("/").await.expect("list");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].value, b"two");

    let event = next_event(&mut watch).await.expect("event");
    assert_eq!(
        (event.entry.key.as_str(), event.entry.revision),
        ("/pods/a", r)
    );

    let mut raw = etcd.client().await;
    let stored = raw
        .get("/berth2/pods/a", None)
        .await
        .expect("raw get")
        .kvs()
        .first()
        .map(|kv| kv.value().to_vec());
    assert_eq!(stored.as_deref(), Some(&b"two"[..]));

    // A key that is not a path would not sit under the prefix.
    let err = one.apply(vec![create("pods/b", "x")]).await;
    assert!(matches!(err, Err(StoreError::Backend(_))), "{err:?}");
}

/// With nothing listening at the endpoint, `connect` fails with a backend
/// error that names the endpoint, and does not hang.
#[tokio::test]
async fn connect_to_a_missing_etcd_fails_clearly() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let err = EtcdStore::connect(std::slice::from_ref(&endpoint), "/berth")
        .await
        .expect_err("connect without etcd");
    println!("connect failed after {:?}: {err}", started.elapsed());
    match err {
        StoreError::Backend(message) => assert!(message.contains(&endpoint), "{message}"),
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// A batch over etcd's limits fails as a whole, with an error that names
/// the etcd setting to raise.
#[tokio::test]
async fn batch_over_etcd_limits_names_the_setting() {
    let etcd = Etcd::start("limits");
    let store = etcd.store("/berth").await;
    let before = store.revision().await.expect("revision");
    let ops = (0..=MAX_TXN_OPS)
        .map(|i| create(&format!("/pods/{i:05}"), "v"))
        .collect();
    match store.apply(ops).await {
        Err(StoreError::Backend(message)) => {
            assert!(message.contains("--max-txn-ops"), "{message}")
        }
        other => panic!("an oversized batch gave {other:?}"),
    }
    // Over etcd's limit (1.5 MiB), then over gRPC's (2 MiB), which etcd
    // sets a little above its own: both name the setting.
    for size in [1700 * 1024, 2 * 1024 * 1024] {
        let big = "x".repeat(size);
        match store.apply(vec![create("/pods/big", &big)]).await {
            Err(StoreError::Backend(message)) => {
                assert!(message.contains("--max-request-bytes"), "{message}")
            }
            other => panic!("a value of {size} bytes gave {other:?}"),
        }
    }
    assert_eq!(store.revision().await.expect("revision"), before);
    let (entries, _) = store.list("/pods/").await.expect("list");
    assert!(entries.is_empty());
}

/// `open_store` opens what the configuration names: the embedded store in
/// the state directory by default, etcd under its prefix when asked.
#[tokio::test]
async fn open_store_follows_the_config() {
    let etcd = Etcd::start("open_store");
    let state_dir = etcd.dir.join("state");
    let mut config = MasterConfig {
        state_dir: state_dir.clone(),
        ..Default::default()
    };
    let embedded = open_store(&config.store, &config.state_dir)
        .await
        .expect("open the embedded store");
    embedded
        .apply(vec![create("/a", "embedded")])
        .await
        .expect("write to the embedded store");
    assert!(state_dir.join("store.db").exists());

    config.store = StoreConfig {
        backend: StoreBackend::Etcd,
        etcd_endpoints: etcd.endpoints(),
        etcd_prefix: "/cluster".into(),
        ..StoreConfig::default()
    };
    let remote = open_store(&config.store, &config.state_dir)
        .await
        .expect("open the etcd store");
    remote
        .apply(vec![create("/a", "etcd")])
        .await
        .expect("write to etcd");
    let stored = etcd
        .client()
        .await
        .get("/cluster/a", None)
        .await
        .expect("raw get")
        .kvs()
        .first()
        .map(|kv| kv.value().to_vec());
    assert_eq!(stored.as_deref(), Some(&b"etcd"[..]));
}

/// A master's campaign in a test: its task, the terms it wins, and its
/// stop switch.
struct Candidate {
    task: tokio::task::JoinHandle<()>,
    elected: tokio::sync::watch::Receiver<Option<Term>>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// A campaign of a master named `name` on `store`.
fn campaign(store: &EtcdStore, name: &str, lease: Duration) -> Candidate {
    let (terms, elected) = tokio::sync::watch::channel(None);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let me = Member {
        name: name.into(),
        url: format!("https://{name}:7443"),
    };
    let task = tokio::spawn(election::campaign(
        store.clone(),
        me,
        lease,
        terms,
        stopping,
    ));
    Candidate {
        task,
        elected,
        stop,
    }
}

/// Waits until one of `candidates` leads; returns its index and term.
async fn leader_of(candidates: &[&tokio::sync::watch::Receiver<Option<Term>>]) -> (usize, Term) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leading: Vec<(usize, Term)> = candidates
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i, c.borrow().clone()?)))
            .collect();
        assert!(leading.len() <= 1, "two leaders at once");
        if let Some(found) = leading.into_iter().next() {
            return found;
        }
        assert!(Instant::now() < deadline, "nobody was elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two masters campaign: one leads and its fenced writes commit. When it
/// stops renewing its lease (a frozen process), the other leads once the
/// lease ends, and the old term's writes commit nothing.
#[tokio::test]
async fn one_master_leads_and_a_frozen_leader_commits_nothing() {
    let etcd = Etcd::start("election");
    let stores = [etcd.store("/ha").await, etcd.store("/ha").await];
    let lease = Duration::from_secs(2);
    let a = campaign(&stores[0], "a", lease);
    let b = campaign(&stores[1], "b", lease);
    let (first, term) = leader_of(&[&a.elected, &b.elected]).await;
    let old = term.fenced(&stores[first]);
    old.apply(vec![create("/pods/p1", "first leader")])
        .await
        .expect("the leader writes");
    let registered = stores[0].list(election::LIVE).await.expect("list").0;
    assert_eq!(registered.len(), 2, "both masters are registered");

    // Freeze the leader: its campaign no longer renews, as a stopped
    // process would not.
    let frozen_at = Instant::now();
    [&a.task, &b.task][first].abort();
    let other = [&a.elected, &b.elected][1 - first];
    let (_, new_term) = leader_of(&[other]).await;
    let failover = frozen_at.elapsed();
    eprintln!("measured: takeover {failover:?} after the leader froze (lease {lease:?})");
    assert!(
        failover >= lease - lease / 4,
        "took over before the lease ended"
    );
    assert_ne!(new_term.created(), term.created());

    let before = stores[0].revision().await.expect("revision");
    let refused = old
        .apply(vec![create("/pods/p2", "deposed leader")])
        .await
        .expect_err("a deposed leader's write");
    assert!(matches!(refused, StoreError::NotLeader(_)), "{refused}");
    assert_eq!(stores[0].revision().await.expect("revision"), before);
    assert!(stores[0].get("/pods/p2").await.expect("get").is_none());
    new_term
        .fenced(&stores[1 - first])
        .apply(vec![create("/pods/p2", "new leader")])
        .await
        .expect("the new leader writes");
}

/// A leader whose election key is taken from it while its lease is still
/// renewed (its local deadline has not passed) is stopped by etcd itself:
/// the fenced transaction fails, nothing commits, and it steps down.
#[tokio::test]
async fn the_compare_on_the_election_key_fences_a_leader_etcd_deposed() {
    let etcd = Etcd::start("fencing");
    let store = etcd.store("/ha").await;
    let a = campaign(&store, "a", Duration::from_secs(3));
    let (_, term) = leader_of(&[&a.elected]).await;
    let fenced = term.fenced(&store);
    etcd.client()
        .await
        .delete("/ha/masters/leader", None)
        .await
        .expect("delete the election key");
    let refused = fenced
        .apply(vec![create("/pods/p1", "deposed")])
        .await
        .expect_err("a write of a deposed term");
    assert!(refused.to_string().contains("election key"), "{refused}");
    // (The store's revision moves on as the master stands again, so the
    // key itself is what shows that nothing committed.)
    assert!(store.get("/pods/p1").await.expect("get").is_none());
    // The term ends at once, and the master wins a new one.
    let mut elected = a.elected;
    tokio::time::timeout(
        Duration::from_secs(5),
        elected.wait_for(|t| t.as_ref().map(Term::created) != Some(term.created())),
    )
    .await
    .expect("the term ends")
    .expect("the campaign goes on");
    let (_, next) = leader_of(&[&elected]).await;
    assert!(next.created() > term.created());
}

/// A leader that stops (`systemctl stop`, an upgrade) revokes its lease:
/// another master leads at once, not a lease later.
#[tokio::test]
async fn a_stopping_leader_hands_the_lead_on_at_once() {
    let etcd = Etcd::start("handover");
    let stores = [etcd.store("/ha").await, etcd.store("/ha").await];
    let lease = Duration::from_secs(3);
    let a = campaign(&stores[0], "a", lease);
    let b = campaign(&stores[1], "b", lease);
    let (first, _) = leader_of(&[&a.elected, &b.elected]).await;
    let (leader, other) = if first == 0 { (a, b) } else { (b, a) };
    // A master that started under a leader waits a lease before it claims
    // (see `HoldBack`); one that has run longer takes over at once.
    tokio::time::sleep(lease).await;
    let stopped = Instant::now();
    leader.stop.send(true).expect("the campaign listens");
    tokio::time::timeout(Duration::from_secs(5), leader.task)
        .await
        .expect("the campaign ends")
        .expect("the campaign does not panic");
    leader_of(&[&other.elected]).await;
    let handover = stopped.elapsed();
    eprintln!("measured: handover {handover:?} after the leader stopped (lease {lease:?})");
    assert!(
        handover < Duration::from_secs(2),
        "waited for the lease: {handover:?}"
    );
    let live = stores[0].list(election::LIVE).await.expect("list").0;
    assert_eq!(live.len(), 1, "the stopped master is no longer live");
}
