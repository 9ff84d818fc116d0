//! `strata run` and `strata backfill`: the batch models, in dependency
//! order, with a progress bar and a summary.

use std::sync::Arc;

use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use strata_batch::dates::day_of;
use strata_batch::{BatchConfig, LakeIo, Model, Plan, Progress, Runner, StateFile, Summary};
use strata_core::config::Config;
use strata_lake::Lake;

use crate::cli::{BackfillArgs, GlobalArgs, RunArgs};
use crate::error::{CliError, Result};
use crate::server::load_config;

pub fn runner(config: &Config) -> Result<Runner> {
    let io = LakeIo::new(Lake::new(config.lake_dir()));
    let state = StateFile::open(&strata_batch::state_dir(&config.data_dir))?;
    let batch = BatchConfig {
        funnels: config.effective_funnels(),
        experiments: config.experiments.clone(),
    };
    Ok(Runner::new(io, batch, state))
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn planned(&self, n: u64) {
        self.0.inc_length(n);
    }

    fn done(&self, model: &str, partition: &str, _rows: usize) {
        self.0.set_message(format!("{model} {partition}"));
        self.0.inc(1);
    }
}

fn bar() -> Arc<Bar> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} partitions {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Arc::new(Bar(bar))
}

pub fn print_summary(summary: &Summary) {
    println!(
        "{:<28} {:>10} {:>12} {:>9}",
        "model", "partitions", "rows", "seconds"
    );
    for (model, s) in &summary.models {
        println!(
            "{model:<28} {:>10} {:>12} {:>9.2}",
            s.partitions,
            s.rows,
            s.elapsed.as_secs_f64()
        );
    }
    println!(
        "{:<28} {:>10} {:>12} {:>9.2}",
        "total",
        summary.partitions(),
        summary.rows(),
        summary.elapsed.as_secs_f64()
    );
    if summary.still_dirty > 0 {
        println!(
            "{} partitions outside this run are dirty; `strata run --dirty` rebuilds them",
            summary.still_dirty
        );
    }
}

async fn execute(runner: Runner, plan: Plan) -> Result<()> {
    let bar = bar();
    let mut runner = runner.with_progress(bar.clone());
    let summary = runner.execute(plan).await;
    bar.0.finish_and_clear();
    print_summary(&summary?);
    Ok(())
}

pub async fn run(global: &GlobalArgs, args: RunArgs) -> Result<()> {
    let config = load_config(global, None)?;
    let plan = match (args.model.as_deref(), args.date, args.dirty) {
        (None, None, true) => Plan::dirty(),
        (Some(model), Some(date), false) => Plan::one(Model::parse(model)?, day_of(date)),
        (Some(model), None, false) if !Model::parse(model)?.is_daily() => {
            Plan::one(Model::parse(model)?, 0)
        }
        (Some(model), None, false) => {
            return Err(CliError::Usage(format!(
                "{model} is partitioned by date: give --date YYYY-MM-DD"
            )));
        }
        _ => {
            return Err(CliError::Usage(
                "give a model and --date, or --dirty alone".into(),
            ));
        }
    };
    execute(runner(&config)?, plan).await
}

pub async fn backfill(global: &GlobalArgs, args: BackfillArgs) -> Result<()> {
    let config = load_config(global, None)?;
    if args.from > args.to {
        return Err(CliError::Usage(format!(
            "--from {} is after --to {}",
            args.from, args.to
        )));
    }
    let plan = if args.model == "all" {
        // Whole-table models come along when what they read changed.
        Plan::range(&Model::ALL, day_of(args.from), day_of(args.to))
    } else {
        match Model::parse(&args.model)? {
            // Asked for by name: a whole-table model is rebuilt.
            model if !model.is_daily() => Plan::one(model, 0),
            model => Plan::range(&[model], day_of(args.from), day_of(args.to)),
        }
    };
    execute(runner(&config)?.with_parallel(args.parallel), plan).await
}

pub fn parse_date(text: &str) -> std::result::Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("{text:?} is not a YYYY-MM-DD date: {e}"))
}
