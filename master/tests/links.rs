//! Links through the master's API in-process: bad links are refused
//! naming the field, a link reaches the service's pods without changing
//! their spec, link variables follow the seed's precedence, and unlinking
//! takes it off again.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

mod common;

fn service(name: &str, env: Value, links: Value) -> Value {
    json!({"name": name, "replicas": 1, "links": links,
           "template": {"name": name, "containers": [{"name": name, "image": "local/busybox",
                        "env": env, "ports": [{"containerPort": 3306, "hostPort": 0}]}]}})
}

/// The pod of `service` once the controller made it.
async fn pod(master: &common::Master, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, pod) = master
            .admin(Method::GET, &format!("/v1/pods/{name}-0"), None)
            .await;
        if status == 200 {
            return pod;
        }
        assert!(Instant::now() < deadline, "no pod {name}-0");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn links_are_checked_carried_to_pods_and_removed() {
    let master = common::start("master-links", 3).await;
    let mut db = service("db", json!([]), json!([]));
    db["publish"] = json!([{"name": "PASSWORD", "value": "s3cret"}]);
    let (status, created) = master.admin(Method::POST, "/v1/services", Some(db)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["publish"][0]["value"], "",
        "a published value was shown"
    );

    // A service's links, checked with the fields named.
    let bad = service(
        "bad",
        json!([]),
        json!([{"service": "Bad_Name", "port": 0}, {"service": "bad", "port": 1},
               {"service": "db", "port": 3306, "localPort": 1}]),
    );
    let (status, error) = master.admin(Method::POST, "/v1/services", Some(bad)).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(
        common::fields(&error),
        [
            "links[0].service",
            "links[0].port",
            "links[1].service",
            "links[2].localPort"
        ]
    );

    // web's container sets DB_HOST and its service DB_HOST and DB_PORT:
    // container > service > link.
    let mut web = service(
        "web",
        json!([{"name": "DB_HOST", "value": "mine"}]),
        json!([{"service": "db", "port": 3306, "localPort": 13306}]),
    );
    web["env"] =
        json!([{"name": "DB_HOST", "value": "service"}, {"name": "DB_PORT", "value": "1"}]);
    let (status, created) = master.admin(Method::POST, "/v1/services", Some(web)).await;
    assert_eq!(status, 201, "{created}");
    let web_0 = pod(&master, "web").await;
    assert_eq!(web_0["links"][0]["service"], "db");
    let env = &web_0["spec"]["containers"][0]["env"];
    assert_eq!(
        env,
        &json!([{"name": "DB_HOST", "value": "mine"}, {"name": "DB_PORT", "value": "1"}])
    );
    assert_eq!(
        web_0["spec"]["containers"][0]["secretEnv"][0]["name"],
        "DB_PASSWORD"
    );

    // A link added later reaches the running pod's object, not its spec.
    let (status, error) = master
        .admin(
            Method::POST,
            "/v1/services/web/links",
            Some(json!({"service": "nope", "port": 80})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(common::fields(&error), ["service"]);
    let (status, error) = master
        .admin(
            Method::POST,
            "/v1/services/web/links",
            Some(json!({"service": "db", "port": 3307, "localPort": 13306})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(common::fields(&error), ["localPort"], "{error}");
    let (status, linked) = master
        .admin(
            Method::POST,
            "/v1/services/web/links",
            Some(json!({"service": "db", "port": 3307})),
        )
        .await;
    assert_eq!(status, 201, "{linked}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = pod(&master, "web").await;
        if now["links"].as_array().map(Vec::len) == Some(2) {
            assert_eq!(now["spec"], web_0["spec"], "the pod's spec changed");
            break;
        }
        assert!(Instant::now() < deadline, "the pod never got the new link");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The service's DB_PORT removed, the new revision's pod (its rollout
    // names it web-0 or web-1, as its surge allows) gets the link's back.
    let (_, mut current) = master.admin(Method::GET, "/v1/services/web", None).await;
    current["env"] = json!([]);
    let (status, updated) = master
        .admin(Method::PUT, "/v1/services/web", Some(current))
        .await;
    assert_eq!(status, 200, "{updated}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, pods) = master.admin(Method::GET, "/v1/pods", None).await;
        assert_eq!(status, 200, "{pods}");
        let envs: Vec<&Value> = pods
            .as_array()
            .expect("a list of pods")
            .iter()
            .filter(|p| p["service"] == "web")
            .map(|p| &p["spec"]["containers"][0]["env"])
            .collect();
        let renewed = envs
            .iter()
            .find(|env| env[1]["name"] == "DB_PORT" && env[1]["value"] == "13306");
        if let Some(env) = renewed {
            assert_eq!(env[0]["value"], "mine");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the link's DB_PORT did not come back: {envs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, unlinked) = master
        .admin(Method::DELETE, "/v1/services/web/links/db", None)
        .await;
    assert_eq!(status, 200, "{unlinked}");
    assert!(unlinked.get("links").is_none(), "{unlinked}");
    let (status, _) = master
        .admin(Method::DELETE, "/v1/services/web/links/db", None)
        .await;
    assert_eq!(status, 404);
}
