use clap::Parser;

/// berth: drive a berth cluster from the command line.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let Args {} = Args::parse();
}
