//! The build planner: runs each build as a one-attempt job, honouring its
//! config's run policy, follows the job to the build's end, keeps each
//! config's history to [`BUILD_HISTORY_LIMIT`], and starts a build when a
//! source build's builder tag moves. Pure: the cluster in, changes out.

use std::collections::BTreeMap;

use berth_model::api::Versioned;
use berth_model::build::{
    BuildCause, BuildStrategy, CauseKind, RunPolicy, TaskStrategy, BUILD_CONTAINER,
    BUILD_HISTORY_LIMIT,
};
use berth_model::image_stream::parse_stream_tag;
use berth_model::project::{qualify, split_qualified, unqualified};
use berth_model::{
    Build, BuildConfig, BuildPhase, Container, Event, EventKind, Job, JobPhase, JobStatus, Pod,
    RestartPolicy,
};

use super::{Change, Cluster};

/// Seconds a build's runner gets to clean up when it is cancelled.
const BUILD_STOP_GRACE_SECS: u32 = 20;

/// Plans every build's next step and the builds builder images start.
pub fn plan(cluster: &Cluster) -> Vec<Change> {
    let mut by_config: BTreeMap<&str, Vec<&Versioned<Build>>> = BTreeMap::new();
    for build in &cluster.builds {
        by_config
            .entry(build.object.config.as_str())
            .or_default()
            .push(build);
    }
    let mut changes = Vec::new();
    for (config, mut builds) in by_config {
        builds.sort_by_key(|b| b.object.number);
        match cluster
            .build_configs
            .iter()
            .find(|c| c.object.name == config)
        {
            Some(config) => changes.extend(advance(cluster, &config.object, &builds)),
            None => changes.extend(
                builds
                    .iter()
                    .map(|b| forget(cluster, b, "its config is gone")),
            ),
        }
    }
    changes.extend(builder_moves(cluster));
    changes
}

/// The steps of one config's builds, oldest first.
fn advance(cluster: &Cluster, config: &BuildConfig, builds: &[&Versioned<Build>]) -> Vec<Change> {
    let now = cluster.now_ms;
    let mut changes = Vec::new();
    let mut busy = builds
        .iter()
        .any(|b| matches!(b.object.phase, BuildPhase::Pending | BuildPhase::Running));
    let newest_waiting = builds
        .iter()
        .rev()
        .find(|b| b.object.phase == BuildPhase::New && !b.object.cancelled)
        .map(|b| b.object.name.clone());
    for versioned in builds {
        let build = &versioned.object;
        let keep = |build, reason, event| step(versioned, build, JobStep::Keep, reason, event);
        match build.phase {
            BuildPhase::New if build.cancelled => {
                let ended = end(build, BuildPhase::Cancelled, Some("cancelled".into()), now);
                changes.push(keep(
                    ended,
                    "build cancelled".to_owned(),
                    Some(event_of(build, EventKind::BuildCancelled, "cancelled", now)),
                ));
            }
            // Only a build that waits behind a running one is superseded:
            // with none running, the oldest starts at once.
            BuildPhase::New
                if busy
                    && config.run_policy == RunPolicy::SerialLatestOnly
                    && newest_waiting.as_ref().is_some_and(|n| *n != build.name) =>
            {
                let newer = unqualified(newest_waiting.as_deref().unwrap_or_default());
                let why = format!("superseded by {newer}");
                let ended = end(build, BuildPhase::Cancelled, Some(why.clone()), now);
                changes.push(keep(
                    ended,
                    why.clone(),
                    Some(event_of(build, EventKind::BuildCancelled, &why, now)),
                ));
            }
            BuildPhase::New if busy && config.run_policy != RunPolicy::Parallel => {}
            BuildPhase::New => {
                busy = true;
                let job = job_of(build, config);
                let mut started = build.clone();
                started.phase = BuildPhase::Pending;
                started.job = Some(job.name.clone());
                started.pod = Some(format!("{}-0", job.name));
                changes.push(step(
                    versioned,
                    started,
                    JobStep::Create(job),
                    "build queued".to_owned(),
                    None,
                ));
            }
            BuildPhase::Pending | BuildPhase::Running => {
                if let Some(change) = follow(cluster, versioned) {
                    changes.push(change);
                }
            }
            BuildPhase::Complete | BuildPhase::Failed | BuildPhase::Cancelled => {}
        }
    }
    // History: the oldest finished builds beyond the limit go.
    let finished: Vec<&&Versioned<Build>> = builds
        .iter()
        .filter(|b| b.object.phase.is_final())
        .collect();
    let excess = finished.len().saturating_sub(BUILD_HISTORY_LIMIT);
    changes.extend(finished.iter().take(excess).map(|b| Change::DeleteBuild {
        name: b.object.name.clone(),
        expected_revision: b.resource_version,
        reason: format!("beyond the history of {BUILD_HISTORY_LIMIT} builds"),
    }));
    changes
}

