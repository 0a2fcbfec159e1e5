//! `berth user ...`, `berth whoami` and `berth auth can-i`: users and robot
//! accounts with tokens of their own, and what a token may do.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use berth_model::{Role, User, ValidationErrors};
use clap::{Args, Subcommand};

use crate::master_client::MasterClient;
use crate::output::{self, Format};
use crate::parse;

/// `berth user`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  berth user create alice                    # prints her token, once
  berth user create ci --robot --expires 30d
  berth project add-member shop alice --role edit
  berth user token alice                     # a new token; the old one stops at once
  berth user rm alice")]
pub struct UserArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: UserCommand,
}

/// The `berth user` subcommands (the cluster's admin only).
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user and print its token (shown this once).
    Create {
        /// Its name: lowercase letters, digits and '-'.
        name: String,
        /// A robot account, for CI: it cannot create projects.
        #[arg(long)]
        robot: bool,
        /// The token stops working after this long (90m, 12h, 30d).
        #[arg(long, value_parser = parse::duration)]
        expires: Option<Duration>,
    },
    /// List the users.
    Ls {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Give a user a new token; the old one stops working at once.
    Token {
        /// The user.
        name: String,
    },
    /// Remove a user: its token stops working at once, its roles go.
    Rm {
        /// The user.
        name: String,
    },
}

/// `berth auth`.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuthCommand,
}

/// The `berth auth` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Say whether this login may VERB objects of KIND in the current
    /// project (berth -p P auth can-i ...): prints yes or no, and exits 1
    /// on no.
    #[command(after_help = "Examples:
  berth auth can-i create services
  berth -p shop auth can-i read logs")]
    CanI {
        /// get, list, read, watch, create, update, delete, scale, link.
        verb: String,
        /// services, pods, routes, events, logs, metrics, projects, members.
        kind: String,
    },
}

/// The user failed validation before it was sent to the master.
#[derive(Debug, thiserror::Error)]
#[error("invalid user")]
pub struct InvalidUser(pub ValidationErrors);

/// Runs one `berth user` command.
pub async fn run(client: &MasterClient, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            name,
            robot,
            expires,
        } => {
            let expires_ms = expires
                .map(|after| {
                    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
                    Ok::<_, anyhow::Error>(u64::try_from((now + after).as_millis())?)
                })
                .transpose()?;
            let user = User {
                name: name.clone(),
                robot,
                expires_ms,
            };
            user.validate().map_err(InvalidUser)?;
            let created = client
                .create_user(&user)
                .await
                .with_context(|| format!("cannot create user {name}"))?;
            output::print(&format!(
                "user {name}: created; its token (shown this once):\n{}\n",
                created.token
            ))
        }
        UserCommand::Ls { output: format } => {
            let users = client.list_users().await?;
            if let Some(text) = output::structured(format, &users)? {
                return output::print(&text);
            }
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    vec![
                        u.object.name.clone(),
                        if u.object.robot { "robot" } else { "user" }.to_owned(),
                        u.object
                            .expires_ms
                            .map_or("never".to_owned(), |ms| format!("{}", ms / 1000)),
                    ]
                })
                .collect();
            output::print(&output::table(&["NAME", "KIND", "EXPIRES (UNIX)"], &rows))
        }
        UserCommand::Token { name } => {
            let renewed = client.new_user_token(&name).await?;
            output::print(&format!(
                "user {name}: new token (the old one no longer works):\n{}\n",
                renewed.token
            ))
        }
        UserCommand::Rm { name } => {
            client.delete_user(&name).await?;
            output::print(&format!("user {name}: removed, with its token and roles\n"))
        }
    }
}

/// `berth whoami`.
pub async fn whoami(client: &MasterClient) -> anyhow::Result<()> {
    let who = client.whoami().await?;
    let mut text = format!("{} ({})\n", who.name, who.kind);
    for (project, role) in &who.roles {
        text.push_str(&format!("  {project}: {role}\n"));
    }
    output::print(&text)
}

/// The role a verb on a kind needs in a project; `None` for what only the
/// cluster's admin may do.
pub fn needed_role(verb: &str, kind: &str) -> anyhow::Result<Option<Role>> {
    let reads = matches!(verb, "get" | "list" | "read" | "watch");
    let writes = matches!(
        verb,
        "create" | "update" | "delete" | "scale" | "link" | "unlink" | "move"
    );
    anyhow::ensure!(
        reads || writes,
        "unknown verb {verb:?}: get, list, read, watch, create, update, delete, scale, link, unlink or move"
    );
    Ok(match kind {
        "services" | "pods" | "routes" | "events" | "metrics" | "endpoints" => {
            Some(if reads { Role::ViewNoLogs } else { Role::Edit })
        }
        "logs" if reads => Some(Role::View),
        "logs" => anyhow::bail!("logs are only read: get, list, read or watch"),
        "projects" | "members" | "grants" => {
            Some(if reads { Role::ViewNoLogs } else { Role::Admin })
        }
        "nodes" | "users" => None,
        _ => anyhow::bail!(
            "unknown kind {kind:?}: services, pods, routes, events, logs, metrics, \
             projects, members, nodes or users"
        ),
    })
}

/// `berth auth can-i VERB KIND`: yes (exit 0) or no (exit 1).
pub async fn can_i(client: &MasterClient, verb: &str, kind: &str) -> anyhow::Result<bool> {
    let needed = needed_role(verb, kind)?;
    let who = client.whoami().await?;
    let allowed = match (who.kind.as_str(), needed) {
        ("admin", _) => true,
        ("user" | "robot", Some(needed)) => who
            .roles
            .get(client.project())
            .is_some_and(|role| *role >= needed),
        _ => false,
    };
    let answer = if allowed {
        "yes\n".to_owned()
    } else {
        match needed {
            Some(role) => format!(
                "no: needs the {role} role in project {}\n",
                client.project()
            ),
            None => "no: only the cluster's admin may\n".to_owned(),
        }
    };
    output::print(&answer)?;
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_on_kinds_need_the_roles_the_master_asks_for() {
        let role = |verb, kind| needed_role(verb, kind).expect("known");
        assert_eq!(role("list", "services"), Some(Role::ViewNoLogs));
        assert_eq!(role("create", "services"), Some(Role::Edit));
        assert_eq!(role("read", "logs"), Some(Role::View));
        assert_eq!(role("update", "members"), Some(Role::Admin));
        assert_eq!(role("list", "nodes"), None);
        assert!(needed_role("fly", "services").is_err());
        assert!(needed_role("get", "unicorns").is_err());
    }
}
