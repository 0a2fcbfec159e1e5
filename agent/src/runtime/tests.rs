//! The runtime against a fake host: what a user sees of a pod (its
//! status) and what the agent does to the host (the effects, in order).

use berth_model::{EventKind, Pod, PodPhase};

use super::Runtime;
use crate::config::AgentConfig;
use crate::fakes::{FakeHost, ScratchDir};
use crate::store::{PodStore, Source};

struct Fixture {
    runtime: Runtime<FakeHost, FakeHost, FakeHost>,
    host: FakeHost,
    state_dir: ScratchDir,
}

fn fixture() -> Fixture {
    let state_dir = ScratchDir::new("runtime");
    let config = AgentConfig {
        state_dir: state_dir.path().to_owned(),
        ..AgentConfig::default()
    };
    let store = PodStore::open(&config.pods_dir()).expect("a pod store");
    let host = FakeHost::default();
    let started_marks = state_dir.path().join("started");
    let runtime = Runtime::with_systems(
        config,
        store,
        host.clone(),
        host.clone(),
        host.clone(),
        started_marks,
    );
    Fixture {
        runtime,
        host,
        state_dir,
    }
}

fn pod(image: &str, restart: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "name": "web",
        "containers": [{"name": "app", "image": image, "restart": restart}],
    }))
    .expect("a pod")
}

const UNIT: &str = "berth-web-app.service";

#[tokio::test]
async fn a_created_pod_whose_unit_is_active_and_container_running_is_running() {
    let f = fixture();
    let (status, created) = f
        .runtime
        .create(pod("local/app:1", "always"), Source::Local)
        .await
        .expect("created");
    assert!(created);
    assert_eq!(
        f.host.take_effects(),
        [
            "docker pull local/app:1",
            "docker create berth.web.app local/app:1",
            "systemd enable berth-web-app.service",
            "systemd start berth-web-app.service",
        ]
    );
    assert_eq!(status.phase, PodPhase::Running);
    assert_eq!(status.slice, "berth-web.slice");
    let app = &status.containers[0];
    assert_eq!((app.name.as_str(), app.unit.as_str()), ("app", UNIT));
    assert_eq!(
        (app.state.as_str(), app.sub_state.as_str()),
        ("active", "running")
    );
    assert!(app.container_id.is_some() && app.ready);
    assert_eq!((app.exit_code, app.reason.as_deref()), (None, None));
    let unit_file = f.state_dir.path().join("units").join(UNIT);
    assert!(unit_file.exists(), "{} is written", unit_file.display());

    // Applied once, the pod needs nothing more, however often it is asked.
    f.runtime.resync().await.expect("resync");
    let again = f
        .runtime
        .create(pod("local/app:1", "always"), Source::Local)
        .await;
    assert!(matches!(again, Ok((_, false))), "{again:?}");
    assert_eq!(f.host.take_effects(), Vec::<String>::new());
    assert_eq!(
        f.runtime.get("web").await.expect("status").phase,
        PodPhase::Running
    );
}

