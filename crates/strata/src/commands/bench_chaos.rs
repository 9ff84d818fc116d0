//! `strata bench chaos`: `strata serve` with every role (collector, loader,
//! stream, scheduler) takes replayed shop traffic while it is stopped with
//! SIGTERM and killed with SIGKILL over and over, each kill aimed at a
//! moment named by the server's phase lines (`strata_core::PHASE`): ingest,
//! a bronze commit, a stream checkpoint, a partition commit of a scheduled
//! run, a compaction. After each clean stop and at the end it checks what a
//! user relies on (`chaos_checks`): every acknowledged event in bronze and
//! every log record there once, each event id once in silver, gold equal to
//! a clean backfill of the same bronze, the realtime table's closed minutes
//! equal to an uninterrupted stream run over the same log, no run left
//! `running`. Exits 1 when any check fails, keeping the data dirs.

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use strata_generate::{FaultRates, Generator, GeneratorConfig};
use tokio::sync::{mpsc, watch};

use super::bench::{WRITE_KEY, free_port, wait_ready};
use super::chaos_checks::{self, Report};
use crate::cli::BenchChaosArgs;
use crate::error::{CliError, Result};

/// Short intervals, so every durable step happens many times a minute.
pub(crate) const CONFIG: &str = r#"
[loader]
flush_interval = "250ms"
optimize_every_commits = 4

[stream]
checkpoint_interval = "1s"

[orchestrator]
dirty_check_interval = "2s"
poll_interval = "200ms"
lease = "3s"
retry_delay = "1s"
max_retry_delay = "5s"
max_attempts = 10
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Term,
    Kill(Phase),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ingest,
    BronzeCommit,
    StreamCheckpoint,
    PartitionCommit,
    Compaction,
}

impl Phase {
    const ALL: [Phase; 5] = [
        Phase::Ingest,
        Phase::BronzeCommit,
        Phase::StreamCheckpoint,
        Phase::PartitionCommit,
        Phase::Compaction,
    ];

    /// The message of the phase line that starts it (none for ingest).
    fn marker(self) -> Option<&'static str> {
        match self {
            Phase::Ingest => None,
            Phase::BronzeCommit => Some("bronze_commit"),
            Phase::StreamCheckpoint => Some("stream_checkpoint"),
            Phase::PartitionCommit => Some("partition_commit"),
            Phase::Compaction => Some("compaction"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Phase::Ingest => "during ingest",
            Phase::BronzeCommit => "in a bronze commit",
            Phase::StreamCheckpoint => "in a stream checkpoint",
            Phase::PartitionCommit => "in a partition commit of a scheduled run",
            Phase::Compaction => "in a compaction",
        }
    }
}

