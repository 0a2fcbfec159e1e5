//! The Docker strategy: dockerd's build API over the sources as context,
//! its `stream` text as the log. A `from` replaces the image of the
//! Dockerfile's last `FROM` inside the context before it is sent.

use std::io::Read;

use anyhow::Context;
use berth_client::build_context::DEFAULT_DOCKERFILE;
use berth_model::build::DockerStrategy;
use futures_util::StreamExt;

use super::{cpu_quota, docker_message, BuildFailed, BuildSpec};

/// Builds `context` (a tar) into `spec`'s output tag.
pub async fn build(
    docker: &bollard::Docker,
    spec: &BuildSpec,
    strategy: &DockerStrategy,
    context: Vec<u8>,
) -> anyhow::Result<()> {
    let dockerfile = strategy
        .dockerfile
        .clone()
        .unwrap_or_else(|| DEFAULT_DOCKERFILE.to_owned());
    let context = match &strategy.from {
        Some(from) => {
            println!("using {from} as the last FROM of {dockerfile}");
            rewrite_context(&context, &dockerfile, from)?
        }
        None => context,
    };
    let options = bollard::image::BuildImageOptions {
        dockerfile: dockerfile.clone(),
        t: spec.task.output.clone(),
        rm: true,
        forcerm: true,
        memory: spec.memory_bytes,
        cpuperiod: spec.cpu_millis.map(|_| 100_000),
        cpuquota: cpu_quota(spec.cpu_millis).and_then(|q| u64::try_from(q).ok()),
        labels: [(super::LABEL_BUILD.to_owned(), spec.task.build.clone())].into(),
        ..Default::default()
    };
    let mut steps = docker.build_image(options, None, Some(context.into()));
    while let Some(step) = steps.next().await {
        let step = step.map_err(|e| BuildFailed(docker_message(&e)))?;
        if let Some(error) = step.error {
            return Err(BuildFailed(error).into());
        }
        if let Some(text) = &step.stream {
            print!("{text}");
        }
    }
    Ok(())
}

/// `context` with the Dockerfile at `dockerfile` (relative to the
/// context) naming `image` in its last `FROM`.
pub fn rewrite_context(context: &[u8], dockerfile: &str, image: &str) -> anyhow::Result<Vec<u8>> {
    let wanted = normalize(dockerfile);
    let mut archive = tar::Archive::new(context);
    let mut out = tar::Builder::new(Vec::new());
    let mut found = false;
    for entry in archive.entries().context("reading the build context")? {
        let mut entry = entry.context("reading the build context")?;
        let mut header = entry.header().clone();
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        if header.entry_type().is_file() && normalize(&path) == wanted {
            let text = String::from_utf8(data)
                .map_err(|_| BuildFailed(format!("{dockerfile} is not UTF-8 text")))?;
            let rewritten = rewrite_last_from(&text, image)
                .ok_or_else(|| BuildFailed(format!("{dockerfile} has no FROM line")))?;
            data = rewritten.into_bytes();
            header.set_size(data.len() as u64);
            found = true;
        }
        // Long names and links travel in their own headers, which the
        // entry keeps: append it under its full path.
        out.append_data(&mut header, &path, data.as_slice())?;
    }
    if !found {
        return Err(BuildFailed(format!("the build context has no {dockerfile}")).into());
    }
    Ok(out.into_inner()?)
}

fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// `dockerfile` with the image of its last `FROM` instruction replaced by
/// `image` (flags such as `--platform` and an `AS name` kept); `None` when
/// it has no `FROM`.
pub fn rewrite_last_from(dockerfile: &str, image: &str) -> Option<String> {
    let lines: Vec<&str> = dockerfile.split_inclusive('\n').collect();
    let last = lines.iter().rposition(|line| {
        let mut words = line.split_whitespace();
        words
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case("FROM"))
            && words.next().is_some()
    })?;
    let line = lines[last];
    let body = line.trim_end_matches(['\n', '\r']);
    let ending = &line[body.len()..];
    // Replace the first word after FROM that is not a flag.
    let mut rewritten = String::new();
    let mut rest = body;
    let mut seen_from = false;
    let mut replaced = false;
    while !rest.is_empty() {
        let space = rest.len() - rest.trim_start().len();
        rewritten.push_str(&rest[..space]);
        rest = &rest[space..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        if !seen_from {
            seen_from = true;
            rewritten.push_str(word);
        } else if !replaced && !word.starts_with("--") {
            replaced = true;
            rewritten.push_str(image);
        } else {
            rewritten.push_str(word);
        }
        rest = &rest[end..];
    }
    if !replaced {
        return None;
    }
    let mut out: String = lines[..last].concat();
    out.push_str(&rewritten);
    out.push_str(ending);
    out.push_str(&lines[last + 1..].concat());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_from_gets_the_image_and_keeps_its_flags_and_name() {
        let file = "FROM golang:1.22 AS build\nRUN go build\n\nfrom --platform=linux/amd64 debian:12 as run\r\nCOPY --from=build /app /app\n";
        assert_eq!(
            rewrite_last_from(file, "h1:5000/base/debian@sha256:ab").unwrap(),
            "FROM golang:1.22 AS build\nRUN go build\n\nfrom --platform=linux/amd64 h1:5000/base/debian@sha256:ab as run\r\nCOPY --from=build /app /app\n"
        );
        assert_eq!(
            rewrite_last_from("  FROM alpine", "busybox").unwrap(),
            "  FROM busybox"
        );
        assert_eq!(rewrite_last_from("RUN true\n# FROM x\n", "busybox"), None);
        assert_eq!(rewrite_last_from("FROM\n", "busybox"), None);
    }

    #[test]
    fn the_dockerfile_is_rewritten_inside_the_context_and_the_rest_kept() {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, body) in [("./docker/Build", "FROM old\nRUN x\n"), ("app.txt", "hi")] {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(1_700_000_000);
            tar.append_data(&mut header, path, body.as_bytes()).unwrap();
        }
        let context = tar.into_inner().unwrap();
        let out = rewrite_context(&context, "docker/Build", "new:1").unwrap();
        let mut archive = tar::Archive::new(out.as_slice());
        let mut files = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut body = String::new();
            entry.read_to_string(&mut body).unwrap();
            files.push((entry.path().unwrap().display().to_string(), body));
            assert_eq!(entry.header().mtime().unwrap(), 1_700_000_000);
        }
        assert_eq!(
            files,
            [
                ("docker/Build".to_owned(), "FROM new:1\nRUN x\n".to_owned()),
                ("app.txt".to_owned(), "hi".to_owned())
            ]
        );
        let missing = rewrite_context(&context, "Dockerfile", "new:1").unwrap_err();
        assert_eq!(missing.to_string(), "the build context has no Dockerfile");
    }
}
