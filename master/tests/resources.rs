//! Every kind through the same handlers, in-process: a missing object is
//! a 404 naming its kind, creating twice is a no-op or a 409 by spec, a
//! stale update is a 409, secrets never leave in an answer, a deleted
//! route frees its host, and nodes may not use any of it.

use reqwest::Method;
use serde_json::{json, Value};

mod common;

fn service(name: &str, replicas: u32) -> Value {
    json!({"name": name, "replicas": replicas, "template": {"name": name, "containers": [{"name": "web", "image": "local/busybox", "secretEnv": [{"name": "PW", "value": "hunter2"}]}]}, "publish": [{"name": "PASSWORD", "value": "s3cret"}]})
}

#[tokio::test]
async fn missing_objects_are_404s_naming_their_kind() {
    let master = common::start("master-resources-missing", 5).await;
    for (path, error) in [
        ("/v1/services/nope", "service nope not found"),
        ("/v1/pods/nope-0", "pod nope-0 not found"),
        ("/v1/routes/nope", "route nope not found"),
    ] {
        for method in [Method::GET, Method::DELETE] {
            let (status, answer) = master.admin(method.clone(), path, None).await;
            assert_eq!(status, 404, "{method} {path}: {answer}");
            assert_eq!(answer, json!({"error": error}), "{method} {path}");
        }
    }
    let (status, answer) = master
        .admin(
            Method::PUT,
            "/v1/routes/nope",
            Some(json!({"name": "nope", "service": "web"})),
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer, json!({"error": "route nope not found"}));
}

#[tokio::test]
async fn services_are_created_once_updated_by_revision_and_redacted() {
    let master = common::start("master-resources-services", 5).await;
    let (status, created) = master
        .admin(Method::POST, "/v1/services", Some(service("db", 0)))
        .await;
    assert_eq!(status, 201, "{created}");
    let text = created.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "{text}"
    );

    let (status, again) = master
        .admin(Method::POST, "/v1/services", Some(service("db", 0)))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["resourceVersion"], created["resourceVersion"]);
    let (status, answer) = master
        .admin(Method::POST, "/v1/services", Some(service("db", 2)))
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        answer,
        json!({"error": "service db exists with a different spec"})
    );

    // Invalid everywhere at once: every field named, in order.
    let mut bad = service("db", 0);
    bad["env"] = json!([{"name": "1X", "value": "y"}]);
    bad["template"]["containers"][0]["image"] = json!("");
    let (status, answer) = master.admin(Method::POST, "/v1/services", Some(bad)).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "invalid service");
    assert_eq!(
        answer["fields"],
        json!([
            {"field": "env[0].name", "message": "must match [A-Za-z_][A-Za-z0-9_]*"},
            {"field": "template.containers[0].image", "message": "must not be empty"}
        ])
    );

    // An update carries the revision it read; an older one is refused.
    let mut update = service("db", 1);
    update["resourceVersion"] = created["resourceVersion"].clone();
    let (status, updated) = master
        .admin(Method::PUT, "/v1/services/db", Some(update.clone()))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["replicas"], 1);
    assert!(!updated.to_string().contains("hunter2"), "{updated}");
    let (status, answer) = master
        .admin(Method::PUT, "/v1/services/db", Some(update.clone()))
        .await;
    assert_eq!(status, 409, "{answer}");

    // Sent back as shown (secrets blank), secrets keep their values: the
    // full service with them is then the same object, and writes nothing.
    let mut shown = updated.clone();
    shown["replicas"] = json!(2);
    let (status, rescaled) = master
        .admin(Method::PUT, "/v1/services/db", Some(shown))
        .await;
    assert_eq!(status, 200, "{rescaled}");
    let mut same = service("db", 2);
    same["resourceVersion"] = rescaled["resourceVersion"].clone();
    let (status, unwritten) = master
        .admin(Method::PUT, "/v1/services/db", Some(same))
        .await;
    assert_eq!(status, 200, "{unwritten}");
    assert_eq!(unwritten["resourceVersion"], rescaled["resourceVersion"]);

    let (status, answer) = master
        .admin(Method::PUT, "/v1/services/other", Some(update))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["fields"][0]["field"], "name");

    let (status, listed) = master.admin(Method::GET, "/v1/services", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert!(!listed.to_string().contains("s3cret"), "{listed}");

    let (status, deleted) = master.admin(Method::DELETE, "/v1/services/db", None).await;
    assert_eq!(status, 200, "{deleted}");
    assert!(!deleted.to_string().contains("hunter2"), "{deleted}");
    let (status, _) = master.admin(Method::GET, "/v1/services/db", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn routes_differ_only_by_their_claims_and_hint() {
    let master = common::start("master-resources-routes", 5).await;
    let www = json!({"name": "www", "service": "web", "host": "www.example.test"});
    let (status, _) = master
        .admin(Method::POST, "/v1/routes", Some(www.clone()))
        .await;
    assert_eq!(status, 201);
    let (status, answer) = master
        .admin(
            Method::POST,
            "/v1/routes",
            Some(json!({"name": "www", "service": "api", "host": "www.example.test"})),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        answer,
        json!({"error": "route www exists with a different spec (replace it with --replace)"})
    );
    let (status, answer) = master
        .admin(
            Method::POST,
            "/v1/routes",
            Some(json!({"name": "other", "service": "web", "host": "www.example.test"})),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        answer,
        json!({
            "error": "host: another route already serves www.example.test/",
            "fields": [{"field": "host", "message": "another route already serves www.example.test/"}]
        })
    );

    // Deleting the route frees its host and path.
    let (status, _) = master.admin(Method::DELETE, "/v1/routes/www", None).await;
    assert_eq!(status, 200);
    let (status, answer) = master
        .admin(
            Method::POST,
            "/v1/routes",
            Some(json!({"name": "other", "service": "web", "host": "www.example.test"})),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test]
async fn nodes_may_not_use_the_generic_handlers() {
    let master = common::start("master-resources-nodes", 5).await;
    let credential = master.join_node("h1").await;
    for (method, path, body) in [
        (Method::GET, "/v1/services", None),
        (Method::GET, "/v1/services/db", None),
        (Method::POST, "/v1/services", Some(service("db", 0))),
        (Method::PUT, "/v1/services/db", Some(service("db", 0))),
        (Method::DELETE, "/v1/services/db", None),
        (Method::GET, "/v1/pods", None),
        (Method::GET, "/v1/pods/db-0", None),
        (Method::DELETE, "/v1/pods/db-0", None),
        (Method::GET, "/v1/routes/www", None),
        (
            Method::POST,
            "/v1/routes",
            Some(json!({"name": "www", "service": "web"})),
        ),
        (
            Method::PUT,
            "/v1/routes/www",
            Some(json!({"name": "www", "service": "web"})),
        ),
        (Method::DELETE, "/v1/routes/www", None),
    ] {
        let (status, answer) = master
            .call(method.clone(), path, Some(&credential), body)
            .await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(
            answer,
            json!({"error": "this credential may not do that"}),
            "{method} {path}"
        );
    }
}
