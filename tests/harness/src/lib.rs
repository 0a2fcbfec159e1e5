//! The end-to-end test harness: boots a lab through the real `berth-lab`
//! binary, runs commands in its hosts and asserts on what they print.
//!
//! Lab tests need root and real hosts. They are `#[ignore]`d so that plain
//! `cargo test` runs only the fast suite; `scripts/test` runs them with
//! `--ignored`.
//!
//! ```no_run
//! let lab = berth_harness::Lab::up("example", 2);
//! lab.exec("h1", &["systemctl", "is-system-running"]).assert_success();
//! ```

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The checkout's root: examples and scripts live there.
pub fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where cargo put the workspace's binaries (`berth-lab`, `berth-agent`, ...).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("BERTH_BIN_DIR") {
        // Absolute: lab hosts run these binaries from another directory.
        let dir = PathBuf::from(dir);
        return std::fs::canonicalize(&dir).unwrap_or(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    target.join(profile)
}

/// The `berth-lab` binary the tests drive.
pub fn lab_binary() -> PathBuf {
    let path = bin_dir().join("berth-lab");
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (`cargo build --workspace`)",
        path.display()
    );
    path
}

/// The master's URL inside the lab: h1 runs it.
pub const MASTER: &str = "https://h1:7443";

/// The integrated registry of a lab (on h1), as image references name it.
pub const REGISTRY: &str = "h1:5000";

/// Now, in Unix milliseconds: the master's records use the same clock.
pub fn now_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970");
    u64::try_from(since.as_millis()).expect("a sane clock")
}

/// A web server script for `sh -c`: httpd on 8080 serving the name of the
/// host it runs on, so that answers tell which replica served.
pub const SERVE_HOSTNAME: &str =
    "mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 8080 -h /www";

/// A web server script for `sh -c` in a `local/web:vN` image (see
/// [`Lab::make_web_images`]): httpd on 8080 serving the image's version, so
/// that answers tell which revision served.
pub const SERVE_VERSION: &str =
    "mkdir -p /www; cat /version > /www/index.html; exec httpd -f -p 8080 -h /www";

/// A lab host as `berth-lab status --json` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Host {
    /// `h1`, `h2`, ...
    pub name: String,
    /// Lab address.
    pub address: Ipv4Addr,
    /// PID of the host's systemd on the machine.
    pub pid: Option<i32>,
    /// `systemctl is-system-running`, or `stopped`.
    pub state: String,
    /// Whether the host is cut off.
    pub partitioned: bool,
}

/// A running lab; dropping it tears it down.
#[derive(Debug)]
pub struct Lab {
    name: String,
    /// How long `berth-lab up` took.
    pub boot_time: Duration,
    down: bool,
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Run {
    /// The command, for messages.
    pub command: String,
    /// The raw output.
    pub output: Output,
}

impl Run {
    /// Standard output as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Standard error as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.output.status.success()
    }

    /// The exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Panics with the command's output unless it exited 0; returns stdout.
    #[track_caller]
    pub fn assert_success(&self) -> String {
        assert!(
            self.success(),
            "`{}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.output.status,
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Panics unless the command exited 0 and printed JSON; returns it.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        let out = self.assert_success();
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}):\n{out}", self.command))
    }

    /// Panics unless the command failed; returns stderr.
    #[track_caller]
    pub fn assert_failure(&self) -> String {
        assert!(
            !self.success(),
            "`{}` succeeded but should have failed:\n{}",
            self.command,
            self.stdout()
        );
        self.stderr()
    }
}

