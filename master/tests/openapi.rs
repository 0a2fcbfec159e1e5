//! The OpenAPI document against the master it describes: it is served
//! without a token, every route `router()` has is in it (read from the
//! source, so a route added without documentation fails here), every `$ref`
//! resolves, and real answers match the schemas and status codes it gives.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

/// The HTTP methods axum's `MethodRouter` helpers are named after.
const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

mod common;

use common::Master;

/// One answer: status, media type (without parameters) and body.
struct Reply {
    status: u16,
    media_type: String,
    body: Value,
}

async fn start(name: &str) -> Master {
    common::start(&format!("master-openapi-{name}"), 5).await
}

impl Master {
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().await.expect("sending a request");
        let status = response.status().as_u16();
        let media_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .trim()
            .to_owned();
        let text = response.text().await.expect("reading an answer");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            media_type,
            body,
        }
    }

    async fn reply(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let body = body.map(|b| serde_json::to_vec(b).expect("encoding a body"));
        self.send(method, path, token, body).await
    }
}

/// Every `(METHOD, path)` that `router()` in `src/api/mod.rs` routes, read
/// from the source with a plain scan of its `.route("...", get(..).post(..))`
/// calls.
fn routes_in_router() -> Vec<(String, String)> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/mod.rs");
    let source = std::fs::read_to_string(&file).expect("reading src/api/mod.rs");
    let mut routes = Vec::new();
    // `in_project(prefix)` is merged at both prefixes; its paths are
    // written `format!("{prefix}/services/{{name}}")`.
    for (function, prefixes) in [
        ("pub fn router(", &[""][..]),
        ("fn in_project(", &["/v1", "/v1/projects/{project}"][..]),
    ] {
        let start = source
            .find(function)
            .unwrap_or_else(|| panic!("no `{function}` in src/api/mod.rs"));
        let body = &source[start..];
        let body = &body[..body.find("\n}\n").expect("the function has no end")];
        let mut rest = body;
        while let Some(at) = rest.find(".route(") {
            let call = &rest[at + ".route(".len()..];
            let args = &call[..call_end(call)];
            let path = first_string_literal(args)
                .unwrap_or_else(|| panic!("a .route() without a literal path: {args}"));
            let methods = method_calls(args);
            assert!(!methods.is_empty(), "no method found for {path}: {args}");
            for prefix in prefixes {
                let path = path
                    .replace("{prefix}", prefix)
                    .replace("{{", "{")
                    .replace("}}", "}");
                routes.extend(methods.iter().map(|m| (m.clone(), path.clone())));
            }
            rest = &call[args.len()..];
        }
    }
    assert!(
        routes.len() >= 10,
        "the scan of router() found only {routes:?}"
    );
    routes
}

