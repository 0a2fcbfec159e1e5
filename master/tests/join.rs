//! Joining in-process: a join token cannot take over a registered node's
//! name or another node's address, a refused join leaves its token unused,
//! and a token bound to a node (`berth node rejoin`) re-registers it.

use reqwest::Method;
use serde_json::{json, Value};

mod common;

use common::Master;

async fn start(name: &str) -> Master {
    common::start(&format!("master-join-{name}"), 30).await
}

impl Master {
    /// A new join token, bound to `node` when given.
    async fn token(&self, node: Option<&str>) -> String {
        let body = node.map(|n| json!({ "node": n }));
        let (status, token) = self.admin(Method::POST, "/v1/join-tokens", body).await;
        assert_eq!(status, 201, "{token}");
        assert_eq!(token["node"].as_str(), node, "{token}");
        token["token"].as_str().expect("a token").to_owned()
    }

    /// Joins `name` at `address` with `token`: the status and the answer.
    async fn join_as(&self, token: &str, name: &str, address: &str) -> (u16, Value) {
        let body = json!({"token": token, "node": {"name": name, "address": address, "capacity": {"memoryBytes": 1u64 << 30, "cpuMillis": 1000}}});
        self.call(Method::POST, "/v1/join", None, Some(body)).await
    }

    async fn heartbeat_status(&self, node: &str, credential: &str) -> u16 {
        let body = json!({"capacity": {"memoryBytes": 1u64 << 30, "cpuMillis": 1000}, "pods": []});
        let path = format!("/v1/nodes/{node}/heartbeat");
        self.call(Method::PUT, &path, Some(credential), Some(body))
            .await
            .0
    }

    /// `(name, address, unschedulable)` of every node.
    async fn nodes(&self) -> Vec<(String, String, bool)> {
        let (status, nodes) = self.admin(Method::GET, "/v1/nodes", None).await;
        assert_eq!(status, 200, "{nodes}");
        nodes
            .as_array()
            .expect("a list")
            .iter()
            .map(|n| {
                (
                    n["node"]["name"].as_str().expect("name").to_owned(),
                    n["node"]["address"].as_str().expect("address").to_owned(),
                    n["node"]["unschedulable"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    }
}

fn refused_field(answer: &Value) -> &str {
    answer["fields"][0]["field"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_join_token_cannot_take_over_a_name_or_an_address() {
    let master = start("takeover").await;
    let (status, h1) = master
        .join_as(&master.token(None).await, "h1", "10.0.0.1")
        .await;
    assert_eq!(status, 201, "{h1}");
    let h1_credential = h1["credential"].as_str().expect("a credential").to_owned();
    let before = master.nodes().await;

    let token = master.token(None).await;
    for (name, address, status, field) in [
        ("h1", "10.0.0.9", 409, "node.name"),
        ("h3", "10.0.0.1", 409, "node.address"),
        ("h3", "__main__", 400, "node.address"),
        ("h3", "", 400, "node.address"),
        ("H3", "10.0.0.3", 400, "node.name"),
    ] {
        let (got, answer) = master.join_as(&token, name, address).await;
        assert_eq!(got, status, "{name} at {address:?}: {answer}");
        assert_eq!(refused_field(&answer), field, "{answer}");
    }
    let (_, answer) = master.join_as(&token, "h1", "10.0.0.9").await;
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("berth node rejoin h1")),
        "the refusal says how to re-register: {answer}"
    );
    assert_eq!(
        master.nodes().await,
        before,
        "a refused join changed the nodes"
    );
    assert_eq!(
        master.heartbeat_status("h1", &h1_credential).await,
        200,
        "the real h1 lost its credential"
    );
    // Nothing was half-applied: the token still registers a new node, once.
    let (status, answer) = master.join_as(&token, "h3", "10.0.0.3").await;
    assert_eq!(status, 201, "{answer}");
    let (status, _) = master.join_as(&token, "h4", "10.0.0.4").await;
    assert_eq!(status, 401, "a join token works once");
}

#[tokio::test]
async fn a_token_bound_to_a_node_re_registers_it_only() {
    let master = start("rejoin").await;
    let (_, h1) = master
        .join_as(&master.token(None).await, "h1", "10.0.0.1")
        .await;
    let (status, h2) = master
        .join_as(&master.token(None).await, "h2", "10.0.0.2")
        .await;
    assert_eq!(status, 201, "{h2}");
    let old_credential = h2["credential"].as_str().expect("a credential").to_owned();
    let (status, _) = master
        .admin(Method::POST, "/v1/nodes/h2/cordon", None)
        .await;
    assert_eq!(status, 200);

    let (status, answer) = master
        .admin(Method::POST, "/v1/join-tokens", Some(json!({"node": "h9"})))
        .await;
    assert_eq!((status, refused_field(&answer)), (404, "node"), "{answer}");
    let (status, answer) = master
        .admin(Method::POST, "/v1/join-tokens", Some(json!({"node": "H2"})))
        .await;
    assert_eq!((status, refused_field(&answer)), (400, "node"), "{answer}");
    let h1_credential = h1["credential"].as_str().expect("a credential");
    let (status, _) = master
        .call(
            Method::POST,
            "/v1/join-tokens",
            Some(h1_credential),
            Some(json!({"node": "h1"})),
        )
        .await;
    assert_eq!(status, 403, "a node made itself a rejoin token");

    let rejoin = master.token(Some("h2")).await;
    let (status, answer) = master.join_as(&rejoin, "h1", "10.0.0.1").await;
    assert_eq!(
        (status, refused_field(&answer)),
        (403, "node.name"),
        "{answer}"
    );
    let (status, answer) = master.join_as(&rejoin, "h2", "10.0.0.1").await;
    assert_eq!(
        (status, refused_field(&answer)),
        (409, "node.address"),
        "{answer}"
    );
    let (status, answer) = master.join_as(&rejoin, "h2", "10.0.0.2").await;
    assert_eq!(status, 201, "{answer}");
    let new_credential = answer["credential"].as_str().expect("a credential");
    assert_eq!(master.heartbeat_status("h2", new_credential).await, 200);
    assert_eq!(
        master.heartbeat_status("h2", &old_credential).await,
        401,
        "the replaced credential still works"
    );
    assert_eq!(
        master.nodes().await,
        vec![
            ("h1".to_owned(), "10.0.0.1".to_owned(), false),
            ("h2".to_owned(), "10.0.0.2".to_owned(), true),
        ],
        "the node (and its cordon) is kept"
    );
}
