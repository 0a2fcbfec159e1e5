//! `berth image prune`: deletes the registry's images that nothing needs,
//! then runs the registry's garbage collection so their layers leave the
//! disk. An image is kept when a running pod runs it, when a deployment
//! still in a service's history names it, or when it is one of the newest
//! `keep` images of one of its stream's tags. Only images of the integrated
//! registry are ever deleted.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One image of the registry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// `PROJECT/STREAM`.
    pub repository: String,
    /// `sha256:...`.
    pub digest: String,
}

/// What a prune did, or would do.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    /// No `--confirm`: nothing was deleted.
    pub dry_run: bool,
    /// The images deleted (or, in a dry run, that would be).
    pub deleted: Vec<Image>,
    /// The images kept, with why.
    pub kept: Vec<KeptImage>,
    /// The garbage collection's last lines, when it ran.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub garbage_collection: String,
}

/// An image kept, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptImage {
    #[serde(flatten)]
    pub image: Image,
    /// `running pod`, `deployment history`, `tag STREAM:TAG`.
    pub why: String,
}

/// What the prune knows of one stream: its repository and, per tag, the
/// digests it pointed at, newest first (integrated registry images only).
#[derive(Debug, Clone)]
pub struct StreamImages {
    pub repository: String,
    pub stream: String,
    pub tags: BTreeMap<String, Vec<String>>,
}

/// Splits the integrated registry's references (`ADDRESS/REPO@DIGEST`)
/// into their image; anything else is not the registry's.
pub fn image_of(address: &str, reference: &str) -> Option<Image> {
    let rest = reference.strip_prefix(address)?.strip_prefix('/')?;
    let (repository, digest) = rest.split_once('@')?;
    digest.starts_with("sha256:").then(|| Image {
        repository: repository.to_owned(),
        digest: digest.to_owned(),
    })
}

/// Decides: every image the streams have known is deleted unless in use
/// (`in_use`, with why) or among the newest `keep` of a tag.
pub fn plan(
    streams: &[StreamImages],
    in_use: &BTreeMap<Image, String>,
    keep: usize,
) -> (Vec<Image>, Vec<KeptImage>) {
    let mut kept: BTreeMap<Image, String> = in_use.clone();
    let mut known: BTreeSet<Image> = BTreeSet::new();
    for stream in streams {
        for (tag, digests) in &stream.tags {
            for (i, digest) in digests.iter().enumerate() {
                let image = Image {
                    repository: stream.repository.clone(),
                    digest: digest.clone(),
                };
                if i < keep {
                    kept.entry(image.clone())
                        .or_insert_with(|| format!("tag {}:{tag}", stream.stream));
                }
                known.insert(image);
            }
        }
    }
    let deleted = known
        .into_iter()
        .filter(|image| !kept.contains_key(image))
        .collect();
    let kept = kept
        .into_iter()
        .map(|(image, why)| KeptImage { image, why })
        .collect();
    (deleted, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(repository: &str, digest: &str) -> Image {
        Image {
            repository: repository.to_owned(),
            digest: digest.to_owned(),
        }
    }

    #[test]
    fn only_registry_references_by_digest_are_images() {
        assert_eq!(
            image_of("h1:5000", "h1:5000/shop/web@sha256:ab"),
            Some(image("shop/web", "sha256:ab"))
        );
        assert_eq!(image_of("h1:5000", "docker.io/library/web@sha256:ab"), None);
        assert_eq!(image_of("h1:5000", "h1:5000/shop/web:v1"), None);
        assert_eq!(image_of("h1:5000", "h1:50000/shop/web@sha256:ab"), None);
    }

    #[test]
    fn old_images_go_and_used_or_recent_ones_stay() {
        let streams = vec![StreamImages {
            repository: "shop/web".to_owned(),
            stream: "web".to_owned(),
            tags: BTreeMap::from([
                (
                    "v1".to_owned(),
                    vec![
                        "sha256:c".to_owned(),
                        "sha256:b".to_owned(),
                        "sha256:a".to_owned(),
                    ],
                ),
                ("old".to_owned(), vec!["sha256:a".to_owned()]),
                (
                    "scratch".to_owned(),
                    vec!["sha256:e".to_owned(), "sha256:d".to_owned()],
                ),
            ]),
        }];
        let in_use = BTreeMap::from([(image("shop/web", "sha256:b"), "running pod".to_owned())]);
        let (deleted, kept) = plan(&streams, &in_use, 1);
        assert_eq!(deleted, vec![image("shop/web", "sha256:d")]);
        let why = |digest: &str| {
            kept.iter()
                .find(|k| k.image.digest == digest)
                .map(|k| k.why.clone())
        };
        assert_eq!(why("sha256:b").as_deref(), Some("running pod"));
        assert_eq!(why("sha256:a").as_deref(), Some("tag web:old"));
        assert_eq!(why("sha256:c").as_deref(), Some("tag web:v1"));
        assert_eq!(why("sha256:e").as_deref(), Some("tag web:scratch"));
        let (deleted, _) = plan(&streams, &in_use, 3);
        assert!(deleted.is_empty(), "{deleted:?}");
    }
}
