//! The lab's commands: `up`, `down`, `reboot`, `partition`, `heal`, `status`
//! and `exec`, built from the pieces in the other modules.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::boot::{self, HostInit};
use crate::cgroup;
use crate::host_exec::host_command;
use crate::image;
use crate::network;
use crate::paths::LabPaths;
use crate::rootfs::{self, Engine, HostFiles};
use crate::state::{HostState, LabState};
use crate::units::UNITS;

/// berth's binaries that `up` installs into every host when they were built.
pub const BERTH_BINARIES: &[&str] = &[
    "berth",
    "berth-agent",
    "berth-master",
    "berth-router",
    "berth-shim",
];

/// How long a host may take to boot (systemd and dockerd) before `up` fails.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful shutdown may take before the host is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// What `up` should build.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Number of hosts, named `h1..hN`.
    pub hosts: usize,
    /// Directory holding freshly built berth binaries; `None` boots bare hosts
    /// (for tests that install berth from its packages).
    pub berth_bin_dir: Option<PathBuf>,
    /// The master's store.
    pub store: MasterStore,
    /// How many hosts (h1, h2, ...) run a master, each beside a member of
    /// one etcd cluster; more than one needs the etcd store.
    pub masters: usize,
    /// The container engine of every host.
    pub engine: Engine,
}

/// Which store the lab's master uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MasterStore {
    /// The embedded store (the default of berth-master).
    #[default]
    Embedded,
    /// etcd (Debian's etcd-server), run on h1 beside the master.
    Etcd,
}

/// Lab names end up in directory and cgroup names: keep them simple.
pub fn validate_lab_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if !ok {
        bail!(
            "lab name {name:?} must be 1-32 characters of a-z, 0-9 and '-', not starting with '-'"
        );
    }
    Ok(())
}

/// Boots a new lab. On failure everything already made is torn down again.
pub fn up(paths: &LabPaths, options: &UpOptions) -> anyhow::Result<LabState> {
    validate_lab_name(&paths.name)?;
    if options.hosts == 0 || options.hosts > 50 {
        bail!("--hosts must be between 1 and 50, got {}", options.hosts);
    }
    if options.masters == 0 || options.masters > options.hosts {
        bail!(
            "--masters must be between 1 and --hosts ({}), got {}",
            options.hosts,
            options.masters
        );
    }
    if options.masters > 1 && options.store != MasterStore::Etcd {
        bail!("--masters {} needs --store etcd", options.masters);
    }
    if paths.root().exists() {
        bail!(
            "lab {:?} is already up (or was not torn down): run `berth-lab down --name {}` first",
            paths.name,
            paths.name
        );
    }
    let result = boot_new_lab(paths, options);
    if result.is_err() {
        if let Err(e) = down(paths) {
            eprintln!("berth-lab: cleaning up after the failed boot also failed: {e:#}");
        }
    }
    result
}

