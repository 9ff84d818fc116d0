//! `strata bench batch`: a month of generated shop traffic loaded into
//! bronze, then the full silver + gold backfill, one day's rebuild, and the
//! incremental run for the next day and its stragglers, each timed in a child `strata` process whose peak RSS is sampled.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, NaiveDate, Utc};
use strata_core::event::BronzeEvent;
use strata_core::normalize::{Envelope, normalize, person_key};
use strata_generate::{Generator, GeneratorConfig};
use strata_lake::Lake;
use strata_lake::bronze::append_events;
use strata_log::partition_for_key;

use crate::cli::BenchBatchArgs;
use crate::error::{CliError, Result};

const PARTITIONS: u32 = 4;
const CHUNK: usize = 250_000;

/// Assigns log positions the way the collector's log would.
struct Positions {
    next: [u64; PARTITIONS as usize],
}

impl Positions {
    fn place(&mut self, event: BronzeEvent) -> (u32, u64, BronzeEvent) {
        let p = partition_for_key(person_key(&event), PARTITIONS);
        let offset = self.next[p as usize];
        self.next[p as usize] += 1;
        (p, offset, event)
    }
}

fn normalize_chunk(chunk: Vec<(chrono::DateTime<Utc>, String)>) -> Vec<BronzeEvent> {
    chunk
        .into_iter()
        .filter_map(|(received_at, text)| {
            let envelope = Envelope {
                received_at,
                source: "bench",
                implied_type: None,
                batch_context: None,
                batch_sent_at: None,
                max_event_name_bytes: strata_core::normalize::DEFAULT_MAX_EVENT_NAME_BYTES,
            };
            normalize(&text, &envelope).ok()
        })
        .collect()
}

/// Normalises on two threads; the generator itself is single-threaded.
pub(crate) fn normalize_parallel(chunk: Vec<(chrono::DateTime<Utc>, String)>) -> Vec<BronzeEvent> {
    let mut chunk = chunk;
    let second = chunk.split_off(chunk.len() / 2);
    std::thread::scope(|s| {
        let other = s.spawn(|| normalize_chunk(second));
        let mut first = normalize_chunk(chunk);
        first.extend(other.join().unwrap_or_default());
        first
    })
}

async fn load(
    lake: &Lake,
    args: &BenchBatchArgs,
    start: NaiveDate,
) -> Result<(u64, Vec<(u32, u64, BronzeEvent)>)> {
    let cutoff = (start + ChronoDuration::days(args.days as i64))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let generator = Generator::new(GeneratorConfig {
        seed: args.seed,
        users: args.users,
        start,
        days: Some(args.days + 1),
        ..GeneratorConfig::default()
    });
    let mut positions = Positions {
        next: [0; PARTITIONS as usize],
    };
    let mut loaded = 0u64;
    let mut later = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    let bar = super::generate::progress_bar();
    let mut pending: Vec<(u32, u64, BronzeEvent)> = Vec::new();
    // Rows received after the last day go to the incremental run.
    let mut route = |chunk: Vec<(chrono::DateTime<Utc>, String)>,
                     pending: &mut Vec<(u32, u64, BronzeEvent)>| {
        for event in normalize_parallel(chunk) {
            let placed = positions.place(event);
            if placed.2.received_at >= cutoff.timestamp_micros() {
                later.push(placed);
            } else {
                pending.push(placed);
            }
        }
    };
    for generated in generator {
        let text = generated.message.to_string();
        // A small network delay between the client's send and receipt.
        chunk.push((generated.send_at + ChronoDuration::milliseconds(40), text));
        if chunk.len() == CHUNK {
            route(std::mem::take(&mut chunk), &mut pending);
            bar.inc(CHUNK as u64);
            if pending.len() >= CHUNK {
                loaded += pending.len() as u64;
                append_events(lake, std::mem::take(&mut pending)).await?;
            }
        }
    }
    route(chunk, &mut pending);
    loaded += pending.len() as u64;
    append_events(lake, pending).await?;
    bar.finish_and_clear();
    Ok((loaded, later))
}