#[tokio::test]
async fn a_failed_start_is_rolled_back_and_reported_with_its_backoff() {
    let f = fixture();
    f.host.fail_starts_of(UNIT);
    let assigned = [pod("local/app:1", "always")];
    let before_ms = super::now_ms();
    let synced = f.runtime.sync_assigned(&assigned, &[]).await;

    assert_eq!(synced.failures.len(), 1, "{:?}", synced.failures);
    assert_eq!(synced.failures[0].0, "web");
    let effects = f.host.take_effects();
    assert_eq!(
        effects,
        [
            "docker pull local/app:1",
            "docker create berth.web.app local/app:1",
            "systemd enable berth-web-app.service",
            "systemd start berth-web-app.service",
            // Rolled back: nothing is left behind.
            "systemd disable berth-web-app.service",
            "docker rm berth.web.app",
        ]
    );
    assert!(f.runtime.list(true).await.expect("pods").is_empty());
    assert!(!f.state_dir.path().join("units").join(UNIT).exists());

    // What the master is told: pending, why, and when the next try is.
    let (statuses, error) = f.runtime.master_pod_statuses().await;
    assert_eq!(error, None);
    let [status] = statuses.as_slice() else {
        panic!("one status: {statuses:?}")
    };
    assert_eq!(status.phase, PodPhase::Pending);
    let failure = status.start_failure.as_ref().expect("a start failure");
    assert_eq!(failure.reason, EventKind::StartFailed.as_str());
    assert_eq!(failure.attempts, 1);
    assert!(
        failure.message.contains("start berth-web-app.service"),
        "{}",
        failure.message
    );
    // The first retry waits two seconds.
    assert!(failure.next_attempt_ms >= before_ms + 2000, "{failure:?}");
    assert!(
        failure.next_attempt_ms <= super::now_ms() + 2000,
        "{failure:?}"
    );
    assert_eq!(
        status.containers[0].reason.as_deref(),
        Some(EventKind::StartFailed.as_str())
    );
    let events = f.host.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].0, events[0].1.as_str()),
        (EventKind::StartFailed, "web")
    );
    assert!(events[0].2.contains("attempt 1; next in 2s"), "{events:?}");

    // Asked again before the wait is over, the agent does not try.
    let again = f.runtime.sync_assigned(&assigned, &[]).await;
    assert_eq!(f.host.take_effects(), Vec::<String>::new());
    assert!(again
        .retry_at
        .is_some_and(|at| at > std::time::Instant::now()));
}

#[tokio::test]
async fn an_image_that_does_not_pull_is_reported_as_such() {
    let f = fixture();
    f.host.lacks_image("nosuch/app:1");
    f.runtime
        .sync_assigned(&[pod("nosuch/app:1", "always")], &[])
        .await;
    assert_eq!(f.host.take_effects(), ["docker pull nosuch/app:1"]);
    let (statuses, _) = f.runtime.master_pod_statuses().await;
    let failure = statuses[0].start_failure.as_ref().expect("a start failure");
    assert_eq!(failure.reason, EventKind::ImagePullFailed.as_str());
}

#[tokio::test]
async fn a_changed_spec_replaces_the_pod() {
    let f = fixture();
    let synced = f
        .runtime
        .sync_assigned(&[pod("local/app:1", "always")], &[])
        .await;
    assert!(synced.failures.is_empty(), "{:?}", synced.failures);
    f.host.take_effects();

    let synced = f
        .runtime
        .sync_assigned(&[pod("local/app:2", "always")], &[])
        .await;
    assert!(synced.failures.is_empty(), "{:?}", synced.failures);
    assert_eq!(
        f.host.take_effects(),
        [
            // The old pod goes: its unit stops before its container goes.
            "systemd stop berth-web-app.service",
            "systemd disable berth-web-app.service",
            "docker rm berth.web.app",
            // The new one comes.
            "docker pull local/app:2",
            "docker create berth.web.app local/app:2",
            "systemd enable berth-web-app.service",
            "systemd start berth-web-app.service",
        ]
    );
    let (statuses, _) = f.runtime.master_pod_statuses().await;
    let [status] = statuses.as_slice() else {
        panic!("one status: {statuses:?}")
    };
    assert_eq!(status.phase, PodPhase::Running);
    assert_eq!(status.spec.containers[0].image, "local/app:2");
    assert_eq!(status.start_failure, None);

    // The same assignment again changes nothing.
    f.runtime
        .sync_assigned(&[pod("local/app:2", "always")], &[])
        .await;
    assert_eq!(f.host.take_effects(), Vec::<String>::new());
}

#[tokio::test]
async fn restarting_a_pod_restarts_its_unit() {
    let f = fixture();
    f.runtime
        .create(pod("local/app:1", "always"), Source::Local)
        .await
        .expect("created");
    f.host.take_effects();
    let status = f.runtime.restart("web").await.expect("restarted");
    assert_eq!(
        f.host.take_effects(),
        ["systemd restart berth-web-app.service"]
    );
    assert_eq!(status.phase, PodPhase::Running);
}

