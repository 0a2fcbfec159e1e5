//! Network volumes an admin defines, in-process: only servers on the
//! master's allow-list; every user reads them and only the admin writes
//! them; a service that names one gets its source filled in; one service
//! writes a network volume; a definition in use cannot be removed.

use reqwest::Method;
use serde_json::{json, Value};

mod common;

fn service(name: &str, volume: &str, read_only: bool) -> Value {
    json!({"name": name, "replicas": 1, "stateful": true,
           "template": {"name": name,
                        "containers": [{"name": name, "image": "local/busybox",
                                        "volumeMounts": [{"volume": "data", "path": "/data", "readOnly": read_only}]}],
                        "volumes": [{"name": "data", "networkVolume": volume}]}})
}

#[tokio::test]
async fn a_defined_network_volume_is_filled_in_written_by_one_service_and_kept_while_used() {
    let master = common::start_with("master-network-volumes", |config| {
        config.network_volume_servers = vec!["h1".to_owned()];
    })
    .await;
    let shared = json!({"name": "shared", "glusterfs": {"server": "h1", "path": "/v1"}});
    let (status, created) = master
        .admin(Method::POST, "/v1/volumes", Some(shared.clone()))
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, _) = master
        .admin(Method::POST, "/v1/volumes", Some(shared))
        .await;
    assert_eq!(status, 200, "the same definition again is a no-op");
    let (status, refused) = master
        .admin(
            Method::POST,
            "/v1/volumes",
            Some(json!({"name": "far", "nfs": {"server": "nas.example", "path": "/x"}})),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(common::fields(&refused), ["nfs.server"], "{refused}");
    assert!(
        refused["fields"][0]["message"]
            .as_str()
            .is_some_and(|e| e.contains("network-volume-servers")),
        "{refused}"
    );
    let (status, refused) = master
        .admin(Method::POST, "/v1/volumes", Some(json!({"name": "none"})))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(common::fields(&refused), ["glusterfs"], "{refused}");

    // A user with no role reads the definitions, and may not write them.
    let (status, user) = master
        .admin(Method::POST, "/v1/users", Some(json!({"name": "alice"})))
        .await;
    assert_eq!(status, 201, "{user}");
    let alice = user["token"].as_str().expect("token").to_owned();
    let (status, listed) = master
        .call(Method::GET, "/v1/volumes", Some(&alice), None)
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed[0]["name"], "shared", "{listed}");
    let (status, _) = master
        .call(Method::DELETE, "/v1/volumes/shared", Some(&alice), None)
        .await;
    assert_eq!(status, 403);

    // The service's template gets the source, beside the name.
    let (status, written) = master
        .admin(
            Method::POST,
            "/v1/services",
            Some(service("a", "shared", false)),
        )
        .await;
    assert_eq!(status, 201, "{written}");
    let (_, stored) = master.admin(Method::GET, "/v1/services/a", None).await;
    assert_eq!(
        stored["template"]["volumes"][0],
        json!({"name": "data", "networkVolume": "shared", "glusterfs": {"server": "h1", "path": "/v1"}}),
        "{stored}"
    );

    // A second writer is refused, naming the first; a reader is not.
    let (status, refused) = master
        .admin(
            Method::POST,
            "/v1/services",
            Some(service("b", "shared", false)),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(common::fields(&refused), ["template.volumes"], "{refused}");
    assert!(
        refused["error"].as_str().is_some_and(
            |e| e.contains("service a already writes network volume glusterfs://h1/v1")
        ),
        "{refused}"
    );
    let (status, refused) = master
        .admin(
            Method::POST,
            "/v1/batch",
            Some(
                json!({"objects": [{"kind": "Service", "name": "c", "replicas": 1, "stateful": true,
                "template": service("c", "shared", false)["template"]}]}),
            ),
        )
        .await;
    assert_eq!(status, 409, "a batch's writer is refused too: {refused}");
    let (status, reader) = master
        .admin(
            Method::POST,
            "/v1/services",
            Some(service("b", "shared", true)),
        )
        .await;
    assert_eq!(status, 201, "{reader}");
    let (status, refused) = master
        .admin(
            Method::POST,
            "/v1/services",
            Some(service("d", "missing", true)),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        common::fields(&refused),
        ["template.volumes[0].networkVolume"],
        "{refused}"
    );

    // In use, the definition stays.
    let (status, refused) = master
        .admin(Method::DELETE, "/v1/volumes/shared", None)
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("service a, service b")),
        "{refused}"
    );
    // Removing the writer frees the volume for another.
    let (status, _) = master.admin(Method::DELETE, "/v1/services/a", None).await;
    assert_eq!(status, 200);
    let (status, written) = master
        .admin(
            Method::POST,
            "/v1/services",
            Some(service("e", "shared", false)),
        )
        .await;
    assert_eq!(status, 201, "{written}");
    for name in ["b", "e"] {
        let (status, _) = master
            .admin(Method::DELETE, &format!("/v1/services/{name}"), None)
            .await;
        assert_eq!(status, 200);
    }
    let (status, removed) = master
        .admin(Method::DELETE, "/v1/volumes/shared", None)
        .await;
    assert_eq!(status, 200, "{removed}");
}
