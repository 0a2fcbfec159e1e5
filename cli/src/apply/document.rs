//! Apply documents: YAML (or JSON, which YAML reads too) streams of
//! objects, each a mapping with `kind:` and the object's own fields, as
//! `berth describe -o yaml` prints them. `resourceVersion` and `status`
//! are what the master reports and are ignored on input. Every document
//! of every file is read and checked by the model's own rules before
//! anything is sent, and each problem names its file, document and field.

use std::fmt;
use std::net::Ipv4Addr;

use berth_model::link::validate_links;
use berth_model::{
    validate_dns_label, BuildConfig, CronJob, Job, Link, Route, Service, ValidationErrors,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_norway::Value;

/// Where a document comes from: its file (`-` for standard input) and
/// its place in the file, counted from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file as it was named.
    pub file: String,
    /// The document's number in its file, from 1; for a template's
    /// object, its index in `objects:`, from 0.
    pub index: usize,
    /// An object of a template file rather than a document.
    pub in_template: bool,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.in_template {
            write!(f, "{}: objects[{}]", self.file, self.index)
        } else {
            write!(f, "{}: document {}", self.file, self.index)
        }
    }
}

/// A link as a document spells it, with the same names as `berth link
/// SERVICE TARGET --port P [--local-port L] [--address A]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkDocument {
    /// The linking service (A).
    pub service: String,
    /// The service it reaches (B).
    pub target: String,
    /// B's container port.
    pub port: u16,
    /// The port A connects to; `port` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
    /// A stable link-local address A connects to instead of 127.0.0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    /// A's new pods wait for a ready endpoint of the target.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait_ready: bool,
}

impl LinkDocument {
    /// The link as it lives on the linking service.
    pub fn link(&self) -> Link {
        Link {
            service: self.target.clone(),
            port: self.port,
            local_port: self.local_port,
            address: self.address,
            wait_ready: self.wait_ready,
        }
    }

    /// What `berth apply` calls it: `web->db:5432`.
    pub fn name(&self) -> String {
        format!("{}->{}:{}", self.service, self.target, self.port)
    }

    /// The model's link rules, with the fields named as the document
    /// names them.
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(e) = validate_dns_label(&self.service) {
            errors.push("service", e.to_string());
        }
        let mut found = ValidationErrors::new();
        validate_links("links", &self.service, &[self.link()], &mut found);
        for e in found.errors() {
            let field = e.field.trim_start_matches("links[0].");
            let field = if field == "service" { "target" } else { field };
            errors.push(field, e.message.clone());
        }
        errors.into_result()
    }
}

/// One object of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A service.
    Service(Service),
    /// A link from one service to another (it lives on the first).
    Link(LinkDocument),
    /// A route.
    Route(Route),
    /// A job.
    Job(Job),
    /// A cron job.
    CronJob(CronJob),
    /// A build config.
    BuildConfig(BuildConfig),
}

/// The kinds a document may have, as `kind:` spells them.
pub const KINDS: [&str; 6] = ["Service", "Link", "Route", "Job", "CronJob", "BuildConfig"];

impl Object {
    /// `service`, `link`, ...: how `berth apply` prints the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Service(_) => "service",
            Object::Link(_) => "link",
            Object::Route(_) => "route",
            Object::Job(_) => "job",
            Object::CronJob(_) => "cronjob",
            Object::BuildConfig(_) => "buildconfig",
        }
    }

    /// The object's name within its kind.
    pub fn name(&self) -> String {
        match self {
            Object::Service(s) => s.name.clone(),
            Object::Link(l) => l.name(),
            Object::Route(r) => r.name.clone(),
            Object::Job(j) => j.name.clone(),
            Object::CronJob(c) => c.name.clone(),
            Object::BuildConfig(b) => b.name.clone(),
        }
    }

    /// Its labels (a link has none: it belongs to its service).
    pub fn labels(&self) -> Option<&berth_model::Labels> {
        match self {
            Object::Service(s) => Some(&s.labels),
            Object::Link(_) => None,
            Object::Route(r) => Some(&r.labels),
            Object::Job(j) => Some(&j.labels),
            Object::CronJob(c) => Some(&c.labels),
            Object::BuildConfig(b) => Some(&b.labels),
        }
    }

    /// Every problem the model finds with it alone (a job is judged as
    /// the master completes it).
    fn validate(&self) -> Result<(), ValidationErrors> {
        match self {
            Object::Service(s) => s.validate(),
            Object::Link(l) => l.validate(),
            Object::Route(r) => r.validate(),
            Object::Job(j) => j.clone().completed().validate(),
            Object::CronJob(c) => c.validate(),
            Object::BuildConfig(b) => b.validate(),
        }
    }
}

