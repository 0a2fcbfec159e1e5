//! `berth template export`: existing services, with their links and
//! routes, captured as a template that makes a working copy of them.
//!
//! The copy must not share the originals' secrets, and must not clash
//! with them: every secret value (a container's `secretEnv`, a service's
//! `publish` and `generatedEnv`) becomes a generated parameter, one per
//! distinct value, so a password a database keeps and publishes to the
//! service linking to it stays one password in the copy; a route's TLS
//! key becomes a required parameter. No secret value is ever copied. The
//! names' common prefix (`shop` of `shop-web` and `shop-db`) becomes the
//! `NAME` parameter wherever it appears as a word, so a copy under
//! another name links and routes to its own services. Pure: the master
//! reads the objects and hands them in.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::link::env_prefix;
use crate::pod::EnvVar;
use crate::route::Route;
use crate::template::{with_kind, Generate, Linkable, Parameter, Template};
use crate::Service;

/// The expression of a secret's generated parameter, when the secret was
/// not itself generated from one.
pub const SECRET_EXPRESSION: &str = "[a-zA-Z0-9]{16}";

/// What else to turn into parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parameterize {
    /// Each container's image: `<SERVICE>_IMAGE` (or
    /// `<SERVICE>_<CONTAINER>_IMAGE`), defaulting to the current one.
    pub image: bool,
    /// Each service's replicas: `<SERVICE>_REPLICAS`.
    pub replicas: bool,
}

/// The template named `name` that recreates `services` with the `routes`
/// that send to them (others are left out). The services' names and
/// references are as their project sees them.
pub fn export(
    name: &str,
    services: &[Service],
    routes: &[Route],
    parameterize: Parameterize,
) -> Template {
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let prefix = common_prefix(&names);
    let mut export = Export {
        parameters: Vec::new(),
        secrets: BTreeMap::new(),
    };
    if let Some(prefix) = &prefix {
        export.parameters.push(Parameter {
            name: "NAME".into(),
            description: format!(
                "Prefix of every object's name (the exported objects' was {prefix})"
            ),
            value: None,
            required: true,
            generate: None,
            from: None,
        });
    }
    let short = |service: &str| -> String {
        let rest = prefix
            .as_deref()
            .and_then(|p| service.strip_prefix(p))
            .map(|r| r.trim_start_matches('-'))
            .filter(|r| !r.is_empty())
            .unwrap_or(service);
        env_prefix(rest)
    };
    let mut objects = Vec::new();
    let mut linkable: Vec<Linkable> = Vec::new();
    for service in services {
        let mut service = service.clone();
        let own = short(&service.name);
        for container in &mut service.template.containers {
            for var in &mut container.secret_env {
                var.value = export.secret(&own, &var.name, &var.value, None);
            }
        }
        for var in &mut service.publish {
            var.value = export.secret(&own, &var.name, &var.value, None);
        }
        for var in &mut service.generated_env {
            var.value = export.secret(&own, &var.name, &var.value, Some(&var.from));
        }
        let mut images = BTreeMap::new();
        if parameterize.image {
            let many = service.template.containers.len() > 1;
            for container in &mut service.template.containers {
                let parameter = if many {
                    format!("{own}_{}_IMAGE", env_prefix(&container.name))
                } else {
                    format!("{own}_IMAGE")
                };
                export.add_unique(Parameter {
                    name: parameter.clone(),
                    description: format!(
                        "The image of {}'s {} container",
                        service.name, container.name
                    ),
                    value: Some(container.image.clone()),
                    required: false,
                    generate: None,
                    from: None,
                });
                images.insert(container.name.clone(), format!("${{{parameter}}}"));
            }
        }
        for link in &service.links {
            if names.contains(&link.service.as_str())
                && !linkable.iter().any(|l| l.service == link.service)
            {
                linkable.push(Linkable {
                    service: link.service.clone(),
                    port: link.port,
                });
            }
        }
        let replicas = service.replicas;
        let mut value = with_kind("Service", &service);
        rename_all(&mut value, prefix.as_deref());
        for container in value["template"]["containers"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            let own_name = container["name"].as_str().unwrap_or_default().to_owned();
            if let Some(image) = images.get(&own_name) {
                container["image"] = Value::String(image.clone());
            }
        }
        if parameterize.replicas {
            let parameter = format!("{own}_REPLICAS");
            export.add_unique(Parameter {
                name: parameter.clone(),
                description: format!("How many pods {} runs", service.name),
                value: Some(replicas.to_string()),
                required: false,
                generate: None,
                from: None,
            });
            value["replicas"] = Value::String(format!("${{{{{parameter}}}}}"));
        }
        objects.push(value);
    }
    for route in routes
        .iter()
        .filter(|r| names.contains(&r.service.as_str()))
    {
        let mut route = route.clone();
        if let Some(key) = route.tls.as_mut().and_then(|t| t.key.as_mut()) {
            let parameter = format!("{}_TLS_KEY", env_prefix(&route.name));
            export.add_unique(Parameter {
                name: parameter.clone(),
                description: format!(
                    "PEM private key of route {}'s certificate (never exported)",
                    route.name
                ),
                value: None,
                required: true,
                generate: None,
                from: None,
            });
            *key = placeholder(&parameter);
        }
        let mut value = with_kind("Route", &route);
        rename_all(&mut value, prefix.as_deref());
        objects.push(value);
    }
    for linkable in &mut linkable {
        linkable.service = rename(&escape(&linkable.service), prefix.as_deref());
    }
    Template {
        name: name.to_owned(),
        description: format!("Exported from {}", names.join(", ")),
        parameters: export.parameters,
        labels: Default::default(),
        objects,
        script: None,
        linkable,
    }
}

