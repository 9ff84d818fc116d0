//! Builds model partitions in dependency order: one partition (`strata run`),
//! a date range (`strata backfill`), or whatever is dirty. Every partition is
//! replaced in one Delta commit, and the dirty marks are saved after each
//! one, so an interrupted run leaves each partition old or new and a re-run
//! finishes the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::array::RecordBatch;
use futures::StreamExt;
use strata_core::config::{ExperimentsConfig, FunnelConfig};

use crate::bronze_index::{BronzeIndex, Link};
use crate::cdc;
use crate::compare::{canonical_rows, rows_by_partition};
use crate::dates::{Day, format_day};
use crate::error::{Error, Result};
use crate::io::{LakeIo, conform, on_date};
use crate::model::{Affected, Model, downstream, levels};
use crate::models::silver_events::Tail;
use crate::models::{
    activity, dim_users, experiments, funnels, sessions, silver_events, sql_models,
};
pub use crate::plan::{ModelSummary, NoProgress, Outcome, Plan, Progress, Summary};
use crate::state::StateFile;

#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub funnels: Vec<FunnelConfig>,
    pub experiments: ExperimentsConfig,
}

impl BatchConfig {
    /// The batch path's settings of a configuration; registers its captured
    /// tables as models too ([`crate::configure`]), reporting a table that
    /// cannot be one.
    pub fn from_config(config: &strata_core::Config) -> Self {
        if let Err(e) = crate::configure(config) {
            tracing::error!(error = %e, "a CDC table is left out of the batch models");
        }
        Self {
            funnels: config.effective_funnels(),
            experiments: config.experiments.clone(),
        }
    }

    /// The part of the configuration a model's rows depend on: when it
    /// changes, every partition the model built before is stale.
    fn fingerprint(&self, model: Model) -> Option<String> {
        match model {
            Model::FunnelDaily => Some(format!("{:?}", self.funnels)),
            Model::ExperimentEvents => Some(self.experiments.conversion_event.clone()),
            Model::ExperimentResults => Some(format!("{:?}", self.experiments.conversion_window)),
            Model::DimUsers => Some(match cdc::users_table() {
                Ok(Some(id)) => cdc::table(id).qualified(),
                Ok(None) => String::new(),
                Err(e) => e.to_string(),
            }),
            _ => None,
        }
    }
}

pub struct Runner {
    io: LakeIo,
    config: BatchConfig,
    state: StateFile,
    progress: Arc<dyn Progress>,
    parallel: usize,
    summary: Summary,
    /// silver.active_days as loaded by the first activity model of a run.
    activity: Option<Option<Arc<activity::Activity>>>,
    /// silver.events dates whose anonymous events changed person with this
    /// run's identity links: built with the dates asked for.
    relinked: BTreeSet<Day>,
}

impl Runner {
    pub fn new(io: LakeIo, config: BatchConfig, state: StateFile) -> Self {
        Self {
            io,
            config,
            state,
            progress: Arc::new(NoProgress),
            parallel: 2,
            summary: Summary::default(),
            activity: None,
            relinked: BTreeSet::new(),
        }
    }

    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    pub fn with_parallel(mut self, parallel: usize) -> Self {
        self.parallel = parallel.max(1);
        self
    }

    pub fn state(&self) -> &StateFile {
        &self.state
    }

    fn funnel_days(&self) -> i32 {
        funnels::days_after(&self.config.funnels)
    }

