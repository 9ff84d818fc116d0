//! One scheduler: fires the schedules, turns dirty partitions into runs,
//! requeues runs whose worker died, and claims and executes ready runs with
//! a renewed lease, a timeout and retries. Several schedulers may share one
//! run store; every step is safe to race.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use strata_batch::Model;
use strata_core::config::OrchestratorConfig;
use tokio::sync::watch;

use crate::dag::{Graph, Node};
use crate::error::{Error, Result};
use crate::schedule::Schedule;
use crate::store::{NewRun, Run, RunKey, RunState, RunStore, micros, now_micros};
use crate::workload::Workload;

mod lane;

use lane::Lane;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub dirty_check_interval: Duration,
    pub schedules: Vec<Schedule>,
    pub max_attempts: u32,
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
    pub run_timeout: Duration,
    pub timeouts: BTreeMap<String, Duration>,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// Runs of one dependency level claimed and built together.
    pub max_batch: usize,
    /// Look for dirty partitions (the late-data sensor) and queue them: what
    /// `strata serve` and `strata run --dirty` do; a backfill does not.
    pub sense_dirty: bool,
    /// Fire the cron schedules (`strata serve`).
    pub fire_schedules: bool,
    /// The longest funnel window in days (how far funnel partitions reach).
    pub funnel_days: i32,
}

impl SchedulerConfig {
    pub fn from_config(o: &OrchestratorConfig, funnel_days: i32) -> Result<Self> {
        Ok(Self {
            dirty_check_interval: o.dirty_check_interval,
            schedules: vec![
                Schedule::hourly(&o.hourly_schedule, o.straggler_delay)?,
                Schedule::daily(&o.daily_schedule, o.straggler_delay)?,
            ],
            max_attempts: o.max_attempts,
            retry_delay: o.retry_delay,
            max_retry_delay: o.max_retry_delay,
            run_timeout: o.run_timeout,
            timeouts: o.timeouts.clone(),
            lease: o.lease,
            poll_interval: o.poll_interval,
            max_batch: 256,
            sense_dirty: true,
            fire_schedules: true,
            funnel_days,
        })
    }

    fn timeout_of(&self, model: &str) -> Duration {
        self.timeouts
            .get(model)
            .copied()
            .unwrap_or(self.run_timeout)
    }

    /// Wait before attempt `attempts + 1`: exponential from `retry_delay`,
    /// capped, with jitter so failed runs of many partitions spread out.
    pub fn retry_after(&self, attempts: u32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.retry_delay)
            .with_max_delay(self.max_retry_delay)
            .with_max_times(attempts as usize)
            .with_jitter()
            .build()
            .nth(attempts.saturating_sub(1) as usize)
            .unwrap_or(self.max_retry_delay)
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone)]
pub struct Tick {
    pub requeued: usize,
    pub fired: Vec<String>,
    pub enqueued: usize,
    pub blocked: usize,
    /// The runs executed and what became of each.
    pub executed: Vec<(RunKey, RunState)>,
}

pub struct Scheduler<W: Workload> {
    store: RunStore,
    workload: Arc<W>,
    pub(crate) config: SchedulerConfig,
    graph: Graph,
    worker: String,
    last_sense: Option<i64>,
    /// Claim this backfill's runs before any other.
    focus: Option<String>,
    /// Which models' runs this scheduler claims.
    lane: Lane,
    /// The fast models' input as last queued for (`lane`).
    fast_input_seen: Option<u64>,
    /// When the fast lane last pruned its models' old runs.
    last_prune: Option<i64>,
}

impl<W: Workload> Scheduler<W> {
    /// How long to wait before the next pass: at once after a pass that ran
    /// something, a poll interval after an idle one, and after failures
    /// twice as long each time (up to a minute).
    fn wait_after(
        &self,
        pass: Result<Tick>,
        failures: &mut u32,
        failed: &'static str,
    ) -> Option<Duration> {
        match pass {
            Ok(tick) => {
                *failures = 0;
                tick.executed
                    .is_empty()
                    .then_some(self.config.poll_interval)
            }
            Err(e) => {
                *failures += 1;
                let wait = self
                    .config
                    .poll_interval
                    .saturating_mul(1 << (*failures).min(6))
                    .min(Duration::from_secs(60));
                tracing::error!(error = %e, retry_in = ?wait, "{failed}");
                Some(wait)
            }
        }
    }

    pub async fn new(store: RunStore, workload: Arc<W>, config: SchedulerConfig) -> Result<Self> {
        let worker = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
        store.register_worker(&worker, now_micros()).await?;
        Ok(Self {
            graph: Graph::new(config.funnel_days),
            store,
            workload,
            config,
            worker,
            last_sense: None,
            focus: None,
            lane: Lane::All,
            fast_input_seen: None,
            last_prune: None,
        })
    }

