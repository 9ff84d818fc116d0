//! Decodes log records into events and generates the watermark: per
//! partition, the newest event time seen minus the out-of-orderness bound;
//! the stream's watermark is the smallest over partitions that are still
//! receiving records, so an idle partition never holds it back.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strata_core::codec::decode_view;

use super::dedup::id_key;
use crate::checkpoint::CheckpointDir;
use crate::error::{Error, Result};
use crate::operator::{Barrier, Batch, Context, Event, Operator};

pub struct Parse {
    bound: i64,
    idle_after: i64,
    state: ParseState,
    /// Wall clock of each partition's last record; not checkpointed: after
    /// a restart every partition counts as active until it proves idle.
    last_record_at: Vec<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ParseState {
    /// Newest event time seen per partition (capped at `received_at`, so a
    /// client clock in the future cannot close everyone's windows).
    newest: Vec<Option<i64>>,
    watermark: Option<i64>,
    undecodable: u64,
}

impl Parse {
    pub fn new(partitions: u32, out_of_orderness_micros: i64, idle_after_micros: i64) -> Self {
        Self {
            bound: out_of_orderness_micros,
            idle_after: idle_after_micros,
            state: ParseState {
                newest: vec![None; partitions as usize],
                ..ParseState::default()
            },
            last_record_at: vec![i64::MIN; partitions as usize],
        }
    }

    pub fn watermark(&self) -> Option<i64> {
        self.state.watermark
    }

    /// Recomputes the watermark at wall-clock `now`; it never goes back.
    pub fn advance(&mut self, now: i64) -> Option<i64> {
        let mut active = None::<i64>;
        let mut all = None::<i64>;
        for (p, newest) in self.state.newest.iter().enumerate() {
            let Some(newest) = *newest else { continue };
            all = Some(all.map_or(newest, |a| a.max(newest)));
            if now.saturating_sub(self.last_record_at[p]) < self.idle_after {
                active = Some(active.map_or(newest, |a| a.min(newest)));
            }
        }
        // With every partition idle, none is behind: the newest time rules.
        let candidate = active.or(all).map(|t| t.saturating_sub(self.bound));
        if let Some(c) = candidate
            && self.state.watermark.is_none_or(|w| c > w)
        {
            self.state.watermark = Some(c);
        }
        self.state.watermark
    }
}

impl Operator for Parse {
    fn name(&self) -> &'static str {
        "parse"
    }

    fn process(&mut self, batch: &mut Batch<'_>, ctx: &mut Context) -> Result<()> {
        let records = batch.records;
        batch.events.reserve(records.len());
        for record in records {
            let view = match decode_view(&record.payload) {
                Ok(Some(view)) => view,
                // Rejected input: bronze.quarantine keeps it.
                Ok(None) => continue,
                Err(e) => {
                    self.state.undecodable += 1;
                    metrics::counter!("strata_stream_undecodable_records_total").increment(1);
                    tracing::warn!(partition = record.partition, offset = record.offset, error = %e,
                        "stream processor skipped an undecodable log record");
                    continue;
                }
            };
            let p = record.partition as usize;
            let time = view.event_ts.min(view.received_at);
            if let Some(slot) = self.state.newest.get_mut(p) {
                *slot = Some(slot.map_or(time, |t| t.max(time)));
                self.last_record_at[p] = ctx.now;
            }
            batch.events.push(Event {
                id: id_key(view.event_id),
                name: view.event_name,
                person: view.anonymous_id.or(view.user_id).unwrap_or(""),
                event_ts: view.event_ts,
                received_at: view.received_at,
            });
        }
        Ok(())
    }

    fn snapshot<'a>(
        &'a mut self,
        _ctx: &'a mut Context,
        _barrier: &'a Barrier,
        dir: &'a CheckpointDir,
    ) -> BoxFuture<'a, Result<Value>> {
        let state = serde_json::to_value(&self.state).map_err(|e| Error::checkpoint(dir.root(), e));
        Box::pin(async move { state })
    }

    fn restore(&mut self, state: &Value, dir: &CheckpointDir) -> Result<()> {
        let mut restored: ParseState = serde_json::from_value(state.clone())
            .map_err(|e| Error::checkpoint(dir.root(), format!("parse state: {e}")))?;
        restored.newest.resize(self.state.newest.len(), None);
        self.state = restored;
        Ok(())
    }
}