    /// Builds the plan in dependency order and returns what was written.
    pub async fn execute(&mut self, mut plan: Plan) -> Result<Summary> {
        let started = Instant::now();
        self.summary = Summary::default();
        self.activity = None;
        self.relinked.clear();
        self.note_config_changes()?;
        if plan.dirty {
            // CDC models keep their position in their own tables, not in
            // dirty marks: stale is having changes they have not taken in.
            plan.whole.extend(cdc::stale_models(&self.io).await?);
        }
        // silver.events needs bronze's index; it also tells which event dates
        // received rows since the last run.
        let mut index = None;
        if plan.dirty || plan.touches(Model::Events) {
            index = Some(self.update_index().await?);
        }
        if plan.whole.remove(&Model::Events) {
            // Every date of silver.events: those it has and those bronze has.
            let mut days = self.io.partitions(Model::Events.table()).await?;
            days.extend(self.state.dirty_days(Model::Events));
            plan.add(Model::Events, days);
        }
        let events_pending = plan.touches(Model::Events)
            || (plan.dirty && !self.state.dirty(Model::Events).is_empty());
        if events_pending {
            // Links come first: they decide every anonymous event's person.
            plan.whole.insert(Model::Identity);
        }
        let planned: usize =
            plan.dates.values().map(BTreeSet::len).sum::<usize>() + plan.whole.len();
        self.progress.planned(planned as u64);

        let mut links: Option<Arc<BTreeMap<String, Link>>> = None;
        for level in levels() {
            // The models of one level read only earlier levels and write
            // their own tables, so they are built side by side: one-date
            // models share the `parallel` slots, whole-table models run as
            // tasks of their own.
            let mut one_date: Vec<(Model, BTreeSet<Day>, bool)> = Vec::new();
            let mut in_order: Vec<(Model, BTreeSet<Day>)> = Vec::new();
            // Dropped on an error above, the set aborts what it still runs.
            let mut wholes = tokio::task::JoinSet::new();
            // Read once per level: the one-date models' span of dates.
            let silver_days = if level.iter().any(|m| m.reads_one_date()) {
                self.io.partitions(Model::Events.table()).await?
            } else {
                BTreeSet::new()
            };
            for model in level {
                let (days, whole, all_dates) = self.planned(&plan, model, &silver_days).await?;
                if days.is_empty() && !whole {
                    continue;
                }
                match model {
                    _ if model.reads_one_date() => one_date.push((model, days, all_dates)),
                    Model::DimUsers
                    | Model::ExperimentResults
                    | Model::CdcState(_)
                    | Model::CdcHistory(_) => {
                        wholes.spawn(build_whole(self.io.clone(), self.config.clone(), model));
                    }
                    _ => in_order.push((model, days)),
                }
            }
            for (model, days) in in_order {
                let model_started = Instant::now();
                match model {
                    Model::Identity => {
                        let index = index.as_ref().ok_or_else(|| {
                            Error::Invalid(
                                "silver.identity is built together with silver.events".into(),
                            )
                        })?;
                        links = Some(Arc::new(self.build_identity(index).await?));
                    }
                    Model::Events => {
                        let index = index.as_ref().expect("index built for silver.events");
                        let links = match &links {
                            Some(l) => l.clone(),
                            None => Arc::new(self.build_identity(index).await?),
                        };
                        self.build_events(index, links, days, plan.dirty).await?;
                    }
                    Model::DailyActiveUsers | Model::Retention => {
                        self.build_from_activity(model, days).await?;
                    }
                    other => unreachable!("{other:?} has no builder"),
                }
                self.summary.models.entry(model.name()).or_default().elapsed +=
                    model_started.elapsed();
            }
            if !one_date.is_empty() {
                self.build_dates(&one_date, &silver_days).await?;
                for (model, _, all_dates) in one_date {
                    if all_dates {
                        self.state.clear_everything(model);
                    }
                }
                self.state.save()?;
            }
            while let Some(joined) = wholes.join_next().await {
                let (model, outcome, elapsed) =
                    joined.map_err(|e| Error::Task(e.to_string()))??;
                self.summary.models.entry(model.name()).or_default().elapsed += elapsed;
                self.record(model, None, outcome)?;
            }
        }
        self.summary.elapsed = started.elapsed();
        self.summary.still_dirty = self.state.all_dirty().len();
        Ok(std::mem::take(&mut self.summary))
    }

    /// Brings bronze's dedup index up to date and marks the event dates of
    /// rows new since the last run dirty.
    async fn update_index(&mut self) -> Result<BronzeIndex> {
        let indexing = Instant::now();
        let mut built =
            BronzeIndex::build(&self.io, self.state.dir(), &self.state.state.bronze_seen).await?;
        tracing::debug!(elapsed = ?indexing.elapsed(), incremental = built.incremental, rows_read = built.rows_read, "bronze index built");
        self.state
            .mark_days(Model::Events, built.new_days.iter().copied());
        self.state.state.bronze_seen = built.ends.clone();
        // The state first: an index saved ahead of it would hide the new
        // rows' dates from a run that resumes after a crash.
        self.state.save()?;
        built.save()?;
        self.summary.bronze_rows_read = built.rows_read;
        Ok(built)
    }

