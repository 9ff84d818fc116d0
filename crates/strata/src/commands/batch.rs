//! `strata run` and `strata backfill`: partitions queued in the run store
//! and worked by this process (and by any scheduler sharing the store), in
//! dependency order, with a progress bar and a summary.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use strata_core::config::Config;
use strata_orchestrator::backfill::{self, Request};
use strata_orchestrator::store::{Counts, Run};
use strata_orchestrator::{BatchWorkload, RunKey, RunState, RunStore, Scheduler, SchedulerConfig};

use crate::cli::{BackfillArgs, GlobalArgs, RunArgs};
use crate::error::{CliError, Result};
use crate::server::load_config;

pub async fn open_store(config: &Config) -> Result<RunStore> {
    Ok(RunStore::for_data_dir(
        &config.data_dir,
        config.orchestrator.database_url.as_deref(),
    )
    .await?)
}

/// A scheduler over the data dir's models. `serving`: fire schedules and
/// sense dirty partitions (`strata serve`).
pub async fn scheduler(
    config: &Config,
    parallel: usize,
    sense_dirty: bool,
    fire_schedules: bool,
) -> Result<Scheduler<BatchWorkload>> {
    let store = open_store(config).await?;
    let funnel_days = strata_orchestrator::dag::funnel_days(config);
    let mut settings = SchedulerConfig::from_config(&config.orchestrator, funnel_days)?;
    settings.sense_dirty = sense_dirty;
    settings.fire_schedules = fire_schedules;
    let workload = Arc::new(BatchWorkload::new(config, parallel));
    Ok(Scheduler::new(store, workload, settings).await?)
}

fn bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} partitions {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Per model: partitions built, rows written and seconds from the first
/// start to the last finish of its runs.
fn print_summary(runs: &[Run]) {
    #[derive(Default)]
    struct Line {
        partitions: usize,
        rows: i64,
        first: Option<i64>,
        last: Option<i64>,
    }
    let mut lines: BTreeMap<&str, Line> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.state == RunState::Succeeded) {
        let line = lines.entry(&run.key.model).or_default();
        line.partitions += 1;
        line.rows += run.rows_written.unwrap_or(0);
        line.first = line.first.min(run.started_at).or(run.started_at);
        line.last = line.last.max(run.finished_at);
    }
    let seconds = |l: &Line| match (l.first, l.last) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e6,
        _ => 0.0,
    };
    println!(
        "{:<28} {:>10} {:>12} {:>9}",
        "model", "partitions", "rows", "seconds"
    );
    for (model, line) in &lines {
        println!(
            "{model:<28} {:>10} {:>12} {:>9.2}",
            line.partitions,
            line.rows,
            seconds(line)
        );
    }
    let total = Line {
        partitions: lines.values().map(|l| l.partitions).sum(),
        rows: lines.values().map(|l| l.rows).sum(),
        first: lines.values().filter_map(|l| l.first).min(),
        last: lines.values().filter_map(|l| l.last).max(),
    };
    println!(
        "{:<28} {:>10} {:>12} {:>9.2}",
        "total",
        total.partitions,
        total.rows,
        seconds(&total)
    );
    for run in runs
        .iter()
        .filter(|r| !matches!(r.state, RunState::Succeeded))
    {
        println!(
            "{} {}: {}",
            run.key,
            run.state.as_str(),
            run.error.as_deref().unwrap_or("")
        );
    }
}