    pub fn worker(&self) -> &str {
        &self.worker
    }

    pub fn store(&self) -> &RunStore {
        &self.store
    }

    pub fn focus_on(&mut self, backfill: Option<String>) {
        self.focus = backfill;
    }

    /// The partition graph: the level of each model and what reads what.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub async fn enqueue(&self, runs: &[NewRun], now: i64) -> Result<usize> {
        self.store
            .enqueue(runs, i64::from(self.config.max_attempts), now)
            .await
    }

    /// Queues every partition marked dirty; with `scan`, after looking for
    /// bronze rows landed since the last look.
    pub async fn sense(&mut self, scan: bool, now: i64) -> Result<usize> {
        let dirty = self
            .workload
            .dirty(scan)
            .await
            .map_err(|e| Error::Invalid(format!("looking for dirty partitions: {e}")))?;
        if scan {
            self.last_sense = Some(now);
        }
        let resting = self.resting(now).await?;
        let dirty = dirty.into_iter().filter(|k| !resting.contains(k));
        let runs = self.graph.new_runs(dirty, "dirty", None, |_| false)?;
        self.enqueue(&runs, now).await
    }

    /// A partition that just failed, or was blocked by a failure, stays
    /// dirty; it is tried again once a check interval, not on every pass.
    async fn resting(&self, now: i64) -> Result<BTreeSet<RunKey>> {
        let recent = now - micros(self.config.dirty_check_interval);
        Ok(self
            .store
            .broken()
            .await?
            .into_iter()
            .filter(|r| r.finished_at.is_some_and(|t| t > recent))
            .map(|r| r.key)
            .collect())
    }

    /// One pass: requeue abandoned runs, fire due schedules, sense dirty
    /// partitions when due, then claim and execute one set of ready runs.
    pub async fn tick(&mut self, now: i64) -> Result<Tick> {
        self.pass(now, None).await
    }

    async fn pass(&mut self, now: i64, stop: Option<&mut watch::Receiver<bool>>) -> Result<Tick> {
        self.store.beat_worker(&self.worker, now).await?;
        let mut tick = Tick {
            requeued: self.requeue_stale(now).await?,
            ..Tick::default()
        };
        if self.config.fire_schedules {
            tick.fired = self.fire_schedules(now).await?;
        }
        if self.config.sense_dirty {
            let due = self
                .last_sense
                .is_none_or(|t| now - t >= micros(self.config.dirty_check_interval));
            if due || !tick.fired.is_empty() {
                tick.enqueued += self.sense(true, now).await?;
            }
        }
        let (batch, blocked) = self.claim(now).await?;
        tick.blocked = blocked;
        if !batch.is_empty() {
            tick.executed = self.execute(batch, stop).await?;
            if self.config.sense_dirty {
                // What the runs wrote made partitions downstream dirty.
                tick.enqueued += self.sense(false, now_micros()).await?;
            }
        }
        Ok(tick)
    }

    async fn requeue_stale(&self, now: i64) -> Result<usize> {
        self.store.expire_dead_local_workers().await?;
        let stale = self.store.requeue_stale(now).await?;
        for run in &stale {
            tracing::warn!(run = %run.key, worker = ?run.worker, "run abandoned by its worker: queued again");
        }
        Ok(stale.len())
    }

    async fn fire_schedules(&self, now: i64) -> Result<Vec<String>> {
        let mut fired = Vec::new();
        for schedule in &self.config.schedules {
            let last = self.store.schedule_last_fire(&schedule.name).await?;
            let Some(seen) = last else {
                // A new store starts counting from now, not from history.
                self.store
                    .claim_fire(&schedule.name, None, schedule.latest_at(now))
                    .await?;
                continue;
            };
            let Some(fire) = schedule.due(seen, now) else {
                continue;
            };
            if !self
                .store
                .claim_fire(&schedule.name, Some(seen), fire)
                .await?
            {
                continue;
            }
            let reason = format!("schedule:{}", schedule.name);
            let runs = self
                .graph
                .new_runs(schedule.partitions(fire), &reason, None, |_| false)?;
            let added = self.enqueue(&runs, now).await?;
            tracing::info!(schedule = %schedule.name, added, "schedule fired");
            fired.push(schedule.name.clone());
        }
        Ok(fired)
    }

    /// Blocks queued runs whose inputs failed, then claims the first ready
    /// run and the ready runs of its level that join it. A run is ready when
    /// no partition it reads is queued or running (outside this claim).
    async fn claim(&self, now: i64) -> Result<(Vec<Run>, usize)> {
        let mut blocked = 0;
        let pending = loop {
            let pending = self.store.pending().await?;
            let broken = self.store.broken().await?;
            let broken_nodes: Vec<(Option<Node>, &Run)> =
                broken.iter().map(|b| (Node::of(&b.key), b)).collect();
            let mut blocked_now = 0;
            for run in pending.iter().filter(|r| r.state == RunState::Queued) {
                let Some(node) = Node::of(&run.key) else {
                    continue;
                };
                let input = broken_nodes
                    .iter()
                    .find(|(b, _)| b.is_some_and(|b| self.graph.node_reads(node, b)));
                if let Some((_, input)) = input {
                    let why = format!(
                        "input {} {}: {}",
                        input.key,
                        input.state.as_str(),
                        input.error.as_deref().unwrap_or("")
                    );
                    if self
                        .store
                        .block(&run.id, why.trim_end_matches(": "), now)
                        .await?
                    {
                        blocked_now += 1;
                    }
                }
            }
            blocked += blocked_now;
            if blocked_now == 0 {
                break pending;
            }
        };
        // Parsed once, and grouped by model: a candidate is compared only
        // with the pending runs of models it reads.
        let nodes: Vec<Option<Node>> = pending.iter().map(|r| Node::of(&r.key)).collect();
        let mut by_model: BTreeMap<Model, Vec<usize>> = BTreeMap::new();
        for (i, node) in nodes.iter().enumerate() {
            if let Some(node) = node {
                by_model.entry(node.model).or_default().push(i);
            }
        }
        let mut candidates: Vec<usize> = (0..pending.len())
            .filter(|&i| pending[i].state == RunState::Queued && pending[i].not_before <= now)
            .filter(|&i| self.lane.claims(&pending[i].key.model))
            .collect();
        // With a focus, its runs come first (a stable sort keeps each group
        // in claim order) and are claimed apart from others' runs.
        let own = |run: &Run| {
            self.focus
                .as_deref()
                .is_none_or(|f| run.backfill_id.as_deref() == Some(f))
        };
        candidates.sort_by_key(|&i| !own(&pending[i]));
        // A retried run goes alone, so one bad partition cannot keep
        // failing the others claimed with it.
        let mut chosen: Vec<usize> = Vec::new();
        for index in candidates {
            let (candidate, Some(node)) = (&pending[index], nodes[index]) else {
                continue;
            };
            if let Some(&first) = chosen.first()
                && (pending[first].attempts > 0
                    || candidate.attempts > 0
                    || candidate.level != pending[first].level
                    || own(&pending[first]) != own(candidate)
                    || chosen.len() >= self.config.max_batch)
            {
                continue;
            }
            let waiting = by_model
                .iter()
                .filter(|(model, _)| self.graph.may_read(node.model, **model))
                .flat_map(|(_, runs)| runs)
                .any(|&i| {
                    i != index
                        && !chosen.contains(&i)
                        && nodes[i].is_some_and(|u| self.graph.node_reads(node, u))
                });
            if !waiting {
                chosen.push(index);
            }
        }
        let ids: Vec<String> = chosen.iter().map(|&i| pending[i].id.clone()).collect();
        let claimed: BTreeSet<String> = self
            .store
            .claim_many(&ids, &self.worker, now, self.config.lease)
            .await?
            .into_iter()
            .collect();
        let mut batch: Vec<Run> = Vec::new();
        let mut kept: Vec<usize> = Vec::new();
        for &i in &chosen {
            if !claimed.contains(&pending[i].id) {
                continue;
            }
            // An input chosen with it went to another worker: wait for it.
            let node = nodes[i].expect("chosen runs have nodes");
            let lost_input = chosen.iter().any(|&j| {
                j != i
                    && !kept.contains(&j)
                    && nodes[j].is_some_and(|u| self.graph.node_reads(node, u))
            });
            if lost_input {
                self.store.release(&pending[i].id, &self.worker).await?;
                continue;
            }
            kept.push(i);
            let mut run = pending[i].clone();
            run.attempts += 1;
            run.state = RunState::Running;
            run.started_at = Some(now);
            batch.push(run);
        }
        Ok((batch, blocked))
    }

    /// Executes claimed runs, renewing their lease meanwhile; records each
    /// one's success, retry or failure. With `stop`, a shutdown gives the
    /// runs back to the queue instead of waiting for them.
    async fn execute(
        &self,
        batch: Vec<Run>,
        stop: Option<&mut watch::Receiver<bool>>,
    ) -> Result<Vec<(RunKey, RunState)>> {
        let keys: Vec<String> = batch.iter().map(|r| r.key.to_string()).collect();
        match keys.as_slice() {
            [one] => tracing::info!(run = %one, worker = %self.worker, "run claimed"),
            [first, .., last] => {
                tracing::info!(runs = keys.len(), %first, %last, worker = %self.worker, "runs claimed")
            }
            [] => {}
        }
        tracing::debug!(runs = ?keys, "claimed");
        let heartbeat = {
            let store = self.store.clone();
            let worker = self.worker.clone();
            let held_before = batch.len();
            let lease = self.config.lease;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match store.heartbeat(&worker, now_micros(), lease).await {
                        Ok(held) if held.len() < held_before => {
                            tracing::warn!(
                                lost = held_before - held.len(),
                                "runs taken over after a lapsed lease"
                            )
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
                    }
                }
            })
        };
        let timeout = batch
            .iter()
            .map(|r| self.config.timeout_of(&r.key.model))
            .max()
            .unwrap_or(self.config.run_timeout);
        let work = tokio::time::timeout(timeout, self.workload.execute(&batch));
        let result = match stop {
            Some(stop) => tokio::select! {
                r = work => Some(r),
                _ = stop.wait_for(|s| *s) => None,
            },
            None => Some(work.await),
        };
        heartbeat.abort();
        let now = now_micros();
        let outcome = match result {
            None => {
                for run in &batch {
                    self.store.release(&run.id, &self.worker).await?;
                }
                return Ok(batch
                    .into_iter()
                    .map(|r| (r.key, RunState::Queued))
                    .collect());
            }
            Some(Ok(Ok(written))) => Ok(written),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(format!("timed out after {}", humanize(timeout))),
        };
        if let Ok(written) = &outcome {
            let rows: Vec<(String, Option<i64>)> = batch
                .iter()
                .map(|r| (r.id.clone(), written.get(&r.key).copied()))
                .collect();
            self.store.succeed(&rows, &self.worker, now).await?;
            let asked: BTreeSet<&RunKey> = batch.iter().map(|r| &r.key).collect();
            let follow_on: Vec<(RunKey, i64, i64)> = written
                .iter()
                .filter(|(key, _)| !asked.contains(key))
                .filter_map(|(key, rows)| {
                    let model = Model::parse(&key.model).ok()?;
                    Some((key.clone(), self.graph.level(model), *rows))
                })
                .collect();
            if !follow_on.is_empty() {
                let started = batch
                    .iter()
                    .filter_map(|r| r.started_at)
                    .min()
                    .unwrap_or(now);
                self.store
                    .record_follow_on(&follow_on, &self.worker, started, now)
                    .await?;
            }
        }
        let mut done = Vec::new();
        for run in batch {
            let state = match &outcome {
                Ok(_) => RunState::Succeeded,
                Err(e) => {
                    let attempts = u32::try_from(run.attempts).unwrap_or(u32::MAX);
                    let retry_at = (run.attempts < run.max_attempts)
                        .then(|| now + micros(self.config.retry_after(attempts)));
                    let message = format!("attempt {} of {}: {e}", run.attempts, run.max_attempts);
                    self.store
                        .fail(&run.id, &self.worker, &message, retry_at, now)
                        .await?;
                    if retry_at.is_some() {
                        tracing::warn!(run = %run.key, error = %e, "run failed; retrying");
                        RunState::Queued
                    } else {
                        tracing::error!(run = %run.key, error = %e, "run failed for good");
                        RunState::Failed
                    }
                }
            };
            done.push((run.key, state));
        }
        Ok(done)
    }

    /// Works until `stop`: ticks, and sleeps a poll interval when idle. The
    /// workload's fast models, if any, are built by a second scheduler of
    /// this process on a lane of their own (`lane`).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<()> {
        tracing::info!(worker = %self.worker, backend = ?self.store.backend(), "scheduler started");
        let fast_lane = self.start_fast_lane(stop.clone()).await?;
        // While the store is unreachable, passes fail; they are retried less
        // often each time (up to a minute) instead of once a poll interval.
        let mut failures = 0u32;
        while !*stop.borrow() {
            let pass = self.pass(now_micros(), Some(&mut stop)).await;
            let wait = self.wait_after(pass, &mut failures, "scheduler pass failed");
            if let Some(wait) = wait {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            }
        }
        if let Some(lane) = fast_lane {
            match lane.await {
                Ok(Err(e)) => tracing::error!(error = %e, "fast lane stopped"),
                Err(e) => tracing::error!(error = %e, "fast lane panicked"),
                Ok(Ok(())) => {}
            }
        }
        Ok(())
    }
}

fn humanize(d: Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
