//! `berth events`: what the master did and saw (pods placed, evicted and
//! deleted, nodes lost and back), listed or followed live.

use anyhow::Context as _;
use berth_model::{Event, EventKind};
use clap::Args;

use crate::cluster;
use crate::master_client::MasterClient;
use crate::output::{self, Format};

/// `berth events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Follow: print new events as they happen, until interrupted.
    #[arg(short, long)]
    pub watch: bool,

    /// Only events of this type: NodeReady, NodeNotReady, PodScheduled,
    /// PodUnschedulable, PodEvicted, PodDeleted, ServiceScaled or
    /// LinkRewired (any case).
    #[arg(long = "type", value_name = "KIND")]
    pub kind: Option<EventKind>,

    /// Only events involving this node.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,

    /// Output format. With --watch, json prints one event per line and
    /// yaml one document per event.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// Runs `berth events`.
pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let client = cluster::client()?;
    if args.watch {
        return follow(&client, &args).await;
    }
    let events = client
        .list_events(args.kind, args.node.as_deref())
        .await
        .context("cannot list events")?;
    match output::structured(args.output, &events)? {
        Some(text) => output::print(&text),
        None => output::print(&output::events_table(&events)),
    }
}

/// `berth events -w`: one event at a time, each flushed at once so that a
/// pipe sees it as it happens.
async fn follow(client: &MasterClient, args: &EventsArgs) -> anyhow::Result<()> {
    let mut watch = client
        .watch_events(args.kind, args.node.as_deref())
        .await
        .context("cannot watch events")?;
    if args.output == Format::Table {
        output::print(&output::events_header())?;
    }
    while let Some(event) = watch.next().await.context("watching events")? {
        output::print(&watched(args.output, &event)?)?;
    }
    // A watch only ends when the master goes away (a restart, for one):
    // saying nothing would look like a quiet cluster.
    anyhow::bail!("the berth master ended the event stream")
}

/// One watched event as printed in `format`.
fn watched(format: Format, event: &Event) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table | Format::Wide => output::event_line(event),
        Format::Json => {
            let mut line = serde_json::to_string(event).context("cannot encode the event")?;
            line.push('\n');
            line
        }
        Format::Yaml => format!(
            "---\n{}",
            output::yaml(event).context("cannot encode the event as YAML")?
        ),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn events_args(args: &[&str]) -> EventsArgs {
        let argv = ["berth", "events"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Events(events) => events,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flags_parse_kinds_in_any_case() {
        let args = events_args(&["-w", "--type", "podevicted", "--node", "h3", "-o", "json"]);
        assert!(args.watch);
        assert_eq!(args.kind, Some(EventKind::PodEvicted));
        assert_eq!(args.node.as_deref(), Some("h3"));
        assert_eq!(args.output, Format::Json);
        let plain = events_args(&[]);
        assert!(!plain.watch && plain.kind.is_none() && plain.node.is_none());
        assert_eq!(plain.output, Format::Table);
    }

    #[test]
    fn an_unknown_kind_is_a_usage_error_listing_the_kinds() {
        let error = Cli::try_parse_from(["berth", "events", "--type", "Exploded"]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("PodScheduled"), "{message}");
    }

    #[test]
    fn watched_events_are_one_line_of_json_or_one_yaml_document() {
        let event = Event {
            time_ms: 1,
            kind: EventKind::PodScheduled,
            object: "pod/web-0".to_owned(),
            node: Some("h1".to_owned()),
            reason: "1/1 nodes fit".to_owned(),
        };
        assert_eq!(
            watched(Format::Json, &event).unwrap(),
            "{\"timeMs\":1,\"kind\":\"PodScheduled\",\"object\":\"pod/web-0\",\
             \"node\":\"h1\",\"reason\":\"1/1 nodes fit\"}\n"
        );
        let yaml = watched(Format::Yaml, &event).unwrap();
        assert!(yaml.starts_with("---\ntimeMs: 1\n"), "{yaml}");
        assert!(watched(Format::Table, &event)
            .unwrap()
            .contains("PodScheduled"));
    }
}