#[tokio::test]
async fn a_never_restarted_pod_that_exited_nonzero_is_failed_and_not_restarted() {
    let f = fixture();
    f.runtime
        .create(pod("local/app:1", "never"), Source::Local)
        .await
        .expect("created");
    f.host.take_effects();
    f.host.exits(UNIT, 3);

    let status = f.runtime.get("web").await.expect("status");
    assert_eq!(status.phase, PodPhase::Failed);
    let app = &status.containers[0];
    assert_eq!(app.state, "failed");
    assert_eq!(
        (app.exit_code, app.reason.as_deref()),
        (Some(3), Some("Error"))
    );

    f.runtime.resync().await.expect("resync");
    assert_eq!(f.host.take_effects(), Vec::<String>::new());
    assert_eq!(
        f.runtime.get("web").await.expect("status").phase,
        PodPhase::Failed
    );
}

#[tokio::test]
async fn a_never_restarted_pod_that_exited_zero_succeeded() {
    let f = fixture();
    f.runtime
        .create(pod("local/app:1", "never"), Source::Local)
        .await
        .expect("created");
    f.host.exits(UNIT, 0);
    let status = f.runtime.get("web").await.expect("status");
    assert_eq!(status.phase, PodPhase::Succeeded);
    assert_eq!(status.containers[0].reason.as_deref(), Some("Completed"));
}

#[tokio::test]
async fn deleting_a_pod_stops_its_unit_before_removing_its_container() {
    let f = fixture();
    f.runtime
        .create(pod("local/app:1", "always"), Source::Local)
        .await
        .expect("created");
    f.host.take_effects();
    let status = f.runtime.delete("web").await.expect("deleted");
    assert_eq!(status.phase, PodPhase::Stopped);
    assert_eq!(
        f.host.take_effects(),
        [
            "systemd stop berth-web-app.service",
            "systemd disable berth-web-app.service",
            "docker rm berth.web.app",
        ]
    );
    assert!(f.runtime.list(true).await.expect("pods").is_empty());
}
#[tokio::test]
async fn restarting_a_stopped_pod_starts_it_once() {
    let f = fixture();
    f.runtime
        .create(pod("local/app:1", "always"), Source::Local)
        .await
        .expect("created");
    f.runtime.stop("web").await.expect("stopped");
    f.host.take_effects();
    let status = f.runtime.restart("web").await.expect("restarted");
    assert_eq!(
        f.host.take_effects(),
        [
            "systemd enable berth-web-app.service",
            "systemd start berth-web-app.service",
        ]
    );
    assert_eq!(status.phase, PodPhase::Running);
}

#[tokio::test]
async fn a_replacement_that_does_not_start_leaves_neither_pod() {
    let f = fixture();
    f.runtime
        .sync_assigned(&[pod("local/app:1", "always")], &[])
        .await;
    f.host.lacks_image("local/app:2");
    f.host.take_effects();

    let synced = f
        .runtime
        .sync_assigned(&[pod("local/app:2", "always")], &[])
        .await;
    assert_eq!(synced.failures.len(), 1, "{:?}", synced.failures);
    assert_eq!(
        f.host.take_effects(),
        [
            "systemd stop berth-web-app.service",
            "systemd disable berth-web-app.service",
            "docker rm berth.web.app",
            "docker pull local/app:2",
        ]
    );
    assert!(f.runtime.list(true).await.expect("pods").is_empty());
    let (statuses, _) = f.runtime.master_pod_statuses().await;
    let [status] = statuses.as_slice() else {
        panic!("one status: {statuses:?}")
    };
    assert_eq!(status.spec.containers[0].image, "local/app:2");
    let failure = status.start_failure.as_ref().expect("a start failure");
    assert_eq!(failure.reason, EventKind::ImagePullFailed.as_str());
}