/// A started build's step from its job: running, ended, or cancelled.
fn follow(cluster: &Cluster, versioned: &Versioned<Build>) -> Option<Change> {
    let build = &versioned.object;
    let now = cluster.now_ms;
    let job_name = build.job.as_deref()?;
    let Some(job) = cluster.jobs.iter().find(|j| j.object.name == job_name) else {
        let why = "its job is gone".to_owned();
        let ended = end(build, BuildPhase::Failed, Some(why.clone()), now);
        return Some(step(
            versioned,
            ended,
            JobStep::Keep,
            why.clone(),
            Some(event_of(build, EventKind::BuildFailed, &why, now)),
        ));
    };
    let status = &job.object.status;
    let gone = || JobStep::Delete(job.object.name.clone(), job.resource_version);
    match status.phase {
        _ if build.cancelled && !job.object.cancelled && !status.phase.is_final() => Some(step(
            versioned,
            build.clone(),
            JobStep::cancel(job),
            "build cancelled: its job stops".to_owned(),
            None,
        )),
        JobPhase::Succeeded => {
            let mut ended = end(build, BuildPhase::Complete, None, now);
            if let Some((image, digest)) = pushed(cluster, build) {
                ended.output_image = Some(image);
                ended.output_digest = Some(digest);
            }
            let said = match &ended.output_image {
                Some(image) => format!("pushed {image}"),
                None => format!("pushed {}", build.task.output),
            };
            Some(step(
                versioned,
                ended,
                gone(),
                "build complete".to_owned(),
                Some(event_of(build, EventKind::BuildComplete, &said, now)),
            ))
        }
        JobPhase::Failed => {
            let why = failure(status);
            let ended = end(build, BuildPhase::Failed, Some(why.clone()), now);
            Some(step(
                versioned,
                ended,
                gone(),
                why.clone(),
                Some(event_of(build, EventKind::BuildFailed, &why, now)),
            ))
        }
        JobPhase::Cancelled => {
            let ended = end(build, BuildPhase::Cancelled, Some("cancelled".into()), now);
            Some(step(
                versioned,
                ended,
                gone(),
                "build cancelled".to_owned(),
                Some(event_of(build, EventKind::BuildCancelled, "cancelled", now)),
            ))
        }
        JobPhase::Running if build.phase == BuildPhase::Pending => {
            let mut running = build.clone();
            running.phase = BuildPhase::Running;
            running.start_ms = Some(status.start_ms.unwrap_or(now));
            let pod = cluster
                .pods
                .iter()
                .find(|p| p.object.job.as_deref() == Some(job_name) && p.object.node.is_some());
            running.node = pod.and_then(|p| p.object.node.clone());
            if let Some(pod) = pod {
                running.pod = Some(pod.object.spec.name.clone());
            }
            let said = format!("on {}", running.node.as_deref().unwrap_or("a node"));
            Some(step(
                versioned,
                running,
                JobStep::Keep,
                "build running".to_owned(),
                Some(event_of(build, EventKind::BuildStarted, &said, now)),
            ))
        }
        JobPhase::Running | JobPhase::Pending => None,
    }
}

