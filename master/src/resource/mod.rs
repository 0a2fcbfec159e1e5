//! The object kinds the API serves, each described once: where its objects
//! live, what messages call it, how it is completed, checked and redacted,
//! and which other keys an object holds. `api::resource` serves every kind
//! from this description with the same list, get, watch, create, update and
//! delete handlers, so a new kind costs a model type, one impl of
//! [`Resource`] and its own verbs. The checks themselves are the model
//! crate's, which the command line calls too.

pub mod build;
mod cron;
pub mod deployment;
pub mod image_stream;
mod job;
pub mod network_volume;
mod node;
mod pod;
mod project;
mod route;
pub mod service;
pub mod template;
mod user;

use std::collections::BTreeSet;
use std::future::Future;

use berth_model::api::Versioned;
use berth_model::{FieldError, HostPortPolicy, Role, ValidationErrors};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::objects;
use crate::store::{Op, Store, StoreError};

/// Where a kind's objects live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One namespace for the whole cluster: nodes, projects.
    Cluster,
    /// A project's: inside the cluster the object's name is qualified by
    /// its project (`a.web`, see `berth_model::project`), so that its key
    /// and every reference to it are unique cluster-wide.
    Project,
}

/// How `PUT` guards against lost updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// The body carries the `resourceVersion` its writer read; a stale one
    /// is a 409.
    IfUnchanged,
    /// The body is the bare object, and replaces whatever is stored.
    Replace,
}

/// The master's settings that completing and checking an object may
/// consult.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// The fixed host ports pods may publish.
    pub host_ports: &'a HostPortPolicy,
    /// Servers pods may mount network volumes from.
    pub network_volume_servers: &'a [String],
    /// DNS suffix of generated route hostnames.
    pub route_suffix: &'a str,
    /// The project the request is in.
    pub project: &'a str,
    /// The integrated registry's `HOST:PORT`, when the master runs one.
    pub registry: Option<&'a str>,
    /// Other projects' repositories (`PROJECT/STREAM`) shared with this
    /// project, whose images its pods may name.
    pub shared: &'a BTreeSet<String>,
}

impl Settings<'_> {
    /// What this master refuses in the pod template (field `template.`)
    /// that every kind with one holds (service, job, cron job): a build,
    /// fixed host ports outside the policy, and other projects' registry
    /// images.
    pub fn check_template(&self, template: &berth_model::Pod, errors: &mut ValidationErrors) {
        if template.build.is_some() {
            // Build pods may push: only a build config's builds make them.
            errors.push(
                "template.build",
                "is the master's to set, for a build config's builds (berth build create)",
            );
        }
        self.host_ports.check(template, "template.", errors);
        berth_model::pod::check_network_servers(
            template,
            self.network_volume_servers,
            "the master's",
            "template.",
            errors,
        );
        crate::registry::check_images(
            self.registry,
            self.project,
            self.shared,
            template,
            "template.",
            errors,
        );
    }
}