pub async fn run(args: BenchChaosArgs) -> Result<()> {
    let root = match &args.keep {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("strata-chaos-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).map_err(CliError::runtime)?;
    let config = root.join("chaos.toml");
    std::fs::write(&config, CONFIG).map_err(CliError::runtime)?;
    let data = root.join("data");

    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut plan: Vec<Stop> = (0..args.kills)
        .map(|i| Stop::Kill(Phase::ALL[i % Phase::ALL.len()]))
        .chain((0..args.sigterms).map(|_| Stop::Term))
        .collect();
    plan.shuffle(&mut rng);

    let feed = Feed::new(replayed_batches(&args));
    println!(
        "{} requests of replayed traffic; {} clean stops and {} kills in {}",
        feed.remaining(),
        args.sigterms,
        args.kills,
        root.display()
    );
    let mut report = Report::default();
    let started = Instant::now();
    for (cycle, stop) in plan.iter().enumerate() {
        let mut server = Server::start(&data, &config).await?;
        let ready_after = server.ready_after;
        report.restarts.push(ready_after);
        let feeding = feed.start(&server.base);
        let outcome = match *stop {
            Stop::Term => {
                tokio::time::sleep(Duration::from_millis(rng.random_range(800..3000))).await;
                feeding.stop().await;
                let took = server.terminate()?;
                report.shutdowns.push(took);
                // A clean stop drains the log: bronze holds every ack by now.
                let found = chaos_checks::bronze_holds(&data, &feed.acked()).await?;
                report.check(format!("after clean stop {}", cycle + 1), found);
                format!("SIGTERM, clean exit in {:.1} s", took.as_secs_f64())
            }
            Stop::Kill(phase) => {
                let hit = match phase.marker() {
                    None => {
                        let wait = rng.random_range(300..3000);
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        true
                    }
                    Some(marker) => server.wait_for(marker, Duration::from_secs(30)).await,
                };
                server.kill();
                feeding.stop().await;
                report.kills.push((phase.label(), hit));
                if hit {
                    format!("kill -9 {}", phase.label())
                } else {
                    format!("kill -9 (no {} within 30 s)", phase.label())
                }
            }
        };
        println!(
            "cycle {:>2}: ready in {:.1} s, {outcome}; {} events acknowledged so far",
            cycle + 1,
            ready_after.as_secs_f64(),
            feed.acked_count()
        );
    }

    // The last run sends what is left, then the scheduler finishes its work.
    let server = Server::start(&data, &config).await?;
    report.restarts.push(server.ready_after);
    let feeding = feed.start(&server.base);
    feeding.finish().await;
    chaos_checks::wait_until_idle(&data, feed.acked_count()).await?;
    let took = server.terminate()?;
    report.shutdowns.push(took);

    chaos_checks::verify(&root, &data, &config, &feed.acked(), &mut report).await?;
    report.print(feed.acked_count(), started.elapsed());
    if report.failed() {
        return Err(CliError::Runtime(format!(
            "chaos checks failed; the data dirs are kept in {}",
            root.display()
        )));
    }
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}

/// The shop's history as `/v1/batch` bodies, replayed as `strata generate`
/// replays it. Every message has a `messageId` (no malformed ones), so an
/// acknowledgement names the events it covers; none is delivered days late,
/// because whether such an event is too late for the realtime path depends
/// on what else arrived before it, which no two runs share.
fn replayed_batches(args: &BenchChaosArgs) -> Vec<(Vec<String>, Bytes)> {
    let generator = Generator::new(GeneratorConfig {
        seed: args.seed,
        users: args.users,
        days: Some(args.days.max(1)),
        start: chrono::NaiveDate::from_ymd_opt(2026, 3, 1).expect("valid date"),
        faults: FaultRates {
            malformed: 0.0,
            late: 0.0,
            ..FaultRates::default()
        },
    });
    let now = chrono::Utc::now();
    let messages: Vec<Value> = generator
        .map(|g| super::generate::replayed(g, now))
        .collect();
    messages
        .chunks(20)
        .map(|chunk| {
            let ids = chunk
                .iter()
                .filter_map(|m| m["messageId"].as_str().map(str::to_string))
                .collect();
            let body =
                serde_json::to_vec(&serde_json::json!({ "batch": chunk })).unwrap_or_default();
            (ids, Bytes::from(body))
        })
        .collect()
}

/// The requests still to send (a refused or unanswered one goes back to the
/// front, as an SDK retries) and the event ids acknowledged so far.
#[derive(Clone)]
struct Feed {
    queue: Arc<Mutex<VecDeque<(Vec<String>, Bytes)>>>,
    acked: Arc<Mutex<HashSet<String>>>,
}

struct Feeding {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Feed {
    fn new(batches: Vec<(Vec<String>, Bytes)>) -> Self {
        Self {
            queue: Arc::new(Mutex::new(batches.into())),
            acked: Arc::default(),
        }
    }

    fn remaining(&self) -> usize {
        self.queue.lock().map_or(0, |q| q.len())
    }

    fn acked(&self) -> HashSet<String> {
        self.acked.lock().map(|a| a.clone()).unwrap_or_default()
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().map_or(0, |a| a.len())
    }

    /// Posts one request every 50 ms (400 events/s) until stopped or out of
    /// requests, so the traffic lasts through many cycles.
    fn start(&self, base: &str) -> Feeding {
        let (stop, mut stopped) = watch::channel(false);
        let (feed, url) = (self.clone(), format!("{base}/v1/batch"));
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                if *stopped.borrow() {
                    return;
                }
                let Some((ids, body)) = feed.queue.lock().ok().and_then(|mut q| q.pop_front())
                else {
                    return;
                };
                let answer = client
                    .post(&url)
                    .basic_auth(WRITE_KEY, Some(""))
                    .header("content-type", "application/json")
                    .timeout(Duration::from_secs(10))
                    .body(body.clone())
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status().is_success() => {
                        if let Ok(mut acked) = feed.acked.lock() {
                            acked.extend(ids);
                        }
                    }
                    _ => {
                        if let Ok(mut q) = feed.queue.lock() {
                            q.push_front((ids, body));
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
        Feeding { stop, task }
    }
}

impl Feeding {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Waits until every request was sent.
    async fn finish(self) {
        let _ = self.task.await;
    }
}

/// One `strata serve` child with its phase lines.
struct Server {
    child: Child,
    base: String,
    lines: mpsc::UnboundedReceiver<String>,
    ready_after: Duration,
}

impl Server {
    async fn start(data: &Path, config: &Path) -> Result<Self> {
        let port = free_port()?;
        let exe = std::env::current_exe().map_err(CliError::runtime)?;
        let started = Instant::now();
        let mut child = Command::new(exe)
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data)
            .env("STRATA_WRITE_KEY", WRITE_KEY)
            .env("NO_COLOR", "1")
            .env("STRATA_LOG", format!("error,{}=debug", strata_core::PHASE))
            .env_remove("STRATA_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(CliError::runtime)?;
        let (send, lines) = mpsc::unbounded_channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr)
                .lines()
                .map_while(std::io::Result::ok)
            {
                if line.contains(" ERROR ") {
                    eprintln!("server: {line}");
                }
                let _ = send.send(line);
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&base).await?;
        Ok(Self {
            child,
            base,
            lines,
            ready_after: started.elapsed(),
        })
    }

    /// Waits for the next phase line with this message; false if none came.
    async fn wait_for(&mut self, marker: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        // Lines from before this moment do not count.
        while self.lines.try_recv().is_ok() {}
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line))
                    if line.trim_end().ends_with(marker)
                        || line.contains(&format!(" {marker} ")) =>
                {
                    return true;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return false,
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; the exit must be clean.
    fn terminate(mut self) -> Result<Duration> {
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().map_err(CliError::runtime)?;
        if !status.success() {
            return Err(CliError::Runtime(format!(
                "the server exited with {status} after SIGTERM"
            )));
        }
        Ok(started.elapsed())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Copies a directory tree (`cp -r`), for the clean rebuilds.
pub(crate) fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .map_err(CliError::runtime)?;
    if !status.success() {
        return Err(CliError::Runtime(format!(
            "copying {} to {} failed",
            from.display(),
            to.display()
        )));
    }
    Ok(())
}

pub(crate) fn sub(root: &Path, parts: &[&str]) -> PathBuf {
    parts
        .iter()
        .fold(root.to_path_buf(), |p, part| p.join(part))
}