/// Where the call whose arguments `text` starts with closes.
fn call_end(text: &str) -> usize {
    let (mut depth, mut in_string, mut escaped) = (1usize, false, false);
    for (i, c) in text.char_indices() {
        match (in_string, c) {
            (true, _) if escaped => escaped = false,
            (true, '\\') => escaped = true,
            (true, '"') => in_string = false,
            (true, _) => {}
            (false, '"') => in_string = true,
            (false, '(') => depth += 1,
            (false, ')') => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced .route( call: {text}");
}

fn first_string_literal(text: &str) -> Option<String> {
    let open = text.find('"')?;
    let close = open + 1 + text[open + 1..].find('"')?;
    Some(text[open + 1..close].to_owned())
}

/// The methods of a method router expression: `get(a).post(b)` gives GET
/// and POST. Handler paths (`nodes::get_node`) are not calls and are skipped.
fn method_calls(args: &str) -> Vec<String> {
    let bytes = args.as_bytes();
    let mut methods = Vec::new();
    for (i, _) in args.match_indices('(') {
        let begin = args[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(0, |p| p + 1);
        let name = &args[begin..i];
        if begin > 0 && bytes[begin - 1] == b':' {
            continue;
        }
        assert!(
            name != "any" && name != "on",
            "cannot tell which methods `{name}(` routes: document them and teach this scan"
        );
        if METHODS.contains(&name) {
            methods.push(name.to_uppercase());
        }
    }
    methods
}

/// Every `$ref` in `value`, with where it is.
fn refs(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "$ref" {
                    found.push((at.to_owned(), inner.as_str().unwrap_or("").to_owned()));
                } else {
                    refs(inner, &format!("{at}/{key}"), found);
                }
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                refs(inner, &format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

/// Follows `$ref`s until a value that is not one.
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    while let Some(target) = value.get("$ref").and_then(Value::as_str) {
        value = target
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer))
            .unwrap_or_else(|| panic!("dangling $ref {target}"));
    }
    value
}

/// Checks `value` against `schema` (the subset of OpenAPI 3.0 schemas the
/// document uses), adding what does not match to `errors`.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            check(doc, part, value, at, errors);
        }
    }
    if value.is_null() {
        if schema.get("type").is_some() && schema.get("nullable") != Some(&json!(true)) {
            errors.push(format!("{at}: null, but not nullable"));
        }
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    let fits = match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_u64() || value.is_i64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => panic!("{at}: schema type {other} is not known to this check"),
    };
    if !fits {
        errors.push(format!("{at}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let Some(n) = value.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|min| n < min)
        {
            errors.push(format!("{at}: {n} is below the minimum"));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|max| n > max)
        {
            errors.push(format!("{at}: {n} is above the maximum"));
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, item) in values.iter().enumerate() {
            check(doc, items, item, &format!("{at}[{i}]"), errors);
        }
    }
    let Some(object) = value.as_object() else {
        return;
    };
    for field in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !object.contains_key(field) {
            errors.push(format!("{at}: required field {field} is missing"));
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    for (field, inner) in object {
        match properties.and_then(|p| p.get(field)) {
            Some(property) => check(doc, property, inner, &format!("{at}.{field}"), errors),
            None => match schema.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    errors.push(format!("{at}: field {field} is not documented"));
                }
                Some(extra @ Value::Object(_)) => {
                    check(doc, extra, inner, &format!("{at}.{field}"), errors);
                }
                _ => {}
            },
        }
    }
}

/// The documented operation `method path`.
fn operation<'a>(doc: &'a Value, method: &Method, path: &str) -> &'a Value {
    let operation = &doc["paths"][path][method.as_str().to_lowercase()];
    assert!(operation.is_object(), "{method} {path} is not documented");
    operation
}

/// Asserts that `reply` to `method path` is documented: its status, its
/// media type and, for JSON, its body's schema.
fn assert_documented(doc: &Value, method: Method, path: &str, reply: &Reply) {
    let operation = operation(doc, &method, path);
    let response = operation["responses"]
        .get(reply.status.to_string())
        .map(|r| resolve(doc, r))
        .unwrap_or_else(|| {
            panic!(
                "{method} {path} answered {} ({}), which is not documented",
                reply.status, reply.body
            )
        });
    let content = &response["content"][&reply.media_type];
    assert!(
        content.is_object(),
        "{method} {path} answered {} as {:?}, which is not documented",
        reply.status,
        reply.media_type
    );
    if reply.media_type == "application/json" {
        let mut errors = Vec::new();
        check(doc, &content["schema"], &reply.body, "body", &mut errors);
        assert!(
            errors.is_empty(),
            "{method} {path} {}: {errors:#?}\n{:#}",
            reply.status,
            reply.body
        );
    }
}

/// Asserts that `body`, sent to `method path`, fits its documented request
/// body: the document must accept what the API does.
fn assert_request_documented(doc: &Value, method: Method, path: &str, body: &Value) {
    let schema =
        &operation(doc, &method, path)["requestBody"]["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} documents no JSON request body"
    );
    let mut errors = Vec::new();
    check(doc, schema, body, "request", &mut errors);
    assert!(errors.is_empty(), "{method} {path}: {errors:#?}\n{body:#}");
}

async fn fetch_document(master: &Master) -> Value {
    let reply = master
        .reply(Method::GET, "/v1/openapi.json", None, None)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.media_type, "application/json");
    assert!(reply.body.is_object(), "not a JSON object: {}", reply.body);
    reply.body
}

