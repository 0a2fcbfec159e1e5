//! Running commands inside a host: `nsenter` into every namespace of its
//! PID 1, with a clean environment so the machine's variables do not leak in.

use std::process::Command;

/// The environment every command in a host starts with.
const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A command that runs `argv` inside the host whose PID 1 is `pid`. The
/// caller decides about stdio.
pub fn host_command(pid: i32, argv: &[String]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.args(["--target", &pid.to_string(), "--all", "--"]);
    cmd.args(argv);
    cmd.env_clear()
        .env("PATH", HOST_PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env(
            "TERM",
            std::env::var("TERM").unwrap_or_else(|_| "dumb".into()),
        );
    cmd
}
