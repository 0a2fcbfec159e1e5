//! Golden tests of the unit renderer: each rendered unit file must equal the
//! file under `tests/golden/`. After an intended change, run with
//! `BERTH_BLESS=1` to rewrite the files, and review the diff.

use std::path::PathBuf;

use berth_model::{EnvVar, Probe, Probes, RestartPolicy, TcpCheck};
use berth_unitfiles::{
    render_build_unit, render_container_unit, render_network_mount_unit, render_pod_slice,
    BuildUnit, ContainerUnit, NetworkMountUnit,
};

const SHIM: &str = "/usr/lib/berth/berth-shim";

fn check_golden(file: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file);
    if std::env::var_os("BERTH_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (BERTH_BLESS=1 creates it)",
            path.display()
        )
    });
    if actual != expected {
        let line = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .map_or_else(|| "the end".to_owned(), |i| format!("line {}", i + 1));
        panic!(
            "{} differs from the rendered unit at {line} (BERTH_BLESS=1 rewrites it)\n\
             --- expected\n{expected}\n--- rendered\n{actual}",
            path.display()
        );
    }
}

fn render(unit: &ContainerUnit<'_>) -> String {
    render_container_unit(unit).unwrap_or_else(|e| panic!("render failed: {e}"))
}

#[test]
fn minimal_container() {
    let unit = ContainerUnit {
        pod: "web",
        container: "app",
        description: "berth pod web, container app",
        shim_path: SHIM,
        container_name: "berth-web-app",
        stop_timeout_secs: 10,
        restart: RestartPolicy::Always,
        memory_max: None,
        cpu_millis: None,
        joins_pod_network: true,
        environment: &[],
        probes: &berth_unitfiles::NO_PROBES,
        mounts_for: &[],
        engine_unit: "docker.service",
        shim_root: berth_model::cluster::DEFAULT_SHIM_ROOT,
    };
    check_golden("minimal.service", &render(&unit));
}

#[test]
fn container_with_limits_and_environment() {
    let environment = [
        EnvVar::new("MODE", "production"),
        EnvVar::new("PORT", "8080"),
    ];
    let unit = ContainerUnit {
        pod: "shop",
        container: "api",
        description: "berth pod shop, container api",
        shim_path: SHIM,
        container_name: "berth-shop-api",
        stop_timeout_secs: 30,
        restart: RestartPolicy::OnFailure,
        memory_max: Some(256 * 1024 * 1024),
        cpu_millis: Some(1500),
        joins_pod_network: false,
        environment: &environment,
        probes: &berth_unitfiles::NO_PROBES,
        mounts_for: &[],
        engine_unit: "docker.service",
        shim_root: berth_model::cluster::DEFAULT_SHIM_ROOT,
    };
    check_golden("limits.service", &render(&unit));
}

