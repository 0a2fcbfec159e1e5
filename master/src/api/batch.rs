//! `POST /v1/[projects/P/]batch`: several objects (services, links,
//! routes, jobs, cron jobs) created in one store commit, all or nothing,
//! as `berth new-app` creates a template's objects. A link, as `berth
//! apply` spells it, is added to its service: one of the batch, or an
//! existing one (`berth new-app --link-to web`), which the same commit
//! updates, as `POST .../links` would. Each object is completed and
//! checked exactly as its kind's own create does ([`Resource`]); the
//! objects of the batch may refer to each other (a service linking to
//! another of the batch, a route to one), so references are checked
//! against the store as it will be once the batch is in. Any problem
//! refuses the whole batch, naming the object and its field.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::link::validate_links;
use berth_model::project::qualify;
use berth_model::{BuildConfig, CronJob, Job, Link, Role, Route, Service, ValidationErrors};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extract::Body;
use super::project::InProject;
use super::{parse, ApiFailure, AppState};
use crate::resource::{self, Resource, Settings};
use crate::store::{Entry, Op, Store, StoreError, StoreFuture, Watch};

/// The kinds a batch may hold, as `kind:` spells them.
const KINDS: [&str; 6] = ["Service", "Link", "Route", "Job", "CronJob", "BuildConfig"];

/// What a batch request holds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    /// Each object with its `kind:`.
    objects: Vec<Value>,
}

/// What a created batch answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchCreated {
    /// The revision of the commit that wrote them all.
    pub resource_version: u64,
    /// Each object, as `kind/name`, in the order sent.
    pub created: Vec<String>,
}

/// One object of the batch, completed, checked alone and qualified.
enum Prepared {
    Service(Service),
    Route(Route),
    Job(Job),
    CronJob(CronJob),
    BuildConfig(BuildConfig),
}

/// `POST /v1/batch`: creates every object, or none.
pub async fn create(
    State(state): State<AppState>,
    in_project: InProject,
    Body(body): Body,
) -> Result<(StatusCode, Json<BatchCreated>), ApiFailure> {
    let request: BatchRequest = parse("batch", &body)?;
    let project = in_project.name.clone();
    let shared = state.shared_with(&project).await?;
    let settings = state.settings(&project, &shared);
    let mut objects = request.objects;
    if objects.is_empty() {
        return Err(ApiFailure::field(
            "objects",
            "must hold at least one object",
        ));
    }
    if let Some(index) = objects.iter().position(|o| !o.is_object()) {
        return Err(ApiFailure::field(
            &format!("objects[{index}]"),
            "must be an object with its kind",
        ));
    }
    let (links, outside) = fold_links(&mut objects)?;
    let mut prepared = Vec::new();
    for (index, value) in objects.into_iter().enumerate() {
        if !value.is_null() {
            let object = prepare(index, value, &settings, &in_project)?;
            let object = object
                .resolve(state.store.as_ref())
                .await
                .map_err(|e| e.about(&format!("objects[{index}]")))?;
            prepared.push((index, object));
        }
    }
    // The store as it will be: references between the batch's objects
    // hold.
    let mut pending = Pending {
        inner: state.store.clone(),
        created: BTreeMap::new(),
    };
    for (_, object) in &prepared {
        for op in object.create_ops() {
            if let Op::Create { key, value } = op {
                pending.created.insert(key, value);
            }
        }
    }
    let by = in_project.caller.to_string();
    let mut ops = Vec::new();
    let mut created = Vec::new();
    for (index, object) in &prepared {
        let index = *index;
        let found = match object {
            Prepared::Service(o) => checked(&state, &pending, o, &by).await,
            Prepared::Route(o) => checked(&state, &pending, o, &by).await,
            Prepared::Job(o) => checked(&state, &pending, o, &by).await,
            Prepared::CronJob(o) => checked(&state, &pending, o, &by).await,
            Prepared::BuildConfig(o) => checked(&state, &pending, o, &by).await,
        };
        ops.extend(found.map_err(|e| e.about(&object.named(index)))?);
        created.push((index, object.shown()));
    }
    created.extend(links);
    for (service, added) in group_by_service(outside) {
        let (op, shown) = link_existing(&state, &pending, &in_project, &service, added).await?;
        ops.push(op);
        created.extend(shown);
    }
    created.sort();
    let revision = state.store.apply(ops).await.map_err(|e| match e {
        // Two objects of the batch claiming one key (two routes of one
        // host and path), or another writer first.
        StoreError::AlreadyExists(key) => ApiFailure::new(
            StatusCode::CONFLICT,
            format!("{key} is taken (by another object of the batch, or meanwhile)"),
        ),
        e => e.into(),
    })?;
    Ok((
        StatusCode::CREATED,
        Json(BatchCreated {
            resource_version: revision,
            created: created.into_iter().map(|(_, shown)| shown).collect(),
        }),
    ))
}