struct Measured {
    elapsed: Duration,
    peak_rss_mib: f64,
    output: String,
}

/// Runs `strata <args>` on the bench data dir, sampling its peak RSS.
fn measure(dir: &Path, args: &[String]) -> Result<Measured> {
    let exe = std::env::current_exe().map_err(CliError::runtime)?;
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("STRATA_LOG", super::bench::QUIET_LOG)
        .env_remove("STRATA_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(CliError::runtime)?;
    let mut peak = 0.0f64;
    loop {
        peak = peak.max(super::bench::peak_rss_mib(child.id()));
        if child.try_wait().map_err(CliError::runtime)?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed();
    let output = child.wait_with_output().map_err(CliError::runtime)?;
    if !output.status.success() {
        return Err(CliError::Runtime(format!(
            "strata {} failed: {}",
            args.join(" "),
            output.status
        )));
    }
    Ok(Measured {
        elapsed,
        peak_rss_mib: peak,
        output: String::from_utf8_lossy(&output.stdout).into_owned(),
    })
}

pub async fn run(args: BenchBatchArgs) -> Result<()> {
    let temp;
    let dir: PathBuf = match &args.keep {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().map_err(CliError::runtime)?;
            temp.path().to_path_buf()
        }
    };
    let lake = Lake::new(dir.join("lake"));
    let start = NaiveDate::from_ymd_opt(2026, 3, 1).expect("date");
    let end = start + ChronoDuration::days(args.days as i64 - 1);
    let later = if args.reuse {
        println!("reusing bronze in {}", dir.display());
        Vec::new()
    } else {
        let generated = Instant::now();
        let (loaded, later) = load(&lake, &args, start).await?;
        println!(
            "bronze: {loaded} events of {} users over {} days loaded in {:.1}s ({} more held back for the incremental run)",
            args.users,
            args.days,
            generated.elapsed().as_secs_f64(),
            later.len()
        );
        later
    };
    let events = bronze_rows(&lake).await?;
    let full = measure(
        &dir,
        &[
            "backfill".into(),
            "all".into(),
            "--from".into(),
            start.to_string(),
            "--to".into(),
            end.to_string(),
            "--parallel".into(),
            args.parallel.to_string(),
        ],
    )?;
    print!("{}", full.output);
    let rate = if full.elapsed.as_secs_f64() > 0.0 {
        events as f64 / full.elapsed.as_secs_f64()
    } else {
        0.0
    };
    println!(
        "full backfill: {:.1}s, {rate:.0} bronze events/s, peak RSS {:.0} MiB",
        full.elapsed.as_secs_f64(),
        full.peak_rss_mib
    );
    // One day's rebuild: the last date again, with everything that reads it.
    let last = end.to_string();
    let day = measure(
        &dir,
        &[
            "backfill".into(),
            "all".into(),
            "--from".into(),
            last.clone(),
            "--to".into(),
            last.clone(),
        ],
    )?;
    print!("{}", day.output);
    println!(
        "one day's rebuild ({last}): {:.1}s, peak RSS {:.0} MiB",
        day.elapsed.as_secs_f64(),
        day.peak_rss_mib
    );
    if !later.is_empty() {
        let n = later.len();
        append_events(&lake, later).await?;
        let incremental = measure(&dir, &["run".into(), "--dirty".into()])?;
        print!("{}", incremental.output);
        println!(
            "incremental: {n} new events (one more day and its stragglers) rebuilt in {:.1}s, peak RSS {:.0} MiB",
            incremental.elapsed.as_secs_f64(),
            incremental.peak_rss_mib
        );
    }
    Ok(())
}

async fn bronze_rows(lake: &Lake) -> Result<u64> {
    let engine = strata_lake::SqlEngine::open(lake).await?;
    let batches = engine.query("select count(*) from bronze.events").await?;
    let Some(batch) = batches.first().filter(|b| b.num_rows() > 0) else {
        return Ok(0);
    };
    Ok(strata_lake::columns::longs_at(batch, 0)?.value(0) as u64)
}
