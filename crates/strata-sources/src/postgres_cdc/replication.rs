//! Streaming: pgoutput's transactions, in commit order, become change
//! records; the slot is acknowledged only as far as bronze holds them.
//!
//! Positions: a streamed change carries its transaction's commit LSN
//! (`Begin.final_lsn`) and its order inside the transaction, so a source's
//! changes arrive in strictly increasing positions and bronze drops whatever
//! PostgreSQL sends again after a reconnect.
//!
//! Acknowledgement: PostgreSQL re-sends every transaction whose commit LSN
//! is at or past the confirmed position, so confirming the commit LSN of
//! bronze's last change re-sends at most that one transaction, partly held.
//! When everything read is in bronze and no transaction is open, the
//! position the server last reported (a keepalive's WAL end) is confirmed
//! instead: nothing below it is still on its way, so an idle slot does not
//! hold WAL forever.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::FutureExt;
use pg_walstream::{CancellationToken, ChangeEvent, EventType, LogicalReplicationStream, RowData};
use sqlx::postgres::PgConnection;
use strata_core::event::{ChangeOp, ChangePosition, ChangeRecord};
use tokio::sync::watch;

use super::checks::Catalog;
use super::pipeline::{MAX_WAIT, Pipeline, now_micros};
use super::snapshot::shape_of;
use super::values::Shape;
use super::{CdcConfig, Status, stop_requested, upstream};
use crate::{Error, Result};

/// How often the slot is told what bronze holds.
pub(super) const ACK_INTERVAL: Duration = Duration::from_secs(1);

/// The transaction being read.
#[derive(Debug, Clone, Copy)]
struct Tx {
    xid: u32,
    lsn: u64,
    commit_ts: i64,
    seq: u64,
}

pub(super) struct Streaming<'a> {
    pub config: &'a CdcConfig,
    pub stream: LogicalReplicationStream,
    pub catalog: &'a mut Catalog,
    pub conn: &'a mut PgConnection,
    pub status: &'a Status,
    /// What bronze holds of this source, as last polled.
    pub bronze: watch::Receiver<Option<ChangePosition>>,
}

struct State<'a> {
    s: Streaming<'a>,
    pipeline: &'a mut Pipeline,
    token: CancellationToken,
    /// Per relation OID of this connection, its shape; `None` for a
    /// published table that is not listed.
    shapes: HashMap<u32, Option<Arc<Shape>>>,
    /// Listed tables by `schema.name`, which is how a truncate names them.
    by_name: HashMap<String, Arc<Shape>>,
    tx: Option<Tx>,
    last_ack: Instant,
    last_commit_lsn: metrics::Gauge,
    slot_lag: metrics::Gauge,
}

impl<'a> Streaming<'a> {
    /// Streams until shutdown (then `Ok`, everything read durable) or until
    /// the connection fails (an error; the caller reconnects).
    pub async fn run(
        self,
        pipeline: &'a mut Pipeline,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        let source = pipeline.source().to_string();
        let mut state = State {
            last_commit_lsn: metrics::gauge!("strata_cdc_last_commit_lsn", "source" => source.clone()),
            slot_lag: metrics::gauge!("strata_cdc_slot_lag_bytes", "source" => source),
            s: self,
            pipeline,
            token: CancellationToken::new(),
            shapes: HashMap::new(),
            by_name: HashMap::new(),
            tx: None,
            last_ack: Instant::now(),
        };
        // A change kept back from a connection that broke mid-transaction
        // comes again with its transaction.
        state.pipeline.abandon_transaction();
        state.ack().await?;
        let mut tick = tokio::time::interval(MAX_WAIT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Set by a commit with records waiting: they go out as soon as the
        // server has nothing more ready, so a quiet stream lands each commit
        // at once and a busy one batches many.
        let mut commit_waiting = false;
        loop {
            if stop_requested(shutdown) {
                return state.stop().await;
            }
            let event = if commit_waiting && !state.pipeline.is_empty() {
                match state.s.stream.next_event(&state.token).now_or_never() {
                    Some(event) => event,
                    None => {
                        commit_waiting = false;
                        state.pipeline.flush().await?;
                        continue;
                    }
                }
            } else {
                commit_waiting = false;
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => continue,
                    event = state.s.stream.next_event(&state.token) => event,
                    _ = tick.tick() => {
                        state.housekeeping().await?;
                        continue;
                    }
                }
            };
            let event = event.map_err(upstream(
                state.pipeline.source(),
                "lost the replication stream",
            ))?;
            if state.handle(event).await? {
                commit_waiting = true;
            }
            if state.pipeline.is_full() {
                state.pipeline.flush().await?;
            }
            state.housekeeping().await?;
        }
    }
}

