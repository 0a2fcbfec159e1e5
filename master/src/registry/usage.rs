//! How many bytes of images a project's repositories hold, read from the
//! registry's storage on this host: every manifest revision a repository
//! links, and the config and layer blobs each names, each blob counted
//! once per project however many of its images share it. Deleted
//! manifests lose their revision link at once, so a prune frees quota
//! even before the garbage collection frees the disk.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The parts of a manifest that name blobs.
#[derive(Debug, Default, Deserialize)]
struct Manifest {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    digest: String,
}

/// The bytes the images of `project` take in the storage rooted at `data`
/// (the registry's `rootdirectory`).
pub fn image_bytes(data: &Path, project: &str) -> io::Result<u64> {
    let v2 = data.join("docker/registry/v2");
    let mut blobs = BTreeSet::new();
    let repositories = v2.join("repositories").join(project);
    for repository in entries(&repositories)? {
        for hex in entries(&repository.join("_manifests/revisions/sha256"))? {
            if !hex.join("link").is_file() {
                continue;
            }
            let Some(digest) = hex.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            let manifest = format!("sha256:{digest}");
            if let Ok(text) = std::fs::read(blob_path(&v2, &manifest)) {
                let parsed: Manifest = serde_json::from_slice(&text).unwrap_or_default();
                blobs.extend(parsed.config.map(|c| c.digest));
                blobs.extend(parsed.layers.into_iter().map(|l| l.digest));
            }
            blobs.insert(manifest);
        }
    }
    Ok(blobs
        .iter()
        .filter_map(|digest| std::fs::metadata(blob_path(&v2, digest)).ok())
        .map(|m| m.len())
        .sum())
}

/// Where distribution's filesystem driver keeps blob `digest`'s bytes.
fn blob_path(v2: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let prefix = hex.get(..2).unwrap_or(hex);
    v2.join("blobs/sha256").join(prefix).join(hex).join("data")
}

/// The directories in `dir`; none when it does not exist.
fn entries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(read) => Ok(read
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(v2: &Path, digest: &str, bytes: &[u8]) {
        let path = blob_path(v2, digest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn revision(v2: &Path, repository: &str, digest: &str) {
        let dir = v2
            .join("repositories")
            .join(repository)
            .join("_manifests/revisions/sha256")
            .join(digest.strip_prefix("sha256:").unwrap());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("link"), digest).unwrap();
    }

    #[test]
    fn shared_layers_count_once_and_other_projects_not_at_all() {
        let dir = std::env::temp_dir().join(format!("berth-usage-{}", std::process::id()));
        let v2 = dir.join("docker/registry/v2");
        let (base, app1, app2, config) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
            format!("sha256:{}", "c".repeat(64)),
            format!("sha256:{}", "d".repeat(64)),
        );
        blob(&v2, &base, &[0; 1000]);
        blob(&v2, &app1, &[0; 100]);
        blob(&v2, &app2, &[0; 10]);
        blob(&v2, &config, &[0; 1]);
        let manifest = |layer: &str| {
            format!(
                r#"{{"schemaVersion":2,"config":{{"digest":"{config}"}},"layers":[{{"digest":"{base}"}},{{"digest":"{layer}"}}]}}"#
            )
        };
        let (m1, m2) = (manifest(&app1), manifest(&app2));
        let (d1, d2) = (
            format!("sha256:{}", "e".repeat(64)),
            format!("sha256:{}", "f".repeat(64)),
        );
        blob(&v2, &d1, m1.as_bytes());
        blob(&v2, &d2, m2.as_bytes());
        revision(&v2, "a/web", &d1);
        revision(&v2, "a/api", &d2);
        revision(&v2, "b/web", &d1);
        let manifests = (m1.len() + m2.len()) as u64;
        assert_eq!(
            image_bytes(&dir, "a").unwrap(),
            1000 + 100 + 10 + 1 + manifests
        );
        assert_eq!(
            image_bytes(&dir, "b").unwrap(),
            1000 + 100 + 1 + m1.len() as u64
        );
        assert_eq!(image_bytes(&dir, "c").unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