/// Why a build's job failed, from its last attempt.
fn failure(status: &JobStatus) -> String {
    let attempt = status.attempts.last();
    let reason = attempt
        .and_then(|a| a.reason.clone())
        .or_else(|| status.reason.clone())
        .unwrap_or_else(|| "failed".to_owned());
    match attempt.and_then(|a| a.exit_code) {
        Some(code) if code != 0 => format!("{reason} (exit code {code}): see berth build logs"),
        _ => reason,
    }
}

/// Where the build's push moved its output tag: the tag event the
/// registry's push recorded for it.
fn pushed(cluster: &Cluster, build: &Build) -> Option<(String, String)> {
    let (project, _) = split_qualified(&build.config);
    let config = cluster
        .build_configs
        .iter()
        .find(|c| c.object.name == build.config)?;
    let (stream, tag) = parse_stream_tag(&config.object.to).ok()?;
    let stream = cluster
        .image_streams
        .iter()
        .find(|s| s.object.name == qualify(project, stream))?;
    let event = stream
        .object
        .status
        .tags
        .get(tag)?
        .iter()
        .find(|e| e.build.as_deref() == Some(build.name.as_str()))?;
    Some((event.image.clone(), event.digest.clone()?))
}

/// The job that runs `build`: one attempt of a pod whose one container is
/// the build, with the config's limits.
fn job_of(build: &Build, config: &BuildConfig) -> Job {
    let image = match &build.task.strategy {
        TaskStrategy::Source { builder_image, .. } => builder_image.clone(),
        TaskStrategy::Docker(_) => build.task.output.clone(),
    };
    let container = Container {
        name: BUILD_CONTAINER.to_owned(),
        image,
        command: Vec::new(),
        args: Vec::new(),
        env: Vec::new(),
        secret_env: Vec::new(),
        ports: Vec::new(),
        volume_mounts: Vec::new(),
        resources: config.resources,
        restart: RestartPolicy::Never,
        stop_timeout_secs: BUILD_STOP_GRACE_SECS,
        probes: Default::default(),
        security: Default::default(),
    };
    let name = Build::job_name(&build.name);
    Job {
        name: name.clone(),
        labels: [(
            "berth.build".to_owned(),
            unqualified(&build.name).to_owned(),
        )]
        .into_iter()
        .collect(),
        template: Pod {
            name,
            containers: vec![container],
            volumes: Vec::new(),
            build: Some(build.task.clone()),
        },
        completions: 1,
        parallelism: 1,
        backoff_limit: 1,
        deadline_secs: None,
        after: Vec::new(),
        priority: Default::default(),
        cron: None,
        cancelled: false,
        status: JobStatus::default(),
    }
}

/// `build` ended in `phase`.
fn end(build: &Build, phase: BuildPhase, reason: Option<String>, now: u64) -> Build {
    let mut ended = build.clone();
    ended.phase = phase;
    ended.reason = reason;
    ended.end_ms = Some(now);
    ended
}

/// A build whose config is gone goes, its job with it: a running job is
/// cancelled first, an ended one removed, and then the build.
fn forget(cluster: &Cluster, build: &Versioned<Build>, why: &str) -> Change {
    let job = build
        .object
        .job
        .as_deref()
        .and_then(|name| cluster.jobs.iter().find(|j| j.object.name == name));
    let job = match job {
        Some(job) if job.object.status.phase.is_final() => {
            JobStep::Delete(job.object.name.clone(), job.resource_version)
        }
        Some(job) if !job.object.cancelled => JobStep::cancel(job),
        Some(_) | None => {
            return Change::DeleteBuild {
                name: build.object.name.clone(),
                expected_revision: build.resource_version,
                reason: why.to_owned(),
            }
        }
    };
    let reason = Some(why.to_owned());
    let ended = end(&build.object, BuildPhase::Cancelled, reason, cluster.now_ms);
    step(build, ended, job, why.to_owned(), None)
}

/// What a build's step does to its job.
enum JobStep {
    /// Nothing.
    Keep,
    /// Makes it: the build starts.
    Create(Job),
    /// Rewrites it (cancelled), at the revision read.
    Cancel(Job, u64),
    /// Removes it, at the revision read: the build ended.
    Delete(String, u64),
}