impl State<'_> {
    async fn housekeeping(&mut self) -> Result<()> {
        if self.pipeline.is_due() {
            self.pipeline.flush().await?;
        }
        if self.last_ack.elapsed() >= ACK_INTERVAL {
            self.ack().await?;
        }
        Ok(())
    }

    /// Tells the server how far bronze holds this source (never further).
    async fn ack(&mut self) -> Result<()> {
        self.last_ack = Instant::now();
        let bronze = *self.s.bronze.borrow();
        let received = self.s.stream.current_lsn();
        let caught_up = self.tx.is_none()
            && self.pipeline.is_empty()
            && self
                .pipeline
                .last_sent
                .is_none_or(|sent| bronze.is_some_and(|held| held >= sent));
        let mut flush = bronze.map_or(0, |held| held.lsn);
        if caught_up {
            flush = flush.max(received);
        }
        let feedback = self.s.stream.shared_lsn_feedback.clone();
        feedback.update_applied_lsn(flush);
        self.s.stream.send_feedback().await.map_err(upstream(
            self.pipeline.source(),
            "cannot acknowledge to PostgreSQL",
        ))?;
        // The stream never reports past what it received.
        let acknowledged = feedback.get_applied_lsn().min(received);
        self.s
            .status
            .received
            .fetch_max(received, Ordering::Relaxed);
        self.s
            .status
            .acknowledged
            .fetch_max(acknowledged, Ordering::Relaxed);
        self.slot_lag
            .set(received.saturating_sub(acknowledged) as f64);
        Ok(())
    }

    /// Lands what was read and leaves the stream cleanly.
    async fn stop(mut self) -> Result<()> {
        if self.tx.is_some() {
            self.pipeline.abandon_transaction();
        }
        self.pipeline.flush().await?;
        if let Err(e) = self.ack().await {
            tracing::debug!(error = %e, "final acknowledgement failed");
        }
        if let Err(e) = self.s.stream.stop().await {
            tracing::debug!(error = %e, "stopping the replication stream failed");
        }
        tracing::info!(source = %self.pipeline.source(), "CDC source stopped; everything read is in the log");
        Ok(())
    }

    /// Returns whether a transaction committed with records waiting.
    async fn handle(&mut self, event: ChangeEvent) -> Result<bool> {
        match event.event_type {
            EventType::Begin {
                transaction_id,
                final_lsn,
                commit_timestamp,
            } => {
                self.pipeline.abandon_transaction();
                self.tx = Some(Tx {
                    xid: transaction_id,
                    lsn: final_lsn.value(),
                    commit_ts: commit_timestamp.timestamp_micros(),
                    seq: 0,
                });
            }
            EventType::Commit {
                commit_lsn,
                end_lsn,
                ..
            } => {
                self.tx = None;
                self.pipeline.end_transaction();
                self.s
                    .status
                    .received
                    .fetch_max(end_lsn.value(), Ordering::Relaxed);
                self.last_commit_lsn.set(commit_lsn.value() as f64);
                return Ok(!self.pipeline.is_empty());
            }
            EventType::Relation {
                relation_id,
                namespace,
                relation_name,
                columns,
                ..
            } => {
                let listed = self
                    .s
                    .config
                    .tables
                    .iter()
                    .any(|t| *t.schema == *namespace && *t.name == *relation_name);
                if !listed {
                    self.shapes.insert(relation_id, None);
                    return Ok(false);
                }
                let columns: Vec<_> = columns
                    .into_iter()
                    .map(|c| (c.name, c.type_id, c.type_modifier))
                    .collect();
                let shape = shape_of(
                    self.s.catalog,
                    self.s.conn,
                    &namespace,
                    &relation_name,
                    columns,
                )
                .await?;
                let shape = Arc::new(shape);
                // Inside a transaction a definition holds from its commit on.
                let lsn = self.tx.map_or(event.lsn.value(), |tx| tx.lsn);
                self.pipeline.push_relation(&shape, lsn);
                self.by_name.insert(shape.qualified_name(), shape.clone());
                self.shapes.insert(relation_id, Some(shape));
            }
            EventType::Insert {
                relation_oid, data, ..
            } => {
                if let Some(shape) = self.listed(relation_oid) {
                    let key = shape.key_object(&data, None);
                    let after = shape.row_object(&data);
                    self.change(&shape, ChangeOp::Insert, key, None, Some(after))?;
                }
            }
            EventType::Update {
                relation_oid,
                old_data,
                new_data,
                key_columns,
                ..
            } => {
                if let Some(shape) = self.listed(relation_oid) {
                    // The new key; the old one, when it changed, is in `before`.
                    let key = shape.key_object(&new_data, old_data.as_ref());
                    let before = old_data
                        .as_ref()
                        .map(|old| old_tuple(&shape, old, &key_columns));
                    let after = shape.row_object(&new_data);
                    self.change(&shape, ChangeOp::Update, key, before, Some(after))?;
                }
            }
            EventType::Delete {
                relation_oid,
                old_data,
                key_columns,
                ..
            } => {
                if let Some(shape) = self.listed(relation_oid) {
                    let key = shape.key_object(&old_data, None);
                    let before = old_tuple(&shape, &old_data, &key_columns);
                    self.change(&shape, ChangeOp::Delete, key, Some(before), None)?;
                }
            }
            EventType::Truncate { tables, .. } => {
                for table in tables {
                    if let Some(shape) = self.by_name.get(table.as_ref()).cloned() {
                        self.change(&shape, ChangeOp::Truncate, "{}".to_string(), None, None)?;
                    }
                }
            }
            // Streaming of in-progress transactions, two-phase commit and
            // messages are not asked for; types and origins change nothing.
            _ => {}
        }
        Ok(false)
    }

    fn listed(&self, relation_oid: u32) -> Option<Arc<Shape>> {
        self.shapes.get(&relation_oid).cloned().flatten()
    }

    fn change(
        &mut self,
        shape: &Shape,
        op: ChangeOp,
        key: String,
        before: Option<String>,
        after: Option<String>,
    ) -> Result<()> {
        let Some(tx) = self.tx.as_mut() else {
            return Err(Error::Upstream(format!(
                "source {:?}: a change of {} arrived outside a transaction",
                self.pipeline.source(),
                shape.qualified_name()
            )));
        };
        let seq = tx.seq;
        tx.seq += 1;
        let record = ChangeRecord {
            source: self.pipeline.source().to_string(),
            table_schema: shape.schema.clone(),
            table_name: shape.name.clone(),
            op,
            lsn: tx.lsn,
            commit_ts: tx.commit_ts,
            tx_id: Some(tx.xid),
            seq,
            key,
            before,
            after,
            received_at: now_micros(),
            tx_end: false,
        };
        self.pipeline.push_change(record);
        Ok(())
    }
}

/// The old tuple as pgoutput sent it: with REPLICA IDENTITY FULL every
/// column, else the identity's columns (the tuple carries the others as
/// NULL, which would read as values they never had).
fn old_tuple(shape: &Shape, old: &RowData, identity: &[Arc<str>]) -> String {
    shape.row_object_of(old, identity)
}
