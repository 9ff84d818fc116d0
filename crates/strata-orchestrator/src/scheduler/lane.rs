//! The fast lane: models that must stay within seconds of their input
//! (CDC current-state tables; `Workload::fast_models`) are built by a
//! second scheduler of the same process, which claims only their runs and
//! queues them itself whenever their input moves (`Workload::fast_input`,
//! the Delta version of `bronze.cdc_changes`), every `FAST_POLL`. The main
//! scheduler leaves their runs alone: a rebuild of a history table or of
//! `silver.events` can take minutes, and one scheduler runs one set of runs
//! at a time. Both lanes share the run store, so a fast run is still one
//! run per partition, listed, leased and retried like any other.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Scheduler, Tick};
use crate::error::{Error, Result};
use crate::store::{ALL, RunKey, RunState, micros, now_micros};
use crate::workload::Workload;

/// How often the fast lane looks at its input: a loader micro-batch
/// (2 s by default) is noticed within half a second.
pub const FAST_POLL: Duration = Duration::from_millis(500);

/// How long the fast models' succeeded runs are kept: one per loader
/// commit would be 43,200 a day per table.
const KEEP_RUNS: Duration = Duration::from_secs(3600);

/// Which models' runs a scheduler claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Lane {
    #[default]
    All,
    Except(BTreeSet<String>),
    Only(BTreeSet<String>),
}

impl Lane {
    pub fn claims(&self, model: &str) -> bool {
        match self {
            Lane::All => true,
            Lane::Except(models) => !models.contains(model),
            Lane::Only(models) => models.contains(model),
        }
    }
}

impl<W: Workload> Scheduler<W> {
    /// Starts the fast lane when the workload has fast models, and leaves
    /// their runs to it from then on.
    pub(super) async fn start_fast_lane(
        &mut self,
        stop: watch::Receiver<bool>,
    ) -> Result<Option<JoinHandle<Result<()>>>> {
        Ok(self
            .split_fast_lane()
            .await?
            .map(|lane| tokio::spawn(lane.run_fast(stop))))
    }

    /// The fast lane's scheduler, when the workload has fast models; this
    /// one stops claiming their runs. `run` does this itself; tests drive
    /// the lane by its `fast_pass`.
    pub async fn split_fast_lane(&mut self) -> Result<Option<Scheduler<W>>> {
        let fast: BTreeSet<String> = self.workload.fast_models().into_iter().collect();
        if self.lane != Lane::All || fast.is_empty() {
            return Ok(None);
        }
        let mut config = self.config.clone();
        config.sense_dirty = false;
        config.fire_schedules = false;
        config.poll_interval = config.poll_interval.min(FAST_POLL);
        let mut lane = Scheduler::new(self.store.clone(), self.workload.clone(), config).await?;
        lane.lane = Lane::Only(fast.clone());
        self.lane = Lane::Except(fast);
        Ok(Some(lane))
    }

    async fn run_fast(mut self, mut stop: watch::Receiver<bool>) -> Result<()> {
        tracing::info!(worker = %self.worker, lane = ?self.lane, "fast lane started");
        let mut failures = 0u32;
        while !*stop.borrow() {
            let pass = self.fast_pass(now_micros(), Some(&mut stop)).await;
            let wait = self.wait_after(pass, &mut failures, "fast lane pass failed");
            if let Some(wait) = wait {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            }
        }
        Ok(())
    }

    /// One pass of the fast lane: queue its models if their input moved,
    /// then claim and execute what is ready.
    pub async fn fast_pass(
        &mut self,
        now: i64,
        stop: Option<&mut watch::Receiver<bool>>,
    ) -> Result<Tick> {
        self.store.beat_worker(&self.worker, now).await?;
        let mut tick = Tick {
            enqueued: self.queue_fast(now).await?,
            ..Tick::default()
        };
        let (batch, blocked) = self.claim(now).await?;
        tick.blocked = blocked;
        if !batch.is_empty() {
            tick.executed = self.execute(batch, stop).await?;
        }
        if self
            .last_prune
            .is_none_or(|t| now - t >= micros(KEEP_RUNS) / 60)
        {
            self.last_prune = Some(now);
            if let Lane::Only(models) = &self.lane {
                for model in models {
                    self.store
                        .prune_succeeded(model, now - micros(KEEP_RUNS))
                        .await?;
                }
            }
        }
        Ok(tick)
    }

    /// Queues every fast model once per move of their input. While one of
    /// them is running (it may have read the input before the move), the
    /// move is not taken as seen, so it is queued again when that ends.
    async fn queue_fast(&mut self, now: i64) -> Result<usize> {
        let Lane::Only(models) = &self.lane else {
            return Ok(0);
        };
        let input = self
            .workload
            .fast_input()
            .await
            .map_err(|e| Error::Invalid(format!("looking for new CDC changes: {e}")))?;
        if input.is_none() || input == self.fast_input_seen {
            return Ok(0);
        }
        let resting = self.resting(now).await?;
        let keys: Vec<RunKey> = models
            .iter()
            .map(|m| RunKey::new(m.as_str(), ALL))
            .filter(|k| !resting.contains(k))
            .collect();
        let running = self
            .store
            .pending()
            .await?
            .into_iter()
            .any(|r| r.state == RunState::Running && keys.contains(&r.key));
        let runs = self.graph.new_runs(keys, "cdc", None, |_| false)?;
        let added = self.enqueue(&runs, now).await?;
        if !running {
            self.fast_input_seen = input;
        }
        Ok(added)
    }
}