fn build_pod(url: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "name": "site-1-build-0",
        "containers": [{"name": "build", "image": "builder", "restart": "never"}],
        "build": {
            "build": "site-1",
            "strategy": {"source": {"builderImage": "h1:5000/default/builder@sha256:00"}},
            "input": {"git": {"url": url, "ref": "main"}},
            "output": "h1:5000/default/site:latest",
        },
    }))
    .expect("a build pod")
}

const BUILD_UNIT: &str = "berth-site\\x2d1\\x2dbuild\\x2d0-build.service";

#[tokio::test]
async fn a_build_whose_input_cannot_be_fetched_fails_visibly_and_leaves_nothing() {
    let f = fixture();
    let pod = build_pod("https://127.0.0.1:1/nowhere.git");
    let synced = f
        .runtime
        .sync_assigned(std::slice::from_ref(&pod), &[])
        .await;
    assert_eq!(synced.failures.len(), 1, "{:?}", synced.failures);
    assert_eq!(
        f.host.take_effects(),
        Vec::<String>::new(),
        "no pull, no container, no start"
    );
    assert!(!f.state_dir.path().join("builds/site-1-build-0").exists());
    assert!(!f.state_dir.path().join("units").join(BUILD_UNIT).exists());

    // The master sees a failed attempt, with git's word on why.
    let (statuses, _) = f.runtime.master_pod_statuses().await;
    let [status] = statuses.as_slice() else {
        panic!("one status: {statuses:?}")
    };
    assert_eq!(status.phase, PodPhase::Failed);
    let failure = status.start_failure.as_ref().expect("a start failure");
    assert_eq!(failure.reason, EventKind::StartFailed.as_str());
    assert!(
        failure.message.contains(
            "prepare build site-1: cloning branch main of https://127.0.0.1:1/nowhere.git"
        ),
        "{}",
        failure.message
    );
    assert_eq!(status.containers[0].reason.as_ref(), Some(&failure.message));
    let events = f.host.events();
    assert_eq!(
        (events[0].0, events[0].1.as_str()),
        (EventKind::StartFailed, "site-1-build-0")
    );
}

#[test]
fn a_build_pods_phase_is_its_runners_exit_and_never_started_is_pending() {
    use std::collections::HashMap;

    let record = crate::store::PodRecord {
        pod: build_pod("https://git.example/site.git"),
        host_ports: Vec::new(),
        desired: crate::store::Desired::Running,
        source: Source::Master,
    };
    let status = |active: &str, main_exit: Option<i64>| {
        let state = crate::systemd::UnitState {
            active_state: active.to_owned(),
            sub_state: "dead".to_owned(),
            main_exit,
            status_text: match main_exit {
                Some(0) => "pushed h1:5000/default/site@sha256:ab".to_owned(),
                Some(_) => "build failed: assemble failed with exit code 3".to_owned(),
                None => String::new(),
            },
            ..Default::default()
        };
        let states = HashMap::from([(BUILD_UNIT.to_owned(), state)]);
        super::pod_status(&record, &states, &HashMap::new())
    };
    // The runner ended well; its unit remains active (exited).
    let done = status("active", Some(0));
    assert_eq!(done.phase, PodPhase::Succeeded);
    assert_eq!(done.containers[0].state, "inactive");
    assert_eq!(done.containers[0].unit, BUILD_UNIT);
    assert_eq!(
        done.containers[0].reason.as_deref(),
        Some("pushed h1:5000/default/site@sha256:ab")
    );
    let failed = status("failed", Some(1));
    assert_eq!(failed.phase, PodPhase::Failed);
    assert_eq!(failed.containers[0].exit_code, Some(1));
    assert_eq!(
        failed.containers[0].reason.as_deref(),
        Some("build failed: assemble failed with exit code 3")
    );
    assert_eq!(status("active", None).phase, PodPhase::Running);
    // Loaded but never run (or not since a reboot): no exit to read.
    let mut never = status("inactive", None);
    assert_eq!(never.phase, PodPhase::Pending);
    // Prepared before a reboot, it never will run: it failed.
    super::interrupted(&mut never);
    assert_eq!(never.phase, PodPhase::Failed);
    assert_eq!(
        never.containers[0].reason.as_deref(),
        Some(super::INTERRUPTED)
    );
    assert_eq!(
        super::pod_status(&record, &HashMap::new(), &HashMap::new()).phase,
        PodPhase::Pending
    );
}

