//! `bronze.feed_<table>`: the rows of file feeds (SPEC §7), one table per
//! feed table, its columns those the feed's chunks carry.
//!
//! A feed table is created by its first write, with the columns of its
//! first chunks; a chunk with more columns (a later file with an extra
//! column, when the schema is inferred) adds them (schema merge), and rows
//! of files without them read null there. Positions are committed as for
//! every bronze table: the next log offset per partition, in the commit
//! that holds the rows.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    ArrayRef, Date32Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::json::ReaderBuilder;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use strata_core::event::{FeedChunk, QuarantineRecord};
use strata_core::feed::{ColumnType, FeedSchema};

use super::sink::app_id;
use crate::error::{Error, Result};
use crate::table::Lake;

pub const LAYER: &str = "bronze";
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The bronze table name of a feed table: `feed_<table>`.
pub fn table_name(feed_table: &str) -> String {
    format!("feed_{feed_table}")
}

/// The names of the feed tables bronze holds.
pub fn existing(lake: &Lake) -> Vec<String> {
    lake.tables_in(LAYER)
        .into_iter()
        .filter(|name| name.starts_with("feed_"))
        .collect()
}

pub(super) struct FeedSink {
    name: String,
    table: Option<DeltaTable>,
    pub(super) committed: Vec<u64>,
}

impl FeedSink {
    pub(super) async fn open(lake: &Lake, name: &str, partitions: u32) -> Result<Self> {
        let mut sink = Self {
            name: name.to_string(),
            table: None,
            committed: vec![0; partitions as usize],
        };
        sink.refresh(lake).await?;
        Ok(sink)
    }

    pub(super) fn exists(&self) -> bool {
        self.table.is_some()
    }

    fn qualified(&self) -> String {
        format!("{LAYER}.{}", self.name)
    }

    pub(super) async fn refresh(&mut self, lake: &Lake) -> Result<()> {
        match &mut self.table {
            Some(table) => table
                .update_state()
                .await
                .map_err(Error::delta(format!("{LAYER}.{}", self.name)))?,
            None if lake.exists(LAYER, &self.name) => {
                self.table = Some(lake.open(LAYER, &self.name).await?);
            }
            None => return Ok(()),
        }
        let Some(table) = &self.table else {
            return Ok(());
        };
        let state = table.snapshot().map_err(Error::delta(self.qualified()))?;
        for partition in 0..self.committed.len() {
            let version = state
                .transaction_version(table.log_store().as_ref(), &app_id(partition as u32))
                .await
                .map_err(Error::delta(self.qualified()))?;
            self.committed[partition] = version.map_or(0, |v| v.max(0) as u64);
        }
        Ok(())
    }

    /// Appends in one commit with the log positions the rows take the table
    /// to; the first write creates the table.
    pub(super) async fn append(
        &mut self,
        lake: &Lake,
        batches: Vec<RecordBatch>,
        ends: &BTreeMap<u32, u64>,
    ) -> Result<()> {
        let txns: Vec<Transaction> = ends
            .iter()
            .map(|(p, end)| Transaction::new(app_id(*p), *end as i64))
            .collect();
        let table = match self.table.take() {
            Some(table) => table,
            None => lake.uncreated(LAYER, &self.name)?,
        };
        let written = table
            .clone()
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_schema_mode(SchemaMode::Merge)
            .with_partition_columns(["ingest_date"])
            .with_commit_properties(CommitProperties::default().with_application_transactions(txns))
            .await;
        match written {
            Ok(table) => self.table = Some(table),
            Err(e) => {
                // A failed first write leaves no table: open it again next time.
                self.table = lake.exists(LAYER, &self.name).then_some(table);
                return Err(Error::delta(self.qualified())(e));
            }
        }
        for (p, end) in ends {
            self.committed[*p as usize] = *end;
        }
        Ok(())
    }
}

/// A chunk whose rows do not decode, kept whole in the quarantine.
fn undecodable(chunk: &FeedChunk, why: &str) -> QuarantineRecord {
    QuarantineRecord {
        received_at: chunk.received_at,
        source: chunk.source.clone(),
        reason: strata_core::event::RejectReason::FeedBadRow,
        detail: format!(
            "{}:{}: rows {}..{} do not fit the feed's columns: {why}",
            chunk.file, chunk.first_row, chunk.first_row, chunk.end_row
        ),
        raw: chunk.rows.clone(),
    }
}

