//! Upserts minute rows into `realtime.events_minute`. The window operator
//! emits every row from the earliest changed minute on (all of them are in
//! memory: a changed minute is open, and so is every later one), so the
//! upsert is one replace-where commit on `minute >= from`, carrying the log
//! positions it covers as application transactions.

use std::num::NonZeroU64;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::prelude::{SessionContext, col, lit};
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::protocol::SaveMode;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use strata_lake::schema::{ColumnType as T, TableDef, col as column};
use strata_lake::{Lake, columns};

use crate::checkpoint::CheckpointDir;
use crate::error::Result;
use crate::operator::{Barrier, Batch, Context, Emitted, MinuteRow, Operator};

/// Unpartitioned: a day is about 1,440 rows per event name, and every
/// commit touches only the newest minutes, which file statistics on
/// `minute` find without a partition column the SPEC does not list.
pub const REALTIME_EVENTS_MINUTE: TableDef = TableDef {
    layer: "realtime",
    name: "events_minute",
    columns: &[
        column("minute", T::Timestamp, false),
        column("event_name", T::String, false),
        column("events", T::Long, false),
        column("users", T::Long, false),
    ],
    partition_by: &[],
    description: "Events and approximate users per event-time minute and event name, seconds behind the log.",
};

/// Commits between compactions of the small files each commit leaves.
const MAINTAIN_EVERY: u64 = 100;
const COMPACT_TARGET_BYTES: u64 = 32 * 1024 * 1024;

pub fn app_id(partition: usize) -> String {
    format!("strata-realtime-p{partition}")
}

pub struct DeltaSink {
    table: DeltaTable,
    commits: u64,
}

fn timestamp(micros: i64) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(micros), Some("UTC".into()))
}

impl DeltaSink {
    pub async fn open(lake: &Lake) -> Result<Self> {
        let table = lake.open_or_create(&REALTIME_EVENTS_MINUTE).await?;
        Ok(Self { table, commits: 0 })
    }

    /// Rows with `minute >= since`, to show closed minutes after a restart.
    pub async fn rows_since(&self, since: i64) -> Result<Vec<MinuteRow>> {
        let ctx = SessionContext::new();
        self.table.update_datafusion_session(&ctx.state())?;
        let provider = self.table.table_provider().await?;
        let frame = ctx
            .read_table(provider)
            .and_then(|f| f.filter(col("minute").gt_eq(lit(timestamp(since)))))?;
        let batches = frame.collect().await?;
        let mut rows = Vec::new();
        for batch in batches {
            let minute = columns::micros(&batch, "minute")?;
            let name = columns::strings(&batch, "event_name")?;
            let events = columns::longs(&batch, "events")?;
            let users = columns::longs(&batch, "users")?;
            for i in 0..batch.num_rows() {
                rows.push(MinuteRow {
                    minute: minute.value(i),
                    event_name: name.value(i).to_string(),
                    events: events.value(i).max(0) as u64,
                    users: users.value(i).max(0) as u64,
                });
            }
        }
        Ok(rows)
    }

    /// The log positions of the newest commit, per partition.
    pub async fn committed_positions(&self, partitions: usize) -> Result<Vec<Option<u64>>> {
        let snapshot = self.table.snapshot()?;
        let store = self.table.log_store();
        let mut out = Vec::with_capacity(partitions);
        for p in 0..partitions {
            let v = snapshot
                .transaction_version(store.as_ref(), app_id(p))
                .await?;
            out.push(v.map(|v| v.max(0) as u64));
        }
        Ok(out)
    }

    pub async fn write(&mut self, emitted: &Emitted, positions: &[u64]) -> Result<()> {
        if emitted.rows.is_empty() {
            return Ok(());
        }
        let rows = &emitted.rows;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.minute))
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.event_name.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.events.min(i64::MAX as u64) as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.users.min(i64::MAX as u64) as i64),
            )),
        ];
        let batch = RecordBatch::try_new(REALTIME_EVENTS_MINUTE.arrow_schema(), columns)?;
        let txns = positions
            .iter()
            .enumerate()
            .map(|(p, end)| Transaction::new(app_id(p), *end as i64))
            .collect();
        self.table = self
            .table
            .clone()
            .write(vec![batch])
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(col("minute").gt_eq(lit(timestamp(emitted.from))))
            .with_commit_properties(CommitProperties::default().with_application_transactions(txns))
            .await?;
        self.commits += 1;
        metrics::counter!("strata_stream_sink_commits_total").increment(1);
        if self.commits % MAINTAIN_EVERY == 0 {
            self.maintain().await;
        }
        Ok(())
    }

    /// Compacts the small files and deletes replaced ones older than an
    /// hour (readers of older versions are long done by then). Failure only
    /// costs disk space, so it is logged, not raised.
    async fn maintain(&mut self) {
        let compacted = self
            .table
            .clone()
            .optimize()
            .with_type(OptimizeType::Compact)
            .with_target_size(NonZeroU64::new(COMPACT_TARGET_BYTES).expect("non-zero"))
            .await;
        match compacted {
            Ok((table, _)) => self.table = table,
            Err(e) => {
                tracing::warn!(error = %e, "compacting realtime.events_minute failed");
                return;
            }
        }
        let vacuumed = self
            .table
            .clone()
            .vacuum()
            .with_retention_period(chrono::Duration::hours(1))
            .with_enforce_retention_duration(false)
            .with_mode(VacuumMode::Lite)
            .await;
        match vacuumed {
            Ok((table, _)) => self.table = table,
            Err(e) => tracing::warn!(error = %e, "vacuuming realtime.events_minute failed"),
        }
    }
}

impl Operator for DeltaSink {
    fn name(&self) -> &'static str {
        "sink"
    }

    fn process(&mut self, _batch: &mut Batch<'_>, _ctx: &mut Context) -> Result<()> {
        Ok(())
    }

    fn snapshot<'a>(
        &'a mut self,
        ctx: &'a mut Context,
        barrier: &'a Barrier,
        _dir: &'a CheckpointDir,
    ) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move {
            if let Some(emitted) = ctx.emitted.take() {
                self.write(&emitted, &barrier.positions).await?;
            }
            Ok(json!({ "commits": self.commits }))
        })
    }

    fn restore(&mut self, state: &Value, _dir: &CheckpointDir) -> Result<()> {
        self.commits = state.get("commits").and_then(Value::as_u64).unwrap_or(0);
        Ok(())
    }
}
