//! Builds `pause/pause.rs` as a static binary for the pod network image
//! (`berth/pause`), which the agent imports into Docker from its own bytes:
//! no registry, no base image, no libc in the image.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pause/pause.rs");
    println!("cargo:rerun-if-changed={}", source.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("berth-pause");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition=2021",
            "-O",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args(["-C", "target-feature=+crt-static", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .expect("running rustc for the pause binary");
    assert!(status.success(), "building the static pause binary failed");
}
