//! What `strata status` prints and `GET /api/runs` answers: per model and
//! partition the last success, what is running, what failed and why, what
//! is blocked, when each model next runs, and how fresh each table is.

use std::collections::BTreeMap;

use serde::Serialize;
use strata_batch::Model;
use strata_batch::dates::format_micros;

use crate::dag::Graph;
use crate::error::Result;
use crate::schedule::Schedule;
use crate::store::{Counts, Run, RunState, RunStore, micros};

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub partition: String,
    /// The state of its newest run.
    pub state: RunState,
    pub attempts: i64,
    pub reason: String,
    pub worker: Option<String>,
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The next attempt of a queued run (retries wait their backoff).
    pub not_before: Option<String>,
    pub last_success_at: Option<String>,
    pub rows_written: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub model: String,
    pub level: i64,
    /// Partitions by the state of their newest run.
    pub partitions_by_state: Counts,
    /// When a run of this model last succeeded: its table is that fresh.
    pub last_success_at: Option<String>,
    pub freshness_seconds: Option<i64>,
    /// The newest partition built successfully.
    pub newest_partition: Option<String>,
    /// The next scheduled run (schedule time plus straggler delay).
    pub next_scheduled_at: Option<String>,
    /// Partitions whose newest run is not a success, then the newest others.
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub store: String,
    /// Workers (schedulers, backfills) heard from in the last minute.
    pub live_workers: Vec<String>,
    pub models: Vec<ModelStatus>,
}

/// Partitions listed per model: every one not succeeded, then successes up
/// to this many.
const RECENT_SUCCESSES: usize = 7;

/// The report under a config's schedules and funnels, as of now.
pub async fn report_for(config: &strata_core::Config, store: &RunStore) -> Result<Report> {
    let funnel_days = crate::dag::funnel_days(config);
    let schedules =
        crate::SchedulerConfig::from_config(&config.orchestrator, funnel_days)?.schedules;
    report(
        store,
        &schedules,
        &Graph::new(funnel_days),
        crate::store::now_micros(),
    )
    .await
}

pub async fn report(
    store: &RunStore,
    schedules: &[Schedule],
    graph: &Graph,
    now: i64,
) -> Result<Report> {
    let latest = store.latest().await?;
    let successes: BTreeMap<(String, String), Run> = store
        .last_successes()
        .await?
        .into_iter()
        .map(|r| ((r.key.model.clone(), r.key.partition.clone()), r))
        .collect();
    let mut next: BTreeMap<String, i64> = BTreeMap::new();
    for schedule in schedules {
        let last = store
            .schedule_last_fire(&schedule.name)
            .await?
            .unwrap_or_else(|| schedule.latest_at(now));
        if let Some(at) = schedule.next_run(last) {
            for model in &schedule.models {
                let entry = next.entry(model.name()).or_insert(at);
                *entry = (*entry).min(at);
            }
        }
    }
    let mut by_model: BTreeMap<String, Vec<&Run>> = BTreeMap::new();
    for run in &latest {
        by_model.entry(run.key.model.clone()).or_default().push(run);
    }
    let mut models = Vec::new();
    // silver.identity is built with silver.events, never as a run of its own.
    for model in Model::ALL.into_iter().filter(|m| *m != Model::Identity) {
        let name = model.name();
        let runs = by_model.remove(&name).unwrap_or_default();
        let mut counts = Counts::default();
        for run in &runs {
            counts.add(run.state, 1);
        }
        let own_successes: Vec<&Run> = successes.values().filter(|r| r.key.model == name).collect();
        let last_success = own_successes.iter().filter_map(|r| r.finished_at).max();
        let newest_partition = own_successes.iter().map(|r| r.key.partition.clone()).max();
        let mut listed: Vec<&Run> = runs
            .iter()
            .copied()
            .filter(|r| r.state != RunState::Succeeded)
            .collect();
        let mut done: Vec<&Run> = runs
            .iter()
            .copied()
            .filter(|r| r.state == RunState::Succeeded)
            .collect();
        done.sort_by(|a, b| b.key.partition.cmp(&a.key.partition));
        listed.extend(done.into_iter().take(RECENT_SUCCESSES));
        let partitions = listed
            .into_iter()
            .map(|r| PartitionStatus {
                partition: r.key.partition.clone(),
                state: r.state,
                attempts: r.attempts,
                reason: r.reason.clone(),
                worker: r.worker.clone(),
                error: r.error.clone(),
                started_at: r.started_at.map(format_micros),
                finished_at: r.finished_at.map(format_micros),
                not_before: (r.state == RunState::Queued).then(|| format_micros(r.not_before)),
                last_success_at: successes
                    .get(&(r.key.model.clone(), r.key.partition.clone()))
                    .and_then(|s| s.finished_at)
                    .map(format_micros),
                rows_written: r.rows_written,
            })
            .collect();
        models.push(ModelStatus {
            level: graph.level(model),
            partitions_by_state: counts,
            last_success_at: last_success.map(format_micros),
            freshness_seconds: last_success.map(|t| (now - t) / 1_000_000),
            newest_partition,
            next_scheduled_at: next.get(&name).copied().map(format_micros),
            partitions,
            model: name,
        });
    }
    Ok(Report {
        generated_at: format_micros(now),
        store: match store.backend() {
            crate::store::Backend::Sqlite => "sqlite".into(),
            crate::store::Backend::Postgres => "postgres".into(),
        },
        live_workers: store
            .live_workers(now - micros(std::time::Duration::from_secs(60)))
            .await?,
        models,
    })
}