    /// Looks for bronze rows landed since the last run and marks their
    /// event dates dirty, building nothing: the scheduler's late-data sensor.
    /// Returns the bronze rows read.
    pub async fn scan_bronze(&mut self) -> Result<usize> {
        self.summary = Summary::default();
        Ok(self.update_index().await?.rows_read)
    }

    /// What of `model` to build: its dates, whether the whole table, and
    /// whether every date (a dirty mark on all of a one-date model).
    async fn planned(
        &mut self,
        plan: &Plan,
        model: Model,
        silver_days: &BTreeSet<Day>,
    ) -> Result<(BTreeSet<Day>, bool, bool)> {
        let mut days = plan.dates.get(&model).cloned().unwrap_or_default();
        let mut whole = plan.whole.contains(&model);
        if !whole
            && plan.whole_if_stale.contains(&model)
            && (self.state.dirty(model).everything
                || if model.is_cdc() {
                    cdc::stale(&self.io, model).await?
                } else {
                    !self.io.exists(model.table())
                })
        {
            self.progress.planned(1);
            whole = true;
        }
        // A one-date model never built, or stale on every date (its
        // configuration changed, or such a build was interrupted), is built
        // for every silver date whenever it is built at all: whole-table
        // models read all of its dates.
        if model.reads_one_date() && !self.io.exists(model.table()) {
            self.state.mark(model, &Affected::Everything);
            self.state.save()?;
        }
        let dirty = self.state.dirty(model);
        let asked = plan.dirty || !days.is_empty();
        // Asked for whole, a one-date model is built on every date.
        let all_dates =
            model.reads_one_date() && (plan.whole.contains(&model) || (asked && dirty.everything));
        let mut extra = BTreeSet::new();
        if plan.dirty {
            extra.extend(self.state.dirty_days(model));
            whole |= dirty.everything;
        }
        if model == Model::Events && !days.is_empty() {
            // The links just built moved these dates' anonymous events to
            // other persons: a second pass over bronze for them later would
            // cost more than building them now.
            extra.extend(std::mem::take(&mut self.relinked));
        }
        if all_dates {
            extra.extend(silver_days);
            extra.extend(self.io.partitions(model.table()).await?);
        }
        self.progress
            .planned(extra.difference(&days).count() as u64);
        days.extend(extra);
        Ok((days, whole, all_dates))
    }

    /// Marks every partition of a model dirty when the configuration it
    /// was built with has changed since.
    fn note_config_changes(&mut self) -> Result<()> {
        let mut save = false;
        for model in Model::ALL {
            let Some(now) = self.config.fingerprint(model) else {
                continue;
            };
            let before = self
                .state
                .state
                .built_with
                .insert(model.name(), now.clone());
            if before.as_ref().is_some_and(|b| *b != now) {
                tracing::info!(model = %model.name(), "configuration changed: every partition is dirty");
                self.state.mark(model, &Affected::Everything);
            }
            save |= before.as_ref() != Some(&now);
        }
        if save {
            self.state.save()?;
        }
        Ok(())
    }

    fn record(&mut self, model: Model, partition: Option<Day>, outcome: Outcome) -> Result<()> {
        let entry = self.summary.models.entry(model.name()).or_default();
        let label = partition.map(format_day).unwrap_or_else(|| "all".into());
        match outcome {
            Outcome::Written(rows) => {
                entry.partitions += 1;
                entry.rows += rows;
                self.progress.done(&model.name(), &label, rows);
                // A change of links is followed to the exact silver dates it
                // reaches (build_identity); everything else by declaration.
                if model != Model::Identity {
                    for (down, affected) in downstream(model, partition, self.funnel_days()) {
                        self.state.mark(down, &affected);
                    }
                }
            }
            Outcome::Unchanged => {
                entry.unchanged += 1;
                self.progress.done(&model.name(), &label, 0);
            }
        }
        match partition {
            Some(day) => self.state.clear_day(model, day),
            None => self.state.clear_everything(model),
        }
        self.state.save()
    }

    async fn build_identity(&mut self, index: &BronzeIndex) -> Result<BTreeMap<String, Link>> {
        let linking = Instant::now();
        let links = index.links();
        tracing::debug!(elapsed = ?linking.elapsed(), links = links.len(), "identity links read");
        let before = crate::models::identity::read(&self.io).await?;
        let changed = crate::models::identity::persons_changed(&before, &links);
        if before != links || !self.io.exists(Model::Identity.table()) {
            let rows = self
                .io
                .replace_all(
                    Model::Identity.table(),
                    vec![crate::models::identity::batch(&links)?],
                )
                .await?;
            // Retroactive links: anonymous events already in silver change person.
            let days = crate::models::identity::dates_of_anonymous(&self.io, &changed).await?;
            self.relinked.extend(days.iter().copied());
            self.state.mark_days(Model::Events, days);
            self.record(Model::Identity, None, Outcome::Written(rows))?;
        } else {
            self.record(Model::Identity, None, Outcome::Unchanged)?;
        }
        Ok(links)
    }

