//! What the scheduler runs: the batch models of `strata_batch`, one claimed
//! set of partitions per `Runner` execution, and the dirty marks that late
//! data leaves behind.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use strata_batch::cdc::ChangesWatch;
use strata_batch::dates::{day_of, format_day};
use strata_batch::plan::Outcome;
use strata_batch::{BatchConfig, LakeIo, Model, Plan, Progress, Runner, StateFile};
use strata_core::Config;
use strata_lake::Lake;

use crate::dag::partition_day;
use crate::store::{ALL, Run, RunKey};

/// Rows written per partition of a successful execution.
pub type Written = BTreeMap<RunKey, i64>;

pub trait Workload: Send + Sync + 'static {
    /// Builds the partitions of `runs` (one dependency level); an error fails
    /// them all. What it returns may name more partitions than asked for:
    /// those it had to build with them.
    fn execute(&self, runs: &[Run]) -> impl Future<Output = Result<Written, String>> + Send;

    /// The partitions marked dirty, after looking for newly landed data
    /// when `scan` is set.
    fn dirty(&self, scan: bool) -> impl Future<Output = Result<Vec<RunKey>, String>> + Send;

    /// Models kept within seconds of their input: the scheduler builds them
    /// on a lane of their own, queued whenever [`Self::fast_input`] moves,
    /// so no long run of another model holds them up.
    fn fast_models(&self) -> Vec<String> {
        Vec::new()
    }

    /// A number that moves when input of the fast models lands (`None`
    /// while there is none); cheap enough to ask every fraction of a second.
    fn fast_input(&self) -> impl Future<Output = Result<Option<u64>, String>> + Send {
        async { Ok(None) }
    }
}

/// The batch models over a data dir.
pub struct BatchWorkload {
    lake_dir: PathBuf,
    state_dir: PathBuf,
    config: BatchConfig,
    parallel: usize,
    changes: Mutex<ChangesWatch>,
}

impl BatchWorkload {
    /// Registers the configuration's captured tables as models, too.
    pub fn new(config: &Config, parallel: usize) -> Self {
        let lake_dir = config.lake_dir();
        Self {
            changes: Mutex::new(ChangesWatch::new(&Lake::new(lake_dir.clone()))),
            lake_dir,
            state_dir: strata_batch::state_dir(&config.data_dir),
            config: BatchConfig::from_config(config),
            parallel,
        }
    }

    fn io(&self) -> LakeIo {
        LakeIo::new(Lake::new(self.lake_dir.clone()))
    }

    /// Builds current-state CDC tables without the batch state: each keeps
    /// its position in its own Delta log and nothing downstream reads it,
    /// so it need not wait for the batch lock a long run holds.
    async fn execute_fast(&self, runs: &[Run]) -> Result<Written, String> {
        let io = self.io();
        let mut written = Written::new();
        for run in runs {
            let model = Model::parse(&run.key.model).map_err(|e| e.to_string())?;
            let rows = match strata_batch::cdc::build(&io, model)
                .await
                .map_err(|e| e.to_string())?
            {
                Outcome::Written(rows) => rows as i64,
                Outcome::Unchanged => 0,
            };
            written.insert(run.key.clone(), rows);
        }
        Ok(written)
    }

    async fn runner(&self) -> strata_batch::Result<Runner> {
        let io = self.io();
        let state = StateFile::open_waiting(&self.state_dir).await?;
        Ok(Runner::new(io, self.config.clone(), state).with_parallel(self.parallel))
    }
}

/// Collects the rows each partition wrote, as the runner reports them.
#[derive(Default)]
struct Tally(Mutex<Written>);

impl Progress for Tally {
    fn planned(&self, _: u64) {}

    fn done(&self, model: &str, partition: &str, rows: usize) {
        if let Ok(mut written) = self.0.lock() {
            *written.entry(RunKey::new(model, partition)).or_default() += rows as i64;
        }
    }
}

/// The runner's plan for a set of claimed runs.
fn plan_of(runs: &[Run]) -> Result<Plan, String> {
    let mut plan = Plan::default();
    for run in runs {
        let model = Model::parse(&run.key.model).map_err(|e| e.to_string())?;
        match partition_day(&run.key.partition) {
            Some(day) if model.is_daily() => plan.add(model, [day]),
            Some(_) => {
                return Err(format!(
                    "{} is not partitioned by date: its partition is `all`",
                    run.key.model
                ));
            }
            None if run.key.partition != ALL => {
                return Err(format!("bad partition {:?}", run.key.partition));
            }
            None if run.if_stale => {
                plan.whole_if_stale.insert(model);
            }
            None => plan.add_all(model),
        }
    }
    Ok(plan)
}

impl Workload for BatchWorkload {
    async fn execute(&self, runs: &[Run]) -> Result<Written, String> {
        let fast = self.fast_models();
        if !runs.is_empty() && runs.iter().all(|r| fast.contains(&r.key.model)) {
            return self.execute_fast(runs).await;
        }
        let plan = plan_of(runs)?;
        let tally = Arc::new(Tally::default());
        let mut runner = self
            .runner()
            .await
            .map_err(|e| e.to_string())?
            .with_progress(tally.clone());
        runner.execute(plan).await.map_err(|e| e.to_string())?;
        let mut written = tally.0.lock().map(|w| w.clone()).unwrap_or_default();
        // Links are rebuilt with silver.events whenever it is; they are not
        // a partition anyone asks for.
        written.remove(&RunKey::new(Model::Identity.name(), ALL));
        for run in runs {
            written.entry(run.key.clone()).or_insert(0);
        }
        Ok(written)
    }

    async fn dirty(&self, scan: bool) -> Result<Vec<RunKey>, String> {
        let mut keys = BTreeSet::new();
        if scan {
            let mut runner = self.runner().await.map_err(|e| e.to_string())?;
            runner.scan_bronze().await.map_err(|e| e.to_string())?;
            // CDC models are stale when bronze holds changes they have not
            // taken in; only a scan looks, as it reads bronze.
            let stale = strata_batch::cdc::stale_models(&self.io())
                .await
                .map_err(|e| e.to_string())?;
            for model in stale {
                keys.insert(RunKey::new(model.name(), ALL));
            }
        }
        let state = StateFile::read(&self.state_dir).map_err(|e| e.to_string())?;
        for (model, date) in state.all_dirty() {
            let partition = match date {
                Some(d) => format_day(day_of(d)),
                None => ALL.to_string(),
            };
            keys.insert(RunKey::new(model, partition));
        }
        Ok(keys.into_iter().collect())
    }

    fn fast_models(&self) -> Vec<String> {
        Model::all()
            .into_iter()
            .filter(|m| matches!(m, Model::CdcState(_)))
            .map(Model::name)
            .collect()
    }

    async fn fast_input(&self) -> Result<Option<u64>, String> {
        Ok(self.changes.lock().map_err(|e| e.to_string())?.latest())
    }
}

/// Builds nothing: what the scheduler costs by itself, for `strata bench
/// scheduler`.
pub struct Noop;

impl Workload for Noop {
    async fn execute(&self, runs: &[Run]) -> Result<Written, String> {
        Ok(runs.iter().map(|r| (r.key.clone(), 0)).collect())
    }

    async fn dirty(&self, _scan: bool) -> Result<Vec<RunKey>, String> {
        Ok(Vec::new())
    }
}