/// A link to add to a service outside the batch: its object's index,
/// the service's name as sent, and the link as a service holds it.
type Outside = (usize, String, serde_json::Map<String, Value>);

/// A link as the answer lists it (`link/web->db:5432`), with its index.
type Shown = (usize, String);

/// Adds each `Link` object to the links of the batch's service it names,
/// leaving null in its place; answers the links as `link/web->db:5432`,
/// each with its index, and the links of services outside the batch.
fn fold_links(objects: &mut [Value]) -> Result<(Vec<Shown>, Vec<Outside>), ApiFailure> {
    let mut links = Vec::new();
    let mut outside = Vec::new();
    for index in 0..objects.len() {
        if objects[index].get("kind").and_then(Value::as_str) != Some("Link") {
            continue;
        }
        let Value::Object(mut fields) = objects[index].take() else {
            continue;
        };
        fields.remove("kind");
        let text = |field: &str| fields.get(field).and_then(Value::as_str).map(str::to_owned);
        let (Some(service), Some(target)) = (text("service"), text("target")) else {
            return Err(ApiFailure::field(
                &format!("objects[{index}]"),
                "a link needs service and target",
            ));
        };
        let port = fields.get("port").cloned().unwrap_or(Value::Null);
        let mut link = serde_json::Map::new();
        link.insert("service".into(), Value::String(target.clone()));
        link.insert("port".into(), port.clone());
        for (from, to) in [
            ("localPort", "localPort"),
            ("address", "address"),
            ("waitReady", "waitReady"),
        ] {
            if let Some(value) = fields.get(from) {
                link.insert(to.into(), value.clone());
            }
        }
        let owner = objects.iter_mut().find(|o| {
            o.get("kind").and_then(Value::as_str) == Some("Service")
                && o.get("name").and_then(Value::as_str) == Some(service.as_str())
        });
        let Some(Value::Object(owner)) = owner else {
            outside.push((index, service, link));
            continue;
        };
        match owner
            .entry("links")
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(list) => list.push(Value::Object(link)),
            _ => {
                return Err(ApiFailure::field(
                    &format!("objects[{index}].service"),
                    format!("service {service}'s links are not a list"),
                ))
            }
        }
        links.push((index, format!("link/{service}->{target}:{port}")));
    }
    Ok((links, outside))
}

/// The links to services outside the batch, by service, in the order
/// sent.
fn group_by_service(outside: Vec<Outside>) -> BTreeMap<String, Vec<(usize, Value)>> {
    let mut grouped: BTreeMap<String, Vec<(usize, Value)>> = BTreeMap::new();
    for (index, service, link) in outside {
        grouped
            .entry(service)
            .or_default()
            .push((index, Value::Object(link)));
    }
    grouped
}

