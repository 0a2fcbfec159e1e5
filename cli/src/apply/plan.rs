//! What `berth apply` would do: each object of the files compared with
//! what the master has, after both are brought to the same form (the
//! master's defaults filled in, secrets blanked as the master shows
//! them, links in the master's order), and the one write each needs, if
//! any. Pure: the command reads the master, calls [`plan`], then shows
//! or carries out the steps.

use berth_model::api::Versioned;
use berth_model::labels::matches;
use berth_model::{BuildConfig, CronJob, Job, Labels, Link, Route, Service};
use serde::Serialize;

use super::document::{Document, LinkDocument, Object, Problem, Source};

/// The project's objects as the master shows them.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// Its services.
    pub services: Vec<Versioned<Service>>,
    /// Its routes.
    pub routes: Vec<Route>,
    /// Its jobs.
    pub jobs: Vec<Versioned<Job>>,
    /// Its cron jobs.
    pub cron_jobs: Vec<Versioned<CronJob>>,
    /// Its build configs.
    pub build_configs: Vec<Versioned<BuildConfig>>,
}

/// What happens to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It is new.
    Created,
    /// It differs and is replaced.
    Configured,
    /// It is as the files say: nothing is sent.
    Unchanged,
    /// It is as the files say but for secret values, which only the
    /// master can compare: it is sent, and the master writes it only if
    /// they differ.
    SecretsSent,
    /// The files no longer have it (`--prune`): it is removed.
    Pruned,
}

impl Outcome {
    /// How `berth apply` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
            Outcome::SecretsSent => "configured",
            Outcome::Pruned => "pruned",
        }
    }
}

/// The request that carries out a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// `POST /v1/services`.
    CreateService(Service),
    /// `PUT /v1/services/{name}` with the revision read.
    UpdateService(Versioned<Service>),
    /// `POST /v1/routes`.
    CreateRoute(Route),
    /// `PUT /v1/routes/{name}`.
    ReplaceRoute(Route),
    /// `POST /v1/jobs`.
    CreateJob(Job),
    /// `POST /v1/cronjobs`.
    CreateCronJob(CronJob),
    /// `PUT /v1/cronjobs/{name}` with the revision read.
    UpdateCronJob(Versioned<CronJob>),
    /// `POST /v1/buildconfigs`.
    CreateBuildConfig(BuildConfig),
    /// `PUT /v1/buildconfigs/{name}` with the revision read.
    UpdateBuildConfig(Versioned<BuildConfig>),
    /// `DELETE /v1/{kind}/{name}` of a pruned object.
    Delete,
}

/// One object's step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `service`, `link`, `route`, `job`, `cronjob`.
    pub kind: &'static str,
    /// Its name (a link's is `service->target:port`).
    pub name: String,
    /// What happens to it.
    pub outcome: Outcome,
    /// The request to send, if any (a link's goes with its service's).
    pub write: Option<Write>,
    /// The object as the master shows it now, as a document.
    pub before: Option<String>,
    /// The object as the files want it, shown the same way.
    pub after: Option<String>,
}

/// An object as a document: `kind:` and its fields.
#[derive(Debug, Serialize)]
pub struct Shown<'a, T> {
    /// `Service`, `Route`, ...
    pub kind: &'a str,
    /// The object's fields.
    #[serde(flatten)]
    pub object: &'a T,
}

/// `object` as YAML, headed by its `kind:`.
pub fn shown_yaml<T: Serialize>(kind: &str, object: &T) -> String {
    serde_norway::to_string(&Shown { kind, object })
        .unwrap_or_else(|e| format!("# cannot be shown as YAML: {e}\n"))
}

