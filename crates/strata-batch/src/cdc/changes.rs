//! One captured table's changes from `bronze.cdc_changes`, decoded into
//! typed cells and put in stream order: by commit LSN, then snapshot rows
//! before streamed ones, then the order inside the transaction.

use std::collections::{BTreeMap, HashMap};

use deltalake::arrow::array::{Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use deltalake::datafusion::prelude::{Expr, col, lit};
use serde_json::value::RawValue;
use strata_core::event::{ChangeOp, ChangePosition, STREAMED_RANK};
use strata_lake::bronze::ChangePositions;
use strata_lake::schema::BRONZE_CDC_CHANGES;

use super::CdcTable;
use super::cell::Cell;
use super::schema::TableSchema;
use crate::error::{Error, Result};
use crate::io::{LakeIo, column};

/// Where a change lies in its source's stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub lsn: i64,
    /// Snapshot rows come before the changes streamed at the same LSN.
    pub streamed: bool,
    pub seq: i64,
}

impl Position {
    /// A position as the source and the loader store it: commit LSN, and
    /// rank (`seq` with `STREAMED_RANK` set for a streamed change).
    pub fn of(at: ChangePosition) -> Self {
        Self {
            lsn: at.lsn as i64,
            streamed: at.rank & STREAMED_RANK != 0,
            seq: (at.rank & !STREAMED_RANK) as i64,
        }
    }

    /// The rank of [`Self::of`].
    pub fn rank(&self) -> i64 {
        (if self.streamed {
            STREAMED_RANK as i64
        } else {
            0
        }) | self.seq
    }
}

/// A primary key's values, in the order of the key's columns.
pub type Key = Box<[Cell]>;

#[derive(Debug, Clone)]
pub struct Change {
    pub at: Position,
    pub commit_ts: i64,
    pub op: ChangeOp,
    /// Empty for a truncate.
    pub key: Key,
    /// The key before an update that changed it.
    pub old_key: Option<Key>,
    /// Per column: `None` when absent (an update leaves it unchanged).
    pub after: Vec<Option<Cell>>,
}

/// Which of the table's changes to read.
#[derive(Debug, Clone, Copy)]
pub enum Since {
    Beginning,
    /// Changes at or after this LSN (where the last snapshot starts).
    Lsn(i64),
    /// Changes after this position (where a build left off).
    After(Position),
}

/// Values that did not parse as their column's type: written as null, and
/// reported once per build rather than once per row.
#[derive(Debug, Default)]
pub struct BadValues {
    /// Per column: how many, and the first one.
    columns: BTreeMap<String, (usize, String)>,
    /// Changes skipped because their key could not be read.
    skipped: usize,
}

impl BadValues {
    fn value(&mut self, column: &str, text: String) {
        self.columns.entry(column.to_owned()).or_insert((0, text)).0 += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.skipped == 0
    }

    pub fn warn(&self, table: &str) {
        for (column, (count, first)) in &self.columns {
            tracing::warn!(%table, %column, count, first = %first, "CDC values that do not parse as the column's type are null in silver");
        }
        if self.skipped > 0 {
            tracing::warn!(%table, changes = self.skipped, "CDC changes without a readable primary key were skipped");
        }
    }
}

fn filter(table: &CdcTable, since: Since) -> Expr {
    let mut filter = col("source")
        .eq(lit(table.source.as_str()))
        .and(col("table_schema").eq(lit(table.schema.as_str())))
        .and(col("table_name").eq(lit(table.name.as_str())));
    match since {
        Since::Beginning => {}
        Since::Lsn(lsn) => filter = filter.and(col("lsn_value").gt_eq(lit(lsn))),
        Since::After(p) => filter = filter.and(col("lsn_value").gt_eq(lit(p.lsn))),
    }
    filter
}

/// The LSN of the table's last snapshot, where its current state starts.
pub async fn last_snapshot(io: &LakeIo, table: &CdcTable) -> Result<Option<i64>> {
    let filter = filter(table, Since::Beginning).and(col("op").eq(lit("snapshot")));
    let batches = io
        .scan(&BRONZE_CDC_CHANGES, &["lsn_value"], Some(filter))
        .await?;
    let mut last = None;
    for batch in &batches {
        let lsn = column::longs(batch, "lsn_value")?;
        last = last.max(lsn.iter().flatten().max());
    }
    Ok(last)
}

