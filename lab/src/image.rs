//! `local/busybox`: no registry is reachable, so every host imports one
//! image made from Debian's busybox-static: the binary, a link per applet, and
//! the few files programs expect.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context};

use crate::cmd::{command, run};
use crate::host_exec::host_command;

/// The image's name in every host.
pub const IMAGE: &str = "local/busybox";
const BUSYBOX: &str = "/bin/busybox";

/// Builds the image's tarball at `tar` (once per lab).
pub fn build_tarball(work_dir: &Path, tar: &Path) -> anyhow::Result<()> {
    if !Path::new(BUSYBOX).exists() {
        bail!("{BUSYBOX} is missing: install Debian's busybox-static");
    }
    let tree = work_dir.join("busybox-image");
    let bin = tree.join("bin");
    fs::create_dir_all(&bin)?;
    fs::copy(BUSYBOX, bin.join("busybox")).context("copying busybox")?;
    let applets = run(&mut command(BUSYBOX, ["--list"]))?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if applet != "busybox" && !applet.contains('/') {
            symlink("busybox", bin.join(applet)).ok();
        }
    }
    fs::create_dir_all(tree.join("etc"))?;
    fs::write(
        tree.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    fs::write(tree.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    for dir in ["tmp", "root", "var/www", "usr/bin", "sbin"] {
        fs::create_dir_all(tree.join(dir))?;
    }
    fs::set_permissions(tree.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    run(&mut command(
        "tar",
        [
            "-C".as_ref(),
            tree.as_os_str(),
            "-cf".as_ref(),
            tar.as_os_str(),
            ".".as_ref(),
        ],
    ))?;
    fs::remove_dir_all(&tree)?;
    Ok(())
}

/// Imports the image into the host's engine unless it is already there
/// (it survives reboots with `/var/lib/docker` or `/var/lib/containers`).
/// Podman names it `localhost/local/busybox`; `local/busybox` finds it.
pub fn ensure_loaded(pid: i32, tar: &Path, podman: bool) -> anyhow::Result<()> {
    let engine = if podman { "podman" } else { "docker" };
    let inspect = [engine, "image", "inspect", IMAGE].map(String::from);
    let present = host_command(pid, &inspect)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {engine} image inspect"))?;
    if present.success() {
        return Ok(());
    }
    let import = [engine, "import", "--change", "CMD [\"sh\"]", "-", IMAGE].map(String::from);
    let input = fs::File::open(tar).with_context(|| format!("opening {}", tar.display()))?;
    run(host_command(pid, &import).stdin(input)).context("importing local/busybox")?;
    Ok(())
}