/// An object and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its file and place.
    pub source: Source,
    /// The object.
    pub object: Object,
}

/// One problem with one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The document.
    pub source: Source,
    /// The field at fault, if one is.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {field}: {}", self.source, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

/// The documents of one file's text, each checked; or every problem
/// found in them.
pub fn parse(file: &str, text: &str) -> Result<Vec<Document>, Vec<Problem>> {
    let mut documents = Vec::new();
    let mut problems = Vec::new();
    for (i, deserializer) in serde_norway::Deserializer::from_str(text).enumerate() {
        let source = Source {
            file: file.to_owned(),
            index: i + 1,
            in_template: false,
        };
        let value = match Value::deserialize(deserializer) {
            Ok(Value::Null) => continue,
            Ok(value) => value,
            Err(e) => {
                problems.push(Problem {
                    source,
                    field: None,
                    message: format!("not YAML or JSON: {e}"),
                });
                // The rest of the stream cannot be read past a syntax error.
                break;
            }
        };
        match read(source, value) {
            Ok(document) => documents.push(document),
            Err(found) => problems.extend(found),
        }
    }
    if problems.is_empty() {
        Ok(documents)
    } else {
        Err(problems)
    }
}

/// One document's object, checked by the model's rules; or its problems.
pub fn read(source: Source, value: Value) -> Result<Document, Vec<Problem>> {
    let problem = |field: Option<String>, message: String| Problem {
        source: source.clone(),
        field,
        message,
    };
    match read_object(value) {
        Ok(object) => match object.validate() {
            Ok(()) => Ok(Document { source, object }),
            Err(errors) => Err(errors
                .errors()
                .iter()
                .map(|e| problem(Some(e.field.clone()), e.message.clone()))
                .collect()),
        },
        Err((field, message)) => Err(vec![problem(field, message)]),
    }
}

/// The object of one document: its `kind:` says which, `resourceVersion`
/// and `status` are dropped, and the rest must be the kind's fields.
fn read_object(value: Value) -> Result<Object, (Option<String>, String)> {
    let Value::Mapping(mut mapping) = value else {
        return Err((
            None,
            "must be a mapping with kind: and the object's fields".into(),
        ));
    };
    let kind = match mapping.remove("kind") {
        Some(Value::String(kind)) => kind,
        Some(_) => return Err((Some("kind".into()), "must be a string".into())),
        None => {
            return Err((
                Some("kind".into()),
                format!("missing: one of {}", KINDS.join(", ")),
            ))
        }
    };
    for reported in ["resourceVersion", "status"] {
        mapping.remove(reported);
    }
    let value = Value::Mapping(mapping);
    Ok(match kind.as_str() {
        "Service" => Object::Service(fields(value)?),
        "Link" => Object::Link(fields(value)?),
        "Route" => Object::Route(fields(value)?),
        "Job" => Object::Job(fields(value)?),
        "CronJob" => Object::CronJob(fields(value)?),
        "BuildConfig" => Object::BuildConfig(fields_as_json(value)?),
        other => {
            return Err((
                Some("kind".into()),
                format!("unknown kind {other:?}: one of {}", KINDS.join(", ")),
            ))
        }
    })
}

/// The kind's fields, or the path of the first one that does not fit.
fn fields<T: DeserializeOwned>(value: Value) -> Result<T, (Option<String>, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        (field, e.into_inner().to_string())
    })
}

/// Like [`fields`], read as the API's JSON reads it: YAML's own reading of
/// an externally tagged enum wants a YAML tag (`!source`), where the API
/// and `describe -o yaml` write a one-key map (`source: {...}`).
fn fields_as_json<T: DeserializeOwned>(value: Value) -> Result<T, (Option<String>, String)> {
    let json = serde_json::to_value(&value).map_err(|e| (None, e.to_string()))?;
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        (field, e.into_inner().to_string())
    })
}

/// Problems no single document shows: the same object twice.
pub fn check_together(documents: &[Document]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, document) in documents.iter().enumerate() {
        let (kind, name) = (document.object.kind(), document.object.name());
        if let Some(first) = documents[..i]
            .iter()
            .find(|d| d.object.kind() == kind && d.object.name() == name)
        {
            problems.push(Problem {
                source: document.source.clone(),
                field: Some("name".into()),
                message: format!("{kind}/{name} is already in {}", first.source),
            });
        }
    }
    problems
}