/// The update that adds `added` to existing service `service`, checked as
/// `POST .../links` checks one (the targets may be the batch's), and the
/// links as the answer lists them. A link the service has already is
/// kept once.
async fn link_existing(
    state: &AppState,
    pending: &Pending,
    in_project: &InProject,
    service: &str,
    added: Vec<(usize, Value)>,
) -> Result<(Op, Vec<(usize, String)>), ApiFailure> {
    in_project.require(Role::Edit)?;
    let first = added.first().map_or(0, |(index, _)| *index);
    let name = qualify(&in_project.name, service);
    let Some(current) = resource::get::<Service>(state.store.as_ref(), &name).await? else {
        return Err(ApiFailure::field(
            &format!("objects[{first}].service"),
            format!("{service} is neither a service of the batch nor an existing one"),
        ));
    };
    let mut seen = current.object.clone().unqualified();
    let mut shown = Vec::new();
    let mut news = Vec::new();
    for (index, value) in added {
        let link: Link = serde_json::from_value(value).map_err(|e| {
            ApiFailure::field(
                &format!("objects[{index}]"),
                format!("not a valid link: {e}"),
            )
        })?;
        shown.push((
            index,
            format!("link/{service}->{}:{}", link.service, link.port),
        ));
        if !seen.links.contains(&link) {
            seen.links.push(link);
            news.push(index);
        }
    }
    let mut all = ValidationErrors::new();
    validate_links("links", &seen.name, &seen.links, &mut all);
    if let Some(e) = all.errors().first() {
        return Err(ApiFailure::field(
            &format!("objects[{first}]"),
            format!("service {service}: {}: {}", e.field, e.message),
        ));
    }
    let updated = seen.qualified(&in_project.name);
    let new_links = &updated.links[updated.links.len() - news.len()..];
    for (index, link) in news.iter().zip(new_links) {
        if let Some(problem) =
            crate::resource::service::link_target_problem(pending, &name, &link.service).await?
        {
            return Err(ApiFailure::field(
                &format!("objects[{index}].target"),
                problem,
            ));
        }
    }
    let op = crate::objects::update(
        crate::objects::SERVICES,
        &name,
        &updated,
        current.resource_version,
    );
    Ok((op, shown))
}

/// Object `index` read as its kind, completed and checked alone, then
/// qualified by the project.
fn prepare(
    index: usize,
    value: Value,
    settings: &Settings<'_>,
    in_project: &InProject,
) -> Result<Prepared, ApiFailure> {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut fields = value;
    if let Value::Object(map) = &mut fields {
        map.remove("kind");
    }
    let at = format!("objects[{index}]");
    Ok(match kind.as_str() {
        "Service" => Prepared::Service(read(&at, fields, settings, in_project)?),
        "Route" => Prepared::Route(read(&at, fields, settings, in_project)?),
        "Job" => Prepared::Job(read(&at, fields, settings, in_project)?),
        "CronJob" => Prepared::CronJob(read(&at, fields, settings, in_project)?),
        "BuildConfig" => Prepared::BuildConfig(read(&at, fields, settings, in_project)?),
        other => {
            return Err(ApiFailure::field(
                &format!("{at}.kind"),
                format!("{other:?} is not one of {}", KINDS.join(", ")),
            ))
        }
    })
}

fn read<R: Resource>(
    at: &str,
    fields: Value,
    settings: &Settings<'_>,
    in_project: &InProject,
) -> Result<R, ApiFailure> {
    in_project.require(R::WRITE_ROLE)?;
    let object: R = serde_json::from_value(fields)
        .map_err(|e| ApiFailure::field(at, format!("not a valid {}: {e}", R::KIND)))?;
    let object = object.complete(settings);
    let named = format!("{at} ({} {})", R::KIND, object.name());
    object
        .validate(settings)
        .map_err(|errors| ApiFailure::invalid(R::KIND, errors).about(&named))?;
    Ok(object.qualified(settings.project))
}

