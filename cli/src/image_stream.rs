//! `berth image-stream ...` (`berth is`) and `berth tag`: image streams,
//! their tags and each tag's history, and the webhook through which a
//! third party registers an image.

use std::fmt::Write as _;

use anyhow::bail;
use berth_model::image_stream::parse_stream_tag;
use berth_model::ImageStream;
use clap::{Args, Subcommand};

use crate::master_client::MasterClient;
use crate::output::{self, Format};

/// `berth image-stream`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  berth is create web
  berth tag registry.example/web:1.2 web:v1        # v1 points at that image
  berth tag web:v1 web:prod --alias               # prod follows v1 from now on
  berth set triggers api --from-image web:prod    # api rolls out when prod moves
  berth is describe web                           # every tag, where it points, its history
  berth is webhook web                            # the URL a third party posts images to
  berth -p shop is grant-view web --to staging    # staging's services may run shop/web's images")]
pub struct ImageStreamArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ImageStreamCommand,
}

/// The `berth image-stream` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageStreamCommand {
    /// Create an image stream (also made by the first `berth tag` to it).
    Create {
        /// Its name, a DNS label.
        name: String,
    },
    /// List the image streams and their tags.
    Ls {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Show a stream: each tag, where it points now, and its history.
    Describe {
        /// The stream.
        name: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Remove a stream (services keep the images they run).
    Rm {
        /// The stream.
        name: String,
    },
    /// Let another project's services run the stream's images, and its
    /// members pull them (the stream's project's admin only).
    GrantView {
        /// The stream.
        name: String,
        /// The project to share it with.
        #[arg(long, value_name = "PROJECT")]
        to: String,
    },
    /// Take a share back: the project's running pods keep their images,
    /// and new services naming them are refused.
    RevokeView {
        /// The stream.
        name: String,
        /// The project it was shared with.
        #[arg(long, value_name = "PROJECT")]
        to: String,
    },
    /// The path of the stream's webhook, secret included: POST
    /// `{"tag": "v1", "image": "REF@sha256:..."}` (or Docker Hub's payload)
    /// to the master at that path to point a tag.
    Webhook {
        /// The stream.
        name: String,
    },
}

/// `berth tag`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  berth tag registry.example/web@sha256:4f1e... web:v1
  berth tag local/web:v2 web:v1
  berth tag web:v1 web:prod --alias")]
pub struct TagArgs {
    /// An image reference, or a tag of a stream of this project as
    /// STREAM:TAG.
    pub source: String,
    /// The tag to point, STREAM:TAG; the stream is made if it does not
    /// exist.
    pub target: String,
    /// Keep following SOURCE (a stream's tag) whenever it moves.
    #[arg(long)]
    pub alias: bool,
}

/// `berth import-image`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  berth import-image web:v1 --from registry.example/web:1.2
  berth import-image base:latest --from debian:12 --scheduled     re-checked every 15 minutes")]
pub struct ImportImageArgs {
    /// The tag to point, STREAM:TAG; the stream is made if it does not
    /// exist.
    pub target: String,
    /// The image reference whose registry is asked for its digest (only
    /// metadata is imported: nodes pull the image when a pod needs it).
    #[arg(long, value_name = "REF")]
    pub from: String,
    /// Ask again on the master's schedule ([registry] import-interval-secs,
    /// 15 minutes by default), moving the tag when REF moves.
    #[arg(long)]
    pub scheduled: bool,
}

/// Runs `berth import-image`.
pub async fn import(client: &MasterClient, args: &ImportImageArgs) -> anyhow::Result<()> {
    let (stream, tag) = match parse_stream_tag(&args.target) {
        Ok(parsed) => parsed,
        Err(e) => bail!("the target {e}"),
    };
    let written = client
        .import_image(stream, tag, &args.from, args.scheduled)
        .await?;
    let now = written
        .object
        .current(tag)
        .map_or_else(|| "nothing".to_owned(), |e| e.image.clone());
    let schedule = if args.scheduled {
        ", and is checked again on the master's schedule"
    } else {
        ""
    };
    println!("{stream}:{tag} now points at {now}{schedule}");
    Ok(())
}

/// Runs a `berth image-stream` subcommand.
pub async fn run(client: &MasterClient, command: ImageStreamCommand) -> anyhow::Result<()> {
    match command {
        ImageStreamCommand::Create { name } => {
            let stream = ImageStream {
                name: name.clone(),
                labels: Default::default(),
                aliases: Vec::new(),
                scheduled_imports: Vec::new(),
                docker_image_repository: String::new(),
                webhook_secret: String::new(),
                status: Default::default(),
            };
            if let Err(errors) = stream.validate() {
                return Err(InvalidImageStream(errors).into());
            }
            client.create_image_stream(&stream).await?;
            println!("image stream {name}: created (its webhook: berth is webhook {name})");
            Ok(())
        }
        ImageStreamCommand::Ls { output: format } => {
            let streams = client.list_image_streams().await?;
            if let Some(text) = output::structured(format, &streams)? {
                return output::print(&text);
            }
            let rows: Vec<Vec<String>> = streams
                .iter()
                .map(|s| {
                    let tags: Vec<&str> = s.object.status.tags.keys().map(String::as_str).collect();
                    vec![s.object.name.clone(), tags.join(",")]
                })
                .collect();
            output::print(&output::table(&["NAME", "TAGS"], &rows))
        }
        ImageStreamCommand::Describe {
            name,
            output: format,
        } => {
            let stream = client.get_image_stream(&name).await?;
            match output::structured(format, &stream)? {
                Some(text) => output::print(&text),
                None => output::print(&details(&stream.object)),
            }
        }
        ImageStreamCommand::Rm { name } => {
            client.delete_image_stream(&name).await?;
            println!("image stream {name}: removed");
            Ok(())
        }
        ImageStreamCommand::GrantView { name, to } => {
            let shared = client.share_image_stream(&name, &to, true).await?;
            println!(
                "image stream {name}: project {to} may run its images ({})",
                shared.object.docker_image_repository
            );
            Ok(())
        }
        ImageStreamCommand::RevokeView { name, to } => {
            client.share_image_stream(&name, &to, false).await?;
            println!(
                "image stream {name}: no longer shared with project {to} (its running pods keep their images)"
            );
            Ok(())
        }
        ImageStreamCommand::Webhook { name } => {
            let path = client.image_stream_webhook(&name).await?;
            println!("{}{}", client.base(), path);
            Ok(())
        }
    }
}

/// Runs `berth tag`.
pub async fn tag(client: &MasterClient, args: &TagArgs) -> anyhow::Result<()> {
    let (stream, tag) = match parse_stream_tag(&args.target) {
        Ok(parsed) => parsed,
        Err(e) => bail!("the target {e}"),
    };
    let written = client
        .tag_image(stream, tag, &args.source, args.alias)
        .await?;
    let now = written
        .object
        .current(tag)
        .map_or_else(|| "nothing".to_owned(), |e| e.image.clone());
    let follows = if args.alias {
        format!(", and follows {}", args.source)
    } else {
        String::new()
    };
    println!("{stream}:{tag} now points at {now}{follows}");
    Ok(())
}

/// A stream for people: each tag, where it points, and its history.
fn details(stream: &ImageStream) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "image stream: {}", stream.name);
    if !stream.docker_image_repository.is_empty() {
        let _ = writeln!(
            out,
            "push to: {}:TAG (berth registry login first)",
            stream.docker_image_repository
        );
    }
    if !stream.status.shared_with.is_empty() {
        let _ = writeln!(out, "shared with: {}", stream.status.shared_with.join(", "));
    }
    for alias in &stream.aliases {
        let _ = writeln!(out, "alias: {} follows {}", alias.tag, alias.from);
    }
    if stream.status.tags.is_empty() {
        out.push_str("tags: none yet (berth tag IMAGE STREAM:TAG)\n");
    }
    for (tag, history) in &stream.status.tags {
        let Some(now) = history.first() else {
            continue;
        };
        let digest = now.digest.as_deref().unwrap_or("no digest");
        let _ = writeln!(out, "tag {tag}: {} ({digest})", now.image);
        for event in history {
            let _ = writeln!(
                out,
                "  {}  {:<8} {}",
                output::utc_time_of_ms(event.created_ms),
                match &event.build {
                    Some(build) => format!("build {build}"),
                    None => event.cause.to_string(),
                },
                event.image
            );
        }
    }
    out
}

/// The stream failed validation before it was sent to the master.
#[derive(Debug, thiserror::Error)]
#[error("invalid image stream")]
pub struct InvalidImageStream(pub berth_model::ValidationErrors);
