//! Image streams: a set of images under one name, with tags. Each tag
//! points at an image reference and keeps the history of where it pointed,
//! with when and why; services follow a tag through an image-change
//! trigger, so that moving the tag rolls them out.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::name::validate_dns_label;
use crate::validation::ValidationErrors;

/// Tag history entries kept per tag.
pub const TAG_HISTORY: usize = 20;

/// Longest tag name (Docker's limit).
pub const MAX_TAG_LEN: usize = 128;

/// An image stream: its tags and, written by the master, where each points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageStream {
    /// Its name, a DNS label.
    pub name: String,
    /// Labels, for `berth apply --prune`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Tags that track another stream's tag (`berth tag --alias`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<TagAlias>,
    /// Tags re-imported from another registry on the master's schedule
    /// (`berth import-image --scheduled`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduled_imports: Vec<ScheduledImport>,
    /// Where its images are pushed (`REGISTRY/PROJECT/STREAM`), as
    /// OpenShift names it; the master's to set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub docker_image_repository: String,
    /// The secret of its webhook, made by the master when the stream is
    /// created; shown blank on reads.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub webhook_secret: String,
    /// Where each tag points, as the master records it; ignored when sent.
    #[serde(default)]
    pub status: ImageStreamStatus,
}

/// A tag that follows another tag of the same project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagAlias {
    /// The tag of this stream.
    pub tag: String,
    /// The tag it follows, `STREAM:TAG`.
    pub from: String,
}

/// A tag that follows an image reference of another registry: the master
/// asks that registry where it points, on a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduledImport {
    /// The tag of this stream.
    pub tag: String,
    /// The image reference (`registry.example/web:1.2`).
    pub from: String,
}

/// Where a stream's tags point, each with its history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamStatus {
    /// Per tag, newest first.
    #[serde(default)]
    pub tags: BTreeMap<String, Vec<TagEvent>>,
    /// Other projects whose services may run its images, as its project's
    /// admin granted (`berth image-stream grant-view`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<String>,
}

/// Why a tag moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TagCause {
    /// An image was pushed to it.
    Push,
    /// `berth import-image`.
    Import,
    /// `berth tag`, or the tag it aliases moved.
    Tag,
    /// The stream's webhook.
    Webhook,
    /// A build pushed it (the event names the build).
    Build,
}

impl fmt::Display for TagCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TagCause::Push => "push",
            TagCause::Import => "import",
            TagCause::Tag => "tag",
            TagCause::Webhook => "webhook",
            TagCause::Build => "build",
        })
    }
}

/// One place a tag pointed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagEvent {
    /// The image reference pods run (`registry/repo@sha256:...`, or a
    /// reference the nodes have).
    pub image: String,
    /// The image's digest, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// When (Unix milliseconds).
    pub created_ms: u64,
    /// Why.
    pub cause: TagCause,
    /// The build that pushed it, when one did (qualified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

impl TagEvent {
    /// The tag as a trigger's cause names it: `web:v1@sha256:...`, or the
    /// reference when there is no digest.
    pub fn describe(&self, stream: &str, tag: &str) -> String {
        match &self.digest {
            Some(digest) => format!("{stream}:{tag}@{digest}"),
            None => format!("{stream}:{tag} ({})", self.image),
        }
    }
}

impl ImageStream {
    /// Where `tag` points now.
    pub fn current(&self, tag: &str) -> Option<&TagEvent> {
        self.status.tags.get(tag)?.first()
    }

    /// Points `tag` at `event`, keeping [`TAG_HISTORY`] entries; says
    /// whether it moved (the same image again is no move).
    pub fn point(&mut self, tag: &str, event: TagEvent) -> bool {
        let history = self.status.tags.entry(tag.to_owned()).or_default();
        if history
            .first()
            .is_some_and(|now| now.image == event.image && now.digest == event.digest)
        {
            return false;
        }
        history.insert(0, event);
        history.truncate(TAG_HISTORY);
        true
    }

