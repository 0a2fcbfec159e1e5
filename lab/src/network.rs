//! The lab network: a bridge in a "switch" network namespace that belongs to
//! the lab alone, and a veth pair per host. The switch has no uplink, no
//! address and no NAT, and hosts get no default route, so nothing in the lab
//! can reach anything outside it.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Context;

use crate::cmd::{command, run};

/// The lab network. Every lab has its own switch, so labs reuse it.
pub const SUBNET: &str = "10.231.0.0/24";
const PREFIX_LEN: u8 = 24;
const BRIDGE: &str = "lab0";

/// Address of the `index`-th host (1-based): h1 is 10.231.0.11.
pub fn host_address(index: usize) -> Ipv4Addr {
    let last = u8::try_from(10 + index).unwrap_or(u8::MAX);
    Ipv4Addr::new(10, 231, 0, last)
}

fn in_switch(netns: &Path, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = command("nsenter", [format!("--net={}", netns.display())]);
    cmd.arg("ip").args(args);
    run(&mut cmd)?;
    Ok(())
}

fn in_host(pid: i32, args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = command("nsenter", ["-t", &pid.to_string(), "-n", "ip"]);
    cmd.args(args);
    run(&mut cmd)?;
    Ok(())
}

/// Creates the switch namespace, kept alive by a bind mount on `netns`, with
/// its bridge up.
pub fn create_switch(netns: &Path) -> anyhow::Result<()> {
    File::create(netns).with_context(|| format!("creating {}", netns.display()))?;
    run(&mut command(
        "unshare",
        [format!("--net={}", netns.display()), "true".into()],
    ))?;
    in_switch(netns, &["link", "set", "lo", "up"])?;
    in_switch(netns, &["link", "add", BRIDGE, "type", "bridge"])?;
    in_switch(netns, &["link", "set", BRIDGE, "up"])
}

/// The MAC of a host's `eth0`, derived from its address: a real host keeps
/// its NIC's MAC across reboots, so its neighbours' ARP caches stay right.
pub fn host_mac(address: Ipv4Addr) -> String {
    let [a, b, c, d] = address.octets();
    format!("02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Plugs a host into the switch: a veth pair whose host end is `eth0` in
/// the host's namespace, with the host's address and no default route.
pub fn attach_host(
    netns: &Path,
    host: &str,
    pid: i32,
    address: Ipv4Addr,
    partitioned: bool,
) -> anyhow::Result<()> {
    let pid_arg = pid.to_string();
    let mac = host_mac(address);
    let peer = ["peer", "name", "eth0", "address", &mac, "netns", &pid_arg];
    let mut add = vec!["link", "add", host, "type", "veth"];
    add.extend(peer);
    in_switch(netns, &add)?;
    in_switch(netns, &["link", "set", host, "master", BRIDGE])?;
    if !partitioned {
        in_switch(netns, &["link", "set", host, "up"])?;
    }
    in_host(pid, &["link", "set", "lo", "up"])?;
    in_host(
        pid,
        &[
            "addr",
            "add",
            &format!("{address}/{PREFIX_LEN}"),
            "dev",
            "eth0",
        ],
    )?;
    in_host(pid, &["link", "set", "eth0", "up"])
}

/// Cuts a host off the lab network by taking its switch port down.
pub fn partition(netns: &Path, host: &str) -> anyhow::Result<()> {
    in_switch(netns, &["link", "set", host, "down"])
}

/// Plugs a partitioned host back in.
pub fn heal(netns: &Path, host: &str) -> anyhow::Result<()> {
    in_switch(netns, &["link", "set", host, "up"])
}

/// Drops the switch: with its last reference gone, the kernel deletes the
/// bridge and every veth still attached to it.
pub fn remove_switch(netns: &Path) -> anyhow::Result<()> {
    if netns.exists() {
        let _ = nix::mount::umount2(netns, nix::mount::MntFlags::MNT_DETACH);
        std::fs::remove_file(netns).with_context(|| format!("removing {}", netns.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_follow_addresses() {
        assert_eq!(host_mac(Ipv4Addr::new(10, 231, 0, 11)), "02:00:0a:e7:00:0b");
    }

    #[test]
    fn addresses_start_at_eleven() {
        assert_eq!(host_address(1), Ipv4Addr::new(10, 231, 0, 11));
        assert_eq!(host_address(3), Ipv4Addr::new(10, 231, 0, 13));
    }
}
