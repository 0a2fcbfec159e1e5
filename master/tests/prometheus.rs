//! The master's own `/metrics` page, in-process: counted requests by route
//! template, store commits, and the cluster's gauges. `promtool check
//! metrics` runs on the same page in the lab (tests/lab/tests/cluster.rs).

use serde_json::json;

mod common;

async fn scrape(master: &common::Master, token: Option<&str>) -> (u16, String) {
    let mut request = master.http.get(format!("{}/metrics", master.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = request.send().await.expect("scrape");
    let status = answer.status().as_u16();
    (status, answer.text().await.expect("page"))
}

fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{page}"))
}

#[tokio::test]
async fn metrics_count_requests_by_route_commits_and_pods_and_need_the_admin_token() {
    let master = common::start("master-prometheus", 1).await;
    let (status, _) = scrape(&master, None).await;
    assert_eq!(status, 401);

    let service = json!({"name": "web", "replicas": 2, "template": {"name": "web", "containers": [{"name": "web", "image": "local/busybox", "command": ["httpd", "-f"]}]}});
    let (status, answer) = master
        .admin(reqwest::Method::POST, "/v1/services", Some(service))
        .await;
    assert_eq!(status, 201, "{answer}");
    for name in ["nosuch-1", "nosuch-2"] {
        let (status, _) = master
            .admin(reqwest::Method::GET, &format!("/v1/pods/{name}"), None)
            .await;
        assert_eq!(status, 404);
    }

    // The controller decides on its next round.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let page = loop {
        let (status, page) = scrape(&master, Some(&master.admin)).await;
        assert_eq!(status, 200, "{page}");
        if page.contains("berth_master_scheduler_decisions_total{result=\"unschedulable\"} 2")
            || std::time::Instant::now() > deadline
        {
            break page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        sample(&page, "berth_master_pods{phase=\"Unscheduled\"}"),
        2.0
    );
    // Two 404s under one route template, not one series per raw path.
    assert_eq!(
        sample(
            &page,
            "berth_master_http_requests_total{method=\"GET\",route=\"/v1/pods/{name}\",code=\"404\"}"
        ),
        2.0
    );
    assert!(!page.contains("nosuch"), "{page}");
    assert_eq!(
        sample(
            &page,
            "berth_master_http_requests_total{method=\"POST\",route=\"/v1/services\",code=\"201\"}"
        ),
        1.0
    );
    assert!(sample(&page, "berth_master_store_commit_duration_seconds_count") >= 1.0);
    assert!(
        sample(
            &page,
            "berth_master_controller_round_duration_seconds_count"
        ) >= 1.0
    );
    promtool_is_clean(&page);
    // No node has joined: both pods wait, and each wait was decided once.
    assert_eq!(
        sample(
            &page,
            "berth_master_scheduler_decisions_total{result=\"unschedulable\"}"
        ),
        2.0
    );
}

/// `promtool check metrics` on `page`. CI (`scripts/test`) installs
/// promtool and sets `BERTH_REQUIRE_CHECKERS=1`, so there it cannot be
/// skipped; a developer without promtool gets the rest of the test.
fn promtool_is_clean(page: &str) {
    use std::io::Write as _;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if std::env::var("BERTH_REQUIRE_CHECKERS").as_deref() != Ok("1") => {
            eprintln!("promtool not run: {e}");
            return;
        }
        Err(e) => panic!("promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool");
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics:\n{}{}\n{page}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