    /// Checks what a user may set: the name, and each alias's tag and
    /// source.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(e) = validate_dns_label(&self.name) {
            errors.push("name", e.to_string());
        }
        crate::labels::validate_labels("labels", &self.labels, &mut errors);
        for (i, import) in self.scheduled_imports.iter().enumerate() {
            if let Err(message) = validate_tag(&import.tag) {
                errors.push(format!("scheduledImports[{i}].tag"), message);
            }
            if import.from.trim().is_empty()
                || import
                    .from
                    .contains(|c: char| c.is_whitespace() || c.is_control())
            {
                errors.push(
                    format!("scheduledImports[{i}].from"),
                    "must be an image reference",
                );
            }
        }
        for (i, alias) in self.aliases.iter().enumerate() {
            if let Err(message) = validate_tag(&alias.tag) {
                errors.push(format!("aliases[{i}].tag"), message);
            }
            if let Err(message) = parse_stream_tag(&alias.from) {
                errors.push(format!("aliases[{i}].from"), message);
            }
        }
        errors.into_result()
    }

    /// The stream as users see it: its webhook secret blanked.
    pub fn redacted(mut self) -> ImageStream {
        self.webhook_secret.clear();
        self
    }
}

/// The event that tells users `stream`'s (qualified) `tag` moved.
pub fn tagged_event(stream: &str, tag: &str, event: &TagEvent) -> crate::Event {
    crate::Event {
        time_ms: event.created_ms,
        kind: crate::EventKind::ImageTagged,
        object: format!("imagestream/{stream}"),
        node: None,
        reason: format!(
            "{}:{tag} now points at {} ({})",
            crate::project::unqualified(stream),
            event.image,
            event.cause
        ),
    }
}

/// Checks a tag name: Docker's rule, `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,{}}}",
            MAX_TAG_LEN - 1
        ));
    }
    Ok(())
}

/// `STREAM:TAG` split in two, checked.
pub fn parse_stream_tag(text: &str) -> Result<(&str, &str), String> {
    let (stream, tag) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not STREAM:TAG"))?;
    validate_dns_label(stream).map_err(|e| format!("stream {stream:?}: {e}"))?;
    validate_tag(tag).map_err(|e| format!("tag {tag:?}: {e}"))?;
    Ok((stream, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(image: &str, at: u64) -> TagEvent {
        TagEvent {
            image: image.to_owned(),
            digest: None,
            created_ms: at,
            cause: TagCause::Tag,
            build: None,
        }
    }

    #[test]
    fn a_tag_keeps_its_history_newest_first_and_ignores_the_same_image() {
        let mut stream = ImageStream {
            name: "web".to_owned(),
            labels: BTreeMap::new(),
            aliases: vec![],
            scheduled_imports: vec![],
            docker_image_repository: String::new(),
            webhook_secret: String::new(),
            status: ImageStreamStatus::default(),
        };
        assert!(stream.point("v1", event("local/web:1", 1)));
        assert!(stream.point("v1", event("local/web:2", 2)));
        assert!(!stream.point("v1", event("local/web:2", 3)), "no move");
        assert_eq!(stream.current("v1").map(|e| e.created_ms), Some(2));
        assert_eq!(stream.status.tags["v1"].len(), 2);
        for i in 0..30 {
            stream.point("v1", event(&format!("local/web:{i}x"), i));
        }
        assert_eq!(stream.status.tags["v1"].len(), TAG_HISTORY);
    }

    #[test]
    fn stream_tags_and_names_are_checked() {
        assert_eq!(parse_stream_tag("web:v1"), Ok(("web", "v1")));
        assert!(parse_stream_tag("web").is_err());
        assert!(parse_stream_tag("Web:v1").is_err());
        assert!(parse_stream_tag("web:-x").is_err());
        assert!(validate_tag(&"a".repeat(129)).is_err());
    }
}