impl JobStep {
    /// `job` cancelled: the job planner stops its pods.
    fn cancel(job: &Versioned<Job>) -> JobStep {
        let mut cancelled = job.object.clone();
        cancelled.cancelled = true;
        JobStep::Cancel(cancelled, job.resource_version)
    }
}

/// `build` written over the record `read`, its job as `job` says.
fn step(
    read: &Versioned<Build>,
    build: Build,
    job: JobStep,
    reason: String,
    event: Option<Event>,
) -> Change {
    let (mut create_job, mut update_job, mut delete_job) = (None, None, None);
    match job {
        JobStep::Keep => {}
        JobStep::Create(job) => create_job = Some(job),
        JobStep::Cancel(job, revision) => update_job = Some((job, revision)),
        JobStep::Delete(name, revision) => delete_job = Some((name, revision)),
    }
    Change::AdvanceBuild {
        build,
        expected_revision: read.resource_version,
        create_job,
        update_job,
        delete_job,
        reason,
        event,
    }
}

/// New builds of the git source builds whose builder tag moved since their
/// latest build (or that never built: their builder had no image).
fn builder_moves(cluster: &Cluster) -> Vec<Change> {
    let mut changes = Vec::new();
    for config in &cluster.build_configs {
        let c = &config.object;
        let BuildStrategy::Source(source) = &c.strategy else {
            continue;
        };
        if c.git.is_none() || !c.triggers.image_change {
            continue;
        }
        let (project, _) = split_qualified(&c.name);
        let Ok((stream, tag)) = parse_stream_tag(&source.builder) else {
            continue;
        };
        let Some(now) = cluster
            .image_streams
            .iter()
            .find(|s| s.object.name == qualify(project, stream))
            .and_then(|s| s.object.current(tag))
        else {
            continue;
        };
        let latest = cluster
            .builds
            .iter()
            .filter(|b| b.object.config == c.name)
            .max_by_key(|b| b.object.number);
        let built_with = latest.and_then(|b| match &b.object.task.strategy {
            TaskStrategy::Source { builder_image, .. } => Some(builder_image.as_str()),
            TaskStrategy::Docker(_) => None,
        });
        if built_with == Some(now.image.as_str()) {
            continue;
        }
        let number = c.last_version + 1;
        let cause = BuildCause {
            kind: CauseKind::ImageChange,
            detail: now.describe(stream, tag),
        };
        let streams: Vec<_> = cluster
            .image_streams
            .iter()
            .map(|s| s.object.clone())
            .collect();
        let Ok(build) = Build::begin(c, number, cause, "master", None, &streams, cluster.now_ms)
        else {
            continue;
        };
        let mut counted = c.clone();
        counted.last_version = number;
        changes.push(Change::StartBuild {
            config: counted,
            config_revision: config.resource_version,
            reason: format!("builder {} moved", source.builder),
            event: None,
            build,
        });
    }
    changes
}