struct Export {
    parameters: Vec<Parameter>,
    /// Each secret value seen, and the parameter that replaces it.
    secrets: BTreeMap<String, String>,
}

impl Export {
    /// `${PARAMETER}` for a secret value: the parameter of the same value
    /// if one was made, else a new generated one named after the
    /// variable (or `<SERVICE>_<VARIABLE>` if that name is taken). An
    /// empty value stays empty.
    fn secret(&mut self, service: &str, variable: &str, value: &str, from: Option<&str>) -> String {
        if value.is_empty() {
            return String::new();
        }
        if let Some(parameter) = self.secrets.get(value) {
            return placeholder(parameter);
        }
        let name = self.add_unique(Parameter {
            name: if self.taken(variable) {
                format!("{service}_{variable}")
            } else {
                variable.to_owned()
            },
            description: format!(
                "Generated: {variable} of a {} service, never exported",
                service.to_ascii_lowercase()
            ),
            value: None,
            required: false,
            generate: Some(Generate::Expression),
            from: Some(from.unwrap_or(SECRET_EXPRESSION).to_owned()),
        });
        let shown = placeholder(&name);
        self.secrets.insert(value.to_owned(), name);
        shown
    }

    fn taken(&self, name: &str) -> bool {
        self.parameters.iter().any(|p| p.name == name)
    }

    /// Adds `parameter`, numbered if its name is taken; its name.
    fn add_unique(&mut self, mut parameter: Parameter) -> String {
        let base = parameter.name.clone();
        let mut n = 2;
        while self.taken(&parameter.name) {
            parameter.name = format!("{base}_{n}");
            n += 1;
        }
        let name = parameter.name.clone();
        self.parameters.push(parameter);
        name
    }
}

/// The dash-separated words every name starts with, if that leaves each
/// a word of its own (`shop` of `shop-web` and `shop-db`); a lone service
/// is its own prefix.
fn common_prefix(names: &[&str]) -> Option<String> {
    match names {
        [] => None,
        [only] => Some((*only).to_owned()),
        [first, rest @ ..] => {
            let words: Vec<&str> = first.split('-').collect();
            let mut shared = 0;
            'words: for (i, word) in words.iter().enumerate() {
                for name in rest {
                    let theirs: Vec<&str> = name.split('-').collect();
                    // Each name keeps a word after the prefix.
                    if theirs.len() <= i + 1 || theirs[i] != *word {
                        break 'words;
                    }
                }
                if words.len() <= i + 1 {
                    break;
                }
                shared = i + 1;
            }
            (shared > 0).then(|| words[..shared].join("-"))
        }
    }
}

/// `${` written as `$${`, so that rendering gives it back unchanged.
fn escape(text: &str) -> String {
    text.replace("${", "$${")
}

/// What stands for parameter `name` until [`rename_all`] is done: no
/// value holds a NUL, so nothing the user wrote is mistaken for it.
fn placeholder(name: &str) -> String {
    format!("\u{0}{name}")
}

