use clap::Parser;

/// berth-master: assigns pods to hosts and keeps the cluster in step.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let Args {} = Args::parse();
}