/// An event about `build`.
fn event_of(build: &Build, kind: EventKind, reason: &str, now: u64) -> Event {
    Event {
        time_ms: now,
        kind,
        object: format!("build/{}", build.name),
        node: build.node.clone(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_model::build::{BuildInput, BuildTask, GitSource, SourceStrategy};
    use berth_model::image_stream::{ImageStreamStatus, TagCause, TagEvent};
    use berth_model::ImageStream;

    const NOW: u64 = 1_000_000;

    fn versioned<T>(object: T) -> Versioned<T> {
        Versioned {
            resource_version: 7,
            object,
        }
    }

    fn config(policy: RunPolicy) -> BuildConfig {
        BuildConfig {
            name: "a.site".into(),
            labels: Default::default(),
            strategy: BuildStrategy::Source(SourceStrategy {
                builder: "builder:latest".into(),
                incremental: false,
            }),
            git: Some(GitSource {
                url: "git://h1/site.git".into(),
                git_ref: "main".into(),
                context_dir: String::new(),
            }),
            to: "site:latest".into(),
            env: Vec::new(),
            resources: Default::default(),
            run_policy: policy,
            triggers: Default::default(),
            webhook_secret: "s".into(),
            output_image: "h1:5000/a/site:latest".into(),
            last_version: 3,
        }
    }

    fn build(number: u32, phase: BuildPhase) -> Build {
        let name = Build::name_of("a.site", number);
        Build {
            task: BuildTask {
                build: name.clone(),
                strategy: TaskStrategy::Source {
                    builder_image: "h1:5000/a/builder@sha256:1".into(),
                    previous_image: None,
                },
                input: BuildInput::Git {
                    url: "git://h1/site.git".into(),
                    git_ref: "main".into(),
                    commit: None,
                    context_dir: String::new(),
                },
                output: "h1:5000/a/site:latest".into(),
                env: Vec::new(),
            },
            job: (phase != BuildPhase::New).then(|| Build::job_name(&name)),
            name,
            config: "a.site".into(),
            number,
            cause: BuildCause {
                kind: CauseKind::GitWebhook,
                detail: "abc1".into(),
            },
            by: "webhook".into(),
            phase,
            reason: None,
            pod: None,
            node: None,
            output_image: None,
            output_digest: None,
            cancelled: false,
            created_ms: NOW - 10,
            start_ms: None,
            end_ms: None,
        }
    }

    fn builder_stream(image: &str) -> Versioned<ImageStream> {
        let mut stream = ImageStream {
            name: "a.builder".into(),
            labels: Default::default(),
            aliases: Vec::new(),
            scheduled_imports: Vec::new(),
            docker_image_repository: String::new(),
            webhook_secret: String::new(),
            status: ImageStreamStatus::default(),
        };
        stream.point(
            "latest",
            TagEvent {
                image: image.into(),
                digest: None,
                created_ms: 1,
                cause: TagCause::Push,
                build: None,
            },
        );
        versioned(stream)
    }

    fn cluster(policy: RunPolicy, builds: Vec<Build>) -> Cluster {
        Cluster {
            build_configs: vec![versioned(config(policy))],
            builds: builds.into_iter().map(versioned).collect(),
            image_streams: vec![builder_stream("h1:5000/a/builder@sha256:1")],
            now_ms: NOW,
            ..Cluster::default()
        }
    }

    fn advanced(changes: &[Change]) -> Vec<(String, BuildPhase, bool, Option<String>)> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::AdvanceBuild {
                    build, create_job, ..
                } => Some((
                    build.name.clone(),
                    build.phase,
                    create_job.is_some(),
                    build.reason.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn serial_latest_only_runs_the_first_and_the_last_and_supersedes_the_middle() {
        let quick = vec![
            build(1, BuildPhase::New),
            build(2, BuildPhase::New),
            build(3, BuildPhase::New),
        ];
        let changes = plan(&cluster(RunPolicy::SerialLatestOnly, quick));
        assert_eq!(
            advanced(&changes),
            vec![
                ("a.site-1".into(), BuildPhase::Pending, true, None),
                (
                    "a.site-2".into(),
                    BuildPhase::Cancelled,
                    false,
                    Some("superseded by site-3".into())
                ),
            ]
        );
        // Serial runs them in order, one at a time, cancelling none.
        let changes = plan(&cluster(
            RunPolicy::Serial,
            vec![build(1, BuildPhase::Running), build(2, BuildPhase::New)],
        ));
        assert!(advanced(&changes)
            .iter()
            .all(|(name, ..)| name != "a.site-2"));
        // Parallel starts every waiting build.
        let changes = plan(&cluster(
            RunPolicy::Parallel,
            vec![build(1, BuildPhase::New), build(2, BuildPhase::New)],
        ));
        assert_eq!(advanced(&changes).iter().filter(|a| a.2).count(), 2);
    }

    #[test]
    fn a_build_job_is_one_attempt_of_the_build_pod_with_the_configs_limits() {
        let changes = plan(&cluster(RunPolicy::Serial, vec![build(1, BuildPhase::New)]));
        let Some(Change::AdvanceBuild {
            create_job: Some(job),
            ..
        }) = changes.first()
        else {
            panic!("no job: {changes:?}")
        };
        assert_eq!(job.name, "a.site-1-build");
        assert_eq!(job.backoff_limit, 1);
        assert_eq!(job.template.containers[0].name, BUILD_CONTAINER);
        assert_eq!(
            job.template.containers[0].image,
            "h1:5000/a/builder@sha256:1"
        );
        assert!(job.template.build.is_some());
        assert!(
            job.template.validate().is_ok(),
            "{:?}",
            job.template.validate()
        );
    }

    #[test]
    fn a_job_that_succeeded_completes_its_build_with_the_pushed_digest() {
        let mut running = cluster(RunPolicy::Serial, vec![build(1, BuildPhase::Running)]);
        let mut job = job_of(&running.builds[0].object, &config(RunPolicy::Serial));
        job.status.phase = JobPhase::Succeeded;
        running.jobs.push(versioned(job));
        let mut site = builder_stream("x");
        site.object.name = "a.site".into();
        site.object.point(
            "latest",
            TagEvent {
                image: "h1:5000/a/site@sha256:9".into(),
                digest: Some("sha256:9".into()),
                created_ms: 2,
                cause: TagCause::Build,
                build: Some("a.site-1".into()),
            },
        );
        running.image_streams.push(site);
        let changes = plan(&running);
        let Some(Change::AdvanceBuild {
            build, delete_job, ..
        }) = changes.first()
        else {
            panic!("{changes:?}")
        };
        assert_eq!(build.phase, BuildPhase::Complete);
        assert_eq!(build.output_digest.as_deref(), Some("sha256:9"));
        assert_eq!(
            delete_job.as_ref().map(|(j, _)| j.as_str()),
            Some("a.site-1-build")
        );
    }

    #[test]
    fn a_failed_job_fails_its_build_saying_why() {
        let mut running = cluster(RunPolicy::Serial, vec![build(1, BuildPhase::Running)]);
        let mut job = job_of(&running.builds[0].object, &config(RunPolicy::Serial));
        job.status.phase = JobPhase::Failed;
        job.status.attempts.push(berth_model::job::Attempt {
            pod: "a.site-1-build-0".into(),
            node: Some("h2".into()),
            succeeded: false,
            exit_code: Some(1),
            reason: Some("Error".into()),
            end_ms: NOW,
        });
        running.jobs.push(versioned(job));
        let phases = advanced(&plan(&running));
        assert_eq!(phases[0].1, BuildPhase::Failed);
        assert!(phases[0].3.as_deref().unwrap().contains("exit code 1"));
    }

    #[test]
    fn cancelling_a_running_build_cancels_its_job() {
        let mut b = build(1, BuildPhase::Running);
        b.cancelled = true;
        let mut running = cluster(RunPolicy::Serial, vec![b]);
        let mut job = job_of(&running.builds[0].object, &config(RunPolicy::Serial));
        job.status.phase = JobPhase::Running;
        running.jobs.push(versioned(job));
        let changes = plan(&running);
        let Some(Change::AdvanceBuild {
            update_job: Some((job, _)),
            ..
        }) = changes.first()
        else {
            panic!("{changes:?}")
        };
        assert!(job.cancelled);
    }

    #[test]
    fn a_builder_tag_that_moved_starts_a_build_and_one_that_did_not_none() {
        let done = cluster(RunPolicy::Serial, vec![build(3, BuildPhase::Complete)]);
        assert!(!plan(&done)
            .iter()
            .any(|c| matches!(c, Change::StartBuild { .. })));
        let mut moved = done;
        moved.image_streams = vec![builder_stream("h1:5000/a/builder@sha256:2")];
        let changes = plan(&moved);
        let Some(Change::StartBuild { build, config, .. }) = changes
            .iter()
            .find(|c| matches!(c, Change::StartBuild { .. }))
        else {
            panic!("{changes:?}")
        };
        assert_eq!(build.name, "a.site-4");
        assert_eq!(config.last_version, 4);
        assert_eq!(build.cause.kind, CauseKind::ImageChange);
    }
}