/// Escapes every string of `value` and puts `${NAME}` for the prefix
/// where it stands as a word, then `${P}` for each placeholder; images
/// are left alone (a prefix `web` is not `local/web:1`'s business).
fn rename_all(value: &mut Value, prefix: Option<&str>) {
    match value {
        Value::String(text) => {
            *text = match text.strip_prefix('\u{0}') {
                Some(parameter) => format!("${{{parameter}}}"),
                None => rename(&escape(text), prefix),
            };
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rename_all(i, prefix)),
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                if key != "image" {
                    rename_all(field, prefix);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `${NAME}` for every `prefix` that stands as a word: not inside a
/// longer name (a letter, digit or `_` on either side).
fn rename(text: &str, prefix: Option<&str>) -> String {
    let Some(prefix) = prefix else {
        return text.to_owned();
    };
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let before = if at > 0 {
            rest[..at].chars().last()
        } else {
            out.chars().last()
        };
        let after = rest[at + prefix.len()..].chars().next();
        out.push_str(&rest[..at]);
        if word(before) || word(after) {
            out.push_str(prefix);
        } else {
            out.push_str("${NAME}");
        }
        rest = &rest[at + prefix.len()..];
    }
    out.push_str(rest);
    out
}

/// Every secret value of `services`, for a test that none was exported.
pub fn secret_values(services: &[Service]) -> Vec<String> {
    let mut values = Vec::new();
    for service in services {
        for container in &service.template.containers {
            values.extend(
                container
                    .secret_env
                    .iter()
                    .map(|v: &EnvVar| v.value.clone()),
            );
        }
        values.extend(service.publish.iter().map(|v| v.value.clone()));
        values.extend(service.generated_env.iter().map(|v| v.value.clone()));
    }
    values.retain(|v| !v.is_empty());
    values
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::template::Template;

    fn service(value: Value) -> Service {
        serde_json::from_value(value).expect("service")
    }

    fn shop() -> (Vec<Service>, Vec<Route>) {
        let db = service(json!({
            "name": "shop-db", "replicas": 1,
            "publish": [{"name": "PASSWORD", "value": "s3cretvalue00001"}],
            "template": {"name": "shop-db", "containers": [{
                "name": "db", "image": "local/busybox",
                "secretEnv": [{"name": "DB_PASSWORD", "value": "s3cretvalue00001"},
                              {"name": "ADMIN_KEY", "value": "otherSecret00002"}],
                "args": ["sh", "-c", "echo shop-db ${HOME} shopping", "${TOKEN}"],
                "ports": [{"containerPort": 5432, "hostPort": 0}]}]}
        }));
        let web = service(json!({
            "name": "shop-web", "replicas": 2,
            "links": [{"service": "shop-db", "port": 5432}],
            "generatedEnv": [{"name": "TOKEN", "from": "[a-z]{8}", "value": "abcdefgh"}],
            "template": {"name": "shop-web", "containers": [{
                "name": "web", "image": "local/shop:1",
                "env": [{"name": "MODE", "value": "fast"}],
                "ports": [{"containerPort": 8080, "hostPort": 0}]}]}
        }));
        let route: Route = serde_json::from_value(json!({
            "name": "shop", "service": "shop-web", "host": "shop.example.test", "port": 8080,
            "tls": {"termination": "edge", "certificate": "CERT", "key": "PRIVATE-KEY"}
        }))
        .expect("route");
        let other: Route = serde_json::from_value(json!({
            "name": "other", "service": "other", "host": "other.example.test"
        }))
        .expect("route");
        (vec![web, db], vec![route, other])
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn secrets_become_generated_parameters_one_per_value_and_are_never_copied() {
        let (services, routes) = shop();
        let template = export("shop-copy", &services, &routes, Parameterize::default());
        assert_eq!(template.validate(), Ok(()));
        let text = serde_json::to_string(&template).expect("json");
        for secret in secret_values(&services)
            .iter()
            .chain([&"PRIVATE-KEY".to_owned()])
        {
            assert!(!text.contains(secret.as_str()), "{secret} exported: {text}");
        }
        let parameters: Vec<(&str, Option<&str>, bool)> = template
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p.from.as_deref(), p.required))
            .collect();
        assert_eq!(
            parameters,
            [
                ("NAME", None, true),
                ("TOKEN", Some("[a-z]{8}"), false),
                ("DB_PASSWORD", Some(SECRET_EXPRESSION), false),
                ("ADMIN_KEY", Some(SECRET_EXPRESSION), false),
                ("SHOP_TLS_KEY", None, true),
            ]
        );
        // The database's own and its published password stay one value.
        let db = &template.objects[1];
        assert_eq!(db["publish"][0]["value"], "${DB_PASSWORD}");
        assert_eq!(
            db["template"]["containers"][0]["secretEnv"][0]["value"],
            "${DB_PASSWORD}"
        );
    }

    #[test]
    fn a_copy_under_another_name_refers_to_its_own_objects() {
        let (services, routes) = shop();
        let template = export("shop-copy", &services, &routes, Parameterize::default());
        let mut random = |below: usize| 1 % below;
        let given = values(&[("NAME", "copy"), ("SHOP_TLS_KEY", "KEY")]);
        let resolved = template.values(&given, &mut random).expect("values");
        let rendered = template.render(&resolved).expect("rendered");
        let web = &rendered.objects[0];
        assert_eq!(web["name"], "copy-web");
        assert_eq!(web["template"]["name"], "copy-web");
        assert_eq!(web["links"][0]["service"], "copy-db");
        assert_eq!(web["template"]["containers"][0]["image"], "local/shop:1");
        assert_eq!(web["template"]["containers"][0]["env"][0]["value"], "fast");
        let db = &rendered.objects[1];
        // A word of its own is renamed; a longer word and ${HOME} stay.
        assert_eq!(
            db["template"]["containers"][0]["args"][2],
            "echo copy-db ${HOME} shopping"
        );
        assert_eq!(db["template"]["containers"][0]["args"][3], "${TOKEN}");
        let route = &rendered.objects[2];
        assert_eq!(rendered.objects.len(), 3, "the other route is not theirs");
        assert_eq!(route["host"], "copy.example.test");
        assert_eq!(route["service"], "copy-web");
        assert_eq!(route["tls"]["key"], "KEY");
        assert_eq!(route["tls"]["certificate"], "CERT");
        assert_eq!(rendered.linkable[0].service, "copy-db");
        assert_ne!(
            db["publish"][0]["value"],
            json!("s3cretvalue00001"),
            "a new password"
        );
        assert_eq!(
            db["publish"][0]["value"],
            db["template"]["containers"][0]["secretEnv"][0]["value"]
        );
    }

    #[test]
    fn images_and_replicas_become_parameters_when_asked() {
        let (services, _) = shop();
        let template = export(
            "t",
            &services,
            &[],
            Parameterize {
                image: true,
                replicas: true,
            },
        );
        let web = &template.objects[0];
        assert_eq!(web["replicas"], "${{WEB_REPLICAS}}");
        assert_eq!(web["template"]["containers"][0]["image"], "${WEB_IMAGE}");
        let defaults: Vec<(&str, Option<&str>)> = template
            .parameters
            .iter()
            .filter(|p| p.name.ends_with("_IMAGE") || p.name.ends_with("_REPLICAS"))
            .map(|p| (p.name.as_str(), p.value.as_deref()))
            .collect();
        assert_eq!(
            defaults,
            [
                ("WEB_IMAGE", Some("local/shop:1")),
                ("WEB_REPLICAS", Some("2")),
                ("DB_IMAGE", Some("local/busybox")),
                ("DB_REPLICAS", Some("1")),
            ]
        );
        let mut random = |_: usize| 0;
        let resolved = template
            .values(&values(&[("NAME", "x")]), &mut random)
            .expect("values");
        let rendered = template.render(&resolved).expect("rendered");
        assert_eq!(rendered.objects[0]["replicas"], 2);
    }

    #[test]
    fn the_prefix_is_the_names_shared_words() {
        assert_eq!(
            common_prefix(&["shop-web", "shop-db"]).as_deref(),
            Some("shop")
        );
        assert_eq!(
            common_prefix(&["a-b-web", "a-b-db"]).as_deref(),
            Some("a-b")
        );
        assert_eq!(common_prefix(&["web"]).as_deref(), Some("web"));
        assert_eq!(common_prefix(&["web", "db"]), None);
        assert_eq!(common_prefix(&["shop", "shop-db"]), None);
        let template: Template = export("t", &[], &[], Parameterize::default());
        assert!(template.parameters.is_empty());
    }
}
