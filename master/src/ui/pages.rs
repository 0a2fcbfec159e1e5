//! The console's pages and live fragments, rendered from what the API
//! answered. Pure: data in, HTML out.

use axum::http::StatusCode;
use berth_model::api::{NodeView, Versioned};
use berth_model::deployment::DeploymentPhase;
use berth_model::logs::{escape_message, LogLine, LogPage};
use berth_model::{ClusterPod, Deployment, Event, NodeCondition};

use super::html::Html;
use super::live::{OverviewData, ServiceData};
use super::session::Session;

/// The console's URL of a service's page.
pub fn service_url(project: &str, service: &str) -> String {
    format!("/ui/projects/{project}/services/{service}")
}

/// The start of every page: `live` is the URL of its event stream.
fn head(out: &mut Html, title: &str, session: Option<&Session>, live: Option<&str>) {
    out.raw("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .raw("<title>")
        .text(title)
        .raw(" · berth</title><link rel=\"stylesheet\" href=\"/ui/console.css\">")
        .raw("<script src=\"/ui/console.js\" defer></script></head><body");
    if let Some(live) = live {
        out.raw(" data-live=\"").text(live).raw("\"");
    }
    out.raw("><header><nav aria-label=\"Main\"><a href=\"/ui/\" class=\"brand\">berth</a>");
    if let Some(session) = session {
        out.raw("<span class=\"who\">Logged in as <strong>")
            .text(&session.who)
            .raw("</strong></span><form method=\"post\" action=\"/ui/logout\" class=\"inline\">");
        csrf(out, session);
        out.raw("<button type=\"submit\">Log out</button></form>");
    }
    // Actions report here, at the top, where nothing covers it.
    out.raw("</nav></header><main><p id=\"status\" role=\"status\" aria-live=\"polite\"></p>");
}

/// The end of every page.
fn foot(out: &mut Html) {
    out.raw("</main></body></html>\n");
}

/// The hidden field that proves a form comes from this session's page.
fn csrf(out: &mut Html, session: &Session) {
    out.raw("<input type=\"hidden\" name=\"csrf\" value=\"")
        .text(&session.csrf)
        .raw("\">");
}

/// The login form, with the reason the last try failed.
pub fn login(failure: Option<&str>) -> String {
    let mut out = Html::new();
    head(&mut out, "Log in", None, None);
    out.raw("<h1>Log in</h1>");
    if let Some(failure) = failure {
        out.raw("<p class=\"error\" role=\"alert\">")
            .text(failure)
            .raw("</p>");
    }
    out.raw("<form method=\"post\" action=\"/ui/login\" class=\"login\">")
        .raw("<label for=\"token\">Token</label>")
        .raw("<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required>")
        .raw("<button type=\"submit\">Log in</button></form>")
        .raw("<p class=\"hint\">A user's token (<code>berth user token NAME</code>) or the admin token.</p>");
    foot(&mut out);
    out.finish()
}

/// A page saying what went wrong.
pub fn error(status: StatusCode, message: &str) -> String {
    let mut out = Html::new();
    head(&mut out, "Error", None, None);
    out.raw("<h1>")
        .text(status.as_u16())
        .raw(" ")
        .text(status.canonical_reason().unwrap_or("error"))
        .raw("</h1><p class=\"error\" role=\"alert\">")
        .text(message)
        .raw("</p><p><a href=\"/ui/\">Back to the overview</a></p>");
    foot(&mut out);
    out.finish()
}

/// `/ui/`: nodes, projects, recent events.
pub fn overview(session: &Session, data: &OverviewData) -> String {
    let mut out = Html::new();
    head(
        &mut out,
        "Overview",
        Some(session),
        Some("/ui/live/overview"),
    );
    out.raw("<h1>Overview</h1>");
    let fragments = overview_fragments(data);
    out.raw("<section aria-labelledby=\"nodes-title\"><h2 id=\"nodes-title\">Nodes</h2><div id=\"nodes\" data-fragment>");
    push_fragment(&mut out, &fragments, "nodes");
    out.raw("</div></section>");
    out.raw(
        "<section aria-labelledby=\"projects-title\"><h2 id=\"projects-title\">Projects</h2><ul>",
    );
    for project in &data.projects {
        let name = &project.object.name;
        out.raw("<li><a href=\"/ui/projects/")
            .text(name)
            .raw("\">")
            .text(name)
            .raw("</a></li>");
    }
    out.raw("</ul></section>");
    out.raw("<section aria-labelledby=\"events-title\"><h2 id=\"events-title\">Recent events</h2><div id=\"events\" data-fragment>");
    push_fragment(&mut out, &fragments, "events");
    out.raw("</div></section>");
    foot(&mut out);
    out.finish()
}

/// Writes fragment `id` of `fragments` (rendered HTML) into a page.
fn push_fragment(out: &mut Html, fragments: &[(&'static str, Html)], id: &str) {
    if let Some((_, html)) = fragments.iter().find(|(f, _)| *f == id) {
        out.append(html);
    }
}

/// The overview's live parts: `nodes` and `events`.
pub fn overview_fragments(data: &OverviewData) -> Vec<(&'static str, Html)> {
    let nodes = match &data.nodes {
        Ok(nodes) => nodes_table(nodes),
        Err(why) => unavailable(why),
    };
    let events = match &data.events {
        Ok(events) => events_table(events),
        Err(why) => unavailable(why),
    };
    vec![("nodes", nodes), ("events", events)]
}

/// What the API said instead of a part of a page.
fn unavailable(why: &str) -> Html {
    let mut out = Html::new();
    out.raw("<p class=\"muted\">").text(why).raw("</p>");
    out
}

fn nodes_table(nodes: &[NodeView]) -> Html {
    let mut out = Html::new();
    if nodes.is_empty() {
        out.raw("<p class=\"muted\">No node has joined.</p>");
        return out;
    }
    out.raw("<table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Condition</th>")
        .raw(
            "<th scope=\"col\">Address</th><th scope=\"col\">CPU</th><th scope=\"col\">Memory</th>",
        )
        .raw(
            "<th scope=\"col\">Pods</th><th scope=\"col\">Last heartbeat</th></tr></thead><tbody>",
        );
    for view in nodes {
        let condition = match view.condition {
            NodeCondition::Ready => "Ready",
            NodeCondition::NotReady => "NotReady",
            NodeCondition::EngineUnavailable => "EngineUnavailable",
        };
        out.raw("<tr><th scope=\"row\">")
            .text(&view.node.name)
            .raw("</th><td class=\"condition\" data-condition=\"")
            .text(condition)
            .raw("\">")
            .text(condition);
        if view.node.unschedulable {
            out.raw(", cordoned");
        }
        if let Some(error) = &view.engine_error {
            out.raw(": ").text(error);
        }
        out.raw("</td><td>")
            .text(&view.node.address)
            .raw("</td><td>")
            .text(cpus(view.node.capacity.cpu_millis))
            .raw("</td><td>")
            .text(memory(view.node.capacity.memory_bytes))
            .raw("</td><td>")
            .text(view.pods)
            .raw("</td><td>");
        match view.last_heartbeat_ms_ago {
            // Rounded, so that the fragment changes only every few seconds.
            Some(ms) => out.text(ms / 5000 * 5).raw(" s ago"),
            None => out.raw("never"),
        };
        out.raw("</td></tr>");
    }
    out.raw("</tbody></table>");
    out
}

fn events_table(events: &[Event]) -> Html {
    let mut out = Html::new();
    if events.is_empty() {
        out.raw("<p class=\"muted\">No events.</p>");
        return out;
    }
    out.raw("<table><thead><tr><th scope=\"col\">Time (UTC)</th><th scope=\"col\">Event</th>")
        .raw("<th scope=\"col\">Object</th><th scope=\"col\">Node</th><th scope=\"col\">Reason</th></tr></thead><tbody>");
    for event in events {
        out.raw("<tr><td class=\"time\">")
            .text(utc(event.time_ms))
            .raw("</td><td>")
            .text(event.kind)
            .raw("</td><td>")
            .text(&event.object)
            .raw("</td><td>")
            .text(event.node.as_deref().unwrap_or(""))
            .raw("</td><td>")
            .text(&event.reason)
            .raw("</td></tr>");
    }
    out.raw("</tbody></table>");
    out
}

/// `/ui/projects/{project}`: its services.
pub fn project(
    session: &Session,
    project: &str,
    services: &[Versioned<berth_model::Service>],
    pods: &[Versioned<ClusterPod>],
) -> String {
    let mut out = Html::new();
    head(&mut out, &format!("Project {project}"), Some(session), None);
    out.raw("<h1>Project ")
        .text(project)
        .raw("</h1><h2>Services</h2>");
    if services.is_empty() {
        out.raw("<p class=\"muted\">No services.</p>");
    } else {
        out.raw("<table><thead><tr><th scope=\"col\">Service</th><th scope=\"col\">Replicas</th>")
            .raw("<th scope=\"col\">Ready pods</th><th scope=\"col\">Images</th></tr></thead><tbody>");
        for service in services {
            let service = &service.object;
            let ready = pods
                .iter()
                .filter(|p| p.object.service.as_deref() == Some(service.name.as_str()))
                .filter(|p| pod_ready(&p.object))
                .count();
            let images: Vec<&str> = service
                .template
                .containers
                .iter()
                .map(|c| c.image.as_str())
                .collect();
            out.raw("<tr><th scope=\"row\"><a href=\"")
                .text(service_url(project, &service.name))
                .raw("\">")
                .text(&service.name)
                .raw("</a></th><td>")
                .text(service.replicas)
                .raw("</td><td>")
                .text(ready)
                .raw("</td><td>")
                .text(images.join(", "))
                .raw("</td></tr>");
        }
        out.raw("</tbody></table>");
    }
    foot(&mut out);
    out.finish()
}

/// Whether every container of a pod is ready, as its node last said.
fn pod_ready(pod: &ClusterPod) -> bool {
    pod.status
        .as_ref()
        .is_some_and(|s| !s.containers.is_empty() && s.containers.iter().all(|c| c.ready))
}

/// A service's page; `logs` is the start of its log tail, or why the
/// caller may not read it.
pub fn service(session: &Session, data: &ServiceData, logs: &Result<LogPage, String>) -> String {
    let name = &data.service.object.name;
    let mut out = Html::new();
    let live = format!("/ui/live/projects/{}/services/{name}", data.project);
    head(
        &mut out,
        &format!("Service {name}"),
        Some(session),
        Some(&live),
    );
    out.raw("<p class=\"crumbs\"><a href=\"/ui/projects/")
        .text(&data.project)
        .raw("\">Project ")
        .text(&data.project)
        .raw("</a></p><h1>Service ")
        .text(name)
        .raw("</h1>");
    let fragments = service_fragments(session, data);
    out.raw("<section aria-labelledby=\"summary-title\"><h2 id=\"summary-title\">Replicas and rollout</h2><div id=\"summary\" data-fragment>");
    push_fragment(&mut out, &fragments, "summary");
    out.raw("</div>");
    if data.may_edit {
        // Outside the live fragment, so that an update does not wipe what
        // is being typed.
        out.raw("<form method=\"post\" action=\"")
            .text(service_url(&data.project, name))
            .raw("/scale\" class=\"scale\" data-action>");
        csrf(&mut out, session);
        out.raw("<label for=\"replicas\">Replicas</label><input id=\"replicas\" name=\"replicas\" type=\"number\" min=\"0\" value=\"")
            .text(data.service.object.replicas)
            .raw("\" required><button type=\"submit\" id=\"scale\">Scale</button></form>");
    }
    out.raw("</section><section aria-labelledby=\"pods-title\"><h2 id=\"pods-title\">Pods</h2><div id=\"pods\" data-fragment>");
    push_fragment(&mut out, &fragments, "pods");
    out.raw("</div></section><section aria-labelledby=\"history-title\"><h2 id=\"history-title\">Deployment history</h2><div id=\"history\" data-fragment>");
    push_fragment(&mut out, &fragments, "history");
    out.raw("</div></section>");
    out.raw("<section aria-labelledby=\"log-title\"><h2 id=\"log-title\">Log</h2>");
    match logs {
        Ok(page) => {
            // Focusable, so that the keyboard scrolls it; the stream
            // appends what arrives after `last_id`.
            out.raw("<div id=\"log\" class=\"log\" role=\"log\" tabindex=\"0\" aria-labelledby=\"log-title\" data-stream=\"")
                .text(&live)
                .raw("/logs?after=")
                .text(page.last_id)
                .raw("\">");
            if page.lines.is_empty() {
                out.raw("<div class=\"line muted\" data-empty>No lines yet.</div>");
            }
            out.append(&log_lines(&page.lines)).raw("</div>");
        }
        Err(why) => {
            out.raw("<p class=\"muted\" id=\"log-refused\">")
                .text(why)
                .raw("</p>");
        }
    }
    out.raw("</section>");
    foot(&mut out);
    out.finish()
}

/// Log lines as a service page's tail shows them: `pod@node | message`,
/// the message escaped as `berth logs` escapes it (no control character
/// or invisible mark reaches the page), then as HTML.
pub fn log_lines(lines: &[LogLine]) -> Html {
    let mut out = Html::new();
    for line in lines {
        out.raw("<div class=\"line\"><span class=\"source\">")
            .text(&line.pod)
            .raw("@")
            .text(&line.node)
            .raw("</span> | ")
            .text(escape_message(line.bytes()))
            .raw("</div>");
    }
    out
}

/// A service page's live parts: `summary`, `pods` and `history`.
pub fn service_fragments(session: &Session, data: &ServiceData) -> Vec<(&'static str, Html)> {
    vec![
        ("summary", summary(session, data)),
        ("pods", pods_table(&data.pods)),
        ("history", history(session, data)),
    ]
}

fn summary(session: &Session, data: &ServiceData) -> Html {
    let service = &data.service.object;
    let ready = data.pods.iter().filter(|p| pod_ready(&p.object)).count();
    let mut out = Html::new();
    out.raw("<p><span id=\"replicas-ready\">")
        .text(ready)
        .raw("</span> of <span id=\"replicas-wanted\">")
        .text(service.replicas)
        .raw("</span> pods ready.</p>");
    if data.may_edit {
        let action = format!("{}/scale", service_url(&data.project, &service.name));
        // The visible text starts the name, as speech input expects.
        for (delta, text) in [("-1", "−1"), ("1", "+1")] {
            out.raw("<form method=\"post\" action=\"")
                .text(&action)
                .raw("\" class=\"inline\" data-action>");
            csrf(&mut out, session);
            out.raw("<input type=\"hidden\" name=\"delta\" value=\"")
                .text(delta)
                .raw("\"><button type=\"submit\">")
                .text(text)
                .raw("<span class=\"visually-hidden\"> replica</span></button></form>");
        }
    }
    if let Some(latest) = data.deployments.last() {
        let d = &latest.object;
        // Of the wanted replicas, how many of the latest revision are
        // available: the rollout's progress.
        let wanted = service.replicas.max(1);
        let done = if d.status.phase == DeploymentPhase::Complete {
            wanted
        } else {
            d.status.available.min(wanted)
        };
        out.raw("<p><label for=\"rollout\">Revision ")
            .text(d.revision)
            .raw(": ")
            .text(d.status.phase)
            .raw(", ")
            .text(d.status.available)
            .raw(" of ")
            .text(service.replicas)
            .raw(" available</label> <progress id=\"rollout\" data-revision=\"")
            .text(d.revision)
            .raw("\" data-phase=\"")
            .text(d.status.phase)
            .raw("\" max=\"")
            .text(wanted)
            .raw("\" value=\"")
            .text(done)
            .raw("\">")
            .text(done)
            .raw(" of ")
            .text(wanted)
            .raw("</progress></p>");
        if let Some(reason) = &d.status.reason {
            out.raw("<p class=\"muted\">").text(reason).raw("</p>");
        }
    }
    out
}

fn pods_table(pods: &[Versioned<ClusterPod>]) -> Html {
    let mut out = Html::new();
    if pods.is_empty() {
        out.raw("<p class=\"muted\">No pods.</p>");
        return out;
    }
    out.raw("<table><thead><tr><th scope=\"col\">Pod</th><th scope=\"col\">Node</th>")
        .raw("<th scope=\"col\">Phase</th><th scope=\"col\">Ready</th><th scope=\"col\">Restarts</th>")
        .raw("<th scope=\"col\">Revision</th></tr></thead><tbody>");
    for pod in pods {
        let pod = &pod.object;
        let (phase, ready, restarts) = match (&pod.node, &pod.status) {
            (_, Some(status)) => (
                format!("{:?}", status.phase),
                format!(
                    "{}/{}",
                    status.containers.iter().filter(|c| c.ready).count(),
                    status.containers.len()
                ),
                status.containers.iter().map(|c| c.restarts).sum::<u32>(),
            ),
            (Some(_), None) => ("Pending".to_owned(), "-".to_owned(), 0),
            (None, None) => (
                match &pod.unschedulable_reason {
                    Some(reason) if !reason.is_empty() => format!("Unschedulable: {reason}"),
                    _ => "Unschedulable".to_owned(),
                },
                "-".to_owned(),
                0,
            ),
        };
        out.raw("<tr data-pod=\"")
            .text(&pod.spec.name)
            .raw("\"><th scope=\"row\">")
            .text(&pod.spec.name)
            .raw("</th><td>")
            .text(pod.node.as_deref().unwrap_or("-"))
            .raw("</td><td class=\"phase\">")
            .text(phase)
            .raw("</td><td>")
            .text(ready)
            .raw("</td><td>")
            .text(restarts)
            .raw("</td><td>")
            .text(pod.revision.unwrap_or(1))
            .raw("</td></tr>");
    }
    out.raw("</tbody></table>");
    out
}

fn history(session: &Session, data: &ServiceData) -> Html {
    let mut out = Html::new();
    if data.deployments.is_empty() {
        out.raw("<p class=\"muted\">No revisions.</p>");
        return out;
    }
    let latest = data.deployments.last().map_or(0, |d| d.object.revision);
    out.raw("<table><thead><tr><th scope=\"col\">Revision</th><th scope=\"col\">Cause</th>")
        .raw("<th scope=\"col\">By</th><th scope=\"col\">Created (UTC)</th><th scope=\"col\">Phase</th>");
    if data.may_edit {
        out.raw("<th scope=\"col\">Action</th>");
    }
    out.raw("</tr></thead><tbody>");
    for deployment in data.deployments.iter().rev() {
        let d: &Deployment = &deployment.object;
        out.raw("<tr data-revision=\"")
            .text(d.revision)
            .raw("\"><th scope=\"row\">")
            .text(d.revision)
            .raw("</th><td>")
            .text(&d.cause)
            .raw("</td><td>")
            .text(&d.user)
            .raw("</td><td class=\"time\">")
            .text(utc(d.created_ms))
            .raw("</td><td>")
            .text(d.status.phase)
            .raw("</td>");
        if data.may_edit {
            out.raw("<td>");
            if d.revision != latest && d.status.phase == DeploymentPhase::Complete {
                out.raw("<form method=\"post\" action=\"")
                    .text(service_url(&data.project, &data.service.object.name))
                    .raw("/rollback\" class=\"inline\" data-action>");
                csrf(&mut out, session);
                out.raw("<input type=\"hidden\" name=\"toRevision\" value=\"")
                    .text(d.revision)
                    .raw("\"><button type=\"submit\" class=\"rollback\">Roll back to ")
                    .text(d.revision)
                    .raw("</button></form>");
            }
            out.raw("</td>");
        }
        out.raw("</tr>");
    }
    out.raw("</tbody></table>");
    out
}

/// Thousandths of a CPU as CPUs: `2`, `0.5`.
fn cpus(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{:.2}", millis as f64 / 1000.0)
    }
}

/// Bytes as MiB or GiB.
fn memory(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` (UTC).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_escaped_for_the_terminal_and_for_html() {
        let line = LogLine {
            id: 7,
            time_us: 0,
            node: "h2".to_owned(),
            pod: "web-0".to_owned(),
            container: "web".to_owned(),
            priority: 6,
            message: "<b>hi</b> & \u{1b}[2J\r".to_owned(),
            raw: None,
        };
        assert_eq!(
            log_lines(&[line]).finish(),
            "<div class=\"line\"><span class=\"source\">web-0@h2</span> | \
             &lt;b&gt;hi&lt;/b&gt; &amp; \\x1b[2J\\r</div>"
        );
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn capacity_reads_as_people_write_it() {
        assert_eq!(cpus(2000), "2");
        assert_eq!(cpus(500), "0.50");
        assert_eq!(memory(512 << 20), "512 MiB");
        assert_eq!(memory(3 << 30), "3.0 GiB");
    }
}
