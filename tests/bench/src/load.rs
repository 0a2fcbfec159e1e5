//! `berth-bench load`: a constant-rate HTTP load generator for the router
//! tests and benchmarks. It opens one connection per request (so a reload
//! cannot hide a refused connection behind a reused one), sends a GET with
//! a Host header at a fixed rate, and counts every request that does not
//! end in a 200 as failed, with why. It prints one JSON summary line, and
//! with `--report-new` a line each time a body is seen for the first time
//! (the wall-clock time in ms: when a new backend answered first).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// What to load.
#[derive(Debug, Clone)]
pub struct Config {
    /// `address:port` to connect to.
    pub target: String,
    /// The Host header.
    pub host: String,
    /// The request path.
    pub path: String,
    /// Requests per second.
    pub rate: u32,
    /// For how long.
    pub duration: Duration,
    /// Print a line when a body is seen for the first time.
    pub report_new: bool,
}

/// How one request ended.
#[derive(Debug)]
struct Outcome {
    latency: Duration,
    result: Result<String, String>,
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// One request on a fresh connection: the body of a 200, or why not.
async fn request(config: &Config) -> Result<String, String> {
    let mut stream = TcpStream::connect(&config.target)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: berth-bench\r\n\r\n",
        config.path, config.host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let status = text.split_whitespace().nth(1).unwrap_or("none").to_owned();
    if status != "200" {
        return Err(format!("status {status}"));
    }
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(body.trim().to_owned())
}

/// Runs the load and prints the summary; fails if any request failed.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let period = Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1)));
    let total = (config.duration.as_secs_f64() * f64::from(config.rate)).round() as u64;
    let started = Instant::now();
    let sender = {
        let config = config.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for _ in 0..total {
                ticks.tick().await;
                let (config, tx) = (config.clone(), tx.clone());
                tokio::spawn(async move {
                    let begun = Instant::now();
                    let result =
                        match tokio::time::timeout(Duration::from_secs(15), request(&config)).await
                        {
                            Ok(result) => result,
                            Err(_) => Err("timeout after 15 s".into()),
                        };
                    let _ = tx.send(Outcome {
                        latency: begun.elapsed(),
                        result,
                    });
                });
            }
        })
    };
    let mut seen = BTreeSet::new();
    let mut ok_bodies: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut done = 0;
    while done < total {
        let Some(outcome) = rx.recv().await else {
            break;
        };
        done += 1;
        latencies.push(outcome.latency.as_secs_f64() * 1000.0);
        match outcome.result {
            Ok(body) => {
                if config.report_new && seen.insert(body.clone()) {
                    println!(
                        "{}",
                        serde_json::json!({"newBody": body, "timeMs": now_ms() as u64})
                    );
                }
                *ok_bodies.entry(body).or_default() += 1;
            }
            Err(why) => *errors.entry(why).or_default() += 1,
        }
    }
    sender.await?;
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1]
    };
    let failed: u64 = errors.values().sum();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "sent": total,
            "ok": total - failed,
            "failed": failed,
            "errors": errors,
            "bodies": ok_bodies,
            "seconds": elapsed,
            "ratePerSec": total as f64 / elapsed,
            "p50Ms": quantile(0.5),
            "p99Ms": quantile(0.99),
        })
    );
    Ok(())
}
