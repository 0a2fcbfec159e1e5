//! `berth volume ...`: the pods' volumes as objects of their own: each
//! named volume with its node, class, size and pod, and each network
//! volume with the pods that mount it, read from the master's pods as
//! their nodes report them; and the network volumes an admin defines by
//! name (`berth volume create`), which pods mount as `volume://NAME`.

use std::collections::BTreeMap;

use berth_model::api::Versioned;
use berth_model::pod::{NetworkKind, NetworkSource};
use berth_model::{ClusterPod, NetworkVolume};
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::master_client::MasterClient;
use crate::output::{self, Format};

/// The `berth volume` subcommands.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List the volumes: named ones (`POD/VOLUME`), the network volumes
    /// an admin defined (by name), and other network ones (by their
    /// `glusterfs://` or `nfs://` source).
    Ls(LsArgs),
    /// Show one volume: its node, class, size, pods and source.
    Describe(DescribeArgs),
    /// Define a network volume once, by name (the admin only); pods mount
    /// it with `-v volume://NAME:/PATH`, and its server must be on the
    /// master's and the nodes' network-volume-servers.
    #[command(after_help = "Examples:\n  \
        berth volume create shared --glusterfs h1:/v1\n  \
        berth volume create exports --nfs nas.example:/exports/a\n  \
        berth run db --stateful -v volume://shared:/var/lib/db local/db")]
    Create(CreateArgs),
    /// Remove a network volume's definition (the admin only); refused
    /// while a service, job or cron job mounts it. The data on its server
    /// stays.
    #[command(after_help = "Example:\n  berth volume rm shared")]
    Rm(RmArgs),
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
    /// `POD/VOLUME` for a named volume, the name of a defined network
    /// volume, or the source URL of another network one.
    pub name: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `berth volume create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Its name (a DNS label).
    pub name: String,
    /// A GlusterFS volume: SERVER:/VOLUME[/SUBDIR].
    #[arg(
        long,
        value_name = "SERVER:/VOLUME",
        value_parser = parse_source,
        conflicts_with = "nfs",
        required_unless_present = "nfs"
    )]
    pub glusterfs: Option<NetworkSource>,
    /// An NFS export: SERVER:/EXPORT.
    #[arg(long, value_name = "SERVER:/EXPORT", value_parser = parse_source)]
    pub nfs: Option<NetworkSource>,
}

/// `berth volume rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The network volume's name.
    pub name: String,
}

/// `SERVER:/PATH`, as `mount` takes it.
fn parse_source(text: &str) -> Result<NetworkSource, String> {
    match text.split_once(':') {
        Some((server, path)) if !server.is_empty() && path.starts_with('/') => {
            let path = path.trim_end_matches('/');
            Ok(NetworkSource {
                server: server.to_owned(),
                path: if path.is_empty() { "/" } else { path }.to_owned(),
            })
        }
        _ => Err(format!("{text:?}: expected SERVER:/PATH")),
    }
}

/// One volume as `berth volume` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeObject {
    /// `POD/VOLUME`, a defined network volume's name, or another network
    /// volume's source (`glusterfs://h1/v1`).
    pub name: String,
    /// The node that keeps a named volume; none for a network one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A named volume's class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Whether its data is on the network (it follows its pods).
    pub network: bool,
    /// A network volume's source (`glusterfs://h1/v1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Bytes it holds, as its node last measured them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The pods that mount it.
    pub pods: Vec<String>,
}

fn url(kind: NetworkKind, source: &NetworkSource) -> String {
    format!("{kind}://{}{}", source.server, source.path)
}

fn network_object(name: String, source: Option<String>) -> VolumeObject {
    VolumeObject {
        name,
        node: None,
        class: None,
        network: true,
        source,
        bytes: None,
        pods: Vec::new(),
    }
}

/// The volumes of `pods` and the `defined` network volumes: one per named
/// volume of each pod, one per defined network volume and one per other
/// network source, each with every pod that mounts it. Host directories
/// are the host's, not volumes of berth's, and are left out.
pub fn volume_objects(
    pods: &[Versioned<ClusterPod>],
    defined: &[Versioned<NetworkVolume>],
) -> Vec<VolumeObject> {
    let mut named = Vec::new();
    let mut network: BTreeMap<String, VolumeObject> = defined
        .iter()
        .map(|v| {
            let name = v.object.name.clone();
            (name.clone(), network_object(name, v.object.url()))
        })
        .collect();
    for pod in pods.iter().map(|p| &p.object) {
        let pod_name = &pod.spec.name;
        for volume in &pod.spec.volumes {
            if volume.is_on_network() {
                let source = volume.network().map(|(kind, source)| url(kind, source));
                let name = match (&volume.network_volume, &source) {
                    (Some(defined), _) => defined.clone(),
                    (None, Some(url)) => url.clone(),
                    (None, None) => continue,
                };
                let entry = network
                    .entry(name.clone())
                    .or_insert_with(|| network_object(name, source));
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
                    source: None,
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
                v.source.clone().unwrap_or_else(|| "-".to_owned()),
                size(v.bytes),
                v.pods.join(","),
            ]
        })
        .collect();
    output::table(
        &["NAME", "NODE", "CLASS", "DATA ON", "SOURCE", "SIZE", "PODS"],
        &rows,
    )
}

