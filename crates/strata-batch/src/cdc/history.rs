//! Building `silver.<table>_history` (every version of every key, SCD2).
//!
//! A closed version never changes again: a later change only closes the
//! version that is open. So the table keeps closed and open versions in
//! separate files, and an incremental build touches only the files that
//! may hold open versions (a file whose statistics say every `valid_to` is
//! set is left alone). It reads those, decodes the open versions of the
//! keys its changes touch, and commits in one Delta commit: the versions
//! it closed as new files, the open versions as new files in place of the
//! old ones, and the cursor. Its cost follows the number of keys, not the
//! length of the history. A truncate or a new snapshot (each closes every
//! open version) and a table written by other rules are built again from
//! all of the table's changes.

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBufferBuilder, RecordBatch, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::{filter_record_batch, is_null};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake::kernel::{Action, Add};
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use foldhash::HashSet;
use strata_core::event::ChangeOp;

use super::CdcTable;
use super::apply::{History, Row, Version};
use super::build::{Stored, as_schema, columns, report, table_columns};
use super::cell::{Cell, Reader};
use super::changes::{self, BadValues, Change, Key, Since};
use super::schema::TableSchema;
use super::store::{self, Cursor};
use crate::error::{Error, Result};
use crate::io::LakeIo;
use crate::plan::Outcome;

/// The rules of this layout; a history written by others (format 1 kept
/// no epoch and mixed open and closed versions in its files) is rebuilt.
pub const FORMAT: i64 = 2;

pub async fn history(io: &LakeIo, table: &CdcTable) -> Result<Outcome> {
    store::retrying(|| history_once(io, table)).await
}

async fn history_once(io: &LakeIo, table: &CdcTable) -> Result<Outcome> {
    let Some(schema) = columns(io, table).await? else {
        return Ok(Outcome::Unchanged);
    };
    let arrow = schema.history();
    let stored = Stored::open(io, &table.history, &arrow).await?;
    if let Some(cursor) = stored.continuable(FORMAT) {
        let (changes, bad) = changes::read(io, table, &schema, Since::After(cursor.at)).await?;
        if changes.is_empty() {
            return Ok(Outcome::Unchanged);
        }
        if !closes_everything(&changes, cursor.epoch) {
            let opened = stored.table.expect("a continuable table is open");
            let built = Incremental {
                table,
                schema: &schema,
                arrow,
                cursor,
            };
            return built.run(opened, changes, bad).await;
        }
    }
    full(io, table, &schema, arrow, stored).await
}

/// A truncate, or a snapshot other than the one the versions come from.
fn closes_everything(changes: &[Change], epoch: Option<i64>) -> bool {
    changes.iter().any(|c| {
        c.op == ChangeOp::Truncate || (c.op == ChangeOp::Snapshot && epoch != Some(c.at.lsn))
    })
}

async fn full(
    io: &LakeIo,
    table: &CdcTable,
    schema: &TableSchema,
    arrow: SchemaRef,
    stored: Stored,
) -> Result<Outcome> {
    let (changes, bad) = changes::read(io, table, schema, Since::Beginning).await?;
    let Some(last) = changes.last().map(|c| c.at) else {
        return Ok(Outcome::Unchanged);
    };
    let mut history = History::default();
    history.apply(&changes);
    drop(changes);
    let epoch = history.epoch();
    let [closed, open] = closed_and_open(history, schema, &arrow)?;
    report(&bad, &table.history);
    // The table and its columns first, empty and with no cursor a build
    // could continue from; then the versions replace every file.
    let opened = match stored.table {
        Some(table) if stored.same_columns => table,
        opened => {
            let replace = opened.is_some();
            store::overwrite(
                io,
                &table.history,
                opened,
                arrow.clone(),
                Vec::new(),
                Cursor::unfinished(),
                replace,
            )
            .await?;
            store::open(io, &table.history)
                .await?
                .ok_or_else(|| Error::Invalid("the history table vanished".into()))?
        }
    };
    let name = table.history.qualified_name();
    let removed: Vec<Action> = opened
        .snapshot()
        .map_err(Error::delta(&name))?
        .log_data()
        .iter()
        .map(|f| Action::Remove(f.remove_action(true)))
        .collect();
    let cursor = Cursor::with_format(last, epoch, FORMAT);
    commit(&opened, &name, removed, [closed, open], cursor).await
}

struct Incremental<'a> {
    table: &'a CdcTable,
    schema: &'a TableSchema,
    arrow: SchemaRef,
    cursor: Cursor,
}

