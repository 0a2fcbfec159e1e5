//! `berth-bench load`: a constant-rate HTTP load generator for the router
//! tests and benchmarks. It opens one connection per request (so a reload
//! cannot hide a refused connection behind a reused one), sends a GET with
//! a Host header at a fixed rate (or, with `--concurrency`, as fast as that
//! many clients can), and counts every request that does not end in a 200
//! as failed, with why. It prints one JSON summary line, and with
//! `--report-changes` a line each time the body differs from the previous
//! answer's (with the wall-clock time in ms: when a new backend answered).

use std::collections::BTreeMap;
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
    /// Print a line when the body differs from the previous one.
    pub report_changes: bool,
    /// Closed loop: this many clients, each sending its next request when
    /// the last one ended (`rate` is then ignored).
    pub concurrency: Option<u32>,
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

/// One request, timed, with a 15 s limit.
async fn timed(config: &Config) -> Outcome {
    let begun = Instant::now();
    let result = match tokio::time::timeout(Duration::from_secs(15), request(config)).await {
        Ok(result) => result,
        Err(_) => Err("timeout after 15 s".into()),
    };
    Outcome {
        latency: begun.elapsed(),
        result,
    }
}

/// Runs the load and prints the summary (failed requests are counted
/// there, not turned into an error).
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let period = Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1)));
    let total = (config.duration.as_secs_f64() * f64::from(config.rate)).round() as u64;
    let started = Instant::now();
    let deadline = started + config.duration;
    let sender = match config.concurrency {
        None => {
            let config = config.clone();
            let tx = tx.clone();
            let sender = tokio::spawn(async move {
                let mut ticks = tokio::time::interval(period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                for _ in 0..total {
                    ticks.tick().await;
                    let (config, tx) = (config.clone(), tx.clone());
                    tokio::spawn(async move {
                        let _ = tx.send(timed(&config).await);
                    });
                }
            });
            sender
        }
        Some(clients) => {
            let config = config.clone();
            let tx = tx.clone();
            let sender = tokio::spawn(async move {
                let mut all = Vec::new();
                for _ in 0..clients {
                    let (config, tx) = (config.clone(), tx.clone());
                    all.push(tokio::spawn(async move {
                        while Instant::now() < deadline {
                            let _ = tx.send(timed(&config).await);
                        }
                    }));
                }
                for client in all {
                    let _ = client.await;
                }
            });
            sender
        }
    };
    drop(tx);
    let mut last_body: Option<String> = None;
    let mut ok_bodies: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut done: u64 = 0;
    // The channel closes when every request has ended.
    while let Some(outcome) = rx.recv().await {
        done += 1;
        latencies.push(outcome.latency.as_secs_f64() * 1000.0);
        match outcome.result {
            Ok(body) => {
                if config.report_changes && last_body.as_ref() != Some(&body) {
                    println!(
                        "{}",
                        serde_json::json!({"body": body, "timeMs": now_ms() as u64})
                    );
                    last_body = Some(body.clone());
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
            "sent": done,
            "ok": done - failed,
            "failed": failed,
            "errors": errors,
            "bodies": ok_bodies,
            "seconds": elapsed,
            "ratePerSec": done as f64 / elapsed,
            "p50Ms": quantile(0.5),
            "p99Ms": quantile(0.99),
        })
    );
    Ok(())
}