/// Runs `berth-lab` with `args` and captures what it prints.
pub fn berth_lab(args: &[&str]) -> Run {
    let output = Command::new(lab_binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running berth-lab");
    Run {
        command: format!("berth-lab {}", args.join(" ")),
        output,
    }
}

impl Lab {
    /// Boots a lab named `t-<name>` (`$BERTH_LAB_PREFIX<name>`: runs from
    /// several checkouts at once keep apart) with `hosts` hosts and berth's
    /// freshly built binaries installed. A lab of that name left over from
    /// an earlier, interrupted run is torn down first.
    #[track_caller]
    pub fn up(name: &str, hosts: usize) -> Lab {
        Self::up_with(name, hosts, &[])
    }

    /// Like [`Lab::up`], with extra `berth-lab up` arguments (e.g. `--bare`).
    #[track_caller]
    pub fn up_with(name: &str, hosts: usize, extra: &[&str]) -> Lab {
        let prefix = std::env::var("BERTH_LAB_PREFIX").unwrap_or_else(|_| "t-".into());
        let name = format!("{prefix}{name}");
        berth_lab(&["down", "--name", &name]);
        let hosts = hosts.to_string();
        let bin_dir = bin_dir();
        let bin_dir = bin_dir.to_string_lossy();
        let mut args = vec!["up", "--name", &name, "--hosts", &hosts];
        if !extra.contains(&"--bare") {
            args.extend(["--bin-dir", &bin_dir]);
        }
        args.extend(extra);
        let started = Instant::now();
        berth_lab(&args).assert_success();
        Lab {
            name,
            boot_time: started.elapsed(),
            down: false,
        }
    }

    /// Like [`Lab::up`], with `berth-agent` started and active on every
    /// host: for tests of one node's agent, without a master.
    #[track_caller]
    pub fn up_with_agents(name: &str, hosts: usize) -> Lab {
        let lab = Self::up(name, hosts);
        for i in 1..=hosts {
            let host = format!("h{i}");
            lab.exec(&host, &["systemctl", "start", "berth-agent"])
                .assert_success();
            assert!(
                lab.is_active(&host, "berth-agent"),
                "berth-agent is not active on {host}"
            );
        }
        lab
    }

    /// The lab's name as `berth-lab --name` takes it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `berth-lab --name <lab> <args>`.
    pub fn lab(&self, args: &[&str]) -> Run {
        let mut all = vec!["--name", &self.name];
        all.extend(args);
        berth_lab(&all)
    }

    /// Runs `argv` inside `host`.
    pub fn exec(&self, host: &str, argv: &[&str]) -> Run {
        let mut all = vec!["exec", "--name", &self.name, host, "--"];
        all.extend(argv);
        let mut run = berth_lab(&all);
        run.command = format!("[{host}] {}", argv.join(" "));
        run
    }

    /// Copies the machine's file `from` to `to` inside `host` (mode 0644),
    /// through the command's stdin: the host may not see the machine's path.
    #[track_caller]
    pub fn copy_in(&self, host: &str, from: &Path, to: &str) {
        let file =
            std::fs::File::open(from).unwrap_or_else(|e| panic!("opening {}: {e}", from.display()));
        let script = format!("cat > '{to}' && chmod 0644 '{to}'");
        let output = Command::new(lab_binary())
            .args([
                "exec", "--name", &self.name, host, "--", "sh", "-c", &script,
            ])
            .stdin(Stdio::from(file))
            .output()
            .expect("running berth-lab");
        Run {
            command: format!("[{host}] copy {} to {to}", from.display()),
            output,
        }
        .assert_success();
    }

    /// Runs the `berth` CLI inside `host` (h1 runs the master and holds
    /// its admin credential).
    pub fn berth(&self, host: &str, args: &[&str]) -> Run {
        let mut argv = vec!["berth"];
        argv.extend(args);
        self.exec(host, &argv)
    }

    /// Every pod as `berth ps -o json` on h1 lists it.
    #[track_caller]
    pub fn pods(&self) -> Vec<serde_json::Value> {
        match self.berth("h1", &["ps", "-o", "json"]).json() {
            serde_json::Value::Array(pods) => pods,
            other => panic!("berth ps -o json printed no list: {other}"),
        }
    }

    /// One pod as `berth ps -o json` lists it, if it is listed.
    #[track_caller]
    pub fn pod(&self, name: &str) -> Option<serde_json::Value> {
        self.pods().into_iter().find(|p| p["spec"]["name"] == name)
    }

    /// The host port of a pod's first published port, once reported.
    #[track_caller]
    pub fn host_port(&self, pod: &str) -> Option<u64> {
        self.pod(pod)?["status"]["containers"][0]["hostPorts"][0]["hostPort"].as_u64()
    }

    /// The events of one kind, oldest first, as `berth events -o json`
    /// on h1 lists them.
    #[track_caller]
    pub fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        match self.berth("h1", &["events", "-o", "json"]).json() {
            serde_json::Value::Array(events) => {
                events.into_iter().filter(|e| e["kind"] == kind).collect()
            }
            other => panic!("berth events -o json printed no list: {other}"),
        }
    }

    /// A unit's property (`systemctl show -p NAME --value`), trimmed.
    #[track_caller]
    pub fn unit_property(&self, host: &str, unit: &str, property: &str) -> String {
        self.exec(
            host,
            &["systemctl", "show", "-p", property, "--value", unit],
        )
        .assert_success()
        .trim()
        .to_owned()
    }

    /// A unit's main PID, as text (`0` when it runs none).
    #[track_caller]
    pub fn main_pid(&self, host: &str, unit: &str) -> String {
        self.unit_property(host, unit, "MainPID")
    }

    /// Whether a unit is active (`systemctl is-active`).
    pub fn is_active(&self, host: &str, unit: &str) -> bool {
        self.exec(host, &["systemctl", "is-active", unit])
            .stdout()
            .trim()
            == "active"
    }

    /// Adds `setting` at the top of `host`'s agent config (before any
    /// table) and restarts the agent, which keeps its join to the master;
    /// waits until it answers again.
    #[track_caller]
    pub fn configure_agent(&self, host: &str, setting: &str) {
        self.sh(
            host,
            &format!(
                "mkdir -p /etc/berth && touch /etc/berth/agent.toml && \
                 {{ echo '{setting}'; cat /etc/berth/agent.toml; }} > /run/agent.toml && \
                 cat /run/agent.toml > /etc/berth/agent.toml && systemctl restart berth-agent"
            ),
        )
        .assert_success();
        self.eventually(Duration::from_secs(30), "the agent to answer", || {
            self.berth(host, &["local", "ps"]).success().then_some(())
        });
    }

    /// Makes images `local/web:v1` and `local/web:v2` on `host`: busybox
    /// with a `/version` file each ([`SERVE_VERSION`] serves it), two
    /// versions of one server for rollouts.
    #[track_caller]
    pub fn make_web_images(&self, host: &str) {
        self.sh(
            host,
            "set -e; for v in v1 v2; do
               docker rm -f make-web >/dev/null 2>&1 || true
               docker run --name make-web local/busybox sh -c \"echo $v > /version\"
               docker commit make-web local/web:$v >/dev/null
               docker rm make-web >/dev/null
             done",
        )
        .assert_success();
    }

    /// Makes image `local/NAME` on `host`: busybox with `bytes` of noise
    /// of its own, so that it shares no layer with any other image.
    #[track_caller]
    pub fn make_noise_image(&self, host: &str, name: &str, bytes: usize) {
        self.sh(
            host,
            &format!(
                "set -e; docker rm -f make-noise >/dev/null 2>&1 || true
                 docker run --name make-noise local/busybox sh -c 'head -c {bytes} /dev/urandom > /noise'
                 docker commit make-noise local/{name} >/dev/null; docker rm make-noise >/dev/null"
            ),
        )
        .assert_success();
    }

    /// `docker tag LOCAL REGISTRY/default/REPO_TAG` and `docker push` on
    /// h1 (logged in to the integrated registry); the pushed digest.
    #[track_caller]
    pub fn push_image(&self, local: &str, repo_tag: &str) -> String {
        let remote = format!("{REGISTRY}/default/{repo_tag}");
        self.exec("h1", &["docker", "tag", local, &remote])
            .assert_success();
        let out = self
            .exec("h1", &["docker", "push", &remote])
            .assert_success();
        out.find("digest: sha256:")
            .map(|at| out[at + "digest: ".len()..][..71].to_owned())
            .unwrap_or_else(|| panic!("no digest in docker push's output: {out}"))
    }

    /// Builds `local/s2i-httpd` on `host` from the example builder
    /// (`examples/builders/busybox-httpd`): source-to-image's labels and
    /// scripts over busybox; its assemble refuses sources without an
    /// `index.html`.
    #[track_caller]
    pub fn make_builder_image(&self, host: &str) {
        let example = repository_root().join("examples/builders/busybox-httpd");
        self.exec(host, &["mkdir", "-p", "/root/builder/s2i/bin"])
            .assert_success();
        for file in [
            "Dockerfile",
            "s2i/bin/assemble",
            "s2i/bin/run",
            "s2i/bin/usage",
        ] {
            self.copy_in(host, &example.join(file), &format!("/root/builder/{file}"));
        }
        self.sh(
            host,
            "chmod +x /root/builder/s2i/bin/* && docker build -q -t local/s2i-httpd /root/builder",
        )
        .assert_success();
    }

    /// Serves bare repositories under `/srv/git` of `host` with `git
    /// daemon` (`git://HOST/NAME.git`, pushes allowed), as a unit of its
    /// own, and waits until it listens.
    #[track_caller]
    pub fn start_git_server(&self, host: &str) {
        self.sh(
            host,
            "mkdir -p /srv/git && systemd-run --unit=lab-git-daemon --collect \
               git daemon --reuseaddr --export-all --enable=receive-pack \
               --base-path=/srv/git /srv/git",
        )
        .assert_success();
        self.eventually(Duration::from_secs(15), "git daemon listening", || {
            self.sh(host, "ss -ltn | grep -q ':9418 '")
                .success()
                .then_some(())
        });
    }

    /// Makes the bare repository `/srv/git/NAME.git` on `host` whose
    /// `post-receive` hook (`examples/git/post-receive`) posts each push to
    /// `webhook` (the GitHub URL `berth build webhook` prints), signed with
    /// its secret, trusting the master's CA.
    #[track_caller]
    pub fn make_git_repository(&self, host: &str, name: &str, webhook: Option<&str>) {
        let repository = format!("/srv/git/{name}.git");
        self.exec(
            host,
            &["git", "init", "-q", "--bare", "-b", "main", &repository],
        )
        .assert_success();
        let hook = format!("{repository}/hooks/post-receive");
        self.copy_in(
            host,
            &repository_root().join("examples/git/post-receive"),
            &hook,
        );
        self.exec(host, &["chmod", "+x", &hook]).assert_success();
        if let Some(webhook) = webhook {
            self.hook_webhook(host, name, webhook);
        }
    }

    /// The GitHub webhook URL of build config NAME, as `berth build
    /// webhook` prints it.
    #[track_caller]
    pub fn build_webhook(&self, name: &str) -> String {
        let out = self
            .berth("h1", &["build", "webhook", name])
            .assert_success();
        out.lines()
            .find_map(|l| l.strip_prefix("github:"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no github webhook in {out}"))
            .to_owned()
    }

    /// What the router at `router` serves for `host` (curl on h1), if it
    /// answers within 2 s.
    pub fn routed(&self, router: &str, host: &str) -> Option<String> {
        let run = self.exec(
            "h1",
            &[
                "curl",
                "-sf",
                "--max-time",
                "2",
                "-H",
                &format!("Host: {host}"),
                &format!("http://{router}/"),
            ],
        );
        run.success().then(|| run.stdout().trim().to_owned())
    }

    /// Points repository NAME's hook at `webhook`.
    #[track_caller]
    pub fn hook_webhook(&self, host: &str, name: &str, webhook: &str) {
        let repository = format!("/srv/git/{name}.git");
        let secret = webhook
            .trim_end_matches("/github")
            .rsplit('/')
            .next()
            .unwrap_or_default();
        for (key, value) in [
            ("berth.webhook", webhook),
            ("berth.secret", secret),
            ("berth.cacert", "/var/lib/berth/master/ca.crt"),
        ] {
            self.exec(host, &["git", "-C", &repository, "config", key, value])
                .assert_success();
        }
    }

    /// `git push` of `files` (name, contents) as a new commit of the work
    /// tree `/root/work/NAME` on `host` (cloned from `git://HOST/NAME.git`
    /// at first), files not named removed; the commit id and what the push
    /// printed (the hook's answer included).
    #[track_caller]
    pub fn git_push(&self, host: &str, name: &str, files: &[(&str, &str)]) -> (String, String) {
        let work = format!("/root/work/{name}");
        let mut script = format!(
            "set -e; export HOME=/root
             git config --global user.email lab@berth.test; git config --global user.name lab
             [ -d {work}/.git ] || git clone -q git://{host}/{name}.git {work} 2>/dev/null || \
               {{ mkdir -p {work}; git -C {work} init -q -b main; git -C {work} remote add origin git://{host}/{name}.git; }}
             cd {work}; git rm -rq --ignore-unmatch . >/dev/null
"
        );
        for (file, contents) in files {
            script.push_str(&format!(
                "mkdir -p \"$(dirname '{file}')\"; printf '%s' '{}' > '{file}'; git add '{file}'\n",
                contents.replace('\'', "'\\''")
            ));
        }
        script.push_str(
            "git commit -qm change --allow-empty; git push -q origin HEAD:main 2>&1; echo \"commit=$(git rev-parse HEAD)\"",
        );
        let out = self.sh(host, &script).assert_success();
        let commit = out
            .lines()
            .find_map(|l| l.strip_prefix("commit="))
            .expect("the commit")
            .to_owned();
        (commit, out)
    }

    /// The credential `host`'s agent got when it joined.
    #[track_caller]
    pub fn node_credential(&self, host: &str) -> String {
        self.exec(host, &["cat", "/var/lib/berth/master.json"])
            .json()["credential"]
            .as_str()
            .unwrap_or_else(|| panic!("{host} has no credential"))
            .to_owned()
    }

    /// Starts berth-router on `host` the way an operator would, and waits
    /// until its HAProxy runs.
    #[track_caller]
    pub fn start_router(&self, host: &str) {
        self.exec(host, &["systemctl", "enable", "--now", "berth-router"])
            .assert_success();
        self.eventually(
            Duration::from_secs(30),
            "berth-router-haproxy active",
            || {
                self.exec(host, &["systemctl", "is-active", "berth-router-haproxy"])
                    .success()
                    .then_some(())
            },
        );
    }

    /// Copies the berth-bench binary onto `host`, where the lab's root can
    /// run it (hosts see the machine's files through their overlay root,
    /// but not its /tmp, where a checkout may be). Its path there.
    #[track_caller]
    pub fn install_bench(&self, host: &str) -> &'static str {
        const PATH: &str = "/usr/local/bin/berth-bench";
        self.copy_in(host, &bin_dir().join("berth-bench"), PATH);
        self.exec(host, &["chmod", "0755", PATH]).assert_success();
        PATH
    }

    /// Serves a policy webhook on `host`: busybox httpd with a CGI script
    /// that keeps each body POSTed to it, one per line. Its URL.
    #[track_caller]
    pub fn serve_webhook(&self, host: &str) -> String {
        self.sh(
            host,
            "mkdir -p /run/hook/cgi-bin && cat > /run/hook/cgi-bin/hook <<'EOF'
#!/bin/sh
head -c \"$CONTENT_LENGTH\" >> /run/hook.log
echo >> /run/hook.log
printf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'
EOF
chmod 755 /run/hook/cgi-bin/hook
systemd-run --unit hook busybox httpd -f -p 8088 -h /run/hook",
        )
        .assert_success();
        format!("http://{}:8088/cgi-bin/hook", self.host(host).address)
    }

    /// What the webhook [`Lab::serve_webhook`] started on `host` received,
    /// oldest first.
    pub fn webhook_received(&self, host: &str) -> Vec<serde_json::Value> {
        self.exec(host, &["cat", "/run/hook.log"])
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Runs a shell script inside `host` (with `sh -c`).
    pub fn sh(&self, host: &str, script: &str) -> Run {
        self.exec(host, &["sh", "-c", script])
    }

    /// The hosts and their state.
    #[track_caller]
    pub fn status(&self) -> Vec<Host> {
        let out = self.lab(&["status", "--json"]).assert_success();
        serde_json::from_str(&out).expect("parsing berth-lab status --json")
    }

    /// One host's entry in [`Lab::status`].
    #[track_caller]
    pub fn host(&self, name: &str) -> Host {
        self.status()
            .into_iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// Retries `check` until it returns `Some`, or panics after `timeout`
    /// with `what`.
    #[track_caller]
    pub fn eventually<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Tears the lab down now and returns how long it took.
    #[track_caller]
    pub fn down(mut self) -> Duration {
        let started = Instant::now();
        self.lab(&["down"]).assert_success();
        self.down = true;
        started.elapsed()
    }
}

impl Lab {
    /// What a user would look at after a failure: the cluster as h1's
    /// `berth` sees it, and the last lines each host's berth services
    /// logged. Printed when a test panics, before the lab goes away.
    fn print_diagnosis(&self) {
        let mut report = format!("\n==== lab {} at the failure ====\n", self.name);
        let views: [&[&str]; 3] = [&["ps", "-o", "wide"], &["node", "ls"], &["events"]];
        for args in views {
            let run = self.berth("h1", args);
            report += &format!("-- {}\n{}{}", run.command, run.stdout(), run.stderr());
        }
        let hosts = self.lab(&["status", "--json"]);
        let hosts: Vec<Host> = serde_json::from_str(&hosts.stdout()).unwrap_or_default();
        for host in hosts.iter().filter(|h| h.pid.is_some()) {
            let run = self.exec(
                &host.name,
                &[
                    "journalctl",
                    "--no-pager",
                    "-o",
                    "short-precise",
                    "-n",
                    "40",
                    "-u",
                    "berth-*",
                ],
            );
            report += &format!("-- {}\n{}", run.command, run.stdout());
        }
        eprintln!("{report}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.down {
            self.print_diagnosis();
        }
        if !self.down {
            let run = self.lab(&["down"]);
            if !run.success() {
                eprintln!("tearing down lab {} failed: {}", self.name, run.stderr());
            }
        }
    }
}
