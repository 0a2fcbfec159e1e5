//! Projects through the master's API in-process: two projects each have a
//! `web`, each sees only its own under its own names, the paths without a
//! project serve `default`, links stay inside a project until the target
//! grants them, and removing a project removes what is in it.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

mod common;

fn service(name: &str, links: Value) -> Value {
    json!({"name": name, "replicas": 1, "links": links,
           "template": {"name": name, "containers": [{"name": name, "image": "local/busybox",
                        "ports": [{"containerPort": 8080, "hostPort": 0}]}]}})
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|o| {
            o["name"]
                .as_str()
                .or(o["spec"]["name"].as_str())
                .expect("a name")
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

/// The names of the pods `path` lists, once there are `count`.
async fn pods(master: &common::Master, path: &str, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, pods) = master.admin(Method::GET, path, None).await;
        assert_eq!(status, 200, "{pods}");
        if pods.as_array().is_some_and(|p| p.len() == count) {
            return pods;
        }
        assert!(Instant::now() < deadline, "{path}: {pods}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_projects_each_have_their_own_web() {
    let master = common::start("master-projects", 3).await;
    let (status, projects) = master.admin(Method::GET, "/v1/projects", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        names(&projects),
        ["default"],
        "default exists from the start"
    );
    for project in ["a", "b"] {
        let (status, created) = master
            .admin(Method::POST, "/v1/projects", Some(json!({"name": project})))
            .await;
        assert_eq!(status, 201, "{created}");
        let (status, web) = master
            .admin(
                Method::POST,
                &format!("/v1/projects/{project}/services"),
                Some(service("web", json!([]))),
            )
            .await;
        assert_eq!(status, 201, "{web}");
        assert_eq!(web["name"], "web", "the project shows in the path only");
    }

    let a_pods = pods(&master, "/v1/projects/a/pods", 1).await;
    assert_eq!(names(&a_pods), ["web-0"]);
    assert_eq!(a_pods[0]["service"], "web");
    pods(&master, "/v1/projects/b/pods", 1).await;
    let (_, default_services) = master.admin(Method::GET, "/v1/services", None).await;
    assert_eq!(names(&default_services), Vec::<String>::new());
    let (_, default_pods) = master.admin(Method::GET, "/v1/pods", None).await;
    assert_eq!(names(&default_pods), Vec::<String>::new());
    // A dotted name asked for in one project never reaches another's.
    for path in ["/v1/services/b.web", "/v1/projects/a/services/b.web"] {
        let (status, answer) = master.admin(Method::GET, path, None).await;
        assert_eq!(status, 404, "{path}: {answer}");
    }

    // Removing a's web leaves b's.
    let (status, _) = master
        .admin(Method::DELETE, "/v1/projects/a/services/web", None)
        .await;
    assert_eq!(status, 200);
    pods(&master, "/v1/projects/a/pods", 0).await;
    let (status, b_web) = master
        .admin(Method::GET, "/v1/projects/b/services/web", None)
        .await;
    assert_eq!(status, 200, "{b_web}");
    assert_eq!(
        names(&pods(&master, "/v1/projects/b/pods", 1).await),
        ["web-0"]
    );

    // A project that does not exist is a 404 naming it.
    let (status, error) = master
        .admin(Method::GET, "/v1/projects/nope/services", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(error["error"], "project nope not found");
    let (status, error) = master
        .admin(
            Method::POST,
            "/v1/projects",
            Some(json!({"name": "Bad.Name"})),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["fields"][0]["field"], "name");
}

#[tokio::test]
async fn links_stay_inside_a_project_until_the_target_grants_them() {
    let master = common::start("master-project-links", 3).await;
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
            Some(service("db", json!([]))),
        )
        .await;
    assert_eq!(status, 201);
    let linked = service("web", json!([{"service": "b.db", "port": 8080}]));
    let (status, error) = master
        .admin(
            Method::POST,
            "/v1/projects/a/services",
            Some(linked.clone()),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["fields"][0]["field"], "links[0].service");
    let message = error["fields"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("project b does not grant links from project a"),
        "{message}"
    );

    let (_, b) = master.admin(Method::GET, "/v1/projects/b", None).await;
    let mut granted = b.clone();
    granted["linkGrants"] = json!(["a"]);
    let (status, updated) = master
        .admin(Method::PUT, "/v1/projects/b", Some(granted))
        .await;
    assert_eq!(status, 200, "{updated}");
    let (status, web) = master
        .admin(Method::POST, "/v1/projects/a/services", Some(linked))
        .await;
    assert_eq!(status, 201, "{web}");
    assert_eq!(web["links"][0]["service"], "b.db");
    let pod = pods(&master, "/v1/projects/a/pods", 1).await;
    let env = pod[0]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("DB_HOST"), "the link's variables: {env}");

    // Within a project, a plain name links as before.
    let (status, _) = master
        .admin(
            Method::POST,
            "/v1/projects/b/services",
            Some(service("api", json!([{"service": "db", "port": 8080}]))),
        )
        .await;
    assert_eq!(status, 201);

    // Removing b takes its services and pods along; default stays.
    let (status, error) = master
        .admin(Method::DELETE, "/v1/projects/default", None)
        .await;
    assert_eq!(status, 409, "{error}");
    let (status, _) = master.admin(Method::DELETE, "/v1/projects/b", None).await;
    assert_eq!(status, 200);
    let (status, _) = master
        .admin(Method::GET, "/v1/projects/b/services", None)
        .await;
    assert_eq!(status, 404);
    let (_, events) = master
        .admin(Method::GET, "/v1/events?type=ProjectDeleted", None)
        .await;
    assert_eq!(events[0]["object"], "project/b", "{events}");
}

#[tokio::test]
async fn a_projects_quota_refuses_what_would_pass_it_and_names_it() {
    let master = common::start("master-project-quota", 3).await;
    let (status, _) = master
        .admin(
            Method::POST,
            "/v1/projects",
            Some(json!({"name": "a", "quota": {"pods": 2, "memoryBytes": 268435456}})),
        )
        .await;
    assert_eq!(status, 201);
    let mut web = service("web", json!([]));
    web["replicas"] = json!(2);
    web["template"]["containers"][0]["resources"] = json!({"memoryBytes": 67108864});
    let (status, created) = master
        .admin(Method::POST, "/v1/projects/a/services", Some(web.clone()))
        .await;
    assert_eq!(status, 201, "{created}");

    let (status, error) = master
        .admin(
            Method::POST,
            "/v1/projects/a/services/web/scale",
            Some(json!({"replicas": 3})),
        )
        .await;
    assert_eq!(status, 403, "{error}");
    assert_eq!(
        error["error"],
        "exceeds project a's quota of 2 pods: 0 in use, this asks for 3"
    );
    let mut other = service("other", json!([]));
    other["template"]["containers"][0]["resources"] = json!({"memoryBytes": 67108864});
    let (status, error) = master
        .admin(Method::POST, "/v1/projects/a/services", Some(other))
        .await;
    assert_eq!(status, 403, "{error}");
    assert_eq!(
        error["error"],
        "exceeds project a's quota of 2 pods: 2 in use, this asks for 1"
    );
    // Without a memory limit, nothing can be counted against the quota.
    let (status, error) = master
        .admin(
            Method::POST,
            "/v1/projects/a/services",
            Some(service("unlimited", json!([]))),
        )
        .await;
    assert_eq!(status, 403, "{error}");
    // Scaling down is always allowed.
    let (status, _) = master
        .admin(
            Method::POST,
            "/v1/projects/a/services/web/scale",
            Some(json!({"replicas": 1})),
        )
        .await;
    assert_eq!(status, 200);
    pods(&master, "/v1/projects/a/pods", 1).await;

    // A project's own admin may not raise its quota.
    let (_, made) = master
        .admin(Method::POST, "/v1/users", Some(json!({"name": "carol"})))
        .await;
    let carol = made["token"].as_str().expect("token").to_owned();
    let (_, mut a) = master.admin(Method::GET, "/v1/projects/a", None).await;
    a["members"] = json!({"carol": "admin"});
    let (status, a) = master.admin(Method::PUT, "/v1/projects/a", Some(a)).await;
    assert_eq!(status, 200, "{a}");
    let mut raised = a.clone();
    raised["quota"]["pods"] = json!(100);
    let (status, error) = master
        .call(Method::PUT, "/v1/projects/a", Some(&carol), Some(raised))
        .await;
    assert_eq!(status, 403, "{error}");
    assert_eq!(error["fields"][0]["field"], "quota");
    let mut described = a.clone();
    described["description"] = json!("carol's");
    let (status, _) = master
        .call(Method::PUT, "/v1/projects/a", Some(&carol), Some(described))
        .await;
    assert_eq!(status, 200, "her own project's description is hers");
}
