//! Backfills (and `strata run`) through the run store: their runs are
//! visible to `strata status` and to other schedulers, which may take some
//! of them; an interrupted backfill is resumed by asking for it again.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::error::Result;
use crate::scheduler::{Scheduler, Tick};
use crate::store::{Counts, RunKey, RunState, now_micros};
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
    let store = scheduler.store();
    let now = now_micros();
    let (id, resumed) = store
        .open_backfill(&request.target, &request.from, &request.to, now)
        .await?;
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
    let runs = scheduler.new_runs(keys, &request.reason, Some(id.as_str()), |k| {
        stale_only.contains(k)
    })?;
    scheduler.enqueue(&runs, now).await?;
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
