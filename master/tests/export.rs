//! `POST /v1/export` in-process: services with a shared secret, a link
//! and a route come back as a template with no secret in it and one
//! generated parameter for the shared value; bad requests name the field.

use reqwest::Method;
use serde_json::json;

mod common;

#[tokio::test]
async fn services_are_exported_without_their_secrets() {
    let master = common::start("master-export", 3).await;
    let objects = json!({"objects": [
        {"kind": "Service", "name": "shop-db", "replicas": 1,
         "publish": [{"name": "PASSWORD", "value": "sharedsecret0001"}],
         "template": {"name": "shop-db", "containers": [{"name": "db", "image": "local/busybox",
            "secretEnv": [{"name": "DB_PASSWORD", "value": "sharedsecret0001"}],
            "ports": [{"containerPort": 5432, "hostPort": 0}]}]}},
        {"kind": "Service", "name": "shop-web", "replicas": 1,
         "template": {"name": "shop-web", "containers": [{"name": "web", "image": "local/busybox",
            "ports": [{"containerPort": 8080, "hostPort": 0}]}]}},
        {"kind": "Link", "service": "shop-web", "target": "shop-db", "port": 5432},
        {"kind": "Route", "name": "shop", "service": "shop-web", "host": "shop.example.test", "port": 8080},
    ]});
    let (status, answer) = master.admin(Method::POST, "/v1/batch", Some(objects)).await;
    assert_eq!(status, 201, "{answer}");

    let request = json!({"name": "shop-copy", "services": ["shop-web", "shop-db"],
                         "parameterize": ["replicas"]});
    let (status, template) = master
        .admin(Method::POST, "/v1/export", Some(request))
        .await;
    assert_eq!(status, 200, "{template}");
    assert!(
        !template.to_string().contains("sharedsecret0001"),
        "a secret was exported: {template}"
    );
    let names: Vec<&str> = template["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["NAME", "WEB_REPLICAS", "DB_PASSWORD", "DB_REPLICAS"]
    );
    assert_eq!(template["objects"][0]["links"][0]["service"], "${NAME}-db");
    assert_eq!(template["objects"][2]["host"], "${NAME}.example.test");
    assert_eq!(
        template["linkable"],
        json!([{"service": "${NAME}-db", "port": 5432}])
    );

    for (body, status, field) in [
        (json!({"name": "t", "services": ["nosuch"]}), 404, None),
        (json!({"name": "t", "services": []}), 400, Some("services")),
        (
            json!({"name": "T!", "services": ["shop-db"]}),
            400,
            Some("name"),
        ),
        (
            json!({"name": "t", "services": ["shop-db"], "parameterize": ["size"]}),
            400,
            Some("parameterize[0]"),
        ),
        (
            json!({"name": "t", "services": ["shop-db", "shop-db"]}),
            400,
            Some("services[1]"),
        ),
    ] {
        let (got, error) = master
            .admin(Method::POST, "/v1/export", Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {error}");
        if let Some(field) = field {
            assert_eq!(error["fields"][0]["field"], field, "{body}: {error}");
        }
    }
}
