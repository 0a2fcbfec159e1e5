//! `berth-lab`: boots real hosts (systemd, D-Bus, journald, dockerd) on one
//! machine for berth's end-to-end tests. See `berth-lab --help`.

fn main() -> std::process::ExitCode {
    berth_lab::cli::main()
}
