//! The operator contract: every stage of the pipeline takes batches of
//! events, may react when the watermark advances, and saves and restores its
//! state at checkpoint barriers, so a new realtime metric is one more
//! operator after dedup.

use futures::future::BoxFuture;
use serde_json::Value;
use strata_log::LogEntry;

use crate::checkpoint::CheckpointDir;
use crate::error::Result;

pub const MINUTE_MICROS: i64 = 60_000_000;

/// One event as it flows through the operators, borrowed from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// `event_id` as 128 bits (see [`crate::operators::dedup::id_key`]).
    pub id: u128,
    pub name: &'a str,
    /// Who is counted in `users`: the anonymous (device) id, else the user id.
    pub person: &'a str,
    pub event_ts: i64,
    pub received_at: i64,
}

impl Event<'_> {
    pub fn minute(&self) -> i64 {
        self.event_ts.div_euclid(MINUTE_MICROS) * MINUTE_MICROS
    }
}

/// What one poll of the log produced, and the events parsed from it; each
/// operator filters or consumes `events` in place.
pub struct Batch<'a> {
    pub records: &'a [LogEntry],
    pub events: Vec<Event<'a>>,
}

/// What operators share while a batch or a barrier passes through.
#[derive(Debug, Default)]
pub struct Context {
    /// Wall clock, microseconds since the epoch.
    pub now: i64,
    /// Event-time watermark; `None` until the first event.
    pub watermark: Option<i64>,
    /// Rows the window operator emits at a barrier for the sink.
    pub emitted: Option<Emitted>,
}

/// Minute rows to upsert: every row at or after `from`, whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub from: i64,
    pub rows: Vec<MinuteRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MinuteRow {
    pub minute: i64,
    pub event_name: String,
    pub events: u64,
    pub users: u64,
}

/// A checkpoint in progress: its number and the log positions it covers.
#[derive(Debug, Clone)]
pub struct Barrier {
    pub epoch: u64,
    pub positions: Vec<u64>,
}

pub trait Operator: Send {
    /// Key of this operator's state in the checkpoint.
    fn name(&self) -> &'static str;

    fn process(&mut self, batch: &mut Batch<'_>, ctx: &mut Context) -> Result<()>;

    /// Called after a batch when the watermark moved forward.
    fn on_watermark(&mut self, _ctx: &mut Context) -> Result<()> {
        Ok(())
    }

    /// At a barrier: the state to save with the barrier's positions. Files
    /// the operator writes into `dir` must be new names (the previous
    /// checkpoint still refers to the old ones until this one commits).
    fn snapshot<'a>(
        &'a mut self,
        ctx: &'a mut Context,
        barrier: &'a Barrier,
        dir: &'a CheckpointDir,
    ) -> BoxFuture<'a, Result<Value>>;

    /// The checkpoint holding the last snapshot is durable.
    fn committed(&mut self, _barrier: &Barrier) {}

    fn restore(&mut self, state: &Value, dir: &CheckpointDir) -> Result<()>;

    /// Files in the checkpoint directory the last snapshot refers to; the
    /// others are deleted once a checkpoint commits.
    fn files(&self) -> Vec<String> {
        Vec::new()
    }

    /// Approximate bytes of state held in memory.
    fn state_bytes(&self) -> usize {
        0
    }
}
