use clap::Parser;

/// berth-agent: runs pods on this host as systemd units.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let Args {} = Args::parse();
}
