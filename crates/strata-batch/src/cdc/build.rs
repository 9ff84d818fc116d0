//! Building `silver.<table>` (current state) from the table's changes in
//! bronze, and what it shares with the history's build (`history.rs`).
//!
//! The current state is built incrementally: the changes after the table's
//! cursor are applied over its stored rows (only the touched keys' rows are
//! decoded) and the table is rewritten in one commit with the new cursor.
//! It is built from bronze instead when it does not exist, was built by
//! other rules (`store::FORMAT`) or the table's columns changed.

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    ArrayRef, BooleanArray, BooleanBufferBuilder, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::datatypes::SchemaRef;
use strata_core::event::format_lsn;

use super::apply::{Live, Row, State};
use super::cell::{self, Cell, Reader};
use super::changes::{self, BadValues, Key, Position, Since};
use super::schema::{self, TableSchema, same_columns};
use super::store::{self, Cursor, FORMAT};
use super::{CdcTable, history};
use crate::error::{Error, Result};
use crate::io::LakeIo;
use crate::plan::Outcome;

/// What a stored table is to a build: continued, or built again.
pub(super) struct Stored {
    pub table: Option<DeltaTable>,
    pub cursor: Option<Cursor>,
    /// The stored columns are those of the latest definition.
    pub same_columns: bool,
}

impl Stored {
    pub async fn open(
        io: &LakeIo,
        def: &strata_lake::schema::TableDef,
        want: &SchemaRef,
    ) -> Result<Self> {
        let Some(table) = store::open(io, def).await? else {
            return Ok(Self {
                table: None,
                cursor: None,
                same_columns: false,
            });
        };
        let name = def.qualified_name();
        let cursor = store::read_cursor(&table, &name).await?;
        let stored = table
            .snapshot()
            .map_err(Error::delta(&name))?
            .snapshot()
            .arrow_schema();
        Ok(Self {
            same_columns: same_columns(&stored, want),
            cursor,
            table: Some(table),
        })
    }

    /// The cursor to continue from, when the stored rows were built by the
    /// rules of `format` and can be continued.
    pub fn continuable(&self, format: i64) -> Option<Cursor> {
        self.cursor
            .filter(|c| c.format == format && self.same_columns && self.table.is_some())
    }
}

/// The table's columns, or why there are none yet. `Ok(None)`: nothing to
/// build (no change of the table has landed).
pub(super) async fn columns(io: &LakeIo, table: &CdcTable) -> Result<Option<TableSchema>> {
    if let Some(schema) = schema::latest(io, table).await? {
        return Ok(Some(schema));
    }
    let beginning = Position {
        lsn: i64::MIN,
        ..Position::default()
    };
    if changes::any_after(io, table, beginning).await? {
        return Err(Error::Invalid(format!(
            "bronze.cdc_changes has changes of {} but bronze.cdc_schemas has no column list for it",
            table.qualified()
        )));
    }
    Ok(None)
}

pub async fn state(io: &LakeIo, table: &CdcTable) -> Result<Outcome> {
    store::retrying(|| state_once(io, table)).await
}

async fn state_once(io: &LakeIo, table: &CdcTable) -> Result<Outcome> {
    let Some(schema) = columns(io, table).await? else {
        return Ok(Outcome::Unchanged);
    };
    let arrow = schema.state();
    let stored = Stored::open(io, &table.state, &arrow).await?;
    match stored.continuable(FORMAT) {
        Some(cursor) => state_incremental(io, table, &schema, arrow, stored, cursor).await,
        None => state_full(io, table, &schema, arrow, stored).await,
    }
}

