//! Reading model inputs from Delta tables and replacing model outputs, one
//! partition per Delta commit.

use std::collections::BTreeSet;

use deltalake::arrow::array::{ArrayRef, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::datafusion::common::{ScalarValue, TableReference};
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::execution::config::SessionConfig;
use deltalake::datafusion::prelude::{DataFrame, Expr, SessionContext, col, lit};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::SaveMode;

use strata_lake::Lake;
use strata_lake::schema::TableDef;

use crate::dates::Day;
use crate::error::{Error, Result};

/// A DataFusion session over the lake, tuned for the model scans: filters
/// are pushed into the Parquet decoder so that wide columns are decoded only
/// for the rows that pass.
#[derive(Clone)]
pub struct LakeIo {
    lake: Lake,
    ctx: SessionContext,
}

impl LakeIo {
    pub fn new(lake: Lake) -> Self {
        let mut config = SessionConfig::new()
            .with_target_partitions(2)
            .with_batch_size(16 * 1024);
        let options = config.options_mut();
        options.execution.parquet.pushdown_filters = true;
        options.execution.parquet.reorder_filters = true;
        options.execution.parquet.schema_force_view_types = false;
        Self {
            lake,
            ctx: SessionContext::new_with_config(config),
        }
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    pub fn exists(&self, def: &TableDef) -> bool {
        self.lake.exists(def.layer, def.name)
    }

    /// Rows of `def` passing `filter`, restricted to `columns` (all when empty).
    /// A table that does not exist yet reads as empty.
    pub async fn scan(
        &self,
        def: &TableDef,
        columns: &[&str],
        filter: Option<Expr>,
    ) -> Result<Vec<RecordBatch>> {
        match self.frame(def, columns, filter).await? {
            Some(frame) => Ok(frame.collect().await?),
            None => Ok(Vec::new()),
        }
    }

    /// Like [`scan`](Self::scan), batch by batch, for inputs too large to
    /// hold at once.
    pub async fn scan_stream(
        &self,
        def: &TableDef,
        columns: &[&str],
        filter: Option<Expr>,
    ) -> Result<Option<SendableRecordBatchStream>> {
        match self.frame(def, columns, filter).await? {
            Some(frame) => Ok(Some(frame.execute_stream().await?)),
            None => Ok(None),
        }
    }

    async fn frame(
        &self,
        def: &TableDef,
        columns: &[&str],
        filter: Option<Expr>,
    ) -> Result<Option<DataFrame>> {
        if !self.exists(def) {
            return Ok(None);
        }
        let table = self.lake.open(def.layer, def.name).await?;
        self.frame_of(&table, &def.qualified_name(), columns, filter)
            .await
            .map(Some)
    }

    /// Rows of a table already opened, at the version it was opened at: a
    /// reader that also reads the table's log (its positions) sees both of
    /// the same commit.
    pub async fn scan_table(
        &self,
        table: &deltalake::DeltaTable,
        name: &str,
        columns: &[&str],
        filter: Option<Expr>,
    ) -> Result<Vec<RecordBatch>> {
        Ok(self
            .frame_of(table, name, columns, filter)
            .await?
            .collect()
            .await?)
    }

    async fn frame_of(
        &self,
        table: &deltalake::DeltaTable,
        name: &str,
        columns: &[&str],
        filter: Option<Expr>,
    ) -> Result<DataFrame> {
        table
            .update_datafusion_session(&self.ctx.state())
            .map_err(Error::delta(name))?;
        let provider = table.table_provider().await?;
        let mut frame = self.ctx.read_table(provider)?;
        if let Some(filter) = filter {
            frame = frame.filter(filter)?;
        }
        if !columns.is_empty() {
            frame = frame.select_columns(columns)?;
        }
        Ok(frame)
    }

    /// Runs a model's SQL with its inputs registered under the given names.
    pub async fn sql(&self, inputs: &[(&str, &TableDef)], sql: &str) -> Result<Vec<RecordBatch>> {
        let ctx = SessionContext::new_with_config(self.ctx.copied_config());
        for (name, def) in inputs {
            if !self.exists(def) {
                return Ok(Vec::new());
            }
            let table = self.lake.open(def.layer, def.name).await?;
            table
                .update_datafusion_session(&ctx.state())
                .map_err(Error::delta(def.qualified_name()))?;
            let provider = table.table_provider().await?;
            ctx.register_table(TableReference::bare(*name), provider)?;
        }
        Ok(ctx.sql(sql).await?.collect().await?)
    }

    /// Rows in the table's current files, from the Delta log's statistics
    /// (files without statistics count as empty): a capacity hint.
    pub async fn row_count_hint(&self, def: &TableDef) -> Result<usize> {
        if !self.exists(def) {
            return Ok(0);
        }
        let table = self.lake.open(def.layer, def.name).await?;
        let snapshot = table
            .snapshot()
            .map_err(Error::delta(def.qualified_name()))?;
        Ok(snapshot
            .log_data()
            .iter()
            .map(|file| file.num_records().unwrap_or(0))
            .sum())
    }

    /// The dates that have at least one file in a table partitioned by a date.
    pub async fn partitions(&self, def: &TableDef) -> Result<BTreeSet<Day>> {
        let mut days = BTreeSet::new();
        let Some(column) = def.partition_by.first() else {
            return Ok(days);
        };
        if !self.exists(def) {
            return Ok(days);
        }
        let table = self.lake.open(def.layer, def.name).await?;
        let snapshot = table
            .snapshot()
            .map_err(Error::delta(def.qualified_name()))?;
        for file in snapshot.log_data().iter() {
            if let Some(Some(text)) = file.partition_values_map().get(*column) {
                let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| {
                    Error::Invalid(format!(
                        "{}: partition value {text:?} is not a date: {e}",
                        def.qualified_name()
                    ))
                })?;
                days.insert(crate::dates::day_of(date));
            }
        }
        Ok(days)
    }

    /// Replaces exactly one date partition in one Delta commit: readers see
    /// the old rows or the new rows, never a mix. No rows empties it.
    pub async fn replace_partition(
        &self,
        def: &TableDef,
        day: Day,
        batches: Vec<RecordBatch>,
    ) -> Result<usize> {
        let column = def.partition_by.first().ok_or_else(|| {
            Error::Invalid(format!("{} is not partitioned", def.qualified_name()))
        })?;
        let batches = conform(def, batches)?;
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        let predicate = on_date(column, day);
        tracing::debug!(target: strata_core::PHASE, table = %def.qualified_name(), "partition_commit");
        retry_conflicts(def, || async {
            let table = self.lake.open_or_create(def).await?;
            table
                .write(batches.clone())
                .with_save_mode(SaveMode::Overwrite)
                .with_replace_where(predicate.clone())
                .with_writer_properties(writer_properties())
                .await
                .map_err(Error::delta(def.qualified_name()))?;
            Ok(())
        })
        .await?;
        Ok(rows)
    }

    /// Replaces the whole content of an unpartitioned table in one commit.
    pub async fn replace_all(&self, def: &TableDef, batches: Vec<RecordBatch>) -> Result<usize> {
        let batches = conform(def, batches)?;
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        let table = self.lake.open_or_create(def).await?;
        table
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_writer_properties(writer_properties())
            .await
            .map_err(Error::delta(def.qualified_name()))?;
        Ok(rows)
    }
}

/// Rows per Parquet row group of a model's output.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// How model outputs are written. zstd at level 1 compresses faster than
/// the default level 3, for somewhat larger files. Row groups of
/// 64 Ki rows (not one per date) give the readers of `silver.events`,
/// which is sorted by event name, statistics to skip the names they do not
/// read, and let two threads share one partition.
pub(crate) fn writer_properties() -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("zstd level 1"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    // Nearly every value of these differs: a dictionary is built, overflows
    // and is dropped for each of them, at a cost and for nothing.
    for column in UNIQUE_COLUMNS {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    builder.build()
}

const UNIQUE_COLUMNS: &[&str] = &[
    "event_id",
    "event_ts",
    "sent_at",
    "received_at",
    "log_offset",
    "properties",
    "context",
    "traits",
    "link_event_id",
];

/// Runs a commit again when a concurrent commit to the same table (another
/// partition's write or optimize) conflicted with it. Each attempt starts
/// from the latest snapshot, and replacing a partition is
/// idempotent, so a retry cannot duplicate rows.
async fn retry_conflicts<F, Fut>(def: &TableDef, mut attempt: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    const ATTEMPTS: u32 = 8;
    let mut n = 0;
    loop {
        n += 1;
        match attempt().await {
            Err(Error::Delta {
                source: deltalake::DeltaTableError::Transaction { .. },
                ..
            }) if n < ATTEMPTS => {
                tracing::debug!(table = %def.qualified_name(), attempt = n, "commit conflict; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(n))).await;
            }
            other => return other,
        }
    }
}

/// A date literal for filters on Date32 columns.
pub fn date_lit(day: Day) -> Expr {
    lit(ScalarValue::Date32(Some(day)))
}

/// `column = day`: one date partition.
pub fn on_date(column: &str, day: Day) -> Expr {
    col(column).eq(date_lit(day))
}

/// A UTC timestamp literal (microseconds) for filters on `event_ts`.
pub fn timestamp_lit(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(micros),
        Some("UTC".into()),
    ))
}

/// Casts and orders a model's output columns to the table's declared schema.
pub fn conform(def: &TableDef, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    let schema = def.arrow_schema();
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        if batch.num_rows() == 0 {
            continue;
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let column = batch
                .column_by_name(field.name())
                .ok_or_else(|| Error::Column {
                    table: def.qualified_name(),
                    column: field.name().clone(),
                    detail: "missing from the model's output".into(),
                })?;
            let column = if column.data_type() == field.data_type() {
                column.clone()
            } else {
                cast(column, field.data_type())?
            };
            columns.push(column);
        }
        out.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    if out.is_empty() {
        // A write needs a batch even to empty a partition.
        out.push(RecordBatch::new_empty(schema));
    }
    Ok(out)
}

/// The models read columns through the lake's shared readers, which accept
/// every Arrow layout a table may come back in.
pub use strata_lake::columns as column;