    fn record_events_write(&mut self, day: Day, rows: usize) -> Result<()> {
        self.record(Model::Events, Some(day), Outcome::Written(rows))
    }

    async fn build_events(
        &mut self,
        index: &BronzeIndex,
        links: Arc<BTreeMap<String, Link>>,
        mut days: BTreeSet<Day>,
        follow_dirty: bool,
    ) -> Result<()> {
        let existing = self.io.partitions(Model::Events.table()).await?;
        let mut tail: Option<(Day, Tail)> = None;
        // Writes run behind the builds, at most this many at a time: a
        // partition's build and write take about the same time, so two in
        // flight keep both cores busy.
        const IN_FLIGHT: usize = 2;
        let mut pending: std::collections::VecDeque<(Day, tokio::task::JoinHandle<Result<usize>>)> =
            std::collections::VecDeque::new();
        while let Some(day) = days.pop_first() {
            let previous_tail = match tail.take() {
                Some((d, t)) if d == day - 1 => t,
                _ => Tail::read(&self.io, day - 1).await?,
            };
            let building = Instant::now();
            let (batch, next_tail) =
                silver_events::build(&self.io, index, links.clone(), day, previous_tail).await?;
            tracing::debug!(day = %format_day(day), elapsed = ?building.elapsed(), rows = batch.num_rows(), "silver.events built");
            // The next date's sessions start from this tail: when it moved and
            // that date is built already but not planned, it is dirty now.
            let next = day + 1;
            if !days.contains(&next) && existing.contains(&next) {
                let old_tail = Tail::read(&self.io, day).await?;
                if old_tail != next_tail {
                    self.state.mark_days(Model::Events, [next]);
                    if follow_dirty {
                        days.insert(next);
                        self.progress.planned(1);
                    }
                }
            }
            while pending.len() >= IN_FLIGHT {
                let (d, handle) = pending.pop_front().expect("pending write");
                let rows = handle.await.map_err(|e| Error::Task(e.to_string()))??;
                self.record_events_write(d, rows)?;
            }
            let io = self.io.clone();
            pending.push_back((
                day,
                tokio::spawn(async move {
                    let writing = Instant::now();
                    let rows = io.replace_partition(Model::Events.table(), day, vec![batch]).await?;
                    tracing::debug!(day = %format_day(day), elapsed = ?writing.elapsed(), "silver.events written");
                    Ok(rows)
                }),
            ));
            tail = Some((day, next_tail));
        }
        while let Some((d, handle)) = pending.pop_front() {
            let rows = handle.await.map_err(|e| Error::Task(e.to_string()))??;
            self.record_events_write(d, rows)?;
        }
        Ok(())
    }

    /// Builds one-date models' partitions, `parallel` at a time across
    /// models and dates.
    async fn build_dates(
        &mut self,
        work: &[(Model, BTreeSet<Day>, bool)],
        silver_days: &BTreeSet<Day>,
    ) -> Result<()> {
        let (first, last) = match (silver_days.first(), silver_days.last()) {
            (Some(f), Some(l)) => (*f, *l),
            _ => (i32::MAX, i32::MIN),
        };
        let tasks: Vec<(Model, Day)> = work
            .iter()
            .flat_map(|(model, days, _)| days.iter().map(move |day| (*model, *day)))
            .collect();
        let io = self.io.clone();
        let config = self.config.clone();
        let mut results = futures::stream::iter(tasks.into_iter().map(|(model, day)| {
            let io = io.clone();
            let config = config.clone();
            async move {
                let started = Instant::now();
                let batches: Vec<RecordBatch> = match model {
                    Model::ActiveDays => {
                        sql_models::run(&io, sql_models::ACTIVE_DAYS_SQL, day).await?
                    }
                    Model::HourlyEvents => {
                        sql_models::run(&io, sql_models::HOURLY_EVENTS_SQL, day).await?
                    }
                    Model::Sessions => vec![sessions::build(&io, day).await?],
                    // Funnel rows, zeros included, for the dates silver covers.
                    Model::FunnelDaily if day >= first && day <= last => {
                        vec![funnels::build(&io, &config.funnels, day).await?]
                    }
                    Model::FunnelDaily => Vec::new(),
                    Model::Identifies => {
                        sql_models::run(&io, sql_models::IDENTIFIES_SQL, day).await?
                    }
                    Model::ExperimentEvents => {
                        vec![experiments::extract(&io, &config.experiments, day).await?]
                    }
                    other => unreachable!("{other:?} is not a one-date model"),
                };
                let outcome = replace_if_changed(&io, model, Some(day), batches).await?;
                Ok::<_, Error>((model, day, outcome, started.elapsed()))
            }
        }))
        .buffer_unordered(self.parallel);
        while let Some(result) = results.next().await {
            let (model, day, outcome, elapsed) = result?;
            self.summary.models.entry(model.name()).or_default().elapsed += elapsed;
            self.record(model, Some(day), outcome)?;
        }
        Ok(())
    }