#[test]
fn nasty_values_are_escaped() {
    let environment = [
        EnvVar::new("GREETING", "line one\nline two\ttabbed"),
        EnvVar::new("TEMPLATE", "100% of $HOME and ${USER} and %n"),
        EnvVar::new("QUOTES", r#"say "hi" it's \back\slash\"#),
        EnvVar::new("CONTROL", "bell\u{7} cr\r esc\u{1b} nel\u{85}"),
        EnvVar::new("EMPTY", ""),
    ];
    let unit = ContainerUnit {
        pod: "my-pod",
        container: "side-car",
        description: "pod \"my-pod\": 100% $HOME \\ 'q'\nsecond line \\",
        shim_path: SHIM,
        container_name: "we%ird $name \"q\" 'q' \\ \n end\\",
        stop_timeout_secs: 0,
        restart: RestartPolicy::Never,
        memory_max: Some(4 * 1024 * 1024),
        cpu_millis: Some(15),
        joins_pod_network: false,
        environment: &environment,
        probes: &berth_unitfiles::NO_PROBES,
        mounts_for: &[],
        engine_unit: "docker.service",
        shim_root: berth_model::cluster::DEFAULT_SHIM_ROOT,
    };
    check_golden("nasty.service", &render(&unit));
}

#[test]
fn container_with_network_probes_may_join_its_namespace() {
    let tcp = |port| Probe {
        tcp: Some(TcpCheck { port }),
        http: None,
        exec: None,
        initial_delay_secs: 0,
        period_secs: 5,
        timeout_secs: 1,
        failure_threshold: 3,
        success_threshold: 1,
    };
    let probes = Probes {
        startup: None,
        readiness: Some(tcp(8080)),
        liveness: None,
    };
    let unit = ContainerUnit {
        pod: "db",
        container: "pg",
        description: "berth pod db, container pg",
        shim_path: SHIM,
        container_name: "berth-db-pg",
        stop_timeout_secs: 10,
        restart: RestartPolicy::Always,
        memory_max: None,
        cpu_millis: None,
        joins_pod_network: false,
        environment: &[],
        probes: &probes,
        mounts_for: &[],
        engine_unit: "docker.service",
        shim_root: berth_model::cluster::DEFAULT_SHIM_ROOT,
    };
    check_golden("probed.service", &render(&unit));
}

#[test]
fn pod_slices() {
    let slice = |pod| render_pod_slice(pod).unwrap_or_else(|e| panic!("render failed: {e}"));
    check_golden("web.slice", &slice("web"));
    check_golden("dashed-pod.slice", &slice("my-pod"));
}

#[test]
fn build_unit() {
    let unit = BuildUnit {
        pod: "shop.site-3-build-0",
        description: "berth pod shop.site-3-build-0, build shop.site-3",
        agent_path: "/usr/bin/berth-agent",
        build_dir: "/var/lib/berth/builds/shop.site-3-build-0",
        stop_timeout_secs: 30,
        memory_max: Some(1 << 30),
        cpu_millis: Some(2000),
        environment: &[],
    };
    let rendered = render_build_unit(&unit).unwrap_or_else(|e| panic!("render failed: {e}"));
    check_golden("build.service", &rendered);
}

#[test]
fn network_volume_mount_and_the_container_that_requires_it() {
    let mount = NetworkMountUnit {
        pod: "shop.db-0",
        volume: "data",
        fs_type: "glusterfs",
        what: "gluster-1.example:/v1/shop",
        read_only: false,
    };
    let rendered =
        render_network_mount_unit(&mount).unwrap_or_else(|e| panic!("render failed: {e}"));
    check_golden("network-volume.mount", &rendered);
    let mounts_for = [berth_unitfiles::network_volume_path("shop.db-0", "data")];
    let unit = ContainerUnit {
        pod: "shop.db-0",
        container: "pg",
        description: "berth pod shop.db-0, container pg",
        shim_path: SHIM,
        container_name: "berth.shop_db-0.pg",
        stop_timeout_secs: 10,
        restart: RestartPolicy::Always,
        memory_max: None,
        cpu_millis: None,
        joins_pod_network: false,
        environment: &[],
        probes: &berth_unitfiles::NO_PROBES,
        mounts_for: &mounts_for,
        engine_unit: "docker.service",
        shim_root: "/",
    };
    check_golden("network-volume.service", &render(&unit));
}

#[test]
fn a_mount_unit_takes_no_string_on_trust() {
    for what in [
        "h1:/v1 x",
        "h1:/v1%n",
        "h1:/v1\nExecStart=/bin/sh",
        "h1 :/v1",
        "h1",
        ":/v1",
    ] {
        let mount = NetworkMountUnit {
            pod: "db",
            volume: "data",
            fs_type: "glusterfs",
            what,
            read_only: false,
        };
        assert!(render_network_mount_unit(&mount).is_err(), "{what:?}");
    }
    let mount = NetworkMountUnit {
        pod: "db",
        volume: "data",
        fs_type: "ext4",
        what: "h1:/v1",
        read_only: true,
    };
    assert!(render_network_mount_unit(&mount).is_err());
}
