//! Users and robot accounts, which the cluster's admin manages: each has
//! one token at a time, shown once when made, kept as a hash, optionally
//! expiring. A new token replaces the old one at once, and so does
//! removing the user, which also takes it out of every project.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use berth_model::api::Versioned;
use berth_model::{Project, User, UserToken, WhoAmI};

use super::extract::{Body, Path};
use super::resource::{fetch, shown};
use super::{parse, require_admin, ApiFailure, AppState};
use crate::auth::{self, Caller};
use crate::objects::{self, PROJECTS, USERS, USER_CREDENTIALS};
use crate::resource::{self, Resource};
use crate::store::Op;

/// `GET /v1/users` (admin).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Versioned<User>>>, ApiFailure> {
    require_admin(&caller)?;
    let (users, _) = objects::list::<User>(state.store.as_ref(), USERS).await?;
    Ok(Json(users))
}

/// `GET /v1/users/{name}` (admin).
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Versioned<User>>, ApiFailure> {
    require_admin(&caller)?;
    Ok(Json(fetch::<User>(&state, &name).await?))
}

/// `POST /v1/users` (admin): the user and its first token.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<UserToken>), ApiFailure> {
    require_admin(&caller)?;
    let user: User = parse(User::KIND, &body)?;
    user.validate()
        .map_err(|e| ApiFailure::invalid(User::KIND, e))?;
    let token = new_token(&user.name)?;
    let mut ops = resource::create_ops(&user);
    ops.push(Op::Create {
        key: objects::key(USER_CREDENTIALS, &user.name),
        value: auth::hash(&token).into_bytes(),
    });
    state.store.apply(ops).await.map_err(|e| match e {
        crate::store::StoreError::AlreadyExists(_) => ApiFailure::new(
            StatusCode::CONFLICT,
            format!(
                "user {} exists: `berth user token {0}` gives it a new token",
                user.name
            ),
        ),
        e => e.into(),
    })?;
    Ok((StatusCode::CREATED, Json(UserToken { user, token })))
}

/// `POST /v1/users/{name}/token` (admin): a new token; the old one stops
/// working at once.
pub async fn new_user_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<UserToken>, ApiFailure> {
    require_admin(&caller)?;
    let user = fetch::<User>(&state, &name).await?;
    let token = new_token(&name)?;
    let key = objects::key(USER_CREDENTIALS, &name);
    let value = auth::hash(&token).into_bytes();
    let replace = match state.store.get(&key).await? {
        Some(old) => Op::Update {
            key,
            value,
            expected: old.revision,
        },
        None => Op::Create { key, value },
    };
    state.store.apply(vec![replace]).await?;
    Ok(Json(UserToken {
        user: user.object,
        token,
    }))
}

/// `DELETE /v1/users/{name}` (admin): the user, its token and its roles go
/// in one commit.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Versioned<User>>, ApiFailure> {
    require_admin(&caller)?;
    let user = fetch::<User>(&state, &name).await?;
    let mut ops = resource::delete_ops(&user.object, user.resource_version);
    ops.push(Op::Delete {
        key: objects::key(USER_CREDENTIALS, &name),
        expected: None,
    });
    let (projects, _) = objects::list::<Project>(state.store.as_ref(), PROJECTS).await?;
    for project in projects {
        let mut changed = project.object.clone();
        if changed.members.remove(&name).is_some() {
            ops.push(objects::update(
                PROJECTS,
                &changed.name,
                &changed,
                project.resource_version,
            ));
        }
    }
    state.store.apply(ops).await?;
    Ok(Json(shown(user)))
}

/// `GET /v1/whoami`: who the token is and its roles.
pub async fn whoami(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<WhoAmI>, ApiFailure> {
    let answer = match &caller {
        Caller::Admin => WhoAmI {
            kind: "admin".into(),
            name: "admin".into(),
            roles: Default::default(),
        },
        Caller::Node(node) => WhoAmI {
            kind: "node".into(),
            name: node.clone(),
            roles: Default::default(),
        },
        Caller::User(user) => {
            let account = fetch::<User>(&state, user).await?;
            let (projects, _) = objects::list::<Project>(state.store.as_ref(), PROJECTS).await?;
            WhoAmI {
                kind: if account.object.robot {
                    "robot"
                } else {
                    "user"
                }
                .into(),
                name: user.clone(),
                roles: projects
                    .into_iter()
                    .filter_map(|p| Some((p.object.name.clone(), p.object.role_of(user)?)))
                    .collect(),
            }
        }
    };
    Ok(Json(answer))
}

fn new_token(user: &str) -> Result<String, ApiFailure> {
    auth::new_user_token(user).map_err(|e| {
        ApiFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot make a token: {e}"),
        )
    })
}
