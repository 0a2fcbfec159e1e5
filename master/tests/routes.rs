//! Routes through the master's API in-process: validation naming the
//! field, generated hostnames, one route per host and path, replacing in
//! one step, keys shown only to routers, long polls waking on a change, and
//! a router's rejection recorded as an event.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

mod common;

#[tokio::test]
async fn routes_are_checked_unique_generated_replaced_and_followed() {
    let master = common::start("master-routes", 5).await;

    for (route, field) in [
        (
            json!({"name": "bad", "service": "web", "host": "a\nb.test"}),
            "host",
        ),
        (
            json!({"name": "bad", "service": "web", "host": "a\"b.test"}),
            "host",
        ),
        (
            json!({"name": "bad", "service": "web", "path": "/a b"}),
            "path",
        ),
        (
            json!({"name": "bad", "service": "web", "path": "/a#b"}),
            "path",
        ),
        (json!({"name": "Bad", "service": "web"}), "name"),
        (
            json!({"name": "bad", "service": "web", "tls": {"termination": "edge"}}),
            "tls.certificate",
        ),
    ] {
        let (status, answer) = master
            .admin(Method::POST, "/v1/routes", Some(route.clone()))
            .await;
        assert_eq!(status, 400, "{route}: {answer}");
        assert!(
            common::fields(&answer).contains(&field.to_owned()),
            "{route}: {answer}"
        );
    }

    let (status, created) = master
        .admin(
            Method::POST,
            "/v1/routes",
            Some(json!({"name": "web", "service": "web"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["host"], "web-default.apps.berth.test");

    let www = json!({"name": "www", "service": "web", "host": "www.example.test"});
    let (status, _) = master
        .admin(Method::POST, "/v1/routes", Some(www.clone()))
        .await;
    assert_eq!(status, 201);
    let (status, _) = master
        .admin(Method::POST, "/v1/routes", Some(www.clone()))
        .await;
    assert_eq!(status, 200, "the same route again is a no-op");
    let (status, answer) = master
        .admin(
            Method::POST,
            "/v1/routes",
            Some(json!({"name": "other", "service": "web", "host": "www.example.test"})),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(common::fields(&answer), ["host"]);
    // Another path on the same host is another route.
    let (status, _) = master
        .admin(
            Method::POST,
            "/v1/routes",
            Some(json!({"name": "api", "service": "web", "host": "www.example.test", "path": "/api"})),
        )
        .await;
    assert_eq!(status, 201);

    // A router (node credential) long-polls and wakes on a change.
    let credential = master.join_node("h1").await;
    let (status, view) = master
        .call(Method::GET, "/v1/routes", Some(&credential), None)
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["routes"].as_array().map(Vec::len), Some(3));
    let revision = view["revision"].as_u64().expect("revision");
    let poll = {
        let (url, http, credential) = (master.url.clone(), master.http.clone(), credential.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let view: Value = http
                .get(format!("{url}/v1/routes?after={revision}&timeout=20"))
                .bearer_auth(credential)
                .send()
                .await
                .expect("long poll")
                .json()
                .await
                .expect("view");
            (started.elapsed(), view)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Replacing moves the claim: the old host is free again.
    let moved =
        json!({"name": "www", "service": "web", "host": "new.example.test", "websocket": true});
    let (status, answer) = master
        .admin(Method::PUT, "/v1/routes/www", Some(moved))
        .await;
    assert_eq!(status, 200, "{answer}");
    let (waited, view) = poll.await.expect("poll task");
    assert!(
        waited < Duration::from_secs(10),
        "the long poll did not wake: {waited:?}"
    );
    let hosts: Vec<&str> = view["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .filter_map(|r| r["host"].as_str())
        .collect();
    assert!(hosts.contains(&"new.example.test"), "{view}");
    let (status, _) = master
        .admin(
            Method::POST,
            "/v1/routes",
            Some(json!({"name": "other", "service": "web", "host": "www.example.test"})),
        )
        .await;
    assert_eq!(
        status, 201,
        "the old host and path are free after the replace"
    );

    // A router's rejection is an event naming its node.
    let (status, _) = master
        .call(
            Method::POST,
            "/v1/routes/other/rejected",
            Some(&credential),
            Some(json!({"reason": "haproxy said no"})),
        )
        .await;
    assert_eq!(status, 204);
    let (_, events) = master
        .admin(Method::GET, "/v1/events?type=RouteRejected", None)
        .await;
    let event = &events.as_array().expect("events")[0];
    assert_eq!(
        (&event["object"], &event["node"], &event["reason"]),
        (
            &json!("route/other"),
            &json!("h1"),
            &json!("haproxy said no")
        )
    );

    let (status, _) = master.admin(Method::DELETE, "/v1/routes/other", None).await;
    assert_eq!(status, 200);
    let (status, _) = master
        .call(Method::DELETE, "/v1/routes/api", Some(&credential), None)
        .await;
    assert_eq!(status, 403, "a node may not delete routes");
}
