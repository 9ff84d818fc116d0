//! A run: one partition of one model, its state, attempts, lease and error.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Waiting for its inputs, its retry time or a free worker.
    Queued,
    Running,
    Succeeded,
    /// Out of attempts; the error says why.
    Failed,
    /// Not run because an input partition failed.
    Blocked,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Blocked => "blocked",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "queued" => RunState::Queued,
            "running" => RunState::Running,
            "succeeded" => RunState::Succeeded,
            "failed" => RunState::Failed,
            "blocked" => RunState::Blocked,
            other => return Err(Error::Invalid(format!("unknown run state {other:?}"))),
        })
    }

    pub fn is_pending(self) -> bool {
        matches!(self, RunState::Queued | RunState::Running)
    }
}

/// The partition key of a whole-table run (or of every date of a daily model).
pub const ALL: &str = "all";

/// One partition of one model: `partition` is a `YYYY-MM-DD` date or `all`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct RunKey {
    pub model: String,
    pub partition: String,
}

impl RunKey {
    pub fn new(model: impl Into<String>, partition: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            partition: partition.into(),
        }
    }
}

impl std::fmt::Display for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.model, self.partition)
    }
}

#[derive(Debug, Clone)]
pub struct NewRun {
    pub key: RunKey,
    /// Dependency depth of the model: claims go in this order.
    pub level: i64,
    /// Why it was asked for: `dirty`, `schedule:daily`, `backfill`, `manual`.
    pub reason: String,
    pub backfill_id: Option<String>,
    /// A whole-table model in a date-range backfill: built only when what it
    /// reads changed or it was never built.
    pub if_stale: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    pub id: String,
    #[serde(flatten)]
    pub key: RunKey,
    pub level: i64,
    pub state: RunState,
    pub reason: String,
    pub backfill_id: Option<String>,
    pub if_stale: bool,
    pub attempts: i64,
    pub max_attempts: i64,
    pub not_before: i64,
    pub enqueued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub lease_until: Option<i64>,
    pub worker: Option<String>,
    pub rows_written: Option<i64>,
    pub error: Option<String>,
}

pub(crate) const RUN_COLUMNS: &str = "id, model, partition_key, level, state, reason, backfill_id, if_stale, \
     attempts, max_attempts, not_before, enqueued_at, started_at, finished_at, lease_until, \
     worker, rows_written, error";

pub(crate) fn run_of(row: &AnyRow) -> Result<Run> {
    Ok(Run {
        id: row.try_get("id")?,
        key: RunKey::new(
            row.try_get::<String, _>("model")?,
            row.try_get::<String, _>("partition_key")?,
        ),
        level: row.try_get("level")?,
        state: RunState::parse(&row.try_get::<String, _>("state")?)?,
        reason: row.try_get("reason")?,
        backfill_id: row.try_get("backfill_id")?,
        if_stale: row.try_get::<i64, _>("if_stale")? != 0,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        not_before: row.try_get("not_before")?,
        enqueued_at: row.try_get("enqueued_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        lease_until: row.try_get("lease_until")?,
        worker: row.try_get("worker")?,
        rows_written: row.try_get("rows_written")?,
        error: row.try_get("error")?,
    })
}

/// Runs (a backfill's, or a model's newest per partition) by state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub blocked: i64,
}

impl Counts {
    /// Adds `n` runs in `state`.
    pub fn add(&mut self, state: RunState, n: i64) {
        match state {
            RunState::Queued => self.queued += n,
            RunState::Running => self.running += n,
            RunState::Succeeded => self.succeeded += n,
            RunState::Failed => self.failed += n,
            RunState::Blocked => self.blocked += n,
        }
    }

    /// Adds another set of counts, state by state.
    pub fn add_all(&mut self, other: &Counts) {
        self.queued += other.queued;
        self.running += other.running;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.blocked += other.blocked;
    }

    pub fn total(&self) -> i64 {
        self.queued + self.running + self.succeeded + self.failed + self.blocked
    }

    pub fn done(&self) -> i64 {
        self.succeeded + self.failed + self.blocked
    }
}