/// A kind of object in the store, as the API serves it.
pub trait Resource:
    Serialize + DeserializeOwned + Clone + PartialEq + Send + Sync + 'static
{
    /// What messages call it: `service`, `pod`, `route`.
    const KIND: &'static str;
    /// Where its objects live in the store.
    const PREFIX: &'static str;
    /// Which objects share its names.
    const SCOPE: Scope = Scope::Cluster;
    /// The role in its project that creating, changing and removing one
    /// needs.
    const WRITE_ROLE: Role = Role::Edit;
    /// What `PUT` expects.
    const UPDATE: Update = Update::IfUnchanged;
    /// Said after the 409 of a create that differs from the stored object.
    const CONFLICT_HINT: &'static str = "";

    /// Its name, unique in its scope: qualified by the project once
    /// [`Resource::qualified`].
    fn name(&self) -> &str;

    /// The object as the cluster knows it: its name, and the names it
    /// refers to, qualified by `project`. Only [`Scope::Project`] kinds
    /// change.
    fn qualified(self, _project: &str) -> Self {
        self
    }

    /// The object as its project's users see it: the project taken off.
    fn unqualified(self) -> Self {
        self
    }

    /// Fills in what the master decides before the object is checked.
    fn complete(self, _settings: &Settings<'_>) -> Self {
        self
    }

    /// Every problem with the object on its own, each naming its field.
    fn validate(&self, settings: &Settings<'_>) -> Result<(), ValidationErrors>;

    /// The object as users see it: secrets blanked.
    fn redacted(self) -> Self;

    /// The object sent to replace `stored`, with the secrets it was sent
    /// blank (as [`Resource::redacted`] shows them) kept from `stored`, so
    /// that an object read and sent back (`berth describe -o yaml`, then
    /// `berth apply`) never wipes them. The one place this is decided.
    fn with_secrets_from(self, _stored: &Self) -> Self {
        self
    }

    /// Keys the object holds exclusively besides its own (a route's host
    /// and path). They are created, moved and deleted in the same commit as
    /// the object, so two objects never hold one.
    fn claims(&self) -> Vec<String> {
        Vec::new()
    }

    /// The problem to report when another object, `holder` if known (by
    /// its qualified name), holds `claim`, one of this one's claims.
    fn claim_taken(&self, _claim: &str, _holder: Option<&str>) -> FieldError {
        FieldError {
            field: "name".to_owned(),
            message: format!("another {} holds what it claims", Self::KIND),
        }
    }

    /// Whether the object, created or replacing another of its name, fits
    /// what its project allows (its quota); checked after validation.
    fn admit(
        &self,
        _store: &dyn Store,
    ) -> impl Future<Output = Result<Option<Refusal>, StoreError>> + Send {
        async { Ok(None) }
    }

    /// What else the commit that writes the object writes: the records its
    /// change makes (a service's new revision). `before` is what it
    /// replaces (`None` on create); `by` names who asked.
    fn consequences(
        &self,
        _before: Option<&Self>,
        _store: &dyn Store,
        _by: &str,
    ) -> impl Future<Output = Result<Vec<Op>, StoreError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// The object with what it follows filled in from the store (a
    /// service's images from the image stream tags its triggers follow,
    /// so that pods run by digest), or the problems naming the fields that
    /// follow nothing yet. Called on the qualified object, before it is
    /// written.
    fn resolve(
        self,
        _store: &dyn Store,
    ) -> impl Future<Output = Result<Result<Self, ValidationErrors>, StoreError>> + Send {
        async { Ok(Ok(self)) }
    }

    /// Problems with replacing `before` by the object that other objects
    /// would suffer (a port a route uses, dropped); `PUT ...?force=true`
    /// overrides them.
    fn check_replacement(
        &self,
        _before: &Self,
        _store: &dyn Store,
    ) -> impl Future<Output = Result<ValidationErrors, StoreError>> + Send {
        async { Ok(ValidationErrors::new()) }
    }

    /// Why the object may not be removed now (objects that still use it):
    /// a 409 naming them.
    fn check_removal(
        &self,
        _store: &dyn Store,
    ) -> impl Future<Output = Result<ValidationErrors, StoreError>> + Send {
        async { Ok(ValidationErrors::new()) }
    }

    /// Problems with the objects it refers to, checked when it is created
    /// (they may go away later). Called on the qualified object.
    fn check_references(
        &self,
        _store: &dyn Store,
    ) -> impl Future<Output = Result<ValidationErrors, StoreError>> + Send {
        async { Ok(ValidationErrors::new()) }
    }
}

/// Why a request is refused for what it would use (a project's quota):
/// a 403 with this message.
pub type Refusal = String;

/// The store key of object `name` of kind `R` (qualified, for a
/// project's kind: every project's objects share the kind's prefix).
pub fn key<R: Resource>(name: &str) -> String {
    objects::key(R::PREFIX, name)
}

/// Object `name` of kind `R`, if it exists.
pub async fn get<R: Resource>(
    store: &dyn Store,
    name: &str,
) -> Result<Option<Versioned<R>>, StoreError> {
    store
        .get(&key::<R>(name))
        .await?
        .as_ref()
        .map(objects::decode)
        .transpose()
}

/// Every object of kind `R`, of every project.
pub async fn list<R: Resource>(store: &dyn Store) -> Result<Vec<Versioned<R>>, StoreError> {
    Ok(objects::list(store, R::PREFIX).await?.0)
}

/// The answer for an object that does not exist.
pub fn not_found_message<R: Resource>(name: &str) -> String {
    format!("{} {name} not found", R::KIND)
}

/// The answer for a create whose object exists with another spec.
pub fn exists_message<R: Resource>(name: &str) -> String {
    format!(
        "{} {name} exists with a different spec{}",
        R::KIND,
        R::CONFLICT_HINT
    )
}

/// The commit that creates `object` with its claims.
pub fn create_ops<R: Resource>(object: &R) -> Vec<Op> {
    let mut ops = vec![Op::Create {
        key: key::<R>(object.name()),
        value: objects::encode(object),
    }];
    ops.extend(
        object
            .claims()
            .into_iter()
            .map(|claim| claim_op(claim, object)),
    );
    ops
}

/// The commit that replaces `current` by `object` if it is still at
/// `expected`, moving the claims that changed; and the claims it takes
/// that `current` did not hold, which must be free.
pub fn update_ops<R: Resource>(current: &R, object: &R, expected: u64) -> (Vec<Op>, Vec<String>) {
    let mut ops = vec![Op::Update {
        key: key::<R>(object.name()),
        value: objects::encode(object),
        expected,
    }];
    let (held, wanted) = (current.claims(), object.claims());
    let released = held.iter().filter(|claim| !wanted.contains(claim));
    ops.extend(released.map(|key| Op::Delete {
        key: key.clone(),
        expected: None,
    }));
    let taken: Vec<String> = wanted
        .into_iter()
        .filter(|claim| !held.contains(claim))
        .collect();
    ops.extend(taken.iter().map(|claim| claim_op(claim.clone(), object)));
    (ops, taken)
}

/// The commit that deletes `object`, if it is still at `expected`, with
/// its claims.
pub fn delete_ops<R: Resource>(object: &R, expected: u64) -> Vec<Op> {
    let mut ops = vec![Op::Delete {
        key: key::<R>(object.name()),
        expected: Some(expected),
    }];
    ops.extend(object.claims().into_iter().map(|key| Op::Delete {
        key,
        expected: None,
    }));
    ops
}

/// A claim holds the name of its object, for whoever finds it taken.
fn claim_op<R: Resource>(key: String, object: &R) -> Op {
    Op::Create {
        key,
        value: object.name().as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use berth_model::{ClusterPod, Node, Route, Service};

    use super::*;

    fn route(name: &str, host: &str, path: &str) -> Route {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "service": "web",
            "host": host,
            "path": path,
        }))
        .expect("route")
    }

    fn keys(ops: &[Op]) -> Vec<(&'static str, &str)> {
        ops.iter()
            .map(|op| match op {
                Op::Create { key, .. } => ("create", key.as_str()),
                Op::Update { key, .. } => ("update", key.as_str()),
                Op::Delete { key, .. } => ("delete", key.as_str()),
            })
            .collect()
    }

    #[test]
    fn kinds_live_under_their_prefixes() {
        assert_eq!(key::<Node>("h1"), "/nodes/h1");
        assert_eq!(key::<Service>("web"), "/services/web");
        assert_eq!(key::<ClusterPod>("web-0"), "/pods/web-0");
        assert_eq!(key::<Route>("www"), "/routes/www");
    }

    #[test]
    fn messages_name_the_kind() {
        assert_eq!(not_found_message::<Service>("db"), "service db not found");
        assert_eq!(not_found_message::<Node>("h9"), "node h9 not found");
        assert_eq!(
            not_found_message::<ClusterPod>("db-0"),
            "pod db-0 not found"
        );
        assert_eq!(
            exists_message::<Service>("db"),
            "service db exists with a different spec"
        );
        assert_eq!(
            exists_message::<Route>("www"),
            "route www exists with a different spec (replace it with --replace)"
        );
    }

    #[test]
    fn a_route_is_created_and_deleted_with_its_claim() {
        let www = route("www", "www.example.test", "/");
        let created = create_ops(&www);
        assert_eq!(
            keys(&created),
            [
                ("create", "/routes/www"),
                ("create", "/route-claims/www.example.test/")
            ]
        );
        match &created[1] {
            Op::Create { value, .. } => assert_eq!(value, b"www"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            keys(&delete_ops(&www, 7)),
            [
                ("delete", "/routes/www"),
                ("delete", "/route-claims/www.example.test/")
            ]
        );
        match &delete_ops(&www, 7)[0] {
            Op::Delete { expected, .. } => assert_eq!(*expected, Some(7)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_update_moves_only_claims_that_changed() {
        let before = route("www", "www.example.test", "/");
        let (ops, taken) = update_ops(&before, &before, 3);
        assert_eq!(keys(&ops), [("update", "/routes/www")]);
        assert!(taken.is_empty());

        let moved = route("www", "www.example.test", "/shop");
        let (ops, taken) = update_ops(&before, &moved, 3);
        assert_eq!(
            keys(&ops),
            [
                ("update", "/routes/www"),
                ("delete", "/route-claims/www.example.test/"),
                ("create", "/route-claims/www.example.test/shop"),
            ]
        );
        assert_eq!(taken, ["/route-claims/www.example.test/shop"]);
        match &ops[0] {
            Op::Update { expected, .. } => assert_eq!(*expected, 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kinds_without_claims_write_only_themselves() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "name": "web",
            "replicas": 1,
            "template": {"name": "web", "containers": [{"name": "web", "image": "i"}]}
        }))
        .expect("service");
        assert_eq!(keys(&create_ops(&service)), [("create", "/services/web")]);
        assert_eq!(
            keys(&delete_ops(&service, 1)),
            [("delete", "/services/web")]
        );
    }
}
