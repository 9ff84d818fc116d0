//! `strata bench api`: the latency of every dashboard endpoint, measured from
//! outside over loopback against a `strata serve` child on a data dir that
//! already has gold tables (e.g. 90 days built by
//! `strata bench batch --days 90 --keep DIR`).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::Value;
use strata_lake::Lake;

use super::bench::{ChildServer, free_port, wait_ready};
use crate::cli::{BenchApiArgs, GlobalArgs};
use crate::error::{CliError, Result};

/// Endpoints read with a date range, then those without.
const RANGED: [&str; 4] = ["active-users", "retention", "funnels", "sessions"];
const UNRANGED: [&str; 4] = ["experiments", "pipeline", "runs", "realtime"];
/// The range lengths a dashboard user picks (its presets).
const SPANS: [i64; 3] = [7, 30, 90];

pub async fn run(global: &GlobalArgs, args: BenchApiArgs) -> Result<()> {
    let dir = global
        .data_dir
        .clone()
        .ok_or_else(|| CliError::Usage("give --data-dir: a data dir with gold tables".into()))?;
    if !Lake::new(dir.join("lake")).exists("gold", "daily_active_users") {
        return Err(CliError::Usage(format!(
            "no gold tables in {}: build them first, e.g. `strata bench batch --days 90 --keep {}`",
            dir.display(),
            dir.display()
        )));
    }
    let port = free_port()?;
    let mut child = ChildServer::spawn(&dir, port, global.config.as_deref())?;
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await?;
    let client = reqwest::Client::new();

    let (first, last) = available(&client, &base).await?;
    let days = (last - first).num_days() + 1;
    println!(
        "gold.daily_active_users has {days} days ({first} to {last}); {} calls per endpoint, ranges of {SPANS:?} days",
        args.requests
    );
    println!("| endpoint | first call ms | p50 ms | p95 ms | p99 ms | max ms | answer bytes |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut worst_p95 = 0.0f64;
    for endpoint in RANGED.iter().chain(UNRANGED.iter()) {
        let ranged = RANGED.contains(endpoint);
        let path = |i: usize| -> String {
            if !ranged {
                return format!("/api/{endpoint}");
            }
            // Spread over the data: every span, at positions that cycle.
            let span = SPANS[i % SPANS.len()].min(days);
            let offset = (i as i64 * 7919) % (days - span + 1);
            let from = first + chrono::Duration::days(offset);
            let to = from + chrono::Duration::days(span - 1);
            format!("/api/{endpoint}?from={from}&to={to}")
        };
        // The first call loads the table into memory: what the first
        // visitor after each new table version waits for.
        let (cold, bytes) = timed(&client, &base, &path(0)).await?;
        let mut latencies = Histogram::<u64>::new(3).expect("valid precision");
        for i in 0..args.requests {
            let (took, _) = timed(&client, &base, &path(i + 1)).await?;
            latencies
                .record(took.as_micros() as u64)
                .map_err(CliError::runtime)?;
        }
        let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
        worst_p95 = worst_p95.max(ms(0.95));
        println!(
            "| {endpoint} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {bytes} |",
            cold.as_secs_f64() * 1000.0,
            ms(0.5),
            ms(0.95),
            ms(0.99),
            latencies.max() as f64 / 1000.0
        );
    }
    println!(
        "slowest p95: {worst_p95:.2} ms; server peak RSS {:.0} MiB",
        child.peak_rss_mib()
    );
    child.terminate()
}

async fn timed(client: &reqwest::Client, base: &str, path: &str) -> Result<(Duration, usize)> {
    let started = Instant::now();
    let response = client
        .get(format!("{base}{path}"))
        .send()
        .await
        .map_err(CliError::runtime)?;
    let status = response.status();
    let body = response.bytes().await.map_err(CliError::runtime)?;
    let took = started.elapsed();
    if !status.is_success() {
        return Err(CliError::Runtime(format!(
            "GET {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    Ok((took, body.len()))
}

async fn available(
    client: &reqwest::Client,
    base: &str,
) -> Result<(chrono::NaiveDate, chrono::NaiveDate)> {
    let text = client
        .get(format!("{base}/api/active-users"))
        .send()
        .await
        .map_err(CliError::runtime)?
        .text()
        .await
        .map_err(CliError::runtime)?;
    let body: Value = serde_json::from_str(&text).map_err(CliError::runtime)?;
    let date = |key: &str| {
        body["available"][key]
            .as_str()
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .ok_or_else(|| CliError::Runtime(format!("no available dates in {body}")))
    };
    Ok((date("first")?, date("last")?))
}