fn boot_new_lab(paths: &LabPaths, options: &UpOptions) -> anyhow::Result<LabState> {
    let root = paths.root();
    create_lab_dir(&root)?;
    // The hosts' disks live on this tmpfs: `down` drops them in one unmount
    // and nothing lands on the machine's own /var.
    mount(
        Some("tmpfs"),
        &root,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0700,size=50%"),
    )
    .with_context(|| format!("mounting a tmpfs on {}", root.display()))?;
    mount(
        None::<&str>,
        &root,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making the state dir private")?;

    let mut state = LabState {
        name: paths.name.clone(),
        subnet: network::SUBNET.into(),
        hosts: Vec::new(),
    };
    for index in 1..=options.hosts {
        state.hosts.push(HostState {
            name: format!("h{index}"),
            address: network::host_address(index),
            pid: None,
            start_time: None,
            partitioned: false,
        });
    }
    state.save(&paths.state_file())?;

    image::build_tarball(&root, &paths.busybox_tar())?;
    network::create_switch(&paths.switch_netns())?;

    let hierarchies = cgroup::hierarchies()?;
    let hosts_file = hosts_file(&state);
    let binaries = berth_binaries(options.berth_bin_dir.as_deref())?;
    let units: Vec<(&str, &str)> = UNITS
        .iter()
        .copied()
        .filter(|(name, _)| is_unit_file(name))
        .collect();
    for i in 0..state.hosts.len() {
        let name = state.hosts[i].name.clone();
        let files = HostFiles {
            hostname: &name,
            hosts_file: hosts_file.clone(),
            binaries: binaries.clone(),
            units: &units,
            engine: options.engine,
        };
        rootfs::prepare_upper(&paths.host(&name), &files)?;
        if options.masters > 1 && i < options.masters && !binaries.is_empty() {
            let members = &state.hosts[..options.masters];
            rootfs::write_etcd_config(&paths.host(&name), &etcd_member_config(members, i))?;
            rootfs::write_master_config(&paths.host(&name), &ha_master_config(members))?;
        } else if i == 0 && options.store == MasterStore::Etcd && !binaries.is_empty() {
            rootfs::write_master_config(&paths.host(&name), ETCD_MASTER_CONFIG)?;
        }
        let init = boot::boot_host(&paths.name, &name, &paths.host(&name), &hierarchies)?;
        record_boot(&mut state.hosts[i], init);
        state.save(&paths.state_file())?;
        network::attach_host(
            &paths.switch_netns(),
            &name,
            init.pid,
            state.hosts[i].address,
            false,
        )?;
    }

    // Every fork is done: the hosts finish booting side by side.
    std::thread::scope(|scope| {
        let waits: Vec<_> = state
            .hosts
            .iter()
            .map(|host| scope.spawn(move || finish_boot(paths, host)))
            .collect();
        waits
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("boot thread panicked")))
            })
            .collect::<anyhow::Result<Vec<()>>>()
    })?;
    if binaries.iter().any(|b| b.ends_with("berth-master")) {
        start_cluster(&state, options.store, options.masters)?;
    }
    Ok(state)
}

/// berth-master's configuration for a lab whose master keeps its state in
/// the etcd on h1.
const ETCD_MASTER_CONFIG: &str = "# Written by berth-lab up --store etcd.\n[store]\nbackend = \"etcd\"\netcd-endpoints = [\"http://127.0.0.1:2379\"]\netcd-prefix = \"/berth\"\n";

/// etcd's client and peer ports in the lab.
const ETCD_PORTS: (u16, u16) = (2379, 2380);

/// The `/etc/default/etcd` of member `index` of an etcd cluster on
/// `members` (Debian's etcd.service reads it): a 3-member cluster across
/// the master hosts, answering clients on the lab network and loopback.
fn etcd_member_config(members: &[HostState], index: usize) -> String {
    let (client, peer) = ETCD_PORTS;
    let me = &members[index];
    let cluster: Vec<String> = members
        .iter()
        .map(|m| format!("{}=http://{}:{peer}", m.name, m.address))
        .collect();
    format!(
        "# Written by berth-lab up --masters {count}.\n\
         ETCD_NAME={name}\n\
         ETCD_LISTEN_PEER_URLS=http://{addr}:{peer}\n\
         ETCD_INITIAL_ADVERTISE_PEER_URLS=http://{addr}:{peer}\n\
         ETCD_LISTEN_CLIENT_URLS=http://{addr}:{client},http://127.0.0.1:{client}\n\
         ETCD_ADVERTISE_CLIENT_URLS=http://{addr}:{client}\n\
         ETCD_INITIAL_CLUSTER={cluster}\n\
         ETCD_INITIAL_CLUSTER_STATE=new\n\
         ETCD_INITIAL_CLUSTER_TOKEN=berth-lab\n\
         ETCD_MAX_TXN_OPS=1024\n\
         ETCD_GRPC_KEEPALIVE_MIN_TIME=1s\n",
        count = members.len(),
        name = me.name,
        addr = me.address,
        cluster = cluster.join(","),
    )
}

/// berth-master's configuration on each master host of a lab with several
/// masters: the whole etcd cluster as endpoints, and a 2 s leader lease,
/// so that a failover fits in the 3 s target.
fn ha_master_config(members: &[HostState]) -> String {
    let endpoints: Vec<String> = members
        .iter()
        .map(|m| format!("\"http://{}:{}\"", m.address, ETCD_PORTS.0))
        .collect();
    format!(
        "# Written by berth-lab up --masters {}.\n[store]\nbackend = \"etcd\"\netcd-endpoints = [{}]\netcd-prefix = \"/berth\"\nleader-lease-secs = 2\n",
        members.len(),
        endpoints.join(", ")
    )
}