    /// DAU/WAU/MAU and retention are computed for every date at once (a few
    /// rows per person); only partitions asked for or whose rows changed are
    /// written.
    async fn build_from_activity(&mut self, model: Model, days: BTreeSet<Day>) -> Result<()> {
        // Both models read the same active days, which the run has finished
        // building before either (dependency order): load them once.
        if self.activity.is_none() {
            self.activity = Some(activity::Activity::load(&self.io).await?.map(Arc::new));
        }
        let computed = match self.activity.clone().flatten() {
            Some(activity) => match model {
                Model::DailyActiveUsers => activity.daily_active_users()?,
                _ => activity.retention()?,
            },
            None => BTreeMap::new(),
        };
        let stored = rows_by_partition(&self.io, model.table()).await?;
        let mut write: BTreeSet<Day> = BTreeSet::new();
        for (day, batch) in &computed {
            if stored.get(day) != Some(&canonical_rows(std::slice::from_ref(batch))?) {
                write.insert(*day);
            }
        }
        // Partitions that no longer have rows (silver shrank) are emptied.
        write.extend(stored.keys().filter(|d| !computed.contains_key(d)));
        for &day in days.difference(&write) {
            self.record(model, Some(day), Outcome::Unchanged)?;
        }
        for day in write {
            let batches: Vec<RecordBatch> = computed.get(&day).cloned().into_iter().collect();
            let rows = self
                .io
                .replace_partition(model.table(), day, batches)
                .await?;
            self.record(model, Some(day), Outcome::Written(rows))?;
        }
        self.state.clear_everything(model);
        self.state.save()
    }
}

/// Builds and stores a whole-table model; returns what became of it and
/// how long it took.
async fn build_whole(
    io: LakeIo,
    config: BatchConfig,
    model: Model,
) -> Result<(Model, Outcome, Duration)> {
    let started = Instant::now();
    let batch = match model {
        Model::DimUsers => dim_users::build(&io).await?,
        Model::ExperimentResults => experiments::build(&io, &config.experiments).await?,
        Model::CdcState(_) | Model::CdcHistory(_) => {
            let outcome = cdc::build(&io, model).await?;
            return Ok((model, outcome, started.elapsed()));
        }
        other => unreachable!("{other:?} is not a whole-table model"),
    };
    let outcome = replace_if_changed(&io, model, None, vec![batch]).await?;
    Ok((model, outcome, started.elapsed()))
}

/// Replaces a partition (or, with `day` None, an unpartitioned table)
/// unless it already holds exactly these rows: a rebuild that changes
/// nothing rewrites nothing and dirties nothing.
async fn replace_if_changed(
    io: &LakeIo,
    model: Model,
    day: Option<Day>,
    batches: Vec<RecordBatch>,
) -> Result<Outcome> {
    let def = model.table();
    let batches = conform(def, batches)?;
    if io.exists(def) {
        let filter = day.map(|day| on_date(def.partition_by[0], day));
        let stored = io.scan(def, &[], filter).await?;
        if canonical_rows(&stored)? == canonical_rows(&batches)? {
            return Ok(Outcome::Unchanged);
        }
    }
    let rows = match day {
        Some(day) => io.replace_partition(def, day, batches).await?,
        None => io.replace_all(def, batches).await?,
    };
    Ok(Outcome::Written(rows))
}
