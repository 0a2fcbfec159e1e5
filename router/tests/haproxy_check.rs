//! The rendered configuration against the real HAProxy: `haproxy -c`
//! accepts what berth renders for plain, edge and passthrough routes, and
//! refuses an edge route whose key does not match its certificate.
//! (Debian's haproxy and openssl: installed by scripts/install-deps.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_model::endpoints::{Endpoint, ServiceEndpoints};
use berth_model::{Protocol, Route, RouteTls, TlsTermination};
use berth_router::haproxy::render::{render, render_crt_list, Paths, Ports};
use berth_router::layout::decide;
use berth_router::plan::{plan, Step};

fn dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

/// A self-signed certificate and its key for `host`, made by openssl.
fn certificate(dir: &Path, host: &str) -> (String, String) {
    let (cert, key) = (
        dir.join(format!("{host}.crt")),
        dir.join(format!("{host}.key")),
    );
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
        ])
        .arg(format!("/CN={host}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl");
    assert!(status.status.success(), "{status:?}");
    (
        std::fs::read_to_string(cert).expect("certificate"),
        std::fs::read_to_string(key).expect("key"),
    )
}

fn route(name: &str, host: &str, tls: Option<RouteTls>) -> Route {
    Route {
        name: name.into(),
        labels: Default::default(),
        service: "web".into(),
        host: host.into(),
        path: "/".into(),
        port: None,
        tls,
        websocket: true,
    }
}

/// Renders `routes` into `dir` and runs `haproxy -c` on it.
fn check(dir: &Path, routes: &[Route]) -> std::process::Output {
    let endpoints = vec![ServiceEndpoints {
        service: "web".into(),
        endpoints: vec![Endpoint {
            pod: "web-0".into(),
            node: "h2".into(),
            address: "10.231.0.12".into(),
            port: 30001,
            container_port: 8080,
            protocol: Protocol::Tcp,
            ready: true,
        }],
    }];
    let (layout, wanted) = decide(routes, &endpoints, &BTreeSet::new());
    let Step::Reload(applied) = plan(None, layout, &wanted) else {
        panic!("a first plan reloads");
    };
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    for c in &applied.layout.certificates {
        std::fs::write(certs.join(format!("{}.pem", c.route)), &c.pem).expect("pem");
    }
    let crt_list = dir.join("crt-list");
    std::fs::write(
        &crt_list,
        render_crt_list(&applied.layout, &certs).expect("crt-list"),
    )
    .expect("crt-list");
    let paths = Paths {
        runtime_dir: dir,
        crt_list: &crt_list,
        certificates_dir: &certs,
    };
    let text = render(
        &applied.layout,
        &applied.slots,
        Ports {
            http: 8080,
            https: 8443,
        },
        &paths,
        "berth-router-1",
    )
    .expect("render");
    let config = dir.join("haproxy.cfg");
    std::fs::write(&config, &text).expect("config");
    Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&config)
        .output()
        .expect("running haproxy")
}

#[test]
fn haproxy_accepts_plain_edge_and_passthrough_routes_and_refuses_a_mismatched_key() {
    let dir = dir("haproxy-check");
    let (cert_a, key_a) = certificate(&dir, "a.example.test");
    let (cert_b, _) = certificate(&dir, "b.example.test");
    let (_, key_c) = certificate(&dir, "c.example.test");
    let edge = |cert: &str, key: &str| {
        Some(RouteTls {
            termination: TlsTermination::Edge,
            certificate: Some(cert.into()),
            key: Some(key.into()),
        })
    };
    let passthrough = Some(RouteTls {
        termination: TlsTermination::Passthrough,
        certificate: None,
        key: None,
    });
    let good = [
        route("www", "www.example.test", None),
        route("a", "a.example.test", edge(&cert_a, &key_a)),
        route("pt", "pt.example.test", passthrough),
    ];
    let output = check(&dir, &good);
    assert!(output.status.success(), "{output:?}");
    let warnings = String::from_utf8_lossy(&output.stderr);
    assert!(!warnings.contains("WARNING"), "{warnings}");

    let bad = [route("b", "b.example.test", edge(&cert_b, &key_c))];
    let output = check(&dir, &bad);
    assert!(
        !output.status.success(),
        "a mismatched key must be refused: {output:?}"
    );
}