/// The positions of the table's changes after `since`, without decoding
/// them: whether a build has anything to do.
pub async fn any_after(io: &LakeIo, table: &CdcTable, since: Position) -> Result<bool> {
    let batches = io
        .scan(
            &BRONZE_CDC_CHANGES,
            &["lsn_value", "op", "seq"],
            Some(filter(table, Since::After(since))),
        )
        .await?;
    for batch in &batches {
        let positions = positions(batch)?;
        if positions.into_iter().any(|p| p > since) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn positions(batch: &RecordBatch) -> Result<Vec<Position>> {
    let lsn = column::longs(batch, "lsn_value")?;
    let op = column::strings(batch, "op")?;
    let seq = column::longs(batch, "seq")?;
    Ok((0..batch.num_rows())
        .map(|i| Position {
            lsn: lsn.value(i),
            streamed: op.value(i) != "snapshot",
            seq: seq.value(i),
        })
        .collect())
}

/// How far the table's source has whole transactions in bronze: the
/// position of its last change that ended one. `None` when no change says
/// (changes landed by versions that did not mark ends): then every change
/// counts as whole.
async fn whole_through(io: &LakeIo, table: &CdcTable) -> Result<Option<Position>> {
    let marks = ChangePositions::new(io.lake().clone())
        .marks(&table.source)
        .await?;
    Ok(marks
        .filter(|m| m.through != ChangePosition::default())
        .map(|m| Position::of(m.through)))
}

/// The table's changes after `since`, in stream order, of whole
/// transactions only: a transaction bronze holds part of (a loader
/// micro-batch can end inside one) waits until its last change lands, so
/// no silver table ever shows half of it.
pub async fn read(
    io: &LakeIo,
    table: &CdcTable,
    schema: &TableSchema,
    since: Since,
) -> Result<(Vec<Change>, BadValues)> {
    // Read before the scan: the scan then sees every change up to it.
    let through = whole_through(io, table).await?;
    let batches = io
        .scan(
            &BRONZE_CDC_CHANGES,
            &[
                "op",
                "lsn_value",
                "commit_ts",
                "seq",
                "key",
                "before",
                "after",
            ],
            Some(filter(table, since)),
        )
        .await?;
    let mut order: Vec<(Position, u32, u32)> = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        for (r, at) in positions(batch)?.into_iter().enumerate() {
            if let Since::After(after) = since
                && at <= after
            {
                continue;
            }
            if through.is_some_and(|through| at > through) {
                continue;
            }
            order.push((at, b as u32, r as u32));
        }
    }
    order.sort_unstable();
    let mut decoder = Decoder::new(table, schema, &batches)?;
    let mut changes = Vec::with_capacity(order.len());
    for (at, b, r) in order {
        if let Some(change) = decoder.decode(at, b as usize, r as usize)? {
            changes.push(change);
        }
    }
    Ok((changes, decoder.bad))
}

fn text_at(array: &StringArray, row: usize) -> Option<&str> {
    (!array.is_null(row)).then(|| array.value(row))
}

/// The string columns of the scanned batches, read once.
struct Decoder<'a> {
    table: &'a CdcTable,
    schema: &'a TableSchema,
    columns: Vec<BatchColumns>,
    bad: BadValues,
}

struct BatchColumns {
    op: StringArray,
    commit_ts: TimestampMicrosecondArray,
    key: StringArray,
    before: StringArray,
    after: StringArray,
}

/// A JSON object's members, borrowed from its text.
enum Object<'a> {
    Borrowed(HashMap<&'a str, &'a RawValue>),
    /// A member name with escapes cannot be borrowed.
    Owned(HashMap<String, &'a RawValue>),
}

impl<'a> Object<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        match serde_json::from_str(text) {
            Ok(map) => Some(Object::Borrowed(map)),
            Err(_) => serde_json::from_str(text).ok().map(Object::Owned),
        }
    }

    fn get(&self, name: &str) -> Option<&'a RawValue> {
        match self {
            Object::Borrowed(map) => map.get(name).copied(),
            Object::Owned(map) => map.get(name).copied(),
        }
    }
}

impl<'a> Decoder<'a> {
    fn new(table: &'a CdcTable, schema: &'a TableSchema, batches: &[RecordBatch]) -> Result<Self> {
        let columns = batches
            .iter()
            .map(|batch| {
                Ok(BatchColumns {
                    op: column::strings(batch, "op")?,
                    commit_ts: column::micros(batch, "commit_ts")?,
                    key: column::strings(batch, "key")?,
                    before: column::strings(batch, "before")?,
                    after: column::strings(batch, "after")?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            table,
            schema,
            columns,
            bad: BadValues::default(),
        })
    }

    fn decode(&mut self, at: Position, b: usize, r: usize) -> Result<Option<Change>> {
        let c = &self.columns[b];
        let op = ChangeOp::parse(c.op.value(r)).ok_or_else(|| {
            Error::Invalid(format!(
                "bronze.cdc_changes: unknown op {:?} for {}",
                c.op.value(r),
                self.table.qualified()
            ))
        })?;
        let (key_text, before_text, after_text) = (
            text_at(&c.key, r),
            text_at(&c.before, r),
            text_at(&c.after, r),
        );
        let mut change = Change {
            at,
            commit_ts: c.commit_ts.value(r),
            op,
            key: Box::new([]),
            old_key: None,
            after: Vec::new(),
        };
        if op == ChangeOp::Truncate {
            return Ok(Some(change));
        }
        let after = after_text.and_then(Object::parse);
        let key = key_text.and_then(Object::parse);
        let Some(new_key) = self.key(key.as_ref(), after.as_ref()) else {
            self.bad.skipped += 1;
            return Ok(None);
        };
        change.key = new_key;
        if op == ChangeOp::Update
            && let Some(before) = before_text.and_then(Object::parse)
            && let Some(old) = self.key(Some(&before), None)
            && old != change.key
        {
            change.old_key = Some(old);
        }
        if let Some(after) = &after {
            change.after = self
                .schema
                .columns
                .iter()
                .map(|column| {
                    let raw = after.get(&column.name)?;
                    Some(match column.kind.parse(raw) {
                        Ok(cell) => cell,
                        Err(text) => {
                            self.bad.value(&column.name, text);
                            Cell::Null
                        }
                    })
                })
                .collect();
        } else {
            change.after = vec![None; self.schema.columns.len()];
        }
        Ok(Some(change))
    }

    /// The key columns' values, from `key` or else from the row itself.
    fn key(&self, key: Option<&Object>, row: Option<&Object>) -> Option<Key> {
        self.schema
            .key
            .iter()
            .map(|&i| {
                let column = &self.schema.columns[i];
                let raw = key
                    .and_then(|k| k.get(&column.name))
                    .or_else(|| row.and_then(|r| r.get(&column.name)))?;
                column.kind.parse(raw).ok()
            })
            .collect()
    }
}
