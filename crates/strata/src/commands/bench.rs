//! `strata bench ingest`: sustained durable ingest through `POST /v1/batch`
//! against a `strata serve` child process on loopback, measured from outside
//! (events/s, request latency, the server's peak RSS, bronze lag).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use strata_generate::{Generator, GeneratorConfig};
use strata_lake::Lake;
use strata_lake::bronze::loaded_records;
use strata_wire::WireFormat;

use crate::cli::{BenchIngestArgs, GlobalArgs};
use crate::error::{CliError, Result};

pub(crate) const WRITE_KEY: &str = "wk_bench";

/// What one run measured.
struct Figures {
    rate: f64,
    requests: u64,
    failures: u64,
    latencies: Histogram<u64>,
    peak_rss: f64,
    max_lag: u64,
    drain: f64,
    stop: f64,
}

/// JSON first, then each `--format` asked for, each against a fresh
/// server on the same machine, in one table.
pub async fn ingest(global: &GlobalArgs, args: BenchIngestArgs) -> Result<()> {
    let mut formats = vec![WireFormat::Json];
    for name in &args.formats {
        let format = WireFormat::parse(name).ok_or_else(|| {
            CliError::Usage(format!(
                "--format {name:?} is not one of json, protobuf, avro"
            ))
        })?;
        if !formats.contains(&format) {
            formats.push(format);
        }
    }
    let mut runs = Vec::new();
    for format in &formats {
        runs.push(ingest_as(global, &args, *format).await?);
    }
    let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
    let row = |name: &str, cell: &dyn Fn(&Figures) -> String| {
        let cells: Vec<String> = runs.iter().map(cell).collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    let names: Vec<&str> = formats.iter().map(|f| f.name()).collect();
    println!("| metric | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(formats.len()));
    row("durable events/s", &|f| format!("{:.0}", f.rate));
    row("requests", &|f| {
        format!("{} ({} failed)", f.requests, f.failures)
    });
    row("latency p50", &|f| ms(f.latencies.value_at_quantile(0.50)));
    row("latency p99", &|f| ms(f.latencies.value_at_quantile(0.99)));
    row("latency max", &|f| ms(f.latencies.max()));
    row("server peak RSS", &|f| format!("{:.0} MiB", f.peak_rss));
    row("bronze lag while loading (max)", &|f| {
        format!(
            "{} events ≈ {:.1} s",
            f.max_lag,
            f.max_lag as f64 / f.rate.max(1.0)
        )
    });
    row("bronze catch-up after load stops", &|f| {
        format!("{:.1} s", f.drain)
    });
    row("clean shutdown", &|f| format!("{:.1} s", f.stop));
    if let Some(json) = runs.first() {
        for (format, run) in formats.iter().zip(&runs).skip(1) {
            println!(
                "{}: {:+.0}% events/s and {:+.0}% p99 against JSON",
                format.name(),
                (run.rate / json.rate.max(1.0) - 1.0) * 100.0,
                (run.latencies.value_at_quantile(0.99) as f64
                    / json.latencies.value_at_quantile(0.99).max(1) as f64
                    - 1.0)
                    * 100.0
            );
        }
    }
    Ok(())
}

async fn ingest_as(
    global: &GlobalArgs,
    args: &BenchIngestArgs,
    format: WireFormat,
) -> Result<Figures> {
    let dir = std::env::temp_dir().join(format!("strata-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_port()?;
    let mut child = ChildServer::spawn_roles(&dir, port, global.config.as_deref(), &args.roles)?;
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await?;

    let bodies = Arc::new(request_bodies(args.batch_size, format)?);
    let message_bytes: usize =
        bodies.iter().map(|b| b.len()).sum::<usize>() / (bodies.len() * args.batch_size).max(1);
    let target = if args.rate > 0 {
        format!("{} events/s", args.rate)
    } else {
        "as fast as possible".into()
    };
    println!(
        "{}: driving {} connections for {} s with {}-message requests (~{} bytes per message), {target}",
        format.name(),
        args.connections,
        args.seconds,
        args.batch_size,
        message_bytes
    );

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()
        .map_err(CliError::runtime)?;
    let sent = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let lake = Lake::new(dir.join("lake"));

    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.connections {
        let (client, bodies, sent, failures, next, running) = (
            client.clone(),
            bodies.clone(),
            sent.clone(),
            failures.clone(),
            next.clone(),
            running.clone(),
        );
        let url = format!("{base}/v1/batch");
        let batch = args.batch_size as u64;
        // Each connection paces itself to its share of the target rate.
        let interval = (args.rate > 0).then(|| {
            Duration::from_secs_f64(batch as f64 * args.connections as f64 / args.rate as f64)
        });
        workers.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new(3).expect("valid precision");
            let mut next_send = Instant::now();
            while running.load(Ordering::Relaxed) {
                if let Some(interval) = interval {
                    tokio::time::sleep_until(next_send.into()).await;
                    next_send += interval;
                }
                let body = bodies[next.fetch_add(1, Ordering::Relaxed) % bodies.len()].clone();
                let t = Instant::now();
                let response = client
                    .post(&url)
                    .basic_auth(WRITE_KEY, Some(""))
                    .header("content-type", format.content_type())
                    .body(body)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        let _ = latencies.record(t.elapsed().as_micros() as u64);
                        sent.fetch_add(batch, Ordering::Relaxed);
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }

    // Sample how far bronze trails the acknowledged events while load runs.
    let mut max_lag = 0u64;
    let deadline = started + Duration::from_secs(args.seconds);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let acked = sent.load(Ordering::Relaxed);
        if let Ok(loaded) = loaded_records(&lake, 4).await {
            max_lag = max_lag.max(acked.saturating_sub(loaded));
        }
    }
    running.store(false, Ordering::Relaxed);
    let mut latencies = Histogram::<u64>::new(3).expect("valid precision");
    for worker in workers {
        let h = worker.await.map_err(CliError::runtime)?;
        latencies.add(h).map_err(CliError::runtime)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let acked = sent.load(Ordering::Relaxed);

    let drain_started = Instant::now();
    loop {
        let loaded = loaded_records(&lake, 4).await.unwrap_or(0);
        if loaded >= acked || drain_started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain = drain_started.elapsed().as_secs_f64();
    let peak_rss = child.peak_rss_mib();
    let stop_started = Instant::now();
    child.terminate()?;
    let stop = stop_started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Figures {
        rate: acked as f64 / elapsed,
        requests: latencies.len(),
        failures: failures.load(Ordering::Relaxed),
        latencies,
        peak_rss,
        max_lag,
        drain,
        stop,
    })
}

pub(crate) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(CliError::runtime)?;
    Ok(listener.local_addr().map_err(CliError::runtime)?.port())
}

/// Realistic bodies from the synthetic shop app, built before the clock starts.
/// The log filter for benchmarked children: warnings, without the commit
/// conflicts Delta reconciles on its own (routine when partitions are
/// written side by side).
pub(crate) const QUIET_LOG: &str = "warn,deltalake_core::kernel::transaction=error";

fn request_bodies(batch_size: usize, format: WireFormat) -> Result<Vec<Bytes>> {
    let generator = Generator::new(GeneratorConfig {
        seed: 7,
        users: 20_000,
        days: Some(3),
        ..GeneratorConfig::default()
    });
    let messages: Vec<serde_json::Value> = generator.take(200_000).map(|g| g.message).collect();
    messages
        .chunks(batch_size.max(1))
        .map(|chunk| {
            format
                .encode_batch(chunk, None)
                .map(Bytes::from)
                .map_err(CliError::runtime)
        })
        .collect()
}

pub(crate) async fn wait_ready(base: &str) -> Result<()> {
    let url = format!("{base}/ready");
    for _ in 0..300 {
        if let Ok(r) = reqwest::get(&url).await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(CliError::Runtime(
        "the benchmark server did not become ready".into(),
    ))
}

pub(crate) struct ChildServer {
    child: Child,
}

impl ChildServer {
    /// The server under test, with the user's config file if one was given
    /// (it must not define `[[sources]]`: the benchmark posts with its own key).
    pub(crate) fn spawn(
        dir: &std::path::Path,
        port: u16,
        config: Option<&std::path::Path>,
    ) -> Result<Self> {
        Self::spawn_roles(dir, port, config, &[])
    }

    /// The server under test with only these roles (all when empty).
    pub(crate) fn spawn_roles(
        dir: &std::path::Path,
        port: u16,
        config: Option<&std::path::Path>,
        roles: &[crate::cli::Role],
    ) -> Result<Self> {
        Self::spawn_env(dir, port, config, roles, &[])
    }

    /// As [`Self::spawn_roles`], with more environment variables (e.g.
    /// `STRATA_ADMIN_TOKEN`).
    pub(crate) fn spawn_env(
        dir: &std::path::Path,
        port: u16,
        config: Option<&std::path::Path>,
        roles: &[crate::cli::Role],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let exe = std::env::current_exe().map_err(CliError::runtime)?;
        let mut command = Command::new(exe);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let child = command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(roles.iter().flat_map(|role| {
                let name = clap::ValueEnum::to_possible_value(role)
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default();
                ["--role".to_string(), name]
            }))
            .arg("--data-dir")
            .arg(dir)
            .env("STRATA_WRITE_KEY", WRITE_KEY)
            // `STRATA_BENCH_SERVER_LOG` shows the server's own log, e.g.
            // `info` to see what it was doing at a slow moment.
            .env(
                "STRATA_LOG",
                std::env::var("STRATA_BENCH_SERVER_LOG").unwrap_or_else(|_| QUIET_LOG.into()),
            )
            .env_remove("STRATA_CONFIG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .map_err(CliError::runtime)?;
        Ok(Self { child })
    }

    pub(crate) fn peak_rss_mib(&self) -> f64 {
        peak_rss_mib(self.child.id())
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child has not exited.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(crate) fn terminate(&mut self) -> Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().map_err(CliError::runtime)?;
        if !status.success() {
            return Err(CliError::Runtime(format!("server exited with {status}")));
        }
        Ok(())
    }
}

/// A process's peak resident set (`VmHWM`), in MiB; 0 once it has exited.
pub fn peak_rss_mib(pid: u32) -> f64 {
    memory_mib(&pid.to_string(), "VmHWM:")
}

/// One `kB` field of `/proc/<process>/status` (e.g. `VmRSS:`), in MiB.
pub(crate) fn memory_mib(process: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
