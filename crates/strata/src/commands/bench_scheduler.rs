//! `strata bench scheduler`: what the orchestrator itself costs per run,
//! with a workload that builds nothing. Each backend is measured twice: runs
//! claimed one at a time (every run a claim, a lease and a completion, the
//! worst case) and claimed as the scheduler does, a level at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use strata_batch::Model;
use strata_orchestrator::store::now_micros;
use strata_orchestrator::workload::Noop;
use strata_orchestrator::{RunKey, RunStore, Scheduler, SchedulerConfig};

use crate::cli::BenchSchedulerArgs;
use crate::error::{CliError, Result};

pub async fn run(args: BenchSchedulerArgs) -> Result<()> {
    let dir = tempfile::tempdir().map_err(CliError::runtime)?;
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let mut stores = vec![("sqlite", sqlite)];
    if let Some(url) = &args.database_url {
        stores.push(("postgres", url.clone()));
    }
    println!(
        "{:<9} {:>9} {:>7} {:>11} {:>9} {:>12} {:>12}",
        "store", "claim", "runs", "enqueue ms", "drain s", "runs/s", "tick p95 ms"
    );
    for (name, url) in stores {
        for max_batch in [1, 256] {
            let store = RunStore::open(&url).await?;
            let figures = measure(store, args.runs, max_batch).await?;
            println!(
                "{name:<9} {:>9} {:>7} {:>11.1} {:>9.2} {:>12.0} {:>12.2}",
                if max_batch == 1 { "one" } else { "level" },
                args.runs,
                figures.enqueue.as_secs_f64() * 1e3,
                figures.drain.as_secs_f64(),
                args.runs as f64 / figures.drain.as_secs_f64(),
                figures.tick_p95_ms
            );
        }
    }
    Ok(())
}

struct Figures {
    enqueue: Duration,
    drain: Duration,
    tick_p95_ms: f64,
}

async fn measure(store: RunStore, runs: usize, max_batch: usize) -> Result<Figures> {
    let mut settings = SchedulerConfig::from_config(&Default::default(), 1)?;
    settings.sense_dirty = false;
    settings.fire_schedules = false;
    settings.max_batch = max_batch;
    let mut scheduler = Scheduler::new(store, Arc::new(Noop), settings).await?;
    // Dates far from any real data; a store that ran the bench before holds
    // only finished runs of them, so they are queued again.
    let start = chrono::NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or_default();
    let keys = start
        .iter_days()
        .take(runs)
        .map(|d| RunKey::new(Model::ActiveDays.name(), d.format("%Y-%m-%d").to_string()));
    let queued = scheduler.graph().new_runs(keys, "bench", None, |_| false)?;
    let started = Instant::now();
    scheduler.enqueue(&queued, now_micros()).await?;
    let enqueue = started.elapsed();
    let mut ticks = Histogram::<u64>::new(3).map_err(CliError::runtime)?;
    let started = Instant::now();
    loop {
        let tick_started = Instant::now();
        let tick = scheduler.tick(now_micros()).await?;
        if tick.executed.is_empty() {
            break;
        }
        let _ = ticks.record(tick_started.elapsed().as_micros() as u64);
    }
    Ok(Figures {
        enqueue,
        drain: started.elapsed(),
        tick_p95_ms: ticks.value_at_quantile(0.95) as f64 / 1e3,
    })
}