/// The steps that bring the master to what `documents` say, in the order
/// they must be taken; with `prune`, also the removal of each object with
/// those labels that the documents no longer hold. Problems only the
/// master's state shows (a changed job, a link from a service nobody has)
/// are reported here, before anything is written.
pub fn plan(
    documents: &[Document],
    current: &Current,
    prune: Option<&Labels>,
) -> Result<Vec<Step>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut steps = services(documents, current, &mut problems);
    for document in documents {
        match &document.object {
            Object::Route(route) => steps.push(route_step(route, current)),
            Object::CronJob(cron) => steps.push(cron_step(cron, current)),
            Object::BuildConfig(config) => steps.push(build_config_step(config, current)),
            _ => {}
        }
    }
    for document in documents {
        if let Object::Job(job) = &document.object {
            match job_step(job, current) {
                Ok(step) => steps.push(step),
                Err(message) => problems.push(Problem {
                    source: document.source.clone(),
                    field: None,
                    message,
                }),
            }
        }
    }
    if let Some(selector) = prune {
        steps.extend(pruned(documents, current, selector));
    }
    if problems.is_empty() {
        Ok(steps)
    } else {
        Err(problems)
    }
}

/// A service as the files want it: its document, if any, with the links
/// of every link document added.
struct WantedService<'a> {
    source: &'a Source,
    service: Service,
    links: Vec<&'a LinkDocument>,
}

/// The services' steps, each followed by its links': services that
/// others link to first, so that a link's target exists when it is made.
fn services(documents: &[Document], current: &Current, problems: &mut Vec<Problem>) -> Vec<Step> {
    let find = |name: &str| current.services.iter().find(|s| s.object.name == name);
    let mut wanted: Vec<WantedService<'_>> = Vec::new();
    for document in documents {
        if let Object::Service(service) = &document.object {
            wanted.push(WantedService {
                source: &document.source,
                service: service.clone(),
                links: Vec::new(),
            });
        }
    }
    for document in documents {
        let Object::Link(link) = &document.object else {
            continue;
        };
        if let Some(w) = wanted.iter_mut().find(|w| w.service.name == link.service) {
            w.links.push(link);
        } else if let Some(existing) = find(&link.service) {
            // A link to a service the files do not hold: that service
            // stays as it is but for the link.
            wanted.push(WantedService {
                source: &document.source,
                service: existing.object.clone(),
                links: vec![link],
            });
        } else {
            problems.push(Problem {
                source: document.source.clone(),
                field: Some("service".into()),
                message: format!(
                    "service {} is neither on the master nor in the files",
                    link.service
                ),
            });
        }
    }
    for w in &mut wanted {
        for link in &w.links {
            let link = link.link();
            if !w.service.links.contains(&link) {
                w.service.links.push(link);
            }
        }
        if !w.links.is_empty() {
            // The links together must still fit (no local port twice).
            if let Err(errors) = w.service.validate() {
                problems.extend(errors.errors().iter().map(|e| Problem {
                    source: w.source.clone(),
                    field: Some(e.field.clone()),
                    message: e.message.clone(),
                }));
            }
        }
    }
    let mut steps = Vec::new();
    for w in in_link_order(wanted) {
        let existing = find(&w.service.name);
        for link in &w.links {
            steps.push(link_step(link, existing.map(|s| &s.object)));
        }
        let step = service_step(w.service, existing);
        // The service goes before its links' lines: they are made with it.
        let at = steps.len() - w.links.len();
        steps.insert(at, step);
    }
    steps
}

/// `wanted` with every service after the services of the files it links
/// to (in file order otherwise; a cycle keeps file order).
fn in_link_order(mut wanted: Vec<WantedService<'_>>) -> Vec<WantedService<'_>> {
    let mut ordered = Vec::with_capacity(wanted.len());
    while !wanted.is_empty() {
        let waits = |w: &WantedService<'_>, rest: &[WantedService<'_>]| {
            w.service.links.iter().any(|l| {
                rest.iter().any(|other| {
                    other.service.name == l.service && other.service.name != w.service.name
                })
            })
        };
        let next = (0..wanted.len())
            .find(|&i| !waits(&wanted[i], &wanted))
            .unwrap_or(0);
        ordered.push(wanted.remove(next));
    }
    ordered
}

