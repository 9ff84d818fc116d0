//! `strata bench stream`: the realtime path measured three ways.
//!
//! 1. Throughput: a log pre-filled with generated shop events is drained by
//!    the stream processor in this process; events per CPU-second of the
//!    process is the per-core figure.
//! 2. Dedup state: ten million distinct event ids admitted, with the
//!    state's own size and the growth of this process's resident set.
//! 3. Freshness: a `strata serve` child takes events stamped "now" at a
//!    fixed rate (or as fast as it can); an event counts as visible when
//!    `/api/realtime`'s `events_counted` reaches the number of events
//!    acknowledged up to and including its request's 200.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use hdrhistogram::Histogram;
use strata_core::config::StreamConfig;
use strata_core::event::LogRecord;
use strata_core::normalize::person_key;
use strata_generate::{Generator, GeneratorConfig};
use strata_lake::Lake;
use strata_log::{EmbeddedLog, EmbeddedLogConfig, Log};
use strata_stream::operators::dedup::Dedup;
use strata_stream::{Operator, StreamProcessor};
use tokio::sync::Mutex;

use super::bench::{ChildServer, WRITE_KEY, free_port, wait_ready};
use crate::cli::{BenchStreamArgs, GlobalArgs};
use crate::error::{CliError, Result};

const PARTITIONS: u32 = 4;

