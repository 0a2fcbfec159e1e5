//! Embeds every file of `units/` so the lab installs berth's unit files.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let units_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../units");
    println!("cargo:rerun-if-changed={}", units_dir.display());
    let mut names: Vec<_> = std::fs::read_dir(&units_dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::from("/// `(file name, contents)` of every unit in `units/`.\npub const UNITS: &[(&str, &str)] = &[\n");
    for path in names {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("unit file name is UTF-8");
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            path.canonicalize().expect("unit path").display()
        )
        .expect("write to string");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("units.rs");
    std::fs::write(dest, out).expect("writing units.rs");
}