/// A quarantine row and the log position it came from.
pub(super) type Kept = (u32, u64, QuarantineRecord);

fn arrow_type(t: ColumnType) -> DataType {
    match t {
        ColumnType::String => DataType::Utf8,
        ColumnType::Long => DataType::Int64,
        ColumnType::Double => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The feed's own columns then bronze's: `_file, _row, _file_sha256,
/// received_at, ingest_date` and the log position.
fn table_schema(schema: &FeedSchema) -> SchemaRef {
    let mut fields: Vec<Field> = schema
        .columns
        .iter()
        .map(|(name, t)| Field::new(name, arrow_type(*t), true))
        .collect();
    fields.extend([
        Field::new("_file", DataType::Utf8, false),
        Field::new("_row", DataType::Int64, false),
        Field::new("_file_sha256", DataType::Utf8, false),
        Field::new("received_at", utc_micros(), false),
        Field::new("ingest_date", DataType::Date32, false),
        Field::new("_log_partition", DataType::Int32, false),
        Field::new("_log_offset", DataType::Int64, false),
    ]);
    Arc::new(Schema::new(fields))
}

/// The rows of one feed table's chunks as batches typed by the widest
/// schema among them (schemas only gain columns); and the quarantine rows
/// of chunks whose rows do not decode (the source checked every value, so
/// only a chunk written by an incompatible version can be one). Each
/// chunk's text is dropped once decoded: a micro-batch of feed rows is held
/// once as text and once as Arrow at most, not more.
pub(super) fn chunks_batches(
    chunks: Vec<(u32, u64, FeedChunk)>,
) -> Result<(Vec<RecordBatch>, Vec<Kept>)> {
    let schema = chunks
        .iter()
        .filter_map(|(_, _, c)| FeedSchema::from_json(&c.schema))
        .max_by_key(|s| s.columns.len())
        .unwrap_or_default();
    let mut own: Vec<Field> = schema
        .columns
        .iter()
        .map(|(name, t)| Field::new(name, arrow_type(*t), true))
        .collect();
    own.push(Field::new("_row", DataType::Int64, false));
    let own = Arc::new(Schema::new(own));
    let full = table_schema(&schema);

    let mut parts: Vec<RecordBatch> = Vec::new();
    let mut failed = Vec::new();
    for (partition, offset, mut chunk) in chunks {
        if chunk.rows.is_empty() {
            continue;
        }
        let decoded = ReaderBuilder::new(own.clone())
            .with_batch_size(64 * 1024)
            .build(Cursor::new(chunk.rows.as_bytes()))
            .and_then(|reader| reader.collect::<Result<Vec<_>, _>>());
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(e) => {
                failed.push((partition, offset, undecodable(&chunk, &e.to_string())));
                continue;
            }
        };
        chunk.rows = String::new();
        for batch in decoded {
            let n = batch.num_rows();
            let mut file = StringBuilder::with_capacity(n, n * chunk.file.len());
            let mut sha = StringBuilder::with_capacity(n, n * 64);
            let mut received = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
            let mut date = Date32Builder::with_capacity(n);
            let mut log_partition = Int32Builder::with_capacity(n);
            let mut log_offset = Int64Builder::with_capacity(n);
            for _ in 0..n {
                file.append_value(&chunk.file);
                sha.append_value(&chunk.sha256);
                received.append_value(chunk.received_at);
                date.append_value(chunk.received_at.div_euclid(MICROS_PER_DAY) as i32);
                log_partition.append_value(partition as i32);
                log_offset.append_value(offset as i64);
            }
            let columns = batch.columns();
            let rows = columns[columns.len() - 1].clone();
            let mut out: Vec<ArrayRef> = columns[..columns.len() - 1].to_vec();
            out.push(Arc::new(file.finish()));
            out.push(rows);
            out.push(Arc::new(sha.finish()));
            out.push(Arc::new(received.finish()));
            out.push(Arc::new(date.finish()));
            out.push(Arc::new(log_partition.finish()));
            out.push(Arc::new(log_offset.finish()));
            parts.push(RecordBatch::try_new(full.clone(), out)?);
        }
    }
    Ok((parts, failed))
}