pub async fn run(global: &GlobalArgs, args: BenchStreamArgs) -> Result<()> {
    println!("| figure | value |\n|---|---|");
    throughput(args.events).await?;
    dedup_state(args.ids);
    for rate in &args.rates {
        freshness(global, *rate, args.seconds).await?;
    }
    Ok(())
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted after the `(comm)` field.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mib() -> f64 {
    super::bench::memory_mib("self", "VmRSS:")
}

async fn throughput(events: usize) -> Result<()> {
    let dir = tempfile::tempdir().map_err(CliError::runtime)?;
    let log = EmbeddedLog::open(
        dir.path().join("log"),
        EmbeddedLogConfig {
            partitions: PARTITIONS,
            fsync: false,
            ..EmbeddedLogConfig::default()
        },
    )?;
    let generator = Generator::new(GeneratorConfig {
        seed: 9,
        users: 50_000,
        days: Some(30),
        ..GeneratorConfig::default()
    });
    let producer = strata_sources::Producer::new(log.clone());
    let mut chunk = Vec::with_capacity(100_000);
    let mut filled = 0usize;
    let mut generator = generator.take(events);
    loop {
        chunk.clear();
        for g in generator.by_ref().take(100_000) {
            chunk.push((
                g.send_at + ChronoDuration::milliseconds(40),
                g.message.to_string(),
            ));
        }
        if chunk.is_empty() {
            break;
        }
        let mut outbox = producer.outbox();
        for event in super::bench_batch::normalize_parallel(std::mem::take(&mut chunk)) {
            let partition = outbox.partition_of(person_key(&event));
            outbox.push_to(partition, &LogRecord::Event(event));
        }
        filled += outbox.len();
        producer.send(outbox).await?;
    }
    let dyn_log: Arc<dyn Log> = log.clone();
    let lake = Lake::new(dir.path().join("lake"));
    let mut processor = StreamProcessor::open(
        &StreamConfig::default(),
        &lake,
        dyn_log,
        dir.path().join("stream"),
    )
    .await?;
    let cpu = cpu_seconds();
    let started = Instant::now();
    while processor.step().await?.records > 0 {}
    let drained = started.elapsed().as_secs_f64();
    processor.checkpoint().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let report = processor.handle().report(1, Utc::now().timestamp_micros());
    println!("| records drained from the log | {filled} |");
    println!(
        "| counted / duplicates / too late | {} / {} / {} |",
        report.events_counted, report.duplicates, report.too_late
    );
    println!(
        "| drain time (+ first checkpoint) | {drained:.2} s (+{:.2} s) |",
        elapsed - drained
    );
    println!(
        "| wall-clock rate | {:.0} events/s |",
        filled as f64 / drained
    );
    println!(
        "| **per core** (events / CPU-second, checkpoint included) | **{:.0} events/s** ({cpu:.2} CPU-s) |",
        filled as f64 / cpu.max(0.01)
    );
    log.close();
    Ok(())
}

fn dedup_state(ids: usize) {
    let before = rss_mib();
    let mut dedup = Dedup::new(3600);
    let started = Instant::now();
    let base = Utc::now().timestamp() as u32;
    // Checkpoints release the ids they wrote out, as every 10 s of a
    // steady 10,000 events/s would.
    let barrier = strata_stream::operator::Barrier {
        epoch: 0,
        positions: Vec::new(),
    };
    for i in 0..ids {
        // Spread over half the TTL, as a steady hour of traffic would be.
        let secs = base + (i as u64 * 1800 / ids.max(1) as u64) as u32;
        dedup.admit(uuid::Uuid::new_v4().as_u128(), secs);
        if i % 100_000 == 99_999 {
            dedup.committed(&barrier);
        }
    }
    let took = started.elapsed().as_secs_f64();
    let after = rss_mib();
    println!(
        "| dedup state for {ids} ids (own estimate) | {:.0} MiB |",
        dedup.state_bytes() as f64 / 1048576.0
    );
    println!(
        "| dedup state for {ids} ids (RSS growth) | **{:.0} MiB** |",
        after - before
    );
    println!(
        "| dedup admissions | {:.0} ids/s |",
        ids as f64 / took.max(1e-9)
    );
    drop(dedup);
}

/// Events stamped now, in batches of 100 from the synthetic shop's shapes.
fn body(seq: u64, n: usize) -> String {
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let names = [
        "Product Viewed",
        "Product Added",
        "Checkout Started",
        "Order Completed",
    ];
    let messages: Vec<serde_json::Value> = (0..n as u64)
        .map(|i| {
            let k = seq * n as u64 + i;
            serde_json::json!({
                "type": "track",
                "event": names[(k % 4) as usize],
                "anonymousId": format!("anon-{}", k % 50_000),
                "messageId": format!("bench-{k}"),
                "timestamp": now,
                "properties": {"sku": format!("sku-{}", k % 300), "price": 19.99},
                "context": {"library": {"name": "analytics.js", "version": "2.11.1"}, "page": {"path": "/p"}}
            })
        })
        .collect();
    serde_json::json!({ "batch": messages }).to_string()
}

async fn freshness(global: &GlobalArgs, rate: u64, seconds: u64) -> Result<()> {
    const BATCH: usize = 100;
    const WORKERS: u64 = 8;
    let dir = tempfile::tempdir().map_err(CliError::runtime)?;
    let port = free_port()?;
    let mut child = ChildServer::spawn(dir.path(), port, global.config.as_deref())?;
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await?;
    let client = reqwest::Client::new();
    // (ack instant, events acknowledged so far), in ack order.
    let acks: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let acked = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (client, acks, acked, next, running, url) = (
            client.clone(),
            acks.clone(),
            acked.clone(),
            next.clone(),
            running.clone(),
            format!("{base}/v1/batch"),
        );
        workers.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while running.load(Ordering::Relaxed) {
                if rate > 0 {
                    // This worker's share of the schedule.
                    let due = Duration::from_secs_f64(
                        (sent * WORKERS + w) as f64 * BATCH as f64 / rate as f64,
                    );
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                let seq = next.fetch_add(1, Ordering::Relaxed);
                let response = client
                    .post(&url)
                    .basic_auth(WRITE_KEY, Some(""))
                    .header("content-type", "application/json")
                    .body(body(seq, BATCH))
                    .send()
                    .await;
                if response.is_ok_and(|r| r.status().is_success()) {
                    let mut acks = acks.lock().await;
                    let total = acked.fetch_add(BATCH as u64, Ordering::Relaxed) + BATCH as u64;
                    acks.push((Instant::now(), total));
                }
                sent += 1;
            }
        }));
    }
    // Poll the API; each sample is (instant, events counted).
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    let report_url = format!("{base}/api/realtime?minutes=1");
    let mut max_lag = 0u64;
    let deadline = started + Duration::from_secs(seconds);
    let mut stopped_at = None;
    loop {
        if let Ok(r) = client.get(&report_url).send().await
            && let Ok(body) = r.bytes().await
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        {
            let counted = v["events_counted"].as_u64().unwrap_or(0);
            max_lag = max_lag.max(v["lag_records"].as_u64().unwrap_or(0));
            samples.push((Instant::now(), counted));
            if let Some(at) = stopped_at {
                if counted >= acked.load(Ordering::Relaxed)
                    || Instant::now() > at + Duration::from_secs(30)
                {
                    break;
                }
            }
        }
        if stopped_at.is_none() && Instant::now() >= deadline {
            running.store(false, Ordering::Relaxed);
            for w in workers.drain(..) {
                let _ = w.await;
            }
            stopped_at = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sending = stopped_at.map_or(0.0, |s| (s - started).as_secs_f64());
    let total = acked.load(Ordering::Relaxed);
    let acks = acks.lock().await.clone();
    let mut hist = Histogram::<u64>::new(3).map_err(CliError::runtime)?;
    let mut unseen = 0;
    for (at, needed) in &acks {
        match samples.iter().find(|(t, n)| t >= at && n >= needed) {
            Some((t, _)) => {
                let _ = hist.record((*t - *at).as_micros() as u64);
            }
            None => unseen += 1,
        }
    }
    let peak = child.peak_rss_mib();
    child.terminate()?;
    let label = if rate > 0 {
        format!("{rate} events/s")
    } else {
        "as fast as possible".into()
    };
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| freshness at {label}: achieved rate | {:.0} events/s over {sending:.1} s |",
        total as f64 / sending.max(1e-9)
    );
    println!(
        "| freshness at {label}: p50 / p99 / max | **{:.0} ms / {:.0} ms** / {:.0} ms |",
        ms(0.5),
        ms(0.99),
        hist.max() as f64 / 1000.0
    );
    println!(
        "| freshness at {label}: stream lag max | {max_lag} records; requests never seen counted: {unseen} |"
    );
    println!("| freshness at {label}: server peak RSS | {peak:.0} MiB |");
    Ok(())
}
