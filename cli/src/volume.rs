//! `berth volume ...`: the pods' volumes as objects of their own: each
//! named volume with its node, class, size and pod, and each network
//! volume with the pods that mount it. Read from the master's pods, as
//! their nodes report them.

use std::collections::BTreeMap;

use berth_model::api::Versioned;
use berth_model::ClusterPod;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::master_client::MasterClient;
use crate::output::{self, Format};

/// The `berth volume` subcommands.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List the volumes: named ones (`POD/VOLUME`) and network ones (by
    /// their `glusterfs://` or `nfs://` source).
    Ls(LsArgs),
    /// Show one volume: its node, class, size, pods and source.
    Describe(DescribeArgs),
}

/// `berth volume ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `berth volume describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// `POD/VOLUME` for a named volume, the source URL for a network one.
    pub name: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// One volume as `berth volume` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeObject {
    /// `POD/VOLUME`, or the network source (`glusterfs://h1/v1`).
    pub name: String,
    /// The node that keeps a named volume; none for a network one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A named volume's class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Whether its data is on the network (it follows its pods).
    pub network: bool,
    /// Bytes it holds, as its node last measured them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The pods that mount it.
    pub pods: Vec<String>,
}

/// The volumes of `pods`: one per named volume of each pod, and one per
/// network source, with every pod that mounts it. Host directories are
/// the host's, not volumes of berth's, and are left out.
pub fn volume_objects(pods: &[Versioned<ClusterPod>]) -> Vec<VolumeObject> {
    let mut named = Vec::new();
    let mut network: BTreeMap<String, VolumeObject> = BTreeMap::new();
    for pod in pods.iter().map(|p| &p.object) {
        let pod_name = &pod.spec.name;
        for volume in &pod.spec.volumes {
            if let Some((kind, source)) = volume.network() {
                let url = format!("{kind}://{}{}", source.server, source.path);
                let entry = network.entry(url.clone()).or_insert_with(|| VolumeObject {
                    name: url,
                    node: None,
                    class: None,
                    network: true,
                    bytes: None,
                    pods: Vec::new(),
                });
                entry.pods.push(pod_name.clone());
            } else if volume.host_path.is_none() {
                let bytes = pod.status.as_ref().and_then(|s| {
                    s.volumes
                        .iter()
                        .find(|u| u.name == volume.name)
                        .map(|u| u.bytes)
                });
                named.push(VolumeObject {
                    name: format!("{pod_name}/{}", volume.name),
                    node: pod.node.clone(),
                    class: volume.class.clone(),
                    network: false,
                    bytes,
                    pods: vec![pod_name.clone()],
                });
            }
        }
    }
    named.sort_by(|a, b| a.name.cmp(&b.name));
    named.extend(network.into_values());
    named
}

fn size(bytes: Option<u64>) -> String {
    match bytes {
        None => "-".to_owned(),
        Some(b) if b < 1 << 10 => format!("{b}B"),
        Some(b) if b < 1 << 20 => format!("{:.1}K", b as f64 / 1024.0),
        Some(b) if b < 1 << 30 => format!("{:.1}M", b as f64 / f64::from(1 << 20)),
        Some(b) => format!("{:.1}G", b as f64 / f64::from(1 << 30)),
    }
}

/// The volumes as a table.
pub fn table(volumes: &[VolumeObject]) -> String {
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.node.clone().unwrap_or_else(|| "-".to_owned()),
                v.class.clone().unwrap_or_else(|| "-".to_owned()),
                if v.network { "network" } else { "node" }.to_owned(),
                size(v.bytes),
                v.pods.join(","),
            ]
        })
        .collect();
    output::table(&["NAME", "NODE", "CLASS", "DATA ON", "SIZE", "PODS"], &rows)
}

/// Runs a `berth volume` subcommand.
pub async fn run(client: &MasterClient, command: VolumeCommand) -> anyhow::Result<()> {
    let pods = client.list_pods().await?;
    let volumes = volume_objects(&pods);
    match command {
        VolumeCommand::Ls(args) => match output::structured(args.output, &volumes)? {
            Some(text) => output::print(&text),
            None => output::print(&table(&volumes)),
        },
        VolumeCommand::Describe(args) => {
            let Some(volume) = volumes.iter().find(|v| v.name == args.name) else {
                anyhow::bail!(
                    "no volume {:?}: name a named volume as POD/VOLUME or a network one by its source (berth volume ls)",
                    args.name
                );
            };
            match output::structured(args.output, volume)? {
                Some(text) => output::print(&text),
                None => output::print(&format!(
                    "name: {}\ndata on: {}\nnode: {}\nclass: {}\nsize: {}\npods: {}\n",
                    volume.name,
                    if volume.network {
                        "the network (it follows its pods)"
                    } else {
                        "its node"
                    },
                    volume.node.as_deref().unwrap_or("-"),
                    volume.class.as_deref().unwrap_or("-"),
                    size(volume.bytes),
                    volume.pods.join(", "),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: &str) -> Versioned<ClusterPod> {
        Versioned {
            resource_version: 1,
            object: serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}")),
        }
    }

    #[test]
    fn named_volumes_are_per_pod_and_network_ones_per_source() {
        let pods = [
            pod(r#"{"spec":{"name":"db-0","containers":[],"volumes":[
                {"name":"data","class":"fast"},{"name":"logs","hostPath":"/srv/logs"},
                {"name":"shared","glusterfs":{"server":"h1","path":"/v1"}}]},
                "node":"h2","status":{"name":"db-0","phase":"Running","slice":"s",
                "containers":[],"spec":{"name":"db-0","containers":[]},
                "volumes":[{"name":"data","bytes":2048}]}}"#),
            pod(r#"{"spec":{"name":"web-0","containers":[],"volumes":[
                {"name":"files","glusterfs":{"server":"h1","path":"/v1"}}]}}"#),
        ];
        let volumes = volume_objects(&pods);
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["db-0/data", "glusterfs://h1/v1"]);
        assert_eq!(volumes[0].node.as_deref(), Some("h2"));
        assert_eq!(volumes[0].class.as_deref(), Some("fast"));
        assert_eq!(volumes[0].bytes, Some(2048));
        assert!(!volumes[0].network);
        assert!(volumes[1].network);
        assert_eq!(volumes[1].pods, ["db-0", "web-0"]);
        let text = table(&volumes);
        assert!(text.contains("2.0K"), "{text}");
    }
}