/// The master's port in the lab.
const MASTER_PORT: u16 = 7443;

/// The master's CA certificate on h1.
const MASTER_CA: &str = "/var/lib/berth/master/ca.crt";

/// Starts berth-master on h1 (HTTPS with its own CA) and joins every host's
/// agent to it the way an operator would: a one-time join command per host
/// from the master's API (token and CA hash), run on the host. `berth` on
/// h1 is logged in as admin.
fn start_cluster(state: &LabState, store: MasterStore, masters: usize) -> anyhow::Result<()> {
    let master = state.hosts.first().context("a lab without hosts")?;
    let master_pid = master.pid.context("h1 is not running")?;
    let url = format!("https://{}:{MASTER_PORT}", master.name);
    // What the CLI and every agent (and so every router) are given: all
    // the masters, so that they fail over on their own.
    let all_masters: Vec<String> = state
        .hosts
        .iter()
        .take(masters)
        .map(|host| format!("https://{}:{MASTER_PORT}", host.name))
        .collect();
    let all_masters = all_masters.join(",");
    if masters > 1 {
        start_etcd_cluster(&state.hosts[..masters])?;
    } else if store == MasterStore::Etcd {
        // The master's config names etcd as its store (written before boot).
        host_run(master_pid, &["systemctl", "start", "etcd"])?;
        wait_for_output(master_pid, &["curl", "-sf", "http://127.0.0.1:2379/health"])?;
    }
    host_run(
        master_pid,
        &["systemctl", "enable", "--now", "berth-master"],
    )?;
    let admin = wait_for_output(master_pid, &["cat", "/var/lib/berth/master/admin.token"])?;
    let admin = admin.trim();
    let ca_url = format!("{url}/v1/ca.crt");
    wait_for_output(
        master_pid,
        &["curl", "-sSf", "--cacert", MASTER_CA, &ca_url],
    )?;
    if masters > 1 {
        let token = init_masters(master_pid)?;
        for other in state.hosts.iter().take(masters).skip(1) {
            start_another_master(other, &url, &token)?;
        }
    }
    host_run(
        master_pid,
        &[
            "berth",
            "login",
            &all_masters,
            "--token",
            admin,
            "--ca-cert",
            MASTER_CA,
        ],
    )?;
    start_registry(master_pid, &master.name)?;
    let header = format!("Authorization: Bearer {admin}");
    let tokens_url = format!("{url}/v1/join-tokens");
    for host in &state.hosts {
        let pid = host.pid.context("host is not running")?;
        let issue = [
            "curl",
            "-sSf",
            "--cacert",
            MASTER_CA,
            "-XPOST",
            "-H",
            &header,
            &tokens_url,
        ];
        let issued = host_output_checked(master_pid, &issue)?;
        let issued: serde_json::Value =
            serde_json::from_str(&issued).context("parsing the join token")?;
        let command = issued["command"]
            .as_str()
            .context("join token without a command")?;
        let argv: Vec<&str> = command
            .split_whitespace()
            .map(|arg| {
                if arg == url {
                    all_masters.as_str()
                } else {
                    arg
                }
            })
            .collect();
        host_run(pid, &argv).with_context(|| format!("joining {} to the master", host.name))?;
    }
    wait_until_nodes_ready(master_pid, state.hosts.len())
}

/// Starts etcd on every member at once (each waits for the others before
/// it reports started) and waits until each answers healthy.
fn start_etcd_cluster(members: &[HostState]) -> anyhow::Result<()> {
    for member in members {
        let pid = member.pid.context("host is not running")?;
        host_run(pid, &["systemctl", "start", "--no-block", "etcd"])?;
    }
    for member in members {
        let pid = member.pid.context("host is not running")?;
        wait_for_output(pid, &["curl", "-sf", "http://127.0.0.1:2379/health"])
            .with_context(|| format!("etcd on {} is not healthy", member.name))?;
    }
    Ok(())
}