fn service_step(wanted: Service, existing: Option<&Versioned<Service>>) -> Step {
    let name = wanted.name.clone();
    let after = Some(shown_yaml("Service", &wanted.clone().redacted()));
    let Some(existing) = existing else {
        return Step {
            kind: "service",
            name,
            outcome: Outcome::Created,
            write: Some(Write::CreateService(wanted)),
            before: None,
            after,
        };
    };
    let mut wanted = wanted;
    if same_links(&wanted.links, &existing.object.links) {
        wanted.links.clone_from(&existing.object.links);
    }
    let before = Some(shown_yaml("Service", &existing.object));
    let after = Some(shown_yaml("Service", &wanted.clone().redacted()));
    let outcome = compare(&wanted, &existing.object, |s| s.redacted());
    Step {
        kind: "service",
        name,
        outcome,
        write: (outcome != Outcome::Unchanged).then_some(Write::UpdateService(Versioned {
            resource_version: existing.resource_version,
            object: wanted,
        })),
        before,
        after,
    }
}

/// Whether two lists hold the same links, in any order.
fn same_links(a: &[Link], b: &[Link]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// How `wanted` compares with `shown` (the master's, secrets blanked).
fn compare<T: Clone + PartialEq>(wanted: &T, shown: &T, redacted: impl Fn(T) -> T) -> Outcome {
    let wanted_shown = redacted(wanted.clone());
    if wanted_shown != *shown {
        Outcome::Configured
    } else if wanted_shown != *wanted {
        Outcome::SecretsSent
    } else {
        Outcome::Unchanged
    }
}

fn link_step(link: &LinkDocument, existing: Option<&Service>) -> Step {
    let wanted = link.link();
    let links = existing.map(|s| s.links.as_slice()).unwrap_or_default();
    let outcome = if links.contains(&wanted) {
        Outcome::Unchanged
    } else if links
        .iter()
        .any(|l| l.service == wanted.service && l.port == wanted.port)
    {
        Outcome::Configured
    } else {
        Outcome::Created
    };
    Step {
        kind: "link",
        name: link.name(),
        outcome,
        write: None,
        before: None,
        after: None,
    }
}

fn route_step(route: &Route, current: &Current) -> Step {
    let existing = current.routes.iter().find(|r| r.name == route.name);
    let mut wanted = route.clone();
    if let Some(existing) = existing {
        // The master made up a host for a route that names none.
        if wanted.host.is_empty() {
            wanted.host.clone_from(&existing.host);
        }
    }
    let after = Some(shown_yaml("Route", &wanted.clone().redacted()));
    let Some(existing) = existing else {
        return Step {
            kind: "route",
            name: route.name.clone(),
            outcome: Outcome::Created,
            write: Some(Write::CreateRoute(wanted)),
            before: None,
            after,
        };
    };
    let outcome = compare(&wanted, existing, Route::redacted);
    Step {
        kind: "route",
        name: route.name.clone(),
        outcome,
        write: (outcome != Outcome::Unchanged).then_some(Write::ReplaceRoute(wanted)),
        before: Some(shown_yaml("Route", existing)),
        after,
    }
}

fn cron_step(cron: &CronJob, current: &Current) -> Step {
    let existing = current
        .cron_jobs
        .iter()
        .find(|c| c.object.name == cron.name);
    let mut wanted = cron.clone();
    let Some(existing) = existing else {
        return Step {
            kind: "cronjob",
            name: cron.name.clone(),
            outcome: Outcome::Created,
            after: Some(shown_yaml("CronJob", &wanted.clone().redacted())),
            write: Some(Write::CreateCronJob(wanted)),
            before: None,
        };
    };
    // Its status is the master's.
    wanted.status.clone_from(&existing.object.status);
    let outcome = compare(&wanted, &existing.object, CronJob::redacted);
    Step {
        kind: "cronjob",
        name: cron.name.clone(),
        outcome,
        before: Some(shown_yaml("CronJob", &existing.object)),
        after: Some(shown_yaml("CronJob", &wanted.clone().redacted())),
        write: (outcome != Outcome::Unchanged).then_some(Write::UpdateCronJob(Versioned {
            resource_version: existing.resource_version,
            object: wanted,
        })),
    }
}

fn build_config_step(config: &BuildConfig, current: &Current) -> Step {
    let existing = current
        .build_configs
        .iter()
        .find(|c| c.object.name == config.name);
    let mut wanted = config.clone();
    let Some(existing) = existing else {
        return Step {
            kind: "buildconfig",
            name: config.name.clone(),
            outcome: Outcome::Created,
            after: Some(shown_yaml("BuildConfig", &wanted.clone().redacted())),
            write: Some(Write::CreateBuildConfig(wanted)),
            before: None,
        };
    };
    // Where it pushes and how many builds it had are the master's.
    wanted
        .output_image
        .clone_from(&existing.object.output_image);
    wanted.last_version = existing.object.last_version;
    let outcome = compare(&wanted, &existing.object, BuildConfig::redacted);
    Step {
        kind: "buildconfig",
        name: config.name.clone(),
        outcome,
        before: Some(shown_yaml("BuildConfig", &existing.object)),
        after: Some(shown_yaml("BuildConfig", &wanted.clone().redacted())),
        write: (outcome != Outcome::Unchanged).then_some(Write::UpdateBuildConfig(Versioned {
            resource_version: existing.resource_version,
            object: wanted,
        })),
    }
}

/// A job is fixed once made: the same one again is unchanged, another
/// of its name cannot be applied.
fn job_step(job: &Job, current: &Current) -> Result<Step, String> {
    let mut wanted = job.clone().completed();
    let Some(existing) = current.jobs.iter().find(|j| j.object.name == job.name) else {
        return Ok(Step {
            kind: "job",
            name: job.name.clone(),
            outcome: Outcome::Created,
            after: Some(shown_yaml("Job", &wanted.clone().redacted())),
            write: Some(Write::CreateJob(wanted)),
            before: None,
        });
    };
    // What happened to it is the master's.
    wanted.status.clone_from(&existing.object.status);
    wanted.cancelled = existing.object.cancelled;
    wanted.cron.clone_from(&existing.object.cron);
    if wanted.clone().redacted() != existing.object {
        return Err(format!(
            "job {0} exists with a different spec, and a job is never changed: \
             remove it first (berth job rm {0})",
            job.name
        ));
    }
    Ok(Step {
        kind: "job",
        name: job.name.clone(),
        outcome: Outcome::Unchanged,
        write: None,
        before: None,
        after: None,
    })
}

/// The objects with `selector`'s labels that no document holds, routes
/// and jobs before the services they use.
fn pruned(documents: &[Document], current: &Current, selector: &Labels) -> Vec<Step> {
    let held = |kind: &str, name: &str| {
        documents
            .iter()
            .any(|d| d.object.kind() == kind && d.object.name() == name)
    };
    let mut steps = Vec::new();
    let mut prune = |kind: &'static str, name: &str, labels: &Labels, yaml: String| {
        // An object with no labels is never taken for one of the files'.
        if !labels.is_empty() && matches(labels, selector) && !held(kind, name) {
            steps.push(Step {
                kind,
                name: name.to_owned(),
                outcome: Outcome::Pruned,
                write: Some(Write::Delete),
                before: Some(yaml),
                after: None,
            });
        }
    };
    for r in &current.routes {
        prune("route", &r.name, &r.labels, shown_yaml("Route", r));
    }
    for c in &current.cron_jobs {
        let c = &c.object;
        prune("cronjob", &c.name, &c.labels, shown_yaml("CronJob", c));
    }
    for j in &current.jobs {
        let j = &j.object;
        prune("job", &j.name, &j.labels, shown_yaml("Job", j));
    }
    for b in &current.build_configs {
        let b = &b.object;
        prune(
            "buildconfig",
            &b.name,
            &b.labels,
            shown_yaml("BuildConfig", b),
        );
    }
    for s in &current.services {
        let s = &s.object;
        prune("service", &s.name, &s.labels, shown_yaml("Service", s));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::super::document::parse;
    use super::*;

    const FILES: &str = "\
kind: Service
name: web
labels: {app: shop}
replicas: 2
template:
  name: web
  containers:
  - name: web
    image: local/busybox
---
kind: Link
service: web
target: db
port: 5432
---
kind: Route
name: www
labels: {app: shop}
service: web
";

    fn documents(text: &str) -> Vec<Document> {
        parse("shop.yaml", text).expect("valid")
    }

    /// The master after `FILES` were applied, as it shows them.
    fn applied() -> Current {
        let mut current = Current::default();
        for document in documents(FILES) {
            match document.object {
                Object::Service(mut service) => {
                    service.links.push(Link {
                        service: "db".into(),
                        port: 5432,
                        local_port: None,
                        address: None,
                        wait_ready: false,
                    });
                    current.services.push(Versioned {
                        resource_version: 7,
                        object: service,
                    });
                }
                Object::Route(mut route) => {
                    route.host = "web-default.apps.test".into();
                    current.routes.push(route);
                }
                _ => {}
            }
        }
        current
    }

    fn lines(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| format!("{}/{} {}", s.kind, s.name, s.outcome.as_str()))
            .collect()
    }

    #[test]
    fn everything_new_is_created_service_first() {
        let steps = plan(&documents(FILES), &Current::default(), None).expect("plan");
        assert_eq!(
            lines(&steps),
            [
                "service/web created",
                "link/web->db:5432 created",
                "route/www created"
            ]
        );
        match &steps[0].write {
            Some(Write::CreateService(web)) => assert_eq!(web.links[0].service, "db"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_the_master_already_has_is_not_sent() {
        let steps = plan(&documents(FILES), &applied(), None).expect("plan");
        assert_eq!(
            lines(&steps),
            [
                "service/web unchanged",
                "link/web->db:5432 unchanged",
                "route/www unchanged"
            ]
        );
        assert!(steps.iter().all(|s| s.write.is_none()));
    }

    #[test]
    fn a_changed_service_is_replaced_at_the_revision_read() {
        let edited = FILES.replace("replicas: 2", "replicas: 3");
        let steps = plan(&documents(&edited), &applied(), None).expect("plan");
        assert_eq!(steps[0].outcome, Outcome::Configured);
        match &steps[0].write {
            Some(Write::UpdateService(web)) => {
                assert_eq!((web.resource_version, web.object.replicas), (7, 3));
            }
            other => panic!("{other:?}"),
        }
        assert!(steps[1..].iter().all(|s| s.outcome == Outcome::Unchanged));
        let diff = super::super::diff_text(&steps, None);
        assert!(diff.contains("-replicas: 2\n+replicas: 3\n"), "{diff}");
    }

    #[test]
    fn a_build_config_as_described_is_unchanged_and_an_edit_is_sent() {
        const BUILD: &str = "kind: BuildConfig
name: site
strategy: {source: {builder: 'builder:latest'}}
git: {url: 'git://h1/site.git'}
to: 'site:latest'
";
        let steps = plan(&documents(BUILD), &Current::default(), None).expect("plan");
        assert_eq!(lines(&steps), ["buildconfig/site created"]);
        // As the master shows it: where it pushes and its count are the
        // master's, its secret blank.
        let Object::BuildConfig(mut stored) = documents(BUILD).remove(0).object else {
            panic!("a build config")
        };
        stored.output_image = "h1:5000/default/site:latest".into();
        stored.last_version = 4;
        let current = Current {
            build_configs: vec![Versioned {
                resource_version: 9,
                object: stored,
            }],
            ..Current::default()
        };
        let steps = plan(&documents(BUILD), &current, None).expect("plan");
        assert_eq!(lines(&steps), ["buildconfig/site unchanged"]);
        let edited = BUILD.replace("site.git", "site2.git");
        let steps = plan(&documents(&edited), &current, None).expect("plan");
        match &steps[0].write {
            Some(Write::UpdateBuildConfig(config)) => {
                assert_eq!(
                    (config.resource_version, config.object.last_version),
                    (9, 4)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secret_values_are_left_for_the_master_to_compare() {
        let with_secret = FILES.replace(
            "    image: local/busybox\n",
            "    image: local/busybox\n    secretEnv: [{name: PW, value: hunter2}]\n",
        );
        let mut current = applied();
        current.services[0].object.template.containers[0]
            .secret_env
            .push(berth_model::EnvVar::new("PW", ""));
        let steps = plan(&documents(&with_secret), &current, None).expect("plan");
        assert_eq!(steps[0].outcome, Outcome::SecretsSent);
        // Sent blank, as describe shows it: nothing to send.
        let blank = with_secret.replace("value: hunter2", "value: ''");
        let steps = plan(&documents(&blank), &current, None).expect("plan");
        assert_eq!(steps[0].outcome, Outcome::Unchanged);
    }

    #[test]
    fn a_link_to_a_service_nobody_has_is_refused_before_anything_is_sent() {
        let text = "kind: Link\nservice: api\ntarget: db\nport: 1\n";
        let problems = plan(&documents(text), &applied(), None).expect_err("refused");
        assert_eq!(
            problems[0].to_string(),
            "shop.yaml: document 1: service: service api is neither on the master nor in the files"
        );
    }

    #[test]
    fn a_link_alone_changes_only_its_service_links() {
        let text = "kind: Link\nservice: web\ntarget: cache\nport: 6379\n";
        let steps = plan(&documents(text), &applied(), None).expect("plan");
        assert_eq!(
            lines(&steps),
            ["service/web configured", "link/web->cache:6379 created"]
        );
        match &steps[0].write {
            Some(Write::UpdateService(web)) => assert_eq!(web.object.links.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_changed_job_is_refused() {
        let job = "kind: Job\nname: once\ntemplate:\n  name: once\n  containers:\n  - {name: c, image: i}\n";
        let mut current = Current::default();
        let made = match &documents(job)[0].object {
            Object::Job(job) => job.clone().completed(),
            other => panic!("{other:?}"),
        };
        current.jobs.push(Versioned {
            resource_version: 1,
            object: made,
        });
        let steps = plan(&documents(job), &current, None).expect("plan");
        assert_eq!(lines(&steps), ["job/once unchanged"]);
        let changed = job.replace("image: i", "image: j");
        let problems = plan(&documents(&changed), &current, None).expect_err("refused");
        assert!(
            problems[0].message.contains("berth job rm once"),
            "{problems:?}"
        );
    }

    #[test]
    fn pruning_removes_only_selected_objects_the_files_dropped() {
        let mut current = applied();
        let mut other = current.services[0].clone();
        other.object.name = "old".into();
        current.services.push(other.clone());
        other.object.name = "theirs".into();
        other.object.labels.clear();
        current.services.push(other);
        let selector: Labels = [("app".to_owned(), "shop".to_owned())].into();
        let web_only = FILES.split("---").next().unwrap_or_default();
        let steps = plan(&documents(web_only), &current, Some(&selector)).expect("plan");
        assert_eq!(
            lines(&steps),
            [
                "service/web configured",
                "route/www pruned",
                "service/old pruned"
            ]
        );
    }
}
