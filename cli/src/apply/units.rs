//! The unit files a changed service's pods would get, as a unified diff
//! per node against what each agent has now: Nomad's `plan`, down to the
//! unit file. Each current pod of the service is rendered twice on its
//! node, with the node's reported unit settings: from its spec as the
//! master holds it, and from the spec the master would build from the
//! files' service ([`Service::replica_spec`]). Pure.

use berth_model::api::{NodeView, Versioned};
use berth_model::deployment::StrategyKind;
use berth_model::project::qualify;
use berth_model::{ClusterPod, Pod, Service, UnitSettings};
use berth_unitfiles::{pod_unit_files, UnitFile};

use super::unified;

/// What the master shows of the cluster, for rendering.
#[derive(Debug, Clone, Copy)]
pub struct Cluster<'a> {
    /// The project's services as the master has them (for what linked
    /// services publish).
    pub services: &'a [Versioned<Service>],
    /// The project's pods (names unqualified, secrets blanked).
    pub pods: &'a [Versioned<ClusterPod>],
    /// The nodes, or why they could not be read (they are the admin's).
    pub nodes: Result<&'a [NodeView], &'a str>,
    /// The project the pods are in: a pod's name on its node carries it.
    pub project: &'a str,
}

/// The unit diffs of `wanted`'s current pods, node by node; empty when
/// no pod's unit files would change and no pod is replaced.
pub fn unit_diffs(wanted: &Service, cluster: &Cluster<'_>) -> String {
    let mut pods: Vec<(&str, &ClusterPod)> = cluster
        .pods
        .iter()
        .map(|p| &p.object)
        .filter(|p| p.service.as_deref() == Some(wanted.name.as_str()))
        .filter_map(|p| Some((p.node.as_deref()?, p)))
        .collect();
    pods.sort_by(|a, b| (a.0, &a.1.spec.name).cmp(&(b.0, &b.1.spec.name)));
    let mut text = String::new();
    for (node, pod) in pods {
        let Some(index) = Service::replica_index(&wanted.name, &pod.spec.name) else {
            continue;
        };
        // Secrets are blank on both sides: the master shows them so, and
        // they never reach a unit file anyway.
        let next = wanted
            .replica_spec(&wanted.template, &wanted.env, index, |linked| {
                cluster
                    .services
                    .iter()
                    .find(|s| s.object.name == linked)
                    .map(|s| s.object.publish.as_slice())
                    .unwrap_or_default()
            })
            .redacted();
        if next == pod.spec {
            continue;
        }
        let about = format!("node {node}, pod {}", pod.spec.name);
        let settings = match cluster.nodes {
            Err(why) => {
                text.push_str(&format!("# {about}: unit files not shown: {why}\n"));
                continue;
            }
            Ok(nodes) => match nodes.iter().find(|n| n.node.name == node) {
                None => {
                    text.push_str(&format!("# {about}: unit files not shown: no such node\n"));
                    continue;
                }
                Some(view) => match &view.node.unit_settings {
                    None => {
                        text.push_str(&format!(
                            "# {about}: unit files not shown: the node's agent has not reported \
                             its unit settings (an agent older than this command)\n"
                        ));
                        continue;
                    }
                    Some(settings) => settings,
                },
            },
        };
        text.push_str(&pod_diff(
            node,
            &about,
            &pod.spec,
            &next,
            settings,
            cluster.project,
            wanted,
        ));
    }
    text
}