async fn state_full(
    io: &LakeIo,
    table: &CdcTable,
    schema: &TableSchema,
    arrow: SchemaRef,
    stored: Stored,
) -> Result<Outcome> {
    // The current state starts at the last snapshot: nothing before it counts.
    let since = match changes::last_snapshot(io, table).await? {
        Some(lsn) => Since::Lsn(lsn),
        None => Since::Beginning,
    };
    let (changes, bad) = changes::read(io, table, schema, since).await?;
    let Some(last) = changes.last().map(|c| c.at) else {
        return Ok(Outcome::Unchanged);
    };
    let mut state = State::new(|_: &Key| None, None);
    for change in &changes {
        state.apply(change);
    }
    let epoch = state.epoch;
    let mut rows: Vec<(Key, Live)> = state
        .touched
        .into_iter()
        .filter_map(|(key, live)| Some((key, live?)))
        .collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let batch = state_batch(schema, &arrow, &rows)?;
    report(&bad, &table.state);
    let new_schema = stored.table.is_some();
    let written = store::overwrite(
        io,
        &table.state,
        stored.table,
        arrow,
        vec![batch],
        Cursor::new(last, epoch),
        new_schema,
    )
    .await?;
    Ok(Outcome::Written(written))
}

async fn state_incremental(
    io: &LakeIo,
    table: &CdcTable,
    schema: &TableSchema,
    arrow: SchemaRef,
    stored: Stored,
    cursor: Cursor,
) -> Result<Outcome> {
    let (changes, bad) = changes::read(io, table, schema, Since::After(cursor.at)).await?;
    let Some(last) = changes.last().map(|c| c.at) else {
        return Ok(Outcome::Unchanged);
    };
    let opened = stored.table.expect("a continuable table is open");
    let name = table.state.qualified_name();
    let old = io.scan_table(&opened, &name, &[], None).await?;
    let columns = |batch: &RecordBatch, which: &mut dyn Iterator<Item = usize>| {
        which
            .map(|i| {
                let c = &schema.columns[i];
                let array = batch.column_by_name(&c.name).ok_or_else(|| Error::Column {
                    table: name.clone(),
                    column: c.name.clone(),
                    detail: "missing from the stored table".into(),
                })?;
                Reader::new(array, c.kind)
            })
            .collect::<Result<Vec<Reader>>>()
    };
    // Where the stored rows of the keys the changes touch are: only those
    // rows are ever decoded, the others are copied as they are.
    let mut found: foldhash::HashMap<Key, (u32, u32)> = changes
        .iter()
        .flat_map(|c| std::iter::once(&c.key).chain(&c.old_key))
        .filter(|k| !k.is_empty())
        .map(|k| (k.clone(), (u32::MAX, 0)))
        .collect();
    let mut probe: Vec<Cell> = Vec::with_capacity(schema.key.len());
    for (b, batch) in old.iter().enumerate() {
        let keys = columns(batch, &mut schema.key.iter().copied())?;
        for r in 0..batch.num_rows() {
            probe.clear();
            probe.extend(keys.iter().map(|k| k.cell(r)));
            if let Some(at) = found.get_mut(probe.as_slice()) {
                *at = (b as u32, r as u32);
            }
        }
    }
    found.retain(|_, (b, _)| *b != u32::MAX);
    let mut readers: Vec<Option<Vec<Reader>>> = old.iter().map(|_| None).collect();
    let mut failed = None;
    let base = |key: &Key| -> Option<Row> {
        let &(b, r) = found.get(key)?;
        let b = b as usize;
        if readers[b].is_none() {
            match columns(&old[b], &mut (0..schema.columns.len())) {
                Ok(all) => readers[b] = Some(all),
                Err(e) => {
                    failed.get_or_insert(e);
                    return None;
                }
            }
        }
        let row = readers[b].as_ref()?;
        Some(row.iter().map(|c| c.cell(r as usize)).collect())
    };
    let mut state = State::new(base, cursor.epoch);
    for change in &changes {
        state.apply(change);
    }
    let (touched, cleared, epoch) = state.finish();
    if let Some(e) = failed {
        return Err(e);
    }
    let mut batches = Vec::new();
    if !cleared {
        // Untouched rows are kept as they are, without decoding them.
        let mut keep: Vec<BooleanBufferBuilder> = old
            .iter()
            .map(|b| {
                let mut keep = BooleanBufferBuilder::new(b.num_rows());
                keep.append_n(b.num_rows(), true);
                keep
            })
            .collect();
        for key in touched.keys() {
            if let Some(&(b, r)) = found.get(key) {
                keep[b as usize].set_bit(r as usize, false);
            }
        }
        for (batch, mut keep) in old.iter().zip(keep) {
            let kept = filter_record_batch(batch, &BooleanArray::new(keep.finish(), None))?;
            batches.push(as_schema(&kept, &arrow)?);
        }
    }
    let mut rows: Vec<(Key, Live)> = touched
        .into_iter()
        .filter_map(|(key, live)| Some((key, live?)))
        .collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    batches.push(state_batch(schema, &arrow, &rows)?);
    report(&bad, &table.state);
    let written = store::overwrite(
        io,
        &table.state,
        Some(opened),
        arrow,
        batches,
        Cursor::new(last, epoch),
        false,
    )
    .await?;
    Ok(Outcome::Written(written))
}

