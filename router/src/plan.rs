//! The pure decision between HAProxy's runtime API and a reload: while the
//! layout stays and every backend's servers fit its slots, servers move in
//! and out of slots through runtime commands (no reload, nothing dropped,
//! milliseconds); anything else is a new configuration and a reload.

use std::collections::{BTreeMap, BTreeSet};

use crate::layout::{Layout, Server, Wanted};

/// The server in each slot of each backend.
pub type Slots = BTreeMap<String, Vec<Option<Server>>>;

/// What HAProxy runs now, as the router last applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The layout of the running configuration.
    pub layout: Layout,
    /// The servers in its slots.
    pub slots: Slots,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// HAProxy already serves what is wanted.
    Nothing,
    /// Runtime API commands (to the current worker), then `slots` is what
    /// runs.
    Runtime {
        /// The commands, in order.
        commands: Vec<String>,
        /// The slots after them.
        slots: Slots,
    },
    /// A new configuration: write, check, reload.
    Reload(Applied),
}

/// Places `wanted` servers in `current` slots: a server keeps its slot,
/// new ones take free slots in order. `None` if they do not fit.
pub fn assign(
    current: &[Option<Server>],
    wanted: &BTreeSet<Server>,
) -> Option<Vec<Option<Server>>> {
    let mut slots: Vec<Option<Server>> = current
        .iter()
        .map(|s| s.clone().filter(|s| wanted.contains(s)))
        .collect();
    let placed: BTreeSet<Server> = slots.iter().flatten().cloned().collect();
    for server in wanted.difference(&placed) {
        let free = slots.iter_mut().find(|s| s.is_none())?;
        *free = Some(server.clone());
    }
    Some(slots)
}

/// The runtime commands that turn `before` into `after` in `backend`.
fn commands(backend: &str, before: &[Option<Server>], after: &[Option<Server>]) -> Vec<String> {
    let mut out = Vec::new();
    for (index, (old, new)) in before.iter().zip(after).enumerate() {
        if old == new {
            continue;
        }
        let server = format!("{backend}/s{index}");
        // Out of rotation first: a slot never serves a half-changed server.
        if old.is_some() {
            out.push(format!("set server {server} state maint"));
        }
        if let Some(new) = new {
            out.push(format!(
                "set server {server} addr {} port {}",
                new.address, new.port
            ));
            out.push(format!("set server {server} state ready"));
        }
    }
    out
}

/// Decides how to get from `applied` (if HAProxy runs a configuration of
/// ours) to the `layout` and `wanted` servers.
pub fn plan(applied: Option<&Applied>, mut layout: Layout, wanted: &Wanted) -> Step {
    let fresh = |layout: Layout| {
        let slots = layout
            .backends
            .iter()
            .map(|b| {
                let empty = vec![None; b.slots];
                let servers = wanted.get(&b.name).cloned().unwrap_or_default();
                (b.name.clone(), assign(&empty, &servers).unwrap_or(empty))
            })
            .collect();
        Step::Reload(Applied { layout, slots })
    };
    let Some(applied) = applied else {
        return fresh(layout);
    };
    // Keep the running slot counts where the servers still fit, so that a
    // change of servers alone leaves the layout as it is.
    let mut placed = Slots::new();
    for backend in &mut layout.backends {
        let servers = wanted.get(&backend.name).cloned().unwrap_or_default();
        let Some(current) = applied.slots.get(&backend.name) else {
            continue;
        };
        if let Some(slots) = assign(current, &servers) {
            backend.slots = current.len();
            placed.insert(backend.name.clone(), slots);
        }
    }
    if layout != applied.layout {
        // Keep servers where they were, so a reload moves nothing.
        let mut step = fresh(layout);
        if let Step::Reload(next) = &mut step {
            for (backend, slots) in placed {
                if next.slots.get(&backend).map(Vec::len) == Some(slots.len()) {
                    next.slots.insert(backend, slots);
                }
            }
        }
        return step;
    }
    let mut commands_out = Vec::new();
    for (backend, after) in &placed {
        if let Some(before) = applied.slots.get(backend) {
            commands_out.extend(commands(backend, before, after));
        }
    }
    if commands_out.is_empty() {
        Step::Nothing
    } else {
        Step::Runtime {
            commands: commands_out,
            slots: placed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Backend, HostRule, Mode};

    fn server(last: u8, port: u16) -> Server {
        Server {
            address: std::net::IpAddr::from([10, 0, 0, last]),
            port,
        }
    }

    fn layout(slots: usize) -> Layout {
        Layout {
            http: vec![HostRule {
                host: "www.example.test".into(),
                path: "/".into(),
                backend: "be_www".into(),
            }],
            backends: vec![Backend {
                name: "be_www".into(),
                mode: Mode::Http,
                websocket: false,
                slots,
            }],
            ..Layout::default()
        }
    }

    fn wanted(servers: &[Server]) -> Wanted {
        Wanted::from([("be_www".to_owned(), servers.iter().cloned().collect())])
    }

    fn applied_with(servers: &[Server]) -> Applied {
        match plan(None, layout(4), &wanted(servers)) {
            Step::Reload(applied) => applied,
            other => panic!("first apply must reload: {other:?}"),
        }
    }

    #[test]
    fn the_first_apply_reloads_with_servers_in_slots() {
        let applied = applied_with(&[server(2, 1), server(3, 1)]);
        assert_eq!(
            applied.slots["be_www"],
            vec![Some(server(2, 1)), Some(server(3, 1)), None, None]
        );
    }

    #[test]
    fn servers_that_fit_change_through_the_runtime_api() {
        let applied = applied_with(&[server(2, 1), server(3, 1)]);
        // web-1 on .3 went away, two new replicas came.
        let step = plan(
            Some(&applied),
            layout(8),
            &wanted(&[server(2, 1), server(4, 7), server(5, 7)]),
        );
        let Step::Runtime { commands, slots } = step else {
            panic!("expected runtime commands: {step:?}");
        };
        assert_eq!(
            commands,
            [
                "set server be_www/s1 state maint",
                "set server be_www/s1 addr 10.0.0.4 port 7",
                "set server be_www/s1 state ready",
                "set server be_www/s2 addr 10.0.0.5 port 7",
                "set server be_www/s2 state ready",
            ]
        );
        assert_eq!(slots["be_www"][0], Some(server(2, 1)));
        assert_eq!(
            plan(
                Some(&Applied {
                    layout: applied.layout.clone(),
                    slots
                }),
                layout(8),
                &wanted(&[server(2, 1), server(4, 7), server(5, 7)])
            ),
            Step::Nothing
        );
    }

    #[test]
    fn outgrowing_the_slots_or_changing_a_route_reloads() {
        let applied = applied_with(&[server(2, 1)]);
        let many: Vec<Server> = (10..15).map(|i| server(i, 1)).collect();
        let Step::Reload(next) = plan(Some(&applied), layout(16), &wanted(&many)) else {
            panic!("five servers do not fit four slots");
        };
        assert_eq!(next.layout.backends[0].slots, 16);

        let mut changed = layout(8);
        changed.http[0].path = "/v2".into();
        let Step::Reload(next) = plan(Some(&applied), changed, &wanted(&[server(2, 1)])) else {
            panic!("a route change reloads");
        };
        // The running slot count and places are kept across the reload.
        assert_eq!(
            next.slots["be_www"],
            vec![Some(server(2, 1)), None, None, None]
        );
    }
}