/// The commit of one object: refused if it exists, if it refers to what
/// neither the store nor the batch holds, if its project's quota refuses
/// it or if its claims are taken.
async fn checked<R: Resource>(
    state: &AppState,
    pending: &Pending,
    object: &R,
    by: &str,
) -> Result<Vec<Op>, ApiFailure> {
    object
        .check_references(pending)
        .await?
        .into_result()
        .map_err(|errors| ApiFailure::invalid(R::KIND, errors))?;
    let store = state.store.as_ref();
    if resource::get::<R>(store, object.name()).await?.is_some() {
        return Err(ApiFailure::new(
            StatusCode::CONFLICT,
            format!("{} exists", R::KIND),
        ));
    }
    super::resource::require_admitted(state, object).await?;
    super::resource::require_free(store, object, &object.claims()).await?;
    let mut ops = resource::create_ops(object);
    ops.extend(object.consequences(None, store, by).await?);
    Ok(ops)
}

/// `object` with what it follows filled in from the store, as a single
/// create does it.
async fn resolved<R: Resource>(object: R, store: &dyn Store) -> Result<R, ApiFailure> {
    object
        .resolve(store)
        .await?
        .map_err(|errors| ApiFailure::invalid(R::KIND, errors))
}

impl Prepared {
    async fn resolve(self, store: &dyn Store) -> Result<Self, ApiFailure> {
        Ok(match self {
            Prepared::Service(o) => Prepared::Service(resolved(o, store).await?),
            Prepared::Route(o) => Prepared::Route(resolved(o, store).await?),
            Prepared::Job(o) => Prepared::Job(resolved(o, store).await?),
            Prepared::CronJob(o) => Prepared::CronJob(resolved(o, store).await?),
            Prepared::BuildConfig(o) => Prepared::BuildConfig(resolved(o, store).await?),
        })
    }

    fn create_ops(&self) -> Vec<Op> {
        match self {
            Prepared::Service(o) => resource::create_ops(o),
            Prepared::Route(o) => resource::create_ops(o),
            Prepared::Job(o) => resource::create_ops(o),
            Prepared::CronJob(o) => resource::create_ops(o),
            Prepared::BuildConfig(o) => resource::create_ops(o),
        }
    }

    /// `service/shop-db`, as its project calls it.
    fn shown(&self) -> String {
        let (kind, name) = match self {
            Prepared::Service(o) => (Service::KIND, o.name()),
            Prepared::Route(o) => (Route::KIND, o.name()),
            Prepared::Job(o) => (Job::KIND, o.name()),
            Prepared::CronJob(o) => (CronJob::KIND, o.name()),
            Prepared::BuildConfig(o) => (BuildConfig::KIND, o.name()),
        };
        format!("{kind}/{}", berth_model::project::unqualified(name))
    }

    /// `objects[1] (service shop-db)`, for errors.
    fn named(&self, index: usize) -> String {
        let shown = self.shown().replacen('/', " ", 1);
        format!("objects[{index}] ({shown})")
    }
}

/// The store with the batch's creations added, for reading only: what
/// the batch's objects refer to is checked against it.
struct Pending {
    inner: Arc<dyn Store>,
    created: BTreeMap<String, Vec<u8>>,
}

impl Store for Pending {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>> {
        Box::pin(async move {
            if let Some(value) = self.created.get(key) {
                return Ok(Some(Entry {
                    key: key.to_owned(),
                    value: value.clone(),
                    revision: 0,
                }));
            }
            self.inner.get(key).await
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, (Vec<Entry>, u64)> {
        Box::pin(async move {
            let (mut entries, revision) = self.inner.list(prefix).await?;
            entries.extend(
                self.created
                    .iter()
                    .filter(|(key, _)| key.starts_with(prefix))
                    .map(|(key, value)| Entry {
                        key: key.clone(),
                        value: value.clone(),
                        revision: 0,
                    }),
            );
            entries.sort_by(|a, b| a.key.cmp(&b.key));
            Ok((entries, revision))
        })
    }

    fn apply<'a>(&'a self, _ops: Vec<Op>) -> StoreFuture<'a, u64> {
        Box::pin(async { Err(StoreError::Backend("a batch's checks only read".into())) })
    }

    fn watch<'a>(&'a self, prefix: &'a str, after: u64) -> StoreFuture<'a, Watch> {
        self.inner.watch(prefix, after)
    }

    fn revision(&self) -> StoreFuture<'_, u64> {
        self.inner.revision()
    }
}