impl Incremental<'_> {
    async fn run(
        self,
        opened: DeltaTable,
        changes: Vec<Change>,
        bad: BadValues,
    ) -> Result<Outcome> {
        let name = self.table.history.qualified_name();
        let last = changes.last().map(|c| c.at).expect("changes are not empty");
        let candidates: Vec<_> = opened
            .snapshot()
            .map_err(Error::delta(&name))?
            .log_data()
            .iter()
            .filter(|f| !all_closed(f.stats().as_deref()))
            .collect();
        let store = opened.object_store();
        let mut stored = Vec::new();
        for file in &candidates {
            let path = file.object_store_path();
            let failed =
                |e: &dyn std::fmt::Display| Error::Invalid(format!("{name}: reading {path}: {e}"));
            let bytes = store.get(&path).await.map_err(|e| failed(&e))?;
            let bytes = bytes.bytes().await.map_err(|e| failed(&e))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.with_batch_size(64 * 1024).build())
                .map_err(|e| failed(&e))?;
            for batch in reader {
                stored.push(as_schema(&batch?, &self.arrow)?);
            }
        }
        let removed: Vec<Action> = candidates
            .iter()
            .map(|f| Action::Remove(f.remove_action(true)))
            .collect();

        let touched: HashSet<Key> = changes
            .iter()
            .flat_map(|c| std::iter::once(&c.key).chain(&c.old_key))
            .filter(|k| !k.is_empty())
            .cloned()
            .collect();
        let mut open: Vec<(Key, Row, i64)> = Vec::new();
        let mut kept_open = Vec::new();
        let mut kept_closed = Vec::new();
        for batch in &stored {
            let split = self.split(batch, &touched, &mut open)?;
            kept_open.push(split.0);
            kept_closed.push(split.1);
        }
        let mut history = History::resume(open, self.cursor.epoch);
        history.apply(&changes);
        drop(changes);
        let epoch = history.epoch();
        let [closed, open] = closed_and_open(history, self.schema, &self.arrow)?;
        kept_closed.push(closed);
        kept_open.push(open);
        report(&bad, &self.table.history);
        let closed = concat(&self.arrow, &kept_closed)?;
        let open = concat(&self.arrow, &kept_open)?;
        let cursor = Cursor::with_format(last, epoch, FORMAT);
        commit(&opened, &name, removed, [closed, open], cursor).await
    }

    /// A stored batch's open versions of untouched keys and its closed
    /// versions, as they are; the open versions of touched keys are
    /// decoded into `open` to be continued.
    fn split(
        &self,
        batch: &RecordBatch,
        touched: &HashSet<Key>,
        open: &mut Vec<(Key, Row, i64)>,
    ) -> Result<(RecordBatch, RecordBatch)> {
        let name = self.table.history.qualified_name();
        let column = |n: &str| {
            batch.column_by_name(n).ok_or_else(|| Error::Column {
                table: name.clone(),
                column: n.to_string(),
                detail: "missing from the stored versions".into(),
            })
        };
        let readers = |which: &mut dyn Iterator<Item = usize>| {
            which
                .map(|i| {
                    let c = &self.schema.columns[i];
                    Reader::new(column(&c.name)?, c.kind)
                })
                .collect::<Result<Vec<Reader>>>()
        };
        let is_open = is_null(column("valid_to")?)?;
        let valid_from = column("valid_from")?
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| Error::Column {
                table: name.clone(),
                column: "valid_from".into(),
                detail: "not a timestamp".into(),
            })?
            .clone();
        let keys = readers(&mut self.schema.key.iter().copied())?;
        let mut all: Option<Vec<Reader>> = None;
        let mut keep_open = BooleanBufferBuilder::new(batch.num_rows());
        let mut probe: Vec<Cell> = Vec::with_capacity(keys.len());
        for r in 0..batch.num_rows() {
            if !is_open.value(r) {
                keep_open.append(false);
                continue;
            }
            probe.clear();
            probe.extend(keys.iter().map(|k| k.cell(r)));
            if !touched.contains(probe.as_slice()) {
                keep_open.append(true);
                continue;
            }
            keep_open.append(false);
            if all.is_none() {
                all = Some(readers(&mut (0..self.schema.columns.len()))?);
            }
            let row = all
                .as_ref()
                .expect("read above")
                .iter()
                .map(|c| c.cell(r))
                .collect();
            open.push((probe.clone().into_boxed_slice(), row, valid_from.value(r)));
        }
        let keep_open = BooleanArray::new(keep_open.finish(), None);
        let closed = BooleanArray::from_iter(is_open.iter().map(|o| o.map(|o| !o)));
        Ok((
            filter_record_batch(batch, &keep_open)?,
            filter_record_batch(batch, &closed)?,
        ))
    }
}

