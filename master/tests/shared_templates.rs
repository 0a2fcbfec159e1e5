//! The shared template library in-process: the admin stores a template
//! there; a user with no role in any project reads it, but may not write
//! it; a node's credential may not read it; a project's template of the
//! same name is another object.

use reqwest::Method;
use serde_json::{json, Value};

mod common;

fn template(name: &str) -> Value {
    json!({"name": name, "parameters": [{"name": "NAME", "required": true}],
           "objects": [{"kind": "Service", "name": "${NAME}", "replicas": 1}]})
}

#[tokio::test]
async fn every_user_reads_the_shared_library_and_only_the_admin_writes_it() {
    let master = common::start("master-shared-templates", 3).await;
    let (status, created) = master
        .admin(Method::POST, "/v1/users", Some(json!({"name": "alice"})))
        .await;
    assert_eq!(status, 201, "{created}");
    let alice = created["token"].as_str().expect("token").to_owned();
    let node = master.join_node("h1").await;

    let (status, stored) = master
        .admin(Method::POST, "/v1/shared/templates", Some(template("db")))
        .await;
    assert_eq!(status, 201, "{stored}");
    let (status, bad) = master
        .admin(
            Method::POST,
            "/v1/shared/templates",
            Some(template("Bad_Name")),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["fields"][0]["field"], "name", "{bad}");

    // alice has no role anywhere, and reads it.
    let (status, listed) = master
        .call(Method::GET, "/v1/shared/templates", Some(&alice), None)
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed[0]["name"], "db", "{listed}");
    let (status, one) = master
        .call(Method::GET, "/v1/shared/templates/db", Some(&alice), None)
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["objects"][0]["name"], "${NAME}");
    let (status, _) = master
        .call(
            Method::GET,
            "/v1/shared/templates/nosuch",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // She may not write it; a node may not read it.
    let (status, _) = master
        .call(
            Method::POST,
            "/v1/shared/templates",
            Some(&alice),
            Some(template("mine")),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = master
        .call(
            Method::DELETE,
            "/v1/shared/templates/db",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = master
        .call(Method::GET, "/v1/shared/templates", Some(&node), None)
        .await;
    assert_eq!(status, 403);

    // A project's template of the same name is its own object.
    let (status, own) = master
        .admin(Method::POST, "/v1/templates", Some(template("db")))
        .await;
    assert_eq!(status, 201, "{own}");
    let (status, _) = master
        .admin(Method::DELETE, "/v1/shared/templates/db", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = master.admin(Method::GET, "/v1/templates/db", None).await;
    assert_eq!(status, 200);
    let (status, _) = master
        .admin(Method::GET, "/v1/shared/templates/db", None)
        .await;
    assert_eq!(status, 404);
}
