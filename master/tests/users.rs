//! Users, robot accounts and roles through the master's API in-process:
//! a user's token reaches the projects it has a role in as far as the role
//! allows, sees nothing of the others, and stops working the moment it is
//! replaced, expires or its user is removed.

use reqwest::Method;
use serde_json::{json, Value};

mod common;

fn service(name: &str) -> Value {
    json!({"name": name, "replicas": 1,
           "template": {"name": name, "containers": [{"name": name, "image": "local/busybox"}]}})
}

/// Creates user `name`; its token.
async fn user(master: &common::Master, body: Value) -> String {
    let (status, created) = master.admin(Method::POST, "/v1/users", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().expect("a token").to_owned();
    assert!(token.starts_with("u:"), "{token}");
    token
}

/// Gives `user` `role` in `project` (the admin, read-modify-write).
async fn set_role(master: &common::Master, project: &str, user: &str, role: &str) {
    let path = format!("/v1/projects/{project}");
    let (_, mut current) = master.admin(Method::GET, &path, None).await;
    current["members"][user] = json!(role);
    let (status, updated) = master.admin(Method::PUT, &path, Some(current)).await;
    assert_eq!(status, 200, "{updated}");
}

#[tokio::test]
async fn a_users_role_decides_what_its_token_may_do() {
    let master = common::start("master-users", 3).await;
    for project in ["a", "b"] {
        let (status, _) = master
            .admin(Method::POST, "/v1/projects", Some(json!({"name": project})))
            .await;
        assert_eq!(status, 201);
    }
    let (status, _) = master
        .admin(
            Method::POST,
            "/v1/projects/b/services",
            Some(service("secret-web")),
        )
        .await;
    assert_eq!(status, 201);
    let alice = user(&master, json!({"name": "alice"})).await;
    set_role(&master, "a", "alice", "edit").await;

    // edit in a: lists and changes a's objects.
    let (status, created) = master
        .call(
            Method::POST,
            "/v1/projects/a/services",
            Some(&alice),
            Some(service("web")),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, listed) = master
        .call(Method::GET, "/v1/projects/a/services", Some(&alice), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed[0]["name"], "web");
    let (status, scaled) = master
        .call(
            Method::POST,
            "/v1/projects/a/services/web/scale",
            Some(&alice),
            Some(json!({"replicas": 2})),
        )
        .await;
    assert_eq!(status, 200, "{scaled}");
    // Each change is an audit event in a's stream, saying who.
    let (_, audit) = master
        .admin(Method::GET, "/v1/projects/a/events?type=Audit", None)
        .await;
    let changes: Vec<(&str, &str)> = audit
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            (
                e["object"].as_str().unwrap_or(""),
                e["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("service/web", "alice: POST /v1/projects/{project}/services"),
            (
                "service/web",
                "alice: POST /v1/projects/{project}/services/{name}/scale"
            ),
        ]
    );

    // Nothing in b: a 404 for the project and for its objects, as if
    // neither existed; and b is not among her projects.
    for path in [
        "/v1/projects/b/services",
        "/v1/projects/b/services/secret-web",
        "/v1/projects/b",
    ] {
        let (status, error) = master.call(Method::GET, path, Some(&alice), None).await;
        assert_eq!(status, 404, "{path}: {error}");
        assert_eq!(error["error"], "project b not found", "{path}");
    }
    let (_, projects) = master
        .call(Method::GET, "/v1/projects", Some(&alice), None)
        .await;
    assert_eq!(projects.as_array().map(Vec::len), Some(1), "{projects}");
    assert_eq!(projects[0]["name"], "a");
    // Nor the default project, nor the cluster's own objects.
    let (status, _) = master
        .call(Method::GET, "/v1/services", Some(&alice), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = master
        .call(Method::GET, "/v1/nodes", Some(&alice), None)
        .await;
    assert_eq!(status, 403);

    // view in a: reads, and a change is a 403 naming the role it needs.
    set_role(&master, "a", "alice", "view").await;
    let (status, _) = master
        .call(
            Method::GET,
            "/v1/projects/a/services/web",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, error) = master
        .call(
            Method::DELETE,
            "/v1/projects/a/services/web",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 403, "{error}");
    assert_eq!(
        error["error"],
        "this needs the edit role in project a; alice has view"
    );
    let (status, who) = master
        .call(Method::GET, "/v1/whoami", Some(&alice), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        who,
        json!({"kind": "user", "name": "alice", "roles": {"a": "view"}})
    );

    // A new token replaces the old at once; removing her refuses the new.
    let (status, renewed) = master
        .admin(Method::POST, "/v1/users/alice/token", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = master
        .call(Method::GET, "/v1/whoami", Some(&alice), None)
        .await;
    assert_eq!(status, 401, "the replaced token still works");
    let renewed = renewed["token"].as_str().expect("a token").to_owned();
    let (status, _) = master
        .call(Method::GET, "/v1/whoami", Some(&renewed), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = master.admin(Method::DELETE, "/v1/users/alice", None).await;
    assert_eq!(status, 200);
    let (status, _) = master
        .call(Method::GET, "/v1/whoami", Some(&renewed), None)
        .await;
    assert_eq!(status, 401, "a removed user's token still works");
    let (_, a) = master.admin(Method::GET, "/v1/projects/a", None).await;
    assert!(a["members"].get("alice").is_none(), "her role stayed: {a}");
}

#[tokio::test]
async fn people_make_projects_robots_do_not_and_tokens_expire() {
    let master = common::start("master-users-robots", 3).await;
    let bob = user(&master, json!({"name": "bob"})).await;
    let (status, created) = master
        .call(
            Method::POST,
            "/v1/projects",
            Some(&bob),
            Some(json!({"name": "shop"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["members"],
        json!({"bob": "admin"}),
        "its creator is its admin"
    );
    let (status, _) = master
        .call(
            Method::POST,
            "/v1/projects/shop/services",
            Some(&bob),
            Some(service("web")),
        )
        .await;
    assert_eq!(status, 201);

    let ci = user(&master, json!({"name": "ci", "robot": true})).await;
    let (status, error) = master
        .call(
            Method::POST,
            "/v1/projects",
            Some(&ci),
            Some(json!({"name": "ci-made"})),
        )
        .await;
    assert_eq!(status, 403, "{error}");
    let (_, who) = master
        .call(Method::GET, "/v1/whoami", Some(&ci), None)
        .await;
    assert_eq!(who["kind"], "robot");

    let old = user(&master, json!({"name": "old", "expiresMs": 1000})).await;
    let (status, error) = master
        .call(Method::GET, "/v1/whoami", Some(&old), None)
        .await;
    assert_eq!(status, 401);
    assert!(
        error["error"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{error}"
    );
    // Users are the admin's to manage.
    let (status, _) = master
        .call(Method::GET, "/v1/users", Some(&bob), None)
        .await;
    assert_eq!(status, 403);
}