/// With `--prune -l SELECTOR`, every object must carry the selector's
/// labels: one without them could never be pruned later.
pub fn check_selected(documents: &[Document], selector: &berth_model::Labels) -> Vec<Problem> {
    documents
        .iter()
        .filter_map(|d| {
            let labels = d.object.labels()?;
            let missing: Vec<String> = selector
                .iter()
                .filter(|(k, v)| labels.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            (!missing.is_empty()).then(|| Problem {
                source: d.source.clone(),
                field: Some("labels".into()),
                message: format!(
                    "must carry {} (the --prune selector), or the next prune could not find it",
                    missing.join(", ")
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "\
kind: Service
name: web
replicas: 2
template:
  name: web
  containers:
  - name: web
    image: local/busybox
";

    fn problems(text: &str) -> Vec<String> {
        parse("web.yaml", text)
            .expect_err("invalid")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn documents_of_each_kind_are_read_in_order() {
        let text = format!(
            "{WEB}---\nkind: Link\nservice: web\ntarget: db\nport: 5432\n\
             ---\nkind: Route\nname: www\nservice: web\n\
             ---\n{{\"kind\": \"Job\", \"name\": \"once\", \"template\": \
             {{\"name\": \"once\", \"containers\": [{{\"name\": \"c\", \"image\": \"i\"}}]}}}}\n"
        );
        let documents = parse("app.yaml", &text).expect("valid");
        let kinds: Vec<String> = documents
            .iter()
            .map(|d| format!("{} {}/{}", d.source, d.object.kind(), d.object.name()))
            .collect();
        assert_eq!(
            kinds,
            [
                "app.yaml: document 1 service/web",
                "app.yaml: document 2 link/web->db:5432",
                "app.yaml: document 3 route/www",
                "app.yaml: document 4 job/once",
            ]
        );
    }

    #[test]
    fn what_the_master_reports_is_ignored() {
        let text = format!("resourceVersion: 42\nstatus:\n  pods: []\n{WEB}");
        let documents = parse("web.yaml", &text).expect("valid");
        assert!(matches!(&documents[0].object, Object::Service(s) if s.replicas == 2));
    }

    #[test]
    fn a_bad_field_names_file_document_and_field() {
        let text = format!("{WEB}---\n{}", WEB.replace("local/busybox", "''"));
        assert_eq!(
            problems(&text),
            ["web.yaml: document 2: template.containers[0].image: must not be empty"]
        );
    }

    #[test]
    fn a_field_of_the_wrong_shape_is_named_by_its_path() {
        let text = WEB.replace("replicas: 2", "replicas: many");
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("web.yaml: document 1: replicas: invalid type"),
            "{found:?}"
        );
        let text = WEB.replace("    image:", "    imag:");
        let found = problems(&text);
        assert!(
            found[0].starts_with("web.yaml: document 1: template.containers[0]"),
            "{found:?}"
        );
    }

    #[test]
    fn kinds_must_be_known() {
        assert_eq!(
            problems("name: web\n"),
            ["web.yaml: document 1: kind: missing: one of Service, Link, Route, Job, CronJob, BuildConfig"]
        );
        assert_eq!(
            problems("kind: Pod\nname: web\n"),
            ["web.yaml: document 1: kind: unknown kind \"Pod\": one of Service, Link, Route, Job, CronJob, BuildConfig"]
        );
    }

    #[test]
    fn a_link_names_its_fields_as_the_document_does() {
        assert_eq!(
            problems("kind: Link\nservice: web\ntarget: web\nport: 0\n"),
            [
                "web.yaml: document 1: target: a service cannot link to itself",
                "web.yaml: document 1: port: must be between 1 and 65535",
            ]
        );
    }

    #[test]
    fn the_same_object_twice_is_refused() {
        let documents = parse("web.yaml", &format!("{WEB}---\n{WEB}")).expect("each valid");
        let found: Vec<String> = check_together(&documents)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            ["web.yaml: document 2: name: service/web is already in web.yaml: document 1"]
        );
    }

    #[test]
    fn pruning_needs_the_selector_on_every_object() {
        let documents = parse("web.yaml", WEB).expect("valid");
        let selector = [("app".to_owned(), "shop".to_owned())]
            .into_iter()
            .collect();
        let found: Vec<String> = check_selected(&documents, &selector)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("web.yaml: document 1: labels: must carry app=shop"));
    }
}
