//! `write-throughput`: creates per second through three masters on a
//! 3-member etcd (`berth-lab up --masters 3`), against one master on a
//! one-member etcd (`--store etcd`), in the same run, rounds interleaved.
//! The load is `berth-bench create-load` inside each lab's h1: N clients
//! at once, each creating services (0 replicas, so nothing is scheduled)
//! as fast as its last create was answered, spread over the lab's masters.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_harness::Lab;
use serde_json::{json, Value};

/// Where `berth-lab up` leaves the admin's token and the CA on h1.
const ADMIN_TOKEN: &str = "/var/lib/berth/master/admin.token";
const CA: &str = "/var/lib/berth/master/ca.crt";

/// `berth-bench create-load` (run inside a lab host): `clients` at once,
/// client `i` sending to `urls[i % urls.len()]`, for `seconds`. Prints one
/// JSON line: `created`, `failed`, `seconds`, `perSecond`, `firstFailure`.
pub async fn create_load(
    urls: Vec<String>,
    token_file: PathBuf,
    ca: PathBuf,
    clients: usize,
    seconds: u64,
    prefix: String,
) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading {}", token_file.display()))?;
    let ca = std::fs::read(&ca).with_context(|| format!("reading {}", ca.display()))?;
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .timeout(Duration::from_secs(10))
        .build()?;
    let token = Arc::new(token.trim().to_owned());
    let created = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_failure = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let url = format!("{}/v1/services", urls[client % urls.len()]);
            let (http, token) = (http.clone(), Arc::clone(&token));
            let (created, failed) = (Arc::clone(&created), Arc::clone(&failed));
            let first_failure = Arc::clone(&first_failure);
            let prefix = prefix.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < deadline {
                    n += 1;
                    let body = json!({
                        "name": format!("{prefix}-{client}-{n}"),
                        "replicas": 0,
                        "template": {
                            "name": "t",
                            "containers": [{"name": "c", "image": "local/busybox"}],
                        },
                    });
                    let sent = http
                        .post(&url)
                        .bearer_auth(token.as_str())
                        .json(&body)
                        .send()
                        .await;
                    let failure = match sent {
                        Ok(answer) if answer.status() == reqwest::StatusCode::CREATED => None,
                        Ok(answer) => Some(format!("{url}: {}", answer.status())),
                        Err(e) => Some(format!("{url}: {e}")),
                    };
                    match failure {
                        None => created.fetch_add(1, Ordering::Relaxed),
                        Some(why) => {
                            first_failure
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .get_or_insert(why);
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let created = created.load(Ordering::Relaxed);
    let first_failure = first_failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    println!(
        "{}",
        json!({
            "created": created,
            "failed": failed.load(Ordering::Relaxed),
            "seconds": elapsed,
            "perSecond": created as f64 / elapsed,
            "firstFailure": first_failure,
        })
    );
    Ok(())
}

/// One round of `create-load` in `lab`'s h1 against `urls`: creates/s.
fn round(lab: &Lab, bench: &str, urls: &str, clients: usize, seconds: u64, prefix: &str) -> f64 {
    let clients = clients.to_string();
    let seconds = seconds.to_string();
    let run = lab.exec(
        "h1",
        &[
            bench,
            "create-load",
            "--urls",
            urls,
            "--token-file",
            ADMIN_TOKEN,
            "--ca",
            CA,
            "--clients",
            &clients,
            "--seconds",
            &seconds,
            "--prefix",
            prefix,
        ],
    );
    let summary: Value = serde_json::from_str(run.assert_success().trim())
        .expect("create-load prints one JSON line");
    println!("  {prefix} {}: {summary}", lab.name());
    summary["perSecond"].as_f64().unwrap_or(0.0)
}

/// `berth-bench write-throughput`.
pub fn write_throughput(clients: usize, seconds: u64, rounds: usize) {
    let three = Lab::up_with("bn-writes-three", 3, &["--masters", "3"]);
    let one = Lab::up_with("bn-writes-one", 1, &["--store", "etcd"]);
    let bench_three = three.install_bench("h1");
    let bench_one = one.install_bench("h1");
    let three_urls = "https://h1:7443,https://h2:7443,https://h3:7443";
    let one_url = "https://h1:7443";
    let (mut through_three, mut through_one) = (Vec::new(), Vec::new());
    println!("creates/s, {clients} clients, {seconds} s a round:");
    for r in 1..=rounds {
        let prefix = format!("r{r}");
        // Alternate who goes first, so neither always runs on a warmer
        // machine.
        if r % 2 == 1 {
            through_one.push(round(&one, bench_one, one_url, clients, seconds, &prefix));
            through_three.push(round(
                &three,
                bench_three,
                three_urls,
                clients,
                seconds,
                &prefix,
            ));
        } else {
            through_three.push(round(
                &three,
                bench_three,
                three_urls,
                clients,
                seconds,
                &prefix,
            ));
            through_one.push(round(&one, bench_one, one_url, clients, seconds, &prefix));
        }
    }
    through_three.sort_by(f64::total_cmp);
    through_one.sort_by(f64::total_cmp);
    let three_median = crate::quantile(&through_three, 0.5);
    let one_median = crate::quantile(&through_one, 0.5);
    println!(
        "write throughput (median of {rounds}): 3 masters on 3 etcd members {three_median:.0}/s, \
         1 master on 1 member {one_median:.0}/s, ratio {:.2}x",
        three_median / one_median.max(f64::MIN_POSITIVE)
    );
    three.down();
    one.down();
}
