//! Backfills (and `strata run`) through the run store: their runs are
//! visible to `strata status` and to other schedulers, which may take some
//! of them; an interrupted backfill is resumed by asking for it again.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::NaiveDate;
use strata_batch::Model;
use strata_batch::dates::{day_of, format_day};

use crate::dag::Graph;
use crate::error::{Error, Result};
use crate::scheduler::{Scheduler, Tick};
use crate::store::{ALL, Counts, RunKey, RunState, RunStore, now_micros};
use crate::workload::Workload;

/// A range of partitions asked for by hand.
#[derive(Debug, Clone)]
pub struct Request {
    /// What was asked for: `all`, a model name, or `run <model>`.
    pub target: String,
    pub from: String,
    pub to: String,
    /// The partitions, and for each whether it is built only when stale.
    pub partitions: Vec<(RunKey, bool)>,
    pub reason: String,
}

impl Request {
    /// What `strata backfill TARGET --from --to` builds: `TARGET` is `all`
    /// or a model name. With `all`, whole-table models come along only when
    /// what they read changed; asked for by name, one is rebuilt.
    pub fn backfill(target: &str, from: NaiveDate, to: NaiveDate) -> Result<Request> {
        if from > to {
            return Err(Error::Invalid(format!("from {from} is after to {to}")));
        }
        let dates: Vec<String> = from
            .iter_days()
            .take_while(|d| *d <= to)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .collect();
        let models: Vec<(Model, bool)> = if target == "all" {
            Model::all()
                .into_iter()
                .filter(|m| *m != Model::Identity)
                .map(|m| (m, !m.is_daily()))
                .collect()
        } else {
            vec![(Model::parse(target)?, false)]
        };
        let mut partitions = Vec::new();
        for (model, if_stale) in models {
            if model.is_daily() {
                partitions.extend(dates.iter().map(|d| (RunKey::new(model.name(), d), false)));
            } else {
                partitions.push((RunKey::new(model.name(), ALL), if_stale));
            }
        }
        Ok(Request {
            target: target.to_owned(),
            from: from.to_string(),
            to: to.to_string(),
            partitions,
            reason: "backfill".into(),
        })
    }

    /// One partition, as `strata run MODEL [--date D]` asks for it: a daily
    /// model needs the date, a whole-table model ignores it.
    pub fn run(model: &str, date: Option<NaiveDate>) -> Result<Request> {
        let model = Model::parse(model)?;
        let key = match (model.is_daily(), date) {
            (true, Some(date)) => RunKey::new(model.name(), format_day(day_of(date))),
            (true, None) => {
                return Err(Error::Invalid(format!(
                    "{} is partitioned by date: give the date (YYYY-MM-DD)",
                    model.name()
                )));
            }
            (false, _) => RunKey::new(model.name(), ALL),
        };
        Ok(Request {
            target: format!("run {}", key.model),
            from: key.partition.clone(),
            to: key.partition.clone(),
            partitions: vec![(key, false)],
            reason: "manual".into(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Started {
    pub id: String,
    /// An unfinished backfill of the same request was taken up again.
    pub resumed: bool,
    pub runs: usize,
}

/// Opens the request's backfill, or resumes the unfinished one: partitions
/// that already have a run in it are not queued again, and its failed or
/// blocked runs get a fresh set of attempts.
pub async fn start<W: Workload>(scheduler: &Scheduler<W>, request: &Request) -> Result<Started> {
    queue(
        scheduler.store(),
        scheduler.graph(),
        scheduler.config.max_attempts,
        request,
    )
    .await
}

/// `start` without a scheduler of this process's own: the runs wait in the
/// store for whichever scheduler claims them (`POST /api/backfill`).
pub async fn queue(
    store: &RunStore,
    graph: &Graph,
    max_attempts: u32,
    request: &Request,
) -> Result<Started> {
    let now = now_micros();
    let (mut id, mut resumed) = store
        .open_backfill(&request.target, &request.from, &request.to, now)
        .await?;
    if resumed {
        // Built to the end by schedulers that do not close backfills: this
        // is a new request, not a resumption.
        let counts = store.backfill_counts(&id).await?;
        if counts.total() > 0 && counts.succeeded == counts.total() {
            store.finish_backfill(&id, now).await?;
            (id, resumed) = store
                .open_backfill(&request.target, &request.from, &request.to, now)
                .await?;
        }
    }
    let existing: BTreeSet<RunKey> = if resumed {
        store.retry_backfill(&id, now).await?;
        store
            .runs_of_backfill(&id)
            .await?
            .into_iter()
            .map(|r| r.key)
            .collect()
    } else {
        BTreeSet::new()
    };
    let stale_only: BTreeSet<&RunKey> = request
        .partitions
        .iter()
        .filter(|(_, s)| *s)
        .map(|(k, _)| k)
        .collect();
    let keys = request
        .partitions
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| !existing.contains(k));
    let runs = graph.new_runs(keys, &request.reason, Some(id.as_str()), |k| {
        stale_only.contains(k)
    })?;
    store.enqueue(&runs, i64::from(max_attempts), now).await?;
    let runs = store.backfill_counts(&id).await?.total() as usize;
    Ok(Started { id, resumed, runs })
}

/// Works until every run of the backfill is done (this worker claims its
/// runs first, and what they wait for), reporting the counts as they move.
/// The backfill is closed when all its runs succeeded; otherwise asking for
/// it again retries what failed.
pub async fn work<W: Workload>(
    scheduler: &mut Scheduler<W>,
    backfill: &str,
    poll: Duration,
    mut progress: impl FnMut(&Counts, &Tick),
) -> Result<Counts> {
    scheduler.focus_on(Some(backfill.to_owned()));
    let mut tick = Tick::default();
    loop {
        let counts = scheduler.store().backfill_counts(backfill).await?;
        progress(&counts, &tick);
        if counts.queued + counts.running == 0 {
            if counts.succeeded == counts.total() {
                scheduler
                    .store()
                    .finish_backfill(backfill, now_micros())
                    .await?;
            }
            scheduler.focus_on(None);
            return Ok(counts);
        }
        tick = scheduler.tick(now_micros()).await?;
        let executed_own = tick
            .executed
            .iter()
            .any(|(_, state)| *state != RunState::Queued);
        if !executed_own {
            tokio::time::sleep(poll).await;
        }
    }
}