/// Queues the request (or resumes it) and works it to the end.
async fn work(config: &Config, parallel: usize, request: Request) -> Result<()> {
    let mut scheduler = scheduler(config, parallel, false, false).await?;
    let started = backfill::start(&scheduler, &request).await?;
    if started.resumed {
        eprintln!(
            "resuming the unfinished {} of {}..{} ({} runs)",
            request.target, request.from, request.to, started.runs
        );
    }
    let bar = bar();
    let poll = config
        .orchestrator
        .poll_interval
        .min(std::time::Duration::from_millis(200));
    let counts = backfill::work(
        &mut scheduler,
        &started.id,
        poll,
        |counts: &Counts, tick| {
            bar.set_length(counts.total() as u64);
            bar.set_position(counts.done() as u64);
            if let Some((key, _)) = tick.executed.last() {
                bar.set_message(key.to_string());
            }
        },
    )
    .await?;
    bar.finish_and_clear();
    print_summary(&scheduler.store().runs_of_backfill(&started.id).await?);
    report_dirty(config, &scheduler).await;
    if counts.failed + counts.blocked > 0 {
        return Err(CliError::Runtime(format!(
            "{} partitions failed and {} were blocked by them; run the same command again to retry them",
            counts.failed, counts.blocked
        )));
    }
    Ok(())
}

/// Partitions this command left dirty, and who rebuilds them.
async fn report_dirty(config: &Config, scheduler: &Scheduler<BatchWorkload>) {
    let Ok(state) = strata_batch::StateFile::read(&strata_batch::state_dir(&config.data_dir))
    else {
        return;
    };
    let pending = scheduler
        .store()
        .pending()
        .await
        .map(|p| p.len())
        .unwrap_or(0);
    let dirty = state.all_dirty().len();
    if dirty > 0 {
        println!(
            "{dirty} partitions outside this run are dirty ({pending} runs queued); \
             `strata run --dirty` or a running `strata serve` rebuilds them"
        );
    }
}

pub async fn run(global: &GlobalArgs, args: RunArgs) -> Result<()> {
    let config = load_config(global, None)?;
    let request = match (args.model.as_deref(), args.date, args.dirty) {
        (None, None, true) => return run_dirty(&config).await,
        (Some(model), date, false) => {
            // A daily model without --date is a usage error, as is an unknown model.
            Request::run(model, date).map_err(|e| CliError::Usage(e.to_string()))?
        }
        _ => {
            return Err(CliError::Usage(
                "give a model and --date, or --dirty alone".into(),
            ));
        }
    };
    work(&config, config.orchestrator.parallel, request).await
}

/// Every dirty partition, and what rebuilding them makes dirty, until none is left.
async fn run_dirty(config: &Config) -> Result<()> {
    let mut scheduler = scheduler(config, config.orchestrator.parallel, true, false).await?;
    let bar = bar();
    let mut executed: Vec<(RunKey, RunState)> = Vec::new();
    loop {
        let tick = scheduler
            .tick(strata_orchestrator::store::now_micros())
            .await?;
        let pending = scheduler.store().pending().await?;
        executed.extend(tick.executed.iter().cloned());
        let done = executed
            .iter()
            .filter(|(_, s)| *s != RunState::Queued)
            .count();
        bar.set_length((done + pending.len()) as u64);
        bar.set_position(done as u64);
        if let Some((key, _)) = tick.executed.last() {
            bar.set_message(key.to_string());
        }
        if tick.executed.is_empty() {
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(config.orchestrator.poll_interval).await;
        }
    }
    bar.finish_and_clear();
    let failed: Vec<&RunKey> = executed
        .iter()
        .filter(|(_, s)| *s == RunState::Failed)
        .map(|(k, _)| k)
        .collect();
    print_summary(&scheduler.store().runs_of_worker(scheduler.worker()).await?);
    if !failed.is_empty() {
        return Err(CliError::Runtime(format!(
            "{} partitions failed (see `strata status`): {}",
            failed.len(),
            failed
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}

pub async fn backfill(global: &GlobalArgs, args: BackfillArgs) -> Result<()> {
    let config = load_config(global, None)?;
    let request = Request::backfill(&args.model, args.from, args.to)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    work(&config, args.parallel, request).await
}

pub fn parse_date(text: &str) -> std::result::Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("{text:?} is not a YYYY-MM-DD date: {e}"))
}