#[tokio::test]
async fn every_route_is_documented_and_every_ref_resolves() {
    let master = start("routes").await;
    let doc = fetch_document(&master).await;
    assert!(doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.0.")));

    let missing: Vec<String> = routes_in_router()
        .into_iter()
        .filter(|(method, path)| !doc["paths"][path][method.to_lowercase()].is_object())
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.json: {missing:?}"
    );

    let mut found = Vec::new();
    refs(&doc, "#", &mut found);
    assert!(!found.is_empty());
    let dangling: Vec<&(String, String)> = found
        .iter()
        .filter(|(_, target)| {
            target
                .strip_prefix('#')
                .and_then(|pointer| doc.pointer(pointer))
                .is_none()
        })
        .collect();
    assert!(
        dangling.is_empty(),
        "$refs that resolve to nothing: {dangling:?}"
    );

    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let callers = operation["x-berth-callers"].as_str();
            let open = operation.get("security") == Some(&json!([]));
            assert!(
                matches!(
                    (callers, open),
                    (Some("anyone"), true)
                        | (
                            Some(
                                "admin"
                                    | "admin-or-member"
                                    | "admin-or-user"
                                    | "any-credential"
                                    | "admin-or-own-node"
                                    | "admin-or-any-node"
                            ),
                            false
                        )
                ),
                "{method} {path}: x-berth-callers {callers:?} and its security disagree"
            );
            // Every `{param}` of the path is declared as a path parameter.
            let declared: Vec<&str> = item["parameters"]
                .as_array()
                .into_iter()
                .chain(operation["parameters"].as_array())
                .flatten()
                .map(|p| resolve(&doc, p))
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            for param in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            {
                assert!(
                    declared.contains(&param),
                    "{method} {path}: {param} is not declared"
                );
            }
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no response"
            );
        }
    }

    for name in [
        "Pod",
        "Container",
        "EnvVar",
        "Port",
        "VolumeMount",
        "Volume",
        "Resources",
        "Service",
        "Node",
        "Capacity",
        "NodeView",
        "ClusterPod",
        "PodStatus",
        "ContainerStatus",
        "HostPort",
        "JoinRequest",
        "JoinResponse",
        "JoinToken",
        "Heartbeat",
        "Assignments",
        "Scale",
        "Move",
        "Event",
        "ApiError",
        "FieldError",
    ] {
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "components/schemas/{name} is missing"
        );
    }
}