#[tokio::test]
async fn a_heartbeat_of_unchanged_pods_reads_nothing_until_an_event_says_what_changed() {
    let f = fixture();
    f.runtime
        .sync_assigned(&[pod("local/app:1", "never")], &[])
        .await;
    let (statuses, _) = f.runtime.master_pod_statuses().await;
    assert_eq!(statuses[0].phase, PodPhase::Running);
    let reads = f.host.reads();
    let (again, _) = f.runtime.master_pod_statuses().await;
    assert_eq!(again, statuses);
    assert_eq!(f.host.reads(), reads, "nothing changed, nothing read");

    // The container ends; until systemd's and Docker's events say so, the
    // heartbeat reports what it last read (a full resync would read it).
    f.host.exits(UNIT, 3);
    let (stale, _) = f.runtime.master_pod_statuses().await;
    assert_eq!(stale[0].phase, PodPhase::Running);
    f.runtime.status_cache().unit_changed(UNIT);
    f.runtime.status_cache().container_changed("berth.web.app");
    let (fresh, _) = f.runtime.master_pod_statuses().await;
    assert_eq!(fresh[0].phase, PodPhase::Failed);
    assert_eq!(fresh[0].containers[0].exit_code, Some(3));
    assert_eq!(f.host.reads(), reads + 2, "the unit and the container");
}

#[tokio::test]
async fn new_pods_start_side_by_side_each_with_its_steps_in_order() {
    let f = fixture();
    let pods: Vec<Pod> = (0..12)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "name": format!("web-{i}"),
                "containers": [{"name": "app", "image": "local/app:1"}],
            }))
            .expect("a pod")
        })
        .collect();
    let synced = f.runtime.sync_assigned(&pods, &[]).await;
    assert!(synced.failures.is_empty(), "{:?}", synced.failures);
    let effects = f.host.take_effects();
    for i in 0..12 {
        let at = |effect: String| {
            effects
                .iter()
                .position(|e| *e == effect)
                .unwrap_or_else(|| panic!("{effect} missing from {effects:?}"))
        };
        let created = at(format!("docker create berth.web-{i}.app local/app:1"));
        let enabled = at(format!("systemd enable berth-web\\x2d{i}-app.service"));
        let started = at(format!("systemd start berth-web\\x2d{i}-app.service"));
        assert!(created < enabled && enabled < started, "{effects:?}");
    }
    let (statuses, _) = f.runtime.master_pod_statuses().await;
    assert_eq!(statuses.len(), 12);
    assert!(statuses.iter().all(|s| s.phase == PodPhase::Running));
}

#[tokio::test]
async fn an_assigned_pod_is_started_without_reading_its_status_back() {
    // A local create answers with the new pod's status; the master's
    // assignments have no one waiting for it (the observer reads it for
    // the heartbeat), so in a burst no start holds its turn for that read.
    let local = fixture();
    local
        .runtime
        .create(pod("local/app:1", "always"), Source::Local)
        .await
        .expect("created");
    let assigned = fixture();
    let synced = assigned
        .runtime
        .sync_assigned(&[pod("local/app:1", "always")], &[])
        .await;
    assert!(synced.failures.is_empty(), "{:?}", synced.failures);
    assert_eq!(
        assigned.host.take_effects(),
        local.host.take_effects(),
        "the same start"
    );
    assert!(
        assigned.host.reads() < local.host.reads(),
        "assigned: {} reads, local: {}",
        assigned.host.reads(),
        local.host.reads()
    );
    let (statuses, _) = assigned.runtime.master_pod_statuses().await;
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].phase, PodPhase::Running);
}