/// `batch` with `schema`'s field types, whatever layout the reader chose.
pub(super) fn as_schema(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch
                .column_by_name(field.name())
                .ok_or_else(|| Error::Column {
                    table: "a CDC silver table".into(),
                    column: field.name().clone(),
                    detail: "missing from the stored rows".into(),
                })?;
            Ok(if column.data_type() == field.data_type() {
                column.clone()
            } else {
                deltalake::arrow::compute::cast(column, field.data_type())?
            })
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

fn state_batch(
    schema: &TableSchema,
    arrow: &SchemaRef,
    rows: &[(Key, Live)],
) -> Result<RecordBatch> {
    let mut columns = table_columns(schema, rows.iter().map(|(_, live)| &live.row), rows.len())?;
    columns.push(Arc::new(StringArray::from_iter_values(
        rows.iter().map(|(_, live)| format_lsn(live.lsn as u64)),
    )));
    columns.push(Arc::new(
        TimestampMicrosecondArray::from_iter_values(rows.iter().map(|(_, l)| l.commit_ts))
            .with_timezone("UTC"),
    ));
    Ok(RecordBatch::try_new(arrow.clone(), columns)?)
}

/// The table's own columns of `rows`.
pub(super) fn table_columns<'a>(
    schema: &TableSchema,
    rows: impl Iterator<Item = &'a Row> + Clone,
    n: usize,
) -> Result<Vec<ArrayRef>> {
    schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let cells: Vec<&Cell> = rows.clone().map(|row| &row[i]).collect();
            debug_assert_eq!(cells.len(), n);
            cell::build(c.kind, cells.into_iter())
        })
        .collect()
}

pub(super) fn report(bad: &BadValues, def: &strata_lake::schema::TableDef) {
    if !bad.is_empty() {
        bad.warn(&def.qualified_name());
    }
}

/// Whether the table has changes its silver table (current state, or with
/// `history` the versions) has not taken in yet.
pub async fn stale(io: &LakeIo, table: &CdcTable, history: bool) -> Result<bool> {
    let Some(schema) = columns(io, table).await? else {
        return Ok(false);
    };
    let (def, arrow) = if history {
        (&table.history, schema.history())
    } else {
        (&table.state, schema.state())
    };
    let format = if history { history::FORMAT } else { FORMAT };
    let stored = Stored::open(io, def, &arrow).await?;
    let since = match stored.continuable(format) {
        Some(cursor) => cursor.at,
        // Built by other rules or columns: stale. Never built: stale once
        // a change has landed.
        None if stored.table.is_some() => return Ok(true),
        None => Position {
            lsn: i64::MIN,
            ..Position::default()
        },
    };
    changes::any_after(io, table, since).await
}