#[tokio::test]
async fn real_answers_match_the_document() {
    let master = start("answers").await;
    let doc = fetch_document(&master).await;
    let admin = Some(master.admin.as_str());

    // Errors first: no token, a wrong token, a bad body, too big a body.
    let reply = master.reply(Method::GET, "/v1/nodes", None, None).await;
    assert_eq!(reply.status, 401);
    assert_documented(&doc, Method::GET, "/v1/nodes", &reply);
    let mut bad =
        json!({"name": "Bad_Name", "replicas": 1, "template": {"name": "x", "containers": []}});
    let reply = master
        .reply(Method::POST, "/v1/services", admin, Some(&bad))
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.body["fields"]
        .as_array()
        .is_some_and(|f| !f.is_empty()));
    assert_documented(&doc, Method::POST, "/v1/services", &reply);
    bad["template"]["containers"] = json!([{"name": "a", "image": "x".repeat(2 << 20)}]);
    let reply = master
        .reply(Method::POST, "/v1/services", admin, Some(&bad))
        .await;
    assert_eq!(reply.status, 413);
    assert_documented(&doc, Method::POST, "/v1/services", &reply);
    let reply = master
        .reply(Method::GET, "/v1/pods/nope", admin, None)
        .await;
    assert_eq!(reply.status, 404);
    assert_documented(&doc, Method::GET, "/v1/pods/{name}", &reply);
    let reply = master.reply(Method::GET, "/v1/ca.crt", None, None).await;
    assert_eq!(reply.status, 404, "plain HTTP has no CA");
    assert_documented(&doc, Method::GET, "/v1/ca.crt", &reply);

    // A node joins and beats.
    let reply = master
        .reply(Method::POST, "/v1/join-tokens", admin, None)
        .await;
    assert_eq!(reply.status, 201);
    assert_documented(&doc, Method::POST, "/v1/join-tokens", &reply);
    let capacity = json!({"memoryBytes": 8u64 << 30, "cpuMillis": 8000});
    let join = json!({"token": reply.body["token"], "node": {"name": "h1", "address": "h1.lab", "capacity": capacity}});
    assert_request_documented(&doc, Method::POST, "/v1/join", &join);
    let reply = master
        .reply(Method::POST, "/v1/join", None, Some(&join))
        .await;
    assert_eq!(reply.status, 201);
    assert_documented(&doc, Method::POST, "/v1/join", &reply);
    let credential = reply.body["credential"]
        .as_str()
        .expect("a credential")
        .to_owned();
    let node = Some(credential.as_str());
    let reply = master
        .reply(Method::POST, "/v1/join", None, Some(&join))
        .await;
    assert_eq!(reply.status, 401, "a join token works once");
    assert_documented(&doc, Method::POST, "/v1/join", &reply);
    let beat = json!({"capacity": capacity, "pods": []});
    let reply = master
        .reply(Method::PUT, "/v1/nodes/h1/heartbeat", node, Some(&beat))
        .await;
    assert_eq!(reply.status, 200);
    assert_documented(&doc, Method::PUT, "/v1/nodes/{name}/heartbeat", &reply);
    let reply = master.reply(Method::GET, "/v1/services", node, None).await;
    assert_eq!(reply.status, 403);
    assert_documented(&doc, Method::GET, "/v1/services", &reply);

    // A service, its pod placed and reported running.
    let service = json!({"name": "web", "replicas": 1, "template": {"name": "web", "containers": [{"name": "web", "image": "local/busybox", "command": ["httpd", "-f"], "secretEnv": [{"name": "TOKEN", "value": "s3cret"}], "ports": [{"containerPort": 8080, "hostPort": 0}]}]}});
    assert_request_documented(&doc, Method::POST, "/v1/services", &service);
    let reply = master
        .reply(Method::POST, "/v1/services", admin, Some(&service))
        .await;
    assert_eq!(reply.status, 201);
    assert_documented(&doc, Method::POST, "/v1/services", &reply);
    let deadline = Instant::now() + Duration::from_secs(5);
    let assignments = loop {
        let reply = master
            .reply(Method::GET, "/v1/nodes/h1/assignments", node, None)
            .await;
        assert_documented(&doc, Method::GET, "/v1/nodes/{name}/assignments", &reply);
        if reply.body["pods"].as_array().is_some_and(|p| !p.is_empty()) {
            break reply.body;
        }
        assert!(Instant::now() < deadline, "the pod was not placed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The agent reports its spec with secret values blanked.
    let mut spec = assignments["pods"][0]["spec"].clone();
    spec["containers"][0]["secretEnv"][0]["value"] = json!("");
    let status = json!({
        "name": spec["name"], "phase": "Running", "slice": "berth-web.slice", "spec": spec,
        "containers": [{"name": "web", "unit": "berth-web-0-web.service", "containerId": null, "state": "active",
            "subState": "running", "pid": 42, "exitCode": null, "reason": null, "restarts": 0,
            "hostPorts": [{"containerPort": 8080, "protocol": "tcp", "hostPort": 20000}]}]
    });
    let beat = json!({"capacity": capacity, "pods": [status]});
    assert_request_documented(&doc, Method::PUT, "/v1/nodes/{name}/heartbeat", &beat);
    let reply = master
        .reply(Method::PUT, "/v1/nodes/h1/heartbeat", node, Some(&beat))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, json!({}), "the status was recorded");
    assert_documented(&doc, Method::PUT, "/v1/nodes/{name}/heartbeat", &reply);

    for (token, path, template) in [
        (admin, "/v1/nodes", "/v1/nodes"),
        (node, "/v1/nodes/h1", "/v1/nodes/{name}"),
        (admin, "/v1/services", "/v1/services"),
        (admin, "/v1/services/web", "/v1/services/{name}"),
        (admin, "/v1/pods", "/v1/pods"),
        (admin, "/v1/events", "/v1/events"),
        (node, "/v1/endpoints", "/v1/endpoints"),
    ] {
        let reply = master.reply(Method::GET, path, token, None).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        assert_documented(&doc, Method::GET, template, &reply);
    }
    let reply = master
        .reply(Method::GET, "/v1/endpoints?service=web", node, None)
        .await;
    let web = &reply.body["services"][0];
    assert_eq!(web["service"], "web", "{}", reply.body);
    assert_eq!(web["endpoints"][0]["port"], 20000, "{}", reply.body);
    assert_eq!(web["endpoints"][0]["ready"], true, "{}", reply.body);
    let reply = master.reply(Method::GET, "/v1/pods", admin, None).await;
    assert_eq!(
        reply.body[0]["status"]["phase"], "Running",
        "{}",
        reply.body
    );

    let scale = json!({"replicas": 2});
    assert_request_documented(&doc, Method::POST, "/v1/services/{name}/scale", &scale);
    let reply = master
        .reply(Method::POST, "/v1/services/web/scale", admin, Some(&scale))
        .await;
    assert_eq!(reply.status, 200);
    assert_documented(&doc, Method::POST, "/v1/services/{name}/scale", &reply);
    let mut stale = reply.body.clone();
    stale["resourceVersion"] = json!(1);
    assert_request_documented(&doc, Method::PUT, "/v1/services/{name}", &stale);
    let reply = master
        .reply(Method::PUT, "/v1/services/web", admin, Some(&stale))
        .await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_documented(&doc, Method::PUT, "/v1/services/{name}", &reply);

    let reply = master
        .reply(Method::POST, "/v1/nodes/h1/cordon", admin, None)
        .await;
    assert_eq!(reply.status, 200);
    assert_documented(&doc, Method::POST, "/v1/nodes/{name}/cordon", &reply);
    let reply = master
        .reply(Method::POST, "/v1/nodes/h1/drain", admin, None)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_documented(&doc, Method::POST, "/v1/nodes/{name}/drain", &reply);
    let reply = master
        .reply(Method::DELETE, "/v1/services/web", admin, None)
        .await;
    assert_eq!(reply.status, 200);
    assert_documented(&doc, Method::DELETE, "/v1/services/{name}", &reply);
}