/// The diff of one pod's unit files on `node`, from `now` to `next`.
fn pod_diff(
    node: &str,
    about: &str,
    now: &Pod,
    next: &Pod,
    settings: &UnitSettings,
    project: &str,
    wanted: &Service,
) -> String {
    let on_node = |spec: &Pod| {
        let mut spec = spec.clone();
        spec.name = qualify(project, &spec.name);
        pod_unit_files(&spec, settings)
    };
    let (before, after) = match (on_node(now), on_node(next)) {
        (Ok(before), Ok(after)) => (before, after),
        (Err(e), _) | (_, Err(e)) => return format!("# {about}: cannot render its units: {e}\n"),
    };
    let mut text = String::new();
    if wanted.strategy.kind_for(wanted.stateful) == StrategyKind::Rolling {
        // A rolling update starts the new pod beside the old one, at a
        // free replica index, on a node the scheduler picks.
        text.push_str(&format!(
            "# {about}: replaced by a new pod (a free replica name, on a node the scheduler \
             picks); its units are shown as they would be written here\n"
        ));
    }
    let mut names: Vec<&str> = before.iter().map(|u| u.name.as_str()).collect();
    for unit in &after {
        if !names.contains(&unit.name.as_str()) {
            names.push(&unit.name);
        }
    }
    let mut changed = false;
    for name in names {
        let find = |units: &[UnitFile]| {
            units
                .iter()
                .find(|u| u.name == name)
                .map(|u| u.contents.clone())
        };
        let label = |side: &str, present: bool| {
            if present {
                format!("node {node}: {name} ({side})")
            } else {
                "/dev/null".to_owned()
            }
        };
        let (old, new) = (find(&before), find(&after));
        let diff = unified::unified(
            old.as_deref().unwrap_or_default(),
            new.as_deref().unwrap_or_default(),
            &label("now", old.is_some()),
            &label("after apply", new.is_some()),
        );
        changed |= !diff.is_empty();
        text.push_str(&diff);
    }
    if !changed {
        text.push_str(&format!(
            "# {about}: unit files unchanged; the pod is replaced for what its containers \
             run (environment, command, volumes: Docker's, not the unit's)\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use berth_model::{Capacity, EnvVar, Node, NodeCondition};

    use super::*;

    fn service(image: &str) -> Service {
        serde_json::from_value(serde_json::json!({
            "name": "web", "replicas": 1,
            "template": {"name": "web", "containers": [{"name": "web", "image": image,
                "secretEnv": [{"name": "PW", "value": "hunter2"}]}]},
            "env": [{"name": "MODE", "value": "a"}],
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn pod_of(service: &Service, node: &str) -> Versioned<ClusterPod> {
        let spec = service.replica_spec(&service.template, &service.env, 0, |_| &[]);
        Versioned {
            resource_version: 1,
            object: ClusterPod {
                service: Some("web".into()),
                node: Some(node.into()),
                ..ClusterPod::unplaced(spec)
            }
            .redacted(),
        }
    }

    fn node(name: &str, settings: Option<UnitSettings>) -> NodeView {
        NodeView {
            node: Node {
                name: name.into(),
                address: "10.0.0.1".into(),
                labels: Default::default(),
                capacity: Capacity::default(),
                unschedulable: false,
                unit_settings: settings,
                volume_classes: Default::default(),
            },
            condition: NodeCondition::Ready,
            last_heartbeat_ms_ago: None,
            engine_error: None,
            pods: 1,
        }
    }

    fn settings() -> Option<UnitSettings> {
        Some(UnitSettings {
            shim_path: "/usr/lib/berth/berth-shim".into(),
            shim_environment: Vec::new(),
            ..Default::default()
        })
    }

    #[test]
    fn a_new_image_shows_in_the_unit_of_each_pod_on_its_node() {
        let current = service("local/busybox");
        let pods = [pod_of(&current, "h2")];
        let nodes = [node("h2", settings())];
        let cluster = Cluster {
            services: &[],
            pods: &pods,
            nodes: Ok(&nodes),
            project: "shop",
        };
        let text = unit_diffs(&service("local/busybox2"), &cluster);
        assert!(
            text.contains("--- node h2: berth-shop.web\\x2d0-web.service (now)\n"),
            "{text}"
        );
        assert!(text.contains(
            "-Description=berth pod shop.web-0, container web (local/busybox)\n\
             +Description=berth pod shop.web-0, container web (local/busybox2)\n"
        ));
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(unit_diffs(&current, &cluster), "", "nothing changes");
    }

    #[test]
    fn what_is_not_in_the_units_or_not_known_is_said_per_node() {
        let current = service("i");
        let pods = [pod_of(&current, "h1")];
        let mut changed = current.clone();
        changed.env = vec![EnvVar::new("MODE", "b")];
        let nodes = [node("h1", settings())];
        let cluster = Cluster {
            services: &[],
            pods: &pods,
            nodes: Ok(&nodes),
            project: "default",
        };
        let text = unit_diffs(&changed, &cluster);
        assert!(
            text.contains("node h1, pod web-0: unit files unchanged"),
            "{text}"
        );
        let old_agent = [node("h1", None)];
        let text = unit_diffs(
            &service("j"),
            &Cluster {
                nodes: Ok(&old_agent),
                ..cluster
            },
        );
        assert!(
            text.contains(
                "node h1, pod web-0: unit files not shown: the node's agent has not reported"
            ),
            "{text}"
        );
    }
}
