//! The master's API in-process on 127.0.0.1:0 with the embedded store:
//! auth, joining, services placed by the controller, dead nodes replaced.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

use common::Master;

async fn start(name: &str) -> Master {
    common::start(&format!("master-api-{name}"), 1).await
}

impl Master {
    async fn join(&self, node: &str) -> String {
        let (status, token) = self
            .admin(reqwest::Method::POST, "/v1/join-tokens", None)
            .await;
        assert_eq!(status, 201, "{token}");
        let token = token["token"].as_str().expect("test").to_owned();
        let body = json!({"token": token, "node": {"name": node, "address": format!("{node}.lab"), "capacity": {"memoryBytes": 8u64 << 30, "cpuMillis": 8000}}});
        let (status, joined) = self
            .call(reqwest::Method::POST, "/v1/join", None, Some(body.clone()))
            .await;
        assert_eq!(status, 201, "{joined}");
        // The token works once.
        let (again, _) = self
            .call(reqwest::Method::POST, "/v1/join", None, Some(body))
            .await;
        assert_eq!(again, 401);
        joined["credential"].as_str().expect("test").to_owned()
    }

    async fn heartbeat(&self, node: &str, credential: &str) {
        let body = json!({"capacity": {"memoryBytes": 8u64 << 30, "cpuMillis": 8000}, "pods": []});
        let (status, answer) = self
            .call(
                reqwest::Method::PUT,
                &format!("/v1/nodes/{node}/heartbeat"),
                Some(credential),
                Some(body),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    async fn placements(&self) -> Vec<(String, Option<String>)> {
        let (status, pods) = self.admin(reqwest::Method::GET, "/v1/pods", None).await;
        assert_eq!(status, 200);
        pods.as_array()
            .expect("test")
            .iter()
            .map(|p| {
                (
                    p["spec"]["name"].as_str().expect("test").to_owned(),
                    p["node"].as_str().map(String::from),
                )
            })
            .collect()
    }
}

fn web(replicas: u32) -> Value {
    json!({"name": "web", "replicas": replicas, "template": {"name": "web", "containers": [{"name": "web", "image": "local/busybox", "command": ["httpd", "-f"], "ports": [{"containerPort": 8080, "hostPort": 0}]}]}})
}

#[tokio::test]
async fn tokens_and_node_credentials_are_enforced() {
    let master = start("auth").await;
    let (status, _) = master
        .call(reqwest::Method::GET, "/v1/nodes", None, None)
        .await;
    assert_eq!(status, 401);
    let (status, _) = master
        .call(reqwest::Method::GET, "/v1/nodes", Some("wrong"), None)
        .await;
    assert_eq!(status, 401);
    let body = json!({"token": "no-such-token", "node": {"name": "h9", "address": "h9", "capacity": {"memoryBytes": 1, "cpuMillis": 1}}});
    let (status, _) = master
        .call(reqwest::Method::POST, "/v1/join", None, Some(body))
        .await;
    assert_eq!(status, 401, "an unknown join token is refused");

    let h1 = master.join("h1").await;
    master.join("h2").await;
    let (status, _) = master
        .call(
            reqwest::Method::GET,
            "/v1/nodes/h1/assignments",
            Some(&h1),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = master
        .call(
            reqwest::Method::GET,
            "/v1/nodes/h2/assignments",
            Some(&h1),
            None,
        )
        .await;
    assert_eq!(status, 403, "a node read another node's assignments");
    let (status, _) = master
        .call(
            reqwest::Method::PUT,
            "/v1/nodes/h2/heartbeat",
            Some(&h1),
            Some(json!({"capacity": {"memoryBytes": 1, "cpuMillis": 1}})),
        )
        .await;
    assert_eq!(status, 403, "a node wrote another node's status");
    let (status, _) = master
        .call(reqwest::Method::GET, "/v1/services", Some(&h1), None)
        .await;
    assert_eq!(status, 403);
    let (status, nodes) = master.admin(reqwest::Method::GET, "/v1/nodes", None).await;
    assert_eq!(status, 200);
    assert_eq!(nodes.as_array().expect("test").len(), 2);
}

#[tokio::test]
async fn bad_services_are_refused_naming_the_field() {
    let master = start("invalid").await;
    let mut bad = web(3);
    bad["name"] = json!("Bad_Name");
    bad["template"]["containers"][0]["env"] = json!([{"name": "1X", "value": "v"}]);
    let (status, error) = master
        .admin(reqwest::Method::POST, "/v1/services", Some(bad))
        .await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = error["fields"]
        .as_array()
        .expect("test")
        .iter()
        .map(|f| f["field"].as_str().expect("test"))
        .collect();
    assert_eq!(
        fields,
        ["name", "template.containers[0].env[0].name"],
        "{error}"
    );
    let (status, _) = master
        .admin(
            reqwest::Method::POST,
            "/v1/services",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn fixed_host_ports_outside_the_range_are_refused_naming_the_field() {
    let master = start("host-ports").await;
    let mut ssh = web(1);
    ssh["template"]["containers"][0]["ports"] = json!([
        {"containerPort": 22, "hostPort": 22},
        {"containerPort": 80, "hostPort": 80},
        {"containerPort": 8080, "hostPort": 30080}
    ]);
    let (status, error) = master
        .admin(reqwest::Method::POST, "/v1/services", Some(ssh))
        .await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = error["fields"]
        .as_array()
        .expect("test")
        .iter()
        .map(|f| f["field"].as_str().expect("test"))
        .collect();
    assert_eq!(
        fields,
        ["template.containers[0].ports[0].hostPort"],
        "{error}"
    );
    assert!(
        error.to_string().contains("host-ports-allow (80, 443)"),
        "{error}"
    );
}

#[tokio::test]
async fn replicas_spread_and_move_off_a_dead_node() {
    let master = start("replicas").await;
    let credentials = [
        master.join("h1").await,
        master.join("h2").await,
        master.join("h3").await,
    ];
    let (status, created) = master
        .admin(reqwest::Method::POST, "/v1/services", Some(web(3)))
        .await;
    assert_eq!(status, 201, "{created}");

    // h1 and h2 keep beating; h3 falls silent after the pods are placed.
    let mut spread = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        for (i, credential) in credentials.iter().enumerate() {
            master.heartbeat(&format!("h{}", i + 1), credential).await;
        }
        spread = master.placements().await;
        if spread.len() == 3 && spread.iter().all(|(_, n)| n.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let nodes: std::collections::BTreeSet<_> =
        spread.iter().filter_map(|(_, n)| n.clone()).collect();
    assert_eq!(nodes.len(), 3, "one pod per node: {spread:?}");

    let silent_at = Instant::now();
    loop {
        master.heartbeat("h1", &credentials[0]).await;
        master.heartbeat("h2", &credentials[1]).await;
        let now = master.placements().await;
        if now.len() == 3
            && now
                .iter()
                .all(|(_, n)| n.as_deref().is_some_and(|n| n != "h3"))
        {
            break;
        }
        assert!(
            silent_at.elapsed() < Duration::from_secs(5),
            "pods still on h3 after 5 s: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "measured: pods left the silent node in {:?} (grace 1 s)",
        silent_at.elapsed()
    );

    let (status, _) = master
        .admin(
            reqwest::Method::POST,
            "/v1/services/web/scale",
            Some(json!({"replicas": 1})),
        )
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while master.placements().await.len() != 1 {
        assert!(Instant::now() < deadline, "scale down did not happen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = master
        .admin(reqwest::Method::DELETE, "/v1/services/web", None)
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !master.placements().await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "deleting the service did not delete its pods"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn secrets_reach_the_assigned_node_only() {
    let master = start("secrets").await;
    let h1 = master.join("h1").await;
    master.heartbeat("h1", &h1).await;
    let mut service = web(1);
    service["template"]["containers"][0]["secretEnv"] =
        json!([{"name": "TOKEN", "value": "hunter2-secret"}]);
    let (status, created) = master
        .admin(reqwest::Method::POST, "/v1/services", Some(service))
        .await;
    assert_eq!(status, 201);
    assert!(!created.to_string().contains("hunter2-secret"), "{created}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let assigned = loop {
        master.heartbeat("h1", &h1).await;
        let (status, assigned) = master
            .call(
                reqwest::Method::GET,
                "/v1/nodes/h1/assignments",
                Some(&h1),
                None,
            )
            .await;
        assert_eq!(status, 200);
        if assigned["pods"].as_array().is_some_and(|p| !p.is_empty()) {
            break assigned;
        }
        assert!(Instant::now() < deadline, "nothing assigned to h1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        assigned.to_string().contains("hunter2-secret"),
        "the node did not get its secret"
    );
    for path in ["/v1/services", "/v1/services/web", "/v1/pods"] {
        let (_, body) = master.admin(reqwest::Method::GET, path, None).await;
        assert!(
            !body.to_string().contains("hunter2-secret"),
            "{path} shows the secret"
        );
    }
}

/// The pods assigned to `node` once it has `count` of them.
async fn assigned(master: &Master, node: &str, credential: &str, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        master.heartbeat(node, credential).await;
        let (status, assigned) = master
            .call(
                reqwest::Method::GET,
                &format!("/v1/nodes/{node}/assignments"),
                Some(credential),
                None,
            )
            .await;
        assert_eq!(status, 200);
        if assigned["pods"]
            .as_array()
            .is_some_and(|p| p.len() >= count)
        {
            return assigned;
        }
        assert!(Instant::now() < deadline, "not {count} pods on {node}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_generated_value_is_kept_secret_required_on_create_and_kept_when_sent_blank() {
    let master = start("generated-env").await;
    let h1 = master.join("h1").await;
    let mut service = web(1);
    service["generatedEnv"] = json!([{"name": "PASSWORD", "from": "[a-z]{16}", "value": ""}]);
    let (status, error) = master
        .admin(reqwest::Method::POST, "/v1/services", Some(service.clone()))
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(
        error["fields"][0]["field"], "generatedEnv[0].value",
        "{error}"
    );

    service["generatedEnv"][0]["value"] = json!("generatedsecretx");
    let (status, created) = master
        .admin(reqwest::Method::POST, "/v1/services", Some(service))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["generatedEnv"][0]["value"], "", "{created}");
    let first = assigned(&master, "h1", &h1, 1).await;
    assert!(
        first.to_string().contains("generatedsecretx"),
        "the pod lacks its generated value: {first}"
    );

    // Sent back as shown (blank), with a label: the value stays, and a
    // new pod gets it.
    let (_, mut shown) = master
        .admin(reqwest::Method::GET, "/v1/services/web", None)
        .await;
    shown["object"]["labels"] = json!({"tier": "front"});
    let (status, updated) = master
        .admin(reqwest::Method::PUT, "/v1/services/web", Some(shown))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert!(
        !updated.to_string().contains("generatedsecretx"),
        "{updated}"
    );
    let (status, _) = master
        .admin(
            reqwest::Method::POST,
            "/v1/services/web/scale",
            Some(json!({"replicas": 2})),
        )
        .await;
    assert_eq!(status, 200);
    let both = assigned(&master, "h1", &h1, 2).await;
    let second = both["pods"]
        .as_array()
        .and_then(|pods| pods.iter().find(|p| p.to_string().contains("web-1")))
        .cloned()
        .unwrap_or_default();
    assert!(
        second.to_string().contains("generatedsecretx"),
        "the new pod lacks the kept value: {both}"
    );
}

#[tokio::test]
async fn pods_can_be_watched_and_a_drained_node_is_emptied() {
    use futures_util::StreamExt;
    let master = start("watch-drain").await;
    let credentials = [master.join("h1").await, master.join("h2").await];
    let watch = master
        .http
        .get(format!("{}/v1/pods?watch=true", master.url))
        .bearer_auth(&master.admin)
        .send()
        .await
        .expect("watch");
    assert_eq!(watch.status().as_u16(), 200);
    let mut stream = watch.bytes_stream();
    let (status, _) = master
        .admin(reqwest::Method::POST, "/v1/services", Some(web(2)))
        .await;
    assert_eq!(status, 201);

    // The watch sees the pods appear, secrets redacted, with revisions.
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen
        .lines()
        .filter(|l| l.contains("\"type\":\"Put\""))
        .count()
        < 2
    {
        for (i, credential) in credentials.iter().enumerate() {
            master.heartbeat(&format!("h{}", i + 1), credential).await;
        }
        if let Ok(Some(chunk)) =
            tokio::time::timeout(Duration::from_millis(200), stream.next()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        }
        assert!(
            Instant::now() < deadline,
            "the watch showed no pods: {seen}"
        );
    }
    let first: Value = serde_json::from_str(seen.lines().next().expect("a line")).expect("ndjson");
    assert!(first["resourceVersion"].as_u64().is_some(), "{first}");
    assert!(
        first["object"]["spec"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("web-")),
        "{first}"
    );

    // Wait until both are placed, then drain h1: its pod goes to h2.
    let deadline = Instant::now() + Duration::from_secs(5);
    while master
        .placements()
        .await
        .iter()
        .filter(|(_, n)| n.is_some())
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "pods not placed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, drained) = master
        .admin(reqwest::Method::POST, "/v1/nodes/h1/drain", None)
        .await;
    assert_eq!(status, 200, "{drained}");
    assert_eq!(
        drained["evicted"].as_array().map(Vec::len),
        Some(1),
        "{drained}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for (i, credential) in credentials.iter().enumerate() {
            master.heartbeat(&format!("h{}", i + 1), credential).await;
        }
        let placed = master.placements().await;
        if placed.len() == 2 && placed.iter().all(|(_, n)| n.as_deref() == Some("h2")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pods still on the drained node: {placed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stateful service of one replica, with `memory` bytes and host port
/// 30080 if asked.
fn stateful(name: &str, memory: Option<u64>, port: bool) -> Value {
    let mut container =
        json!({"name": "app", "image": "local/busybox", "command": ["httpd", "-f"]});
    if let Some(memory) = memory {
        container["resources"] = json!({"memoryBytes": memory});
    }
    if port {
        container["ports"] = json!([{"containerPort": 80, "hostPort": 30080}]);
    }
    json!({"name": name, "replicas": 1, "stateful": true, "template": {"name": name, "containers": [container]}})
}

#[tokio::test]
async fn a_move_passes_the_schedulers_filters_or_says_which_it_fails() {
    let master = start("move").await;
    let credentials = [
        master.join("h1").await,
        master.join("h2").await,
        master.join("h3").await,
    ];
    let beat = |nodes: &'static [usize]| {
        let master = &master;
        let credentials = &credentials;
        async move {
            for &i in nodes {
                master
                    .heartbeat(&format!("h{}", i + 1), &credentials[i])
                    .await;
            }
        }
    };
    // a and b hold the same host port, so they are on two nodes; c needs
    // half of a node's memory.
    for service in [
        stateful("a", Some(6 << 30), true),
        stateful("b", None, true),
        stateful("c", Some(4 << 30), false),
    ] {
        let (status, created) = master
            .admin(reqwest::Method::POST, "/v1/services", Some(service))
            .await;
        assert_eq!(status, 201, "{created}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let placed: std::collections::BTreeMap<String, String> = loop {
        beat(&[0, 1, 2]).await;
        let placed: std::collections::BTreeMap<_, _> = master
            .placements()
            .await
            .into_iter()
            .filter_map(|(pod, node)| Some((pod, node?)))
            .collect();
        if placed.len() == 3 {
            break placed;
        }
        assert!(Instant::now() < deadline, "pods not placed: {placed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (a_on, b_on) = (placed["a-0"].as_str(), placed["b-0"].as_str());
    let free = ["h1", "h2", "h3"]
        .into_iter()
        .find(|n| !placed.values().any(|p| p == n))
        .expect("a node without pods");
    let move_to = |pod: &'static str, to: String| {
        let master = &master;
        async move {
            master
                .admin(
                    reqwest::Method::POST,
                    &format!("/v1/pods/{pod}/move"),
                    Some(json!({ "to": to })),
                )
                .await
        }
    };
    let refused = |answer: &Value, why: &str| {
        assert_eq!(answer["fields"][0]["field"], "to", "{answer}");
        let error = answer["error"].as_str().expect("an error");
        assert!(error.contains(why), "{answer}");
    };

    let (status, answer) = move_to("b-0", a_on.to_owned()).await;
    assert_eq!(status, 409, "{answer}");
    refused(
        &answer,
        &format!("pod b-0 cannot go to {a_on}: no node has host port 30080 free"),
    );
    let (status, answer) = move_to("c-0", a_on.to_owned()).await;
    assert_eq!(status, 409, "{answer}");
    refused(
        &answer,
        "0/1 nodes fit: 1 insufficient memory (needs 4Gi, 2Gi free)",
    );
    let (status, answer) = move_to("a-0", "h9".to_owned()).await;
    assert_eq!(status, 400, "{answer}");
    refused(&answer, "no node named h9");
    let (status, answer) = move_to("nope-0", free.to_owned()).await;
    assert_eq!(status, 404, "{answer}");

    let (status, _) = master
        .admin(
            reqwest::Method::POST,
            &format!("/v1/nodes/{free}/cordon"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, answer) = move_to("a-0", free.to_owned()).await;
    assert_eq!(status, 409, "{answer}");
    refused(&answer, "0/1 nodes fit: 1 cordoned");
    let (status, _) = master
        .admin(
            reqwest::Method::POST,
            &format!("/v1/nodes/{free}/uncordon"),
            None,
        )
        .await;
    assert_eq!(status, 200);

    // The free node falls silent (grace 1 s, counted from its last
    // heartbeat, before this): no pod goes there once it is not ready.
    let others: &'static [usize] = match free {
        "h1" => &[1, 2],
        "h2" => &[0, 2],
        _ => &[0, 1],
    };
    let silent_at = Instant::now();
    loop {
        beat(others).await;
        let (status, answer) = move_to("a-0", free.to_owned()).await;
        if status == 409 {
            refused(&answer, "0/1 nodes fit: 1 not ready");
            break;
        }
        assert_eq!(status, 200, "{answer}");
        assert!(
            silent_at.elapsed() < Duration::from_millis(1500),
            "moved to a silent node after {:?}",
            silent_at.elapsed()
        );
        // Moved while the node was still within its grace: back again.
        let (status, answer) = move_to("a-0", a_on.to_owned()).await;
        assert_eq!(status, 200, "{answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Back, it takes the pod; the pod keeps its spec and loses its status.
    beat(&[0, 1, 2]).await;
    let (status, moved) = move_to("a-0", free.to_owned()).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["node"], free, "{moved}");
    assert!(moved.get("status").is_none(), "{moved}");
    assert!(moved["resourceVersion"].as_u64().is_some(), "{moved}");
    let now: std::collections::BTreeMap<_, _> = master.placements().await.into_iter().collect();
    assert_eq!(now["a-0"].as_deref(), Some(free));
    assert_eq!(now["b-0"].as_deref(), Some(b_on), "{now:?}");
}

/// With the embedded store there is one master, and it leads; only the
/// admin may list the masters.
#[tokio::test]
async fn the_one_master_of_an_embedded_store_is_listed_as_healthy_leader() {
    let master = start("masters").await;
    let (status, listed) = master
        .admin(reqwest::Method::GET, "/v1/masters", None)
        .await;
    assert_eq!(status, 200, "{listed}");
    let listed = listed.as_array().expect("a list").clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["healthy"], true);
    assert_eq!(listed[0]["leader"], true);
    let h1 = master.join("h1").await;
    let (status, _) = master
        .call(reqwest::Method::GET, "/v1/masters", Some(&h1), None)
        .await;
    assert_eq!(status, 403, "a node lists no masters");
}
