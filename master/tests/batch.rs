//! `POST /v1/batch` in-process: objects that refer to each other are
//! created together with their first deployments, and one bad or
//! conflicting object refuses the whole batch, naming it, with nothing
//! written.

use reqwest::Method;
use serde_json::{json, Value};

mod common;

fn service(name: &str, links: Value) -> Value {
    json!({"kind": "Service", "name": name, "replicas": 1, "links": links,
           "publish": [{"name": "PASSWORD", "value": "s3cret"}],
           "template": {"name": name, "containers": [{"name": name, "image": "local/busybox",
                        "ports": [{"containerPort": 8080}]}]}})
}

fn route(name: &str, service: &str, host: &str) -> Value {
    json!({"kind": "Route", "name": name, "service": service, "host": host, "port": 8080})
}

async fn exists(master: &common::Master, path: &str) -> bool {
    master.admin(Method::GET, path, None).await.0 == 200
}

#[tokio::test]
async fn a_batch_is_created_whole_or_not_at_all() {
    let master = common::start("master-batch", 3).await;

    // web links to db and a route points at web: all in the same batch.
    let objects = json!({"objects": [
        service("web", json!([])),
        service("db", json!([])),
        {"kind": "Link", "service": "web", "target": "db", "port": 8080},
        route("www", "web", "www.shop.test"),
    ]});
    let (status, answer) = master.admin(Method::POST, "/v1/batch", Some(objects)).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        answer["created"],
        json!([
            "service/web",
            "service/db",
            "link/web->db:8080",
            "route/www"
        ])
    );
    let (_, web) = master.admin(Method::GET, "/v1/services/web", None).await;
    assert_eq!(web["links"][0]["service"], "db", "{web}");
    let (_, db) = master.admin(Method::GET, "/v1/services/db", None).await;
    assert_eq!(db["publish"][0]["value"], "", "a published value was shown");
    let (_, deployments) = master.admin(Method::GET, "/v1/deployments", None).await;
    assert_eq!(
        deployments.as_array().map(Vec::len),
        Some(2),
        "each service's first deployment: {deployments}"
    );

    // One invalid object: nothing is created, and the error names it.
    let mut bad = service("bad-db", json!([]));
    bad["template"]["containers"][0]["ports"][0]["containerPort"] = json!(0);
    let objects = json!({"objects": [service("ok-web", json!([])), bad]});
    let (status, error) = master.admin(Method::POST, "/v1/batch", Some(objects)).await;
    assert_eq!(status, 400, "{error}");
    let message = error["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("objects[1] (service bad-db): invalid service"),
        "{error}"
    );
    assert!(!exists(&master, "/v1/services/ok-web").await);

    // A conflict only the store shows (the route's host is www's): the
    // services before it are not created either.
    let objects = json!({"objects": [
        service("other", json!([])),
        route("other", "other", "www.shop.test"),
    ]});
    let (status, error) = master.admin(Method::POST, "/v1/batch", Some(objects)).await;
    assert_eq!(status, 409, "{error}");
    let message = error["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("objects[1] (route other): host:"),
        "{error}"
    );
    assert!(!exists(&master, "/v1/services/other").await);
    assert!(!exists(&master, "/v1/routes/other").await);

    // Nothing, or something that is no object, is refused.
    for body in [json!({"objects": []}), json!({"objects": [null]})] {
        let (status, error) = master.admin(Method::POST, "/v1/batch", Some(body)).await;
        assert_eq!(status, 400, "{error}");
    }

    // An object that exists refuses the batch too.
    let objects = json!({"objects": [service("fresh", json!([])), service("db", json!([]))]});
    let (status, error) = master.admin(Method::POST, "/v1/batch", Some(objects)).await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error"], "objects[1] (service db): service exists");
    assert!(!exists(&master, "/v1/services/fresh").await);
}

#[tokio::test]
async fn a_batch_links_an_existing_service_to_its_own_all_or_nothing() {
    let master = common::start("master-batch-link-to", 3).await;
    let (status, answer) = master
        .admin(
            Method::POST,
            "/v1/batch",
            Some(json!({"objects": [service("web", json!([]))]})),
        )
        .await;
    assert_eq!(status, 201, "{answer}");

    // web exists; the batch makes db and links web to it in one commit.
    let objects = json!({"objects": [
        service("db", json!([])),
        {"kind": "Link", "service": "web", "target": "db", "port": 8080},
    ]});
    let (status, answer) = master.admin(Method::POST, "/v1/batch", Some(objects)).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        answer["created"],
        json!(["service/db", "link/web->db:8080"])
    );
    let (_, web) = master.admin(Method::GET, "/v1/services/web", None).await;
    assert_eq!(
        web["links"],
        json!([{"service": "db", "port": 8080}]),
        "{web}"
    );

    // A bad object after the link: web keeps its links, nothing is made.
    let mut bad = service("db2", json!([]));
    bad["template"]["containers"][0]["image"] = json!("");
    let objects = json!({"objects": [
        bad,
        {"kind": "Link", "service": "web", "target": "db2", "port": 8080},
    ]});
    let (status, error) = master.admin(Method::POST, "/v1/batch", Some(objects)).await;
    assert_eq!(status, 400, "{error}");
    let (_, web) = master.admin(Method::GET, "/v1/services/web", None).await;
    assert_eq!(web["links"].as_array().map(Vec::len), Some(1), "{web}");

    // A link from a service that exists nowhere, or to one that exists
    // nowhere, is named.
    let objects = json!({"objects": [
        service("db3", json!([])),
        {"kind": "Link", "service": "nosuch", "target": "db3", "port": 8080},
    ]});
    let (status, error) = master.admin(Method::POST, "/v1/batch", Some(objects)).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(
        error["error"],
        "objects[1].service: nosuch is neither a service of the batch nor an existing one",
        "{error}"
    );
    let objects = json!({"objects": [
        service("db4", json!([])),
        {"kind": "Link", "service": "web", "target": "gone", "port": 8080, "localPort": 9090},
    ]});
    let (status, error) = master.admin(Method::POST, "/v1/batch", Some(objects)).await;
    assert_eq!(status, 400, "{error}");
    let message = error["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("objects[1].target:") && message.contains("gone"),
        "{error}"
    );
    assert!(!exists(&master, "/v1/services/db3").await);
    assert!(!exists(&master, "/v1/services/db4").await);

    // Two links on one local port of web are refused, naming web's field.
    let objects = json!({"objects": [
        service("db5", json!([])),
        {"kind": "Link", "service": "web", "target": "db5", "port": 8080},
    ]});
    let (status, error) = master.admin(Method::POST, "/v1/batch", Some(objects)).await;
    assert_eq!(status, 400, "{error}");
    let message = error["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("service web: links[1].localPort"),
        "{error}"
    );
}
