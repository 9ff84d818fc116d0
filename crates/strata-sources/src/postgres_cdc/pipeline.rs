//! The way out of a CDC source: records batched into an outbox and sent to
//! the log durably, the table definitions emitted once per change of shape,
//! and the counters that say how much went through.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use strata_core::event::{ChangeOp, ChangePosition, ChangeRecord, LogRecord, RelationRecord};

use super::values::Shape;
use crate::Result;
use crate::producer::{Outbox, Producer};

/// An outbox is sent once it holds this many records ...
const MAX_RECORDS: usize = 5_000;
/// ... or this many encoded bytes ...
const MAX_BYTES: usize = 4 << 20;
/// ... or its oldest record has waited this long.
pub(super) const MAX_WAIT: Duration = Duration::from_millis(100);

pub(super) struct Pipeline {
    source: String,
    producer: Producer,
    outbox: Outbox,
    oldest: Option<Instant>,
    /// Changes per op in the outbox, counted once they are durable.
    pending: [u64; ChangeOp::ALL.len()],
    /// The position of the last change handed to the outbox: bronze holding
    /// it means bronze holds everything this run has read.
    pub last_sent: Option<ChangePosition>,
    /// The latest change of the open transaction, kept back until the next
    /// one or the commit shows whether it is the transaction's last.
    held: Option<ChangeRecord>,
    /// Per table, the columns this run last wrote a definition of.
    emitted: HashMap<(String, String), Vec<strata_core::event::RelationColumn>>,
}

impl Pipeline {
    pub fn new(source: &str, producer: Producer) -> Self {
        let outbox = producer.outbox();
        Self {
            source: source.to_string(),
            producer,
            outbox,
            oldest: None,
            pending: [0; ChangeOp::ALL.len()],
            last_sent: None,
            held: None,
            emitted: HashMap::new(),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Adds a change of the open transaction (or snapshot).
    pub fn push_change(&mut self, change: ChangeRecord) {
        if let Some(previous) = self.held.replace(change) {
            self.send_change(previous);
        }
    }

    /// The open transaction (or snapshot) committed: its last change goes
    /// out marked as the end, so readers know the transaction is whole.
    pub fn end_transaction(&mut self) {
        if let Some(mut last) = self.held.take() {
            last.tx_end = true;
            self.send_change(last);
        }
    }

    /// Drops the change kept back from a transaction that will not commit
    /// on this connection: PostgreSQL sends the transaction again.
    pub fn abandon_transaction(&mut self) {
        self.held = None;
    }

    fn send_change(&mut self, change: ChangeRecord) {
        let position = change.position();
        if let Some(i) = ChangeOp::ALL.iter().position(|op| *op == change.op) {
            self.pending[i] += 1;
        }
        // The source's name keys every record: one partition, in order.
        self.outbox.push(&self.source, &LogRecord::Change(change));
        self.oldest.get_or_insert_with(Instant::now);
        self.last_sent = Some(self.last_sent.map_or(position, |p| p.max(position)));
    }

    /// Writes the table's definition unless this run last wrote the same.
    pub fn push_relation(&mut self, shape: &Shape, lsn: u64) {
        let columns = shape.relation_columns();
        let id = (shape.schema.clone(), shape.name.clone());
        if self.emitted.get(&id) == Some(&columns) {
            return;
        }
        self.emitted.insert(id, columns.clone());
        let record = RelationRecord {
            source: self.source.clone(),
            table_schema: shape.schema.clone(),
            table_name: shape.name.clone(),
            lsn,
            columns,
            received_at: now_micros(),
        };
        self.outbox.push(&self.source, &LogRecord::Relation(record));
        self.oldest.get_or_insert_with(Instant::now);
    }

    /// A new snapshot writes every definition again.
    pub fn forget_relations(&mut self) {
        self.emitted.clear();
    }

    /// Nothing waits to be sent, kept back or not.
    pub fn is_empty(&self) -> bool {
        self.outbox.is_empty() && self.held.is_none()
    }

    pub fn is_full(&self) -> bool {
        self.outbox.len() >= MAX_RECORDS || self.outbox.bytes() >= MAX_BYTES
    }

    pub fn is_due(&self) -> bool {
        self.oldest.is_some_and(|t| t.elapsed() >= MAX_WAIT)
    }

    /// Sends the outbox and returns once every record in it is durable (a
    /// change kept back stays so).
    pub async fn flush(&mut self) -> Result<()> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        let outbox = std::mem::replace(&mut self.outbox, self.producer.outbox());
        let pending = std::mem::take(&mut self.pending);
        self.oldest = None;
        if let Err(e) = self.producer.send(outbox).await {
            // Some of it may be in the log and some not. The changes come
            // again from PostgreSQL (nothing unsent was acknowledged), but a
            // definition would not: write them all again.
            self.emitted.clear();
            return Err(e.into());
        }
        for (op, n) in ChangeOp::ALL.iter().zip(pending) {
            if n > 0 {
                metrics::counter!(
                    "strata_cdc_changes_total",
                    "source" => self.source.clone(),
                    "op" => op.as_str()
                )
                .increment(n);
            }
        }
        Ok(())
    }
}

pub(super) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