/// Joins `host`'s master to the cluster of the master at `first` with the
/// join token (`berth-master join`), then starts it and waits until it
/// serves.
fn start_another_master(host: &HostState, first: &str, token: &str) -> anyhow::Result<()> {
    let pid = host.pid.context("host is not running")?;
    host_run(pid, &["berth-master", "join", first, "--token", token])
        .with_context(|| format!("joining the master on {} to {first}", host.name))?;
    host_run(pid, &["systemctl", "enable", "--now", "berth-master"])?;
    let ca_url = format!("https://{}:{MASTER_PORT}/v1/ca.crt", host.name);
    wait_for_output(pid, &["curl", "-sSf", "--cacert", MASTER_CA, &ca_url])
        .with_context(|| format!("the master on {} does not serve", host.name))?;
    Ok(())
}

/// `berth-master init` on the first master, the documented way: its CA
/// and keys sealed in etcd. The join token it printed.
fn init_masters(first_pid: i32) -> anyhow::Result<String> {
    let printed = host_output_checked(first_pid, &["berth-master", "init"])
        .context("berth-master init on the first master")?;
    printed
        .split_whitespace()
        .skip_while(|word| *word != "--token")
        .nth(1)
        .map(str::to_owned)
        .with_context(|| format!("berth-master init printed no join token: {printed}"))
}

/// The integrated registry's port in the lab (the default).
pub const REGISTRY_PORT: u16 = 5000;

/// Starts the integrated registry beside the master, the one documented
/// way (`systemctl enable --now berth-registry`), and waits until it
/// answers: 401, asking for a token from the master.
fn start_registry(master_pid: i32, host: &str) -> anyhow::Result<()> {
    host_run(
        master_pid,
        &["systemctl", "enable", "--now", "berth-registry"],
    )
    .context("starting berth-registry (is Debian's docker-registry installed?)")?;
    let url = format!("https://{host}:{REGISTRY_PORT}/v2/");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = host_output_checked(
            master_pid,
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                MASTER_CA,
                &url,
            ],
        )
        .unwrap_or_default();
        if status == "401" {
            return Ok(());
        }
        if Instant::now() > deadline {
            let journal = host_output_checked(
                master_pid,
                &[
                    "journalctl",
                    "-u",
                    "berth-registry",
                    "--no-pager",
                    "-n",
                    "20",
                ],
            )
            .unwrap_or_default();
            anyhow::bail!("the registry at {url} answers {status:?}, not 401:\n{journal}");
        }
        sleep(Duration::from_millis(200));
    }
}

/// Waits until the master has heard a heartbeat from every host and counts
/// each Ready. A node that joined but has not sent its first heartbeat
/// yet is, once the master is older than a grace period, NotReady, and the
/// scheduler places nothing there: a service run on a lab that is "up"
/// must be able to use every host.
fn wait_until_nodes_ready(master_pid: i32, hosts: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = host_output_checked(master_pid, &["berth", "node", "ls", "-o", "json"])
            .ok()
            .and_then(|out| serde_json::from_str::<Vec<serde_json::Value>>(&out).ok())
            .unwrap_or_default();
        let ready = listed
            .iter()
            .filter(|n| n["condition"] == "Ready" && n["lastHeartbeatMsAgo"].is_u64())
            .count();
        if ready == hosts {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "only {ready} of {hosts} nodes are Ready 30 s after joining: {}",
                serde_json::Value::Array(listed)
            );
        }
        sleep(Duration::from_millis(200));
    }
}

fn host_run(pid: i32, argv: &[&str]) -> anyhow::Result<()> {
    host_output_checked(pid, argv).map(drop)
}

/// What `argv` printed; an error unless it exited 0.
fn host_output_checked(pid: i32, argv: &[&str]) -> anyhow::Result<String> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let output = crate::cmd::run(&mut host_command(pid, &argv))?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `argv` until it succeeds (for up to 15 s) and returns its output.
fn wait_for_output(pid: i32, argv: &[&str]) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match host_output_checked(pid, argv) {
            Ok(out) => return Ok(out),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => sleep(Duration::from_millis(100)),
        }
    }
}

/// Creates the lab's directory. Another lab's `down` removes the shared
/// state root when it is empty, which can race with this creation: retry.
fn create_lab_dir(root: &Path) -> anyhow::Result<()> {
    let mut attempts = 0;
    loop {
        match fs::create_dir_all(root) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 20 => {
                attempts += 1;
                sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e).with_context(|| format!("creating {}", root.display())),
        }
    }
}