/// What axum itself refuses (an unknown path, a method a path does not
/// answer, a query string that does not parse, a body past the limit)
/// answers the JSON `ApiError` like every other error, and the document's
/// limits are the server's: `timeout=301` is refused, naming the field.
#[tokio::test]
async fn framework_rejections_are_api_errors() {
    let master = start("framework").await;
    let admin = Some(master.admin.as_str());
    let doc = fetch_document(&master).await;
    let error = |reply: &Reply| reply.body["error"].as_str().unwrap_or_default().to_owned();
    let field = |reply: &Reply| reply.body["fields"][0]["field"].clone();

    let reply = master.reply(Method::GET, "/v1/nowhere", admin, None).await;
    assert_eq!(
        (reply.status, reply.media_type.as_str()),
        (404, "application/json")
    );
    assert!(error(&reply).contains("/v1/nowhere"), "{:?}", reply.body);

    let response = master
        .http
        .patch(format!("{}/v1/pods", master.url))
        .bearer_auth(&master.admin)
        .send()
        .await
        .expect("sending a request");
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("GET,HEAD")
    );
    let body: Value = response.json().await.expect("a JSON 405");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("PATCH")));

    let reply = master
        .reply(Method::GET, "/v1/pods?after=x", admin, None)
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(field(&reply), json!("query"));
    assert!(error(&reply).contains("after"), "{:?}", reply.body);
    assert_documented(&doc, Method::GET, "/v1/pods", &reply);

    for path in ["/v1/routes", "/v1/endpoints", "/v1/nodes/n/assignments"] {
        let reply = master
            .reply(Method::GET, &format!("{path}?timeout=301"), admin, None)
            .await;
        assert_eq!(reply.status, 400, "{path}");
        assert_eq!(field(&reply), json!("timeout"), "{path}");
    }
    let reply = master
        .reply(
            Method::GET,
            "/v1/pods?after=9223372036854775808",
            admin,
            None,
        )
        .await;
    assert_eq!((reply.status, field(&reply)), (400, json!("after")));

    // `after` lists the events committed after a revision.
    let reply = master
        .reply(Method::GET, "/v1/events?node=&after=0", admin, None)
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_documented(&doc, Method::GET, "/v1/events", &reply);

    let reply = master
        .send(
            Method::POST,
            "/v1/services",
            admin,
            Some(vec![b' '; 2 << 20]),
        )
        .await;
    assert_eq!((reply.status, field(&reply)), (413, json!("body")));
    assert_documented(&doc, Method::POST, "/v1/services", &reply);
}
