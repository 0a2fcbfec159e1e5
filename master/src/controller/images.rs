//! Images: tags that alias another stream's tag follow it, and services
//! whose image-change triggers follow a tag roll out when it moves: the
//! container's image becomes the tag's, as a new revision caused by the
//! image change. Pure.

use std::collections::BTreeMap;

use berth_model::api::Versioned;
use berth_model::deployment::{Cause, Trigger};
use berth_model::image_stream::{parse_stream_tag, tagged_event, TagCause, TagEvent};
use berth_model::project::{qualify, split_qualified, unqualified};
use berth_model::{Deployment, Event, ImageStream};

use super::change::Change;
use super::Cluster;

/// Plans the tags that follow other tags, and the rollouts of services
/// that follow tags.
pub fn plan(cluster: &Cluster) -> Vec<Change> {
    let streams: BTreeMap<&str, &Versioned<ImageStream>> = cluster
        .image_streams
        .iter()
        .map(|s| (s.object.name.as_str(), s))
        .collect();
    let mut changes = follow_aliases(cluster, &streams);
    changes.extend(follow_triggers(cluster, &streams));
    changes
}

/// Where `STREAM:TAG`, as an object of `project` names it, points now.
fn current<'a>(
    streams: &BTreeMap<&str, &'a Versioned<ImageStream>>,
    project: &str,
    from: &str,
) -> Option<&'a TagEvent> {
    let (stream, tag) = parse_stream_tag(from).ok()?;
    streams
        .get(qualify(project, stream).as_str())?
        .object
        .current(tag)
}

fn follow_aliases(
    cluster: &Cluster,
    streams: &BTreeMap<&str, &Versioned<ImageStream>>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for stream in &cluster.image_streams {
        let project = split_qualified(&stream.object.name).0;
        let mut updated = stream.object.clone();
        let mut moved = Vec::new();
        for alias in &stream.object.aliases {
            let Some(source) = current(streams, project, &alias.from) else {
                continue;
            };
            let event = TagEvent {
                created_ms: cluster.now_ms,
                cause: TagCause::Tag,
                ..source.clone()
            };
            if updated.point(&alias.tag, event.clone()) {
                moved.push(tagged_event(&stream.object.name, &alias.tag, &event));
            }
        }
        if let Some(first) = moved.first() {
            let reason = moved
                .iter()
                .map(|e| e.reason.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            changes.push(Change::WriteImageStream {
                event: Some(Event {
                    reason: reason.clone(),
                    ..first.clone()
                }),
                stream: updated,
                expected_revision: stream.resource_version,
                reason,
            });
        }
    }
    changes
}

fn follow_triggers(
    cluster: &Cluster,
    streams: &BTreeMap<&str, &Versioned<ImageStream>>,
) -> Vec<Change> {
    let mut latest: BTreeMap<&str, u64> = BTreeMap::new();
    for d in &cluster.deployments {
        let revision = latest.entry(d.object.service.as_str()).or_default();
        *revision = (*revision).max(d.object.revision);
    }
    let mut changes = Vec::new();
    for service in &cluster.services {
        let s = &service.object;
        let project = split_qualified(&s.name).0;
        let mut updated = s.clone();
        let mut causes = Vec::new();
        for trigger in &s.triggers {
            let Trigger::ImageChange(image) = trigger else {
                continue;
            };
            if !image.automatic {
                continue;
            }
            let Some(now) = current(streams, project, &image.from) else {
                continue;
            };
            let Some(container) = updated
                .template
                .containers
                .iter_mut()
                .find(|c| c.name == image.container)
            else {
                continue;
            };
            if container.image != now.image {
                container.image = now.image.clone();
                let (stream, tag) = parse_stream_tag(&image.from).unwrap_or_default();
                causes.push(now.describe(stream, tag));
            }
        }
        if causes.is_empty() {
            continue;
        }
        let revision = latest.get(s.name.as_str()).copied().unwrap_or(0) + 1;
        let cause = Cause::ImageChange {
            image: causes.join(", "),
        };
        let deployment: Deployment = Deployment::begin(
            &updated,
            revision,
            cause,
            "berth (image trigger)",
            cluster.now_ms,
        );
        let reason = format!(
            "service {} follows {}: revision {revision}",
            unqualified(&s.name),
            causes.join(", ")
        );
        changes.push(Change::FollowImage {
            service: updated,
            service_revision: service.resource_version,
            deployment,
            reason,
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use berth_model::api::Versioned;
    use berth_model::deployment::{Cause, ImageTrigger, Trigger};
    use berth_model::image_stream::{ImageStreamStatus, TagAlias, TagCause, TagEvent};
    use berth_model::ImageStream;

    use super::super::testing::*;
    use super::super::{plan, Cluster};

    fn stream(name: &str, tags: &[(&str, &str)], aliases: Vec<TagAlias>) -> Versioned<ImageStream> {
        let mut stream = ImageStream {
            name: name.to_owned(),
            labels: Default::default(),
            aliases,
            scheduled_imports: Vec::new(),
            docker_image_repository: String::new(),
            webhook_secret: "s".to_owned(),
            status: ImageStreamStatus::default(),
        };
        for (tag, image) in tags {
            stream.point(
                tag,
                TagEvent {
                    image: (*image).to_owned(),
                    digest: image.split_once('@').map(|(_, d)| d.to_owned()),
                    created_ms: 1,
                    cause: TagCause::Push,
                    build: None,
                },
            );
        }
        Versioned {
            resource_version: 1,
            object: stream,
        }
    }

    fn following(from: &str) -> Cluster {
        let mut web = service("web", 2, false);
        web.object.triggers.push(Trigger::ImageChange(ImageTrigger {
            from: from.to_owned(),
            container: "app".to_owned(),
            automatic: true,
        }));
        cluster(vec![web], ready(&["h1", "h2"]))
    }

    #[test]
    fn a_moved_tag_rolls_its_followers_out_once() {
        let mut cluster = following("web:v1");
        cluster.image_streams = vec![stream("web", &[("v1", "reg/web@sha256:aa")], vec![])];
        step(&mut cluster);
        let service = &cluster.services[0].object;
        assert_eq!(service.template.containers[0].image, "reg/web@sha256:aa");
        let latest = &cluster.deployments.last().unwrap().object;
        assert_eq!(latest.revision, 2);
        assert_eq!(
            latest.cause,
            Cause::ImageChange {
                image: "web:v1@sha256:aa".to_owned()
            }
        );
        step(&mut cluster);
        assert_eq!(
            cluster.deployments.len(),
            2,
            "the same tag is no new revision"
        );
    }

    #[test]
    fn a_trigger_turned_off_and_an_alias_behave() {
        let mut cluster = following("web:prod");
        let alias = TagAlias {
            tag: "prod".to_owned(),
            from: "web:v2".to_owned(),
        };
        cluster.image_streams = vec![stream("web", &[("v2", "reg/web@sha256:bb")], vec![alias])];
        let changes = plan(&cluster);
        assert!(
            changes
                .iter()
                .any(|c| c.reason() == "web:prod now points at reg/web@sha256:bb (tag)"),
            "{changes:?}"
        );
        if let Trigger::ImageChange(t) = &mut first_service(&mut cluster).triggers[1] {
            t.automatic = false;
        }
        cluster.image_streams = vec![stream("web", &[("prod", "reg/web@sha256:bb")], vec![])];
        assert!(
            !plan(&cluster)
                .iter()
                .any(|c| c.reason().contains("follows")),
            "a manual trigger does not roll out"
        );
    }
}