/// Runs a `berth volume` subcommand.
pub async fn run(client: &MasterClient, command: VolumeCommand) -> anyhow::Result<()> {
    match command {
        VolumeCommand::Create(args) => create(client, args).await,
        VolumeCommand::Rm(args) => {
            client.delete_network_volume(&args.name).await?;
            output::print(&format!("network volume {} removed\n", args.name))
        }
        VolumeCommand::Ls(args) => {
            let volumes = volumes(client).await?;
            match output::structured(args.output, &volumes)? {
                Some(text) => output::print(&text),
                None => output::print(&table(&volumes)),
            }
        }
        VolumeCommand::Describe(args) => describe(client, args).await,
    }
}

async fn volumes(client: &MasterClient) -> anyhow::Result<Vec<VolumeObject>> {
    let pods = client.list_pods().await?;
    let defined = client.list_network_volumes().await?;
    Ok(volume_objects(&pods, &defined))
}

async fn create(client: &MasterClient, args: CreateArgs) -> anyhow::Result<()> {
    let volume = NetworkVolume {
        name: args.name,
        glusterfs: args.glusterfs,
        nfs: args.nfs,
    };
    let created = client.create_network_volume(&volume).await?.object;
    output::print(&format!(
        "network volume {} is {}; mount it with -v volume://{}:/PATH\n",
        created.name,
        created.url().unwrap_or_default(),
        created.name
    ))
}

async fn describe(client: &MasterClient, args: DescribeArgs) -> anyhow::Result<()> {
    let volumes = volumes(client).await?;
    let Some(volume) = volumes.iter().find(|v| v.name == args.name) else {
        anyhow::bail!(
            "no volume {:?}: name a named volume as POD/VOLUME, a defined network volume by its name, or another network one by its source (berth volume ls)",
            args.name
        );
    };
    match output::structured(args.output, volume)? {
        Some(text) => output::print(&text),
        None => output::print(&format!(
            "name: {}\nsource: {}\ndata on: {}\nnode: {}\nclass: {}\nsize: {}\npods: {}\n",
            volume.name,
            volume.source.as_deref().unwrap_or("-"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: &str) -> Versioned<ClusterPod> {
        Versioned {
            resource_version: 1,
            object: serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}")),
        }
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: VolumeCommand,
    }

    fn create(args: &[&str]) -> Result<CreateArgs, clap::Error> {
        use clap::Parser as _;
        let argv = ["volume", "create"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            VolumeCommand::Create(args) => Ok(args),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_takes_a_name_and_exactly_one_source() {
        let args = create(&["shared", "--glusterfs", "h1:/v1/"]).expect("valid");
        assert_eq!(args.name, "shared");
        assert_eq!(
            args.glusterfs,
            Some(NetworkSource {
                server: "h1".to_owned(),
                path: "/v1".to_owned()
            })
        );
        assert!(create(&["shared", "--nfs", "nas:/exports/a"]).is_ok_and(|a| a.nfs.is_some()));
        for wrong in [
            &["shared"][..],
            &["shared", "--glusterfs", "h1:/v1", "--nfs", "nas:/x"],
            &["shared", "--glusterfs", "h1/v1"],
            &["shared", "--glusterfs", ":/v1"],
        ] {
            assert!(create(wrong).is_err(), "{wrong:?}");
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
            pod(r#"{"spec":{"name":"app-0","containers":[],"volumes":[
                {"name":"data","networkVolume":"unused","nfs":{"server":"nas","path":"/x"}}]}}"#),
        ];
        let defined = [Versioned {
            resource_version: 1,
            object: NetworkVolume {
                name: "unused".to_owned(),
                glusterfs: None,
                nfs: Some(NetworkSource {
                    server: "nas".to_owned(),
                    path: "/x".to_owned(),
                }),
            },
        }];
        let volumes = volume_objects(&pods, &defined);
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["db-0/data", "glusterfs://h1/v1", "unused"]);
        assert_eq!(volumes[2].source.as_deref(), Some("nfs://nas/x"));
        assert_eq!(volumes[2].pods, ["app-0"]);
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
