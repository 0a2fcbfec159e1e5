//! The lab: several real hosts on one machine, each a set of Linux namespaces
//! with an overlay root, its own cgroup subtree and systemd as PID 1, joined
//! by a bridge in a private "switch" network namespace. The recipe is the one
//! in `shared/LAB.md`.
//!
//! The tree follows the boot sequence: [`paths`] and [`state`] say where a lab
//! lives, [`cgroup`] gives a host its subtree, [`rootfs`] prepares and enters
//! its root, [`boot`] forks it into its namespaces, [`network`] wires it to the
//! switch, [`image`] loads `local/busybox`, and [`lab`] runs the commands.
//!
//! The lab never writes to the machine's own `/tmp`, `/etc` or `/var` outside
//! its state directory: every host writes into its overlay's upper layer, which
//! lives on a tmpfs mounted at the lab's state directory.

pub mod boot;
pub mod cgroup;
pub mod cli;
pub mod cmd;
pub mod host_exec;
pub mod image;
pub mod lab;
pub mod network;
pub mod paths;
pub mod rootfs;
pub mod state;
pub mod units;
