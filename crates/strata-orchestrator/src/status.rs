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
use crate::store::{Counts, Listing, RunState, RunStore, micros};

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
    /// The `offset` of the next page of partitions; `None` on the last.
    pub next: Option<u64>,
}

/// Partitions listed per model: every one not succeeded, then successes up
/// to this many.
pub const RECENT_SUCCESSES: u64 = 7;

/// What `strata status` lists: every partition not succeeded, then the
/// newest successes, of every model.
pub fn everything() -> Listing {
    Listing {
        successes: RECENT_SUCCESSES,
        ..Listing::default()
    }
}

/// The report under a config's schedules and funnels, as of now.
pub async fn report_for(config: &strata_core::Config, store: &RunStore) -> Result<Report> {
    page_for(config, store, &everything()).await
}

/// As [`report_for`], with the partitions `listing` asks for.
pub async fn page_for(
    config: &strata_core::Config,
    store: &RunStore,
    listing: &Listing,
) -> Result<Report> {
    let funnel_days = crate::dag::funnel_days(config);
    let schedules =
        crate::SchedulerConfig::from_config(&config.orchestrator, funnel_days)?.schedules;
    report(
        store,
        &schedules,
        &Graph::new(funnel_days),
        crate::store::now_micros(),
        listing,
    )
    .await
}

/// Counts and freshness come from aggregates in the store, and only the
/// partitions listed are read.
pub async fn report(
    store: &RunStore,
    schedules: &[Schedule],
    graph: &Graph,
    now: i64,
    listing: &Listing,
) -> Result<Report> {
    let mut counts = store.latest_counts().await?;
    let mut successes = store.successes().await?;
    // One more than asked for says whether a next page exists.
    let mut asked = listing.clone();
    asked.limit = listing.limit.map(|n| n.saturating_add(1));
    let mut listed = store.listing(&asked).await?;
    let next = match listing.limit {
        Some(limit) if listed.len() as u64 > limit => {
            listed.truncate(limit as usize);
            Some(listing.offset + limit)
        }
        _ => None,
    };
    let mut next_run: BTreeMap<String, i64> = BTreeMap::new();
    for schedule in schedules {
        let last = store
            .schedule_last_fire(&schedule.name)
            .await?
            .unwrap_or_else(|| schedule.latest_at(now));
        if let Some(at) = schedule.next_run(last) {
            for model in &schedule.models {
                let entry = next_run.entry(model.name()).or_insert(at);
                *entry = (*entry).min(at);
            }
        }
    }
    let mut by_model: BTreeMap<String, Vec<PartitionStatus>> = BTreeMap::new();
    for (r, last_success) in listed {
        by_model
            .entry(r.key.model.clone())
            .or_default()
            .push(PartitionStatus {
                not_before: (r.state == RunState::Queued).then(|| format_micros(r.not_before)),
                partition: r.key.partition,
                state: r.state,
                attempts: r.attempts,
                reason: r.reason,
                worker: r.worker,
                error: r.error,
                started_at: r.started_at.map(format_micros),
                finished_at: r.finished_at.map(format_micros),
                last_success_at: last_success.map(format_micros),
                rows_written: r.rows_written,
            });
    }
    let mut models = Vec::new();
    // silver.identity is built with silver.events, never as a run of its own.
    for model in Model::all().into_iter().filter(|m| *m != Model::Identity) {
        let name = model.name();
        let done = successes.remove(&name).unwrap_or_default();
        models.push(ModelStatus {
            level: graph.level(model),
            partitions_by_state: counts.remove(&name).unwrap_or_default(),
            last_success_at: done.last_finished_at.map(format_micros),
            freshness_seconds: done.last_finished_at.map(|t| (now - t) / 1_000_000),
            newest_partition: done.newest_partition,
            next_scheduled_at: next_run.get(&name).copied().map(format_micros),
            partitions: by_model.remove(&name).unwrap_or_default(),
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
        next,
    })
}