/// Whether a file's statistics show that every row has a `valid_to`: it
/// holds closed versions only. Without statistics a file may hold open
/// ones.
fn all_closed(stats: Option<&str>) -> bool {
    let Some(stats) = stats.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()) else {
        return false;
    };
    let rows = stats["numRecords"].as_i64();
    let nulls = stats["nullCount"]["valid_to"].as_i64();
    matches!((rows, nulls), (Some(_), Some(0)))
}

fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    Ok(deltalake::arrow::compute::concat_batches(schema, batches)?)
}

/// The versions of a build, closed and open, each as one batch.
fn closed_and_open(
    history: History,
    schema: &TableSchema,
    arrow: &SchemaRef,
) -> Result<[RecordBatch; 2]> {
    let (closed, open): (Vec<Version>, Vec<Version>) = history
        .finish()
        .into_iter()
        .partition(|v| v.valid_to.is_some());
    Ok([
        versions_batch(schema, arrow, &closed)?,
        versions_batch(schema, arrow, &open)?,
    ])
}

/// Writes the closed versions and the open ones into files of their own
/// and commits them, in place of `removed`, with the cursor.
async fn commit(
    opened: &DeltaTable,
    name: &str,
    removed: Vec<Action>,
    parts: [RecordBatch; 2],
    cursor: Cursor,
) -> Result<Outcome> {
    let rows = parts.iter().map(RecordBatch::num_rows).sum();
    let mut actions = removed;
    for part in parts.into_iter().filter(|p| p.num_rows() > 0) {
        let mut writer = RecordBatchWriter::for_table(opened)
            .map_err(Error::delta(name))?
            .with_writer_properties(store::cdc_writer_properties());
        writer.write(part).await.map_err(Error::delta(name))?;
        let adds: Vec<Add> = writer.flush().await.map_err(Error::delta(name))?;
        actions.extend(adds.into_iter().map(Action::Add));
    }
    let snapshot = opened.snapshot().map_err(Error::delta(name))?;
    CommitBuilder::from(
        CommitProperties::default().with_application_transactions(cursor.transactions()),
    )
    .with_actions(actions)
    .build(
        Some(snapshot as &dyn TableReference),
        opened.log_store(),
        DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: None,
            predicate: Some("valid_to IS NULL".into()),
        },
    )
    .await
    .map_err(Error::delta(name))?;
    // Vacuumed at the version just committed: a vacuum of the version
    // before would conflict with the commit that removed its files.
    let mut committed = opened.clone();
    if committed.update_state().await.is_ok() {
        store::vacuum_if_due(&committed, name).await;
    }
    Ok(Outcome::Written(rows))
}

fn versions_batch(
    schema: &TableSchema,
    arrow: &SchemaRef,
    versions: &[Version],
) -> Result<RecordBatch> {
    let mut columns = table_columns(schema, versions.iter().map(|v| &v.row), versions.len())?;
    let ts = |values: Vec<Option<i64>>| {
        Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC")) as ArrayRef
    };
    columns.push(ts(versions.iter().map(|v| Some(v.valid_from)).collect()));
    columns.push(ts(versions.iter().map(|v| v.valid_to).collect()));
    columns.push(Arc::new(BooleanArray::from_iter(
        versions.iter().map(|v| Some(v.valid_to.is_none())),
    )));
    columns.push(Arc::new(BooleanArray::from_iter(
        versions.iter().map(|v| Some(v.is_deleted)),
    )));
    Ok(RecordBatch::try_new(arrow.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::all_closed;

    #[test]
    fn only_files_whose_statistics_show_every_valid_to_set_are_left_alone() {
        assert!(all_closed(Some(
            r#"{"numRecords":3,"nullCount":{"id":0,"valid_to":0}}"#
        )));
        assert!(!all_closed(Some(
            r#"{"numRecords":3,"nullCount":{"id":0,"valid_to":1}}"#
        )));
        // Statistics without the column (past the indexed ones), none at
        // all, or unreadable: the file may hold open versions.
        assert!(!all_closed(Some(
            r#"{"numRecords":3,"nullCount":{"id":0}}"#
        )));
        assert!(!all_closed(None));
        assert!(!all_closed(Some("{")));
    }
}