fn is_unit_file(name: &str) -> bool {
    [
        ".service", ".slice", ".socket", ".target", ".timer", ".path",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
}

fn record_boot(host: &mut HostState, init: HostInit) {
    host.pid = Some(init.pid);
    host.start_time = Some(init.start_time);
}

fn hosts_file(state: &LabState) -> String {
    let mut text =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for host in &state.hosts {
        text.push_str(&format!("{}\t{}\n", host.address, host.name));
    }
    text
}

/// The berth binaries found in `dir`. A missing directory is an error; a
/// binary that is not built yet is skipped.
fn berth_binaries(dir: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
    let Some(dir) = dir else {
        return Ok(Vec::new());
    };
    if !dir.is_dir() {
        bail!("--bin-dir {} is not a directory", dir.display());
    }
    Ok(BERTH_BINARIES
        .iter()
        .map(|b| dir.join(b))
        .filter(|p| p.is_file())
        .collect())
}

/// Waits until the host's systemd reports `running` (or `degraded`, naming
/// the failed units), then loads the image.
fn finish_boot(paths: &LabPaths, host: &HostState) -> anyhow::Result<()> {
    let pid = host.pid.context("host has no PID")?;
    wait_until_running(pid, &host.name, &paths.host(&host.name).console_log())?;
    let podman = rootfs::runs_podman(&paths.host(&host.name));
    image::ensure_loaded(pid, &paths.busybox_tar(), podman)
        .with_context(|| format!("host {}", host.name))
}

fn wait_until_running(pid: i32, name: &str, console_log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        let state = system_state(pid);
        match state.as_str() {
            "running" => return Ok(()),
            // The host is up; a unit that failed is the workload's business
            // (a container that failed at boot), not the lab's: say which.
            "degraded" => {
                let failed = host_output(pid, &["systemctl", "--failed", "--no-legend", "--plain"]);
                eprintln!(
                    "berth-lab: host {name} booted degraded; failed units:\n{}",
                    failed.trim_end()
                );
                return Ok(());
            }
            _ if Instant::now() > deadline => {
                let console = fs::read_to_string(console_log).unwrap_or_default();
                let tail: Vec<&str> = console.lines().rev().take(20).collect();
                bail!(
                    "host {name} did not finish booting within {BOOT_TIMEOUT:?} (state {state:?}); console:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            _ => sleep(Duration::from_millis(100)),
        }
    }
}

/// `systemctl is-system-running` in the host, or `"offline"` when it cannot
/// be asked.
fn system_state(pid: i32) -> String {
    host_output(pid, &["systemctl", "is-system-running"])
        .trim()
        .to_owned()
}

/// What `argv` printed, whatever its exit status (`is-system-running` exits
/// non-zero while it prints `starting` or `degraded`); `"offline"` when it
/// printed nothing.
fn host_output(pid: i32, argv: &[&str]) -> String {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    match host_command(pid, &argv).stderr(Stdio::null()).output() {
        Ok(out) if !out.stdout.is_empty() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => "offline".into(),
    }
}

/// Tears a lab down: kills its hosts, removes their cgroups, the switch and
/// every mount under the state directory. Works on a half-booted lab too.
pub fn down(paths: &LabPaths) -> anyhow::Result<()> {
    validate_lab_name(&paths.name)?;
    let hierarchies = cgroup::hierarchies()?;
    if let Ok(state) = LabState::load(&paths.state_file()) {
        for host in &state.hosts {
            if let (Some(pid), Some(start)) = (host.pid, host.start_time) {
                boot::kill_host(pid, start);
            }
        }
    }
    // Anything else still in the lab's cgroups (a host whose PID was never
    // recorded) goes too.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pids = cgroup::live_pids(&hierarchies, &paths.name, None);
        if pids.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("processes {pids:?} in lab {:?} did not exit", paths.name);
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        sleep(Duration::from_millis(50));
    }
    cgroup::remove_lab(&hierarchies, &paths.name)?;
    network::remove_switch(&paths.switch_netns())?;
    unmount_below(&paths.root())?;
    if paths.root().exists() {
        fs::remove_dir(paths.root())
            .with_context(|| format!("removing {}", paths.root().display()))?;
    }
    // The state root goes too once the last lab is down.
    let _ = fs::remove_dir(&paths.state_root);
    Ok(())
}

/// Unmounts everything at or below `dir`, deepest first.
fn unmount_below(dir: &Path) -> anyhow::Result<()> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mut targets: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    targets.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    targets.dedup();
    for target in targets {
        umount2(&target, MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting {}", target.display()))?;
    }
    Ok(())
}

fn load_running(paths: &LabPaths) -> anyhow::Result<LabState> {
    validate_lab_name(&paths.name)?;
    if !paths.state_file().exists() {
        bail!(
            "lab {:?} is not up: run `berth-lab up --name {}`",
            paths.name,
            paths.name
        );
    }
    LabState::load(&paths.state_file())
}

/// The PID of a running host, or a clear error.
pub fn host_pid(paths: &LabPaths, host: &str) -> anyhow::Result<i32> {
    let state = load_running(paths)?;
    let host = state.host(host)?;
    match (host.pid, host.start_time) {
        (Some(pid), Some(start)) if boot::is_running(pid, start) => Ok(pid),
        _ => bail!("host {} of lab {:?} is not running", host.name, paths.name),
    }
}

/// Stops a host (gracefully, then by force) and boots it again on the same
/// disk; `/run` and `/tmp` start empty.
pub fn reboot(paths: &LabPaths, host_name: &str) -> anyhow::Result<()> {
    let mut state = load_running(paths)?;
    let host = state.host(host_name)?.clone();
    let hierarchies = cgroup::hierarchies()?;
    if let (Some(pid), Some(start)) = (host.pid, host.start_time) {
        stop_host(pid, start);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cgroup::live_pids(&hierarchies, &paths.name, Some(host_name)).is_empty() {
        if Instant::now() > deadline {
            bail!("host {host_name} did not stop");
        }
        sleep(Duration::from_millis(50));
    }
    let init = boot::boot_host(&paths.name, host_name, &paths.host(host_name), &hierarchies)?;
    record_boot(state.host_mut(host_name)?, init);
    state.save(&paths.state_file())?;
    network::attach_host(
        &paths.switch_netns(),
        host_name,
        init.pid,
        host.address,
        host.partitioned,
    )?;
    finish_boot(paths, state.host(host_name)?)
}

/// Asks the host's systemd to power off, and kills it if it takes too long.
fn stop_host(pid: i32, start_time: u64) {
    let poweroff = ["systemctl", "poweroff", "--no-block"].map(String::from);
    let _ = host_command(pid, &poweroff)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
    while boot::is_running(pid, start_time) && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    boot::kill_host(pid, start_time);
}

/// Cuts a host off the lab network, or (`cut == false`) plugs it back in.
pub fn set_partitioned(paths: &LabPaths, host_name: &str, cut: bool) -> anyhow::Result<()> {
    let mut state = load_running(paths)?;
    state.host(host_name)?;
    if cut {
        network::partition(&paths.switch_netns(), host_name)?;
    } else {
        network::heal(&paths.switch_netns(), host_name)?;
    }
    state.host_mut(host_name)?.partitioned = cut;
    state.save(&paths.state_file())
}

/// One host as `status` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostStatus {
    /// The host's name.
    pub name: String,
    /// Its lab address.
    pub address: std::net::Ipv4Addr,
    /// PID of its systemd, if it runs.
    pub pid: Option<i32>,
    /// `systemctl is-system-running`, or `stopped`.
    pub state: String,
    /// Whether it is cut off the lab network.
    pub partitioned: bool,
}

/// The hosts of a lab and how they are doing.
pub fn status(paths: &LabPaths) -> anyhow::Result<Vec<HostStatus>> {
    let state = load_running(paths)?;
    Ok(state
        .hosts
        .iter()
        .map(|h| {
            let running =
                matches!((h.pid, h.start_time), (Some(p), Some(s)) if boot::is_running(p, s));
            HostStatus {
                name: h.name.clone(),
                address: h.address,
                pid: h.pid.filter(|_| running),
                state: match h.pid {
                    Some(pid) if running => system_state(pid),
                    _ => "stopped".into(),
                },
                partitioned: h.partitioned,
            }
        })
        .collect())
}

/// Names of the labs that are up under `state_root`.
pub fn list_labs(state_root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(state_root)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("lab.json").exists())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
