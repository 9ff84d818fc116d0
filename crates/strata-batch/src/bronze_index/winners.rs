//! The winning copy of every event id seen so far: a sorted base of 128-bit
//! keys (read in one sequential pass when merging) plus an overlay of the
//! entries changed since the base was written.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, UInt64Array};
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use super::Position;
use crate::dates::Day;
use crate::error::{Error, Result};
use crate::io::column;

/// An event id as `strata_core::event::id_key` keys it, as the realtime
/// path does: comparing 16 bytes instead of strings keeps the sort of ten
/// million ids cheap, and ids that are not UUIDs (upper-case iOS ids,
/// `ajs-…` ids) are folded into the base like any other instead of being
/// held as text forever.
pub type Key = u128;

/// The copy of an event id that silver keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Winner {
    pub received_at: i64,
    pub partition: i32,
    pub offset: i64,
    pub day: Day,
}

impl Winner {
    pub fn position(&self) -> Position {
        (self.partition, self.offset)
    }

    /// Whether this copy beats `other`: received first, then the lower
    /// log position.
    pub fn beats(&self, other: &Winner) -> bool {
        (self.received_at, self.position()) < (other.received_at, other.position())
    }
}

#[derive(Debug, Default)]
pub struct Winners {
    base: Base,
    overlay: HashMap<Key, Winner>,
    /// Keys whose entry changed since the last save.
    changed: Vec<Key>,
}

/// UUID keys in ascending order, with their winners, column by column.
#[derive(Debug)]
struct Base {
    hi: UInt64Array,
    lo: UInt64Array,
    received_at: Int64Array,
    partition: Int32Array,
    offset: Int64Array,
    day: Int32Array,
}

impl Default for Base {
    fn default() -> Self {
        Base {
            hi: UInt64Array::from(Vec::<u64>::new()),
            lo: UInt64Array::from(Vec::<u64>::new()),
            received_at: Int64Array::from(Vec::<i64>::new()),
            partition: Int32Array::from(Vec::<i32>::new()),
            offset: Int64Array::from(Vec::<i64>::new()),
            day: Int32Array::from(Vec::<i32>::new()),
        }
    }
}

impl Base {
    fn len(&self) -> usize {
        self.hi.len()
    }

    fn key(&self, i: usize) -> u128 {
        ((self.hi.value(i) as u128) << 64) | self.lo.value(i) as u128
    }

    fn winner(&self, i: usize) -> Winner {
        Winner {
            received_at: self.received_at.value(i),
            partition: self.partition.value(i),
            offset: self.offset.value(i),
            day: self.day.value(i),
        }
    }
}

/// Looks keys up in ascending order with one forward pass over the base.
pub struct Cursor<'a> {
    winners: &'a Winners,
    next: usize,
}

impl Cursor<'_> {
    /// The current winner of `key`; keys must come in ascending order.
    pub fn get(&mut self, key: Key) -> Option<Winner> {
        if let Some(w) = self.winners.overlay.get(&key) {
            return Some(*w);
        }
        let base = &self.winners.base;
        while self.next < base.len() && base.key(self.next) < key {
            self.next += 1;
        }
        (self.next < base.len() && base.key(self.next) == key).then(|| base.winner(self.next))
    }
}

impl Winners {
    /// From winners sorted by key, as the full build produces them.
    pub fn from_sorted(sorted: Vec<(Key, Winner)>) -> Self {
        let mut columns = Columns::with_capacity(sorted.len());
        for (key, winner) in sorted {
            columns.push(key, &winner);
        }
        Winners {
            base: columns.finish(),
            ..Winners::default()
        }
    }

    pub fn cursor(&self) -> Cursor<'_> {
        Cursor {
            winners: self,
            next: 0,
        }
    }

    pub fn set(&mut self, key: Key, winner: Winner) {
        self.overlay.insert(key, winner);
        self.changed.push(key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.base.len() + self.overlay.len()
    }

    #[cfg(test)]
    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    /// Whether the overlay has grown enough that a new base pays for itself.
    pub fn wants_compaction(&self) -> bool {
        self.overlay.len() > 500_000 && self.overlay.len() * 4 > self.base.len()
    }

    /// The base merged with the overlay, which is left empty.
    pub fn compact(&mut self) {
        let mut extra: Vec<(u128, Winner)> = self.overlay.drain().collect();
        extra.sort_unstable_by_key(|(k, _)| *k);
        let base = std::mem::take(&mut self.base);
        let mut columns = Columns::with_capacity(base.len() + extra.len());
        let mut j = 0;
        for i in 0..base.len() {
            let k = base.key(i);
            while j < extra.len() && extra[j].0 < k {
                columns.push(extra[j].0, &extra[j].1);
                j += 1;
            }
            if j < extra.len() && extra[j].0 == k {
                columns.push(k, &extra[j].1);
                j += 1;
            } else {
                columns.push(k, &base.winner(i));
            }
        }
        for (k, w) in &extra[j..] {
            columns.push(*k, w);
        }
        self.base = columns.finish();
        self.changed.clear();
    }

    pub fn base_batch(&self) -> Result<RecordBatch> {
        let b = &self.base;
        Ok(RecordBatch::try_new(
            base_schema(),
            vec![
                Arc::new(b.hi.clone()) as ArrayRef,
                Arc::new(b.lo.clone()),
                Arc::new(b.received_at.clone()),
                Arc::new(b.partition.clone()),
                Arc::new(b.offset.clone()),
                Arc::new(b.day.clone()),
            ],
        )?)
    }

    pub fn load_base(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let batch = deltalake::arrow::compute::concat_batches(&base_schema(), batches)?;
        self.base = Base {
            hi: column::unsigned_longs_at(&batch, 0)?,
            lo: column::unsigned_longs_at(&batch, 1)?,
            received_at: column::longs_at(&batch, 2)?,
            partition: column::ints_at(&batch, 3)?,
            offset: column::longs_at(&batch, 4)?,
            day: column::ints_at(&batch, 5)?,
        };
        Ok(())
    }

    /// The entries changed since the last save, in the layout of the base.
    pub fn delta_batch(&self) -> Result<RecordBatch> {
        let mut seen = std::collections::HashSet::new();
        let keys: Vec<Key> = self
            .changed
            .iter()
            .copied()
            .filter(|k| seen.insert(*k))
            .collect();
        let winners: Vec<Winner> = keys.iter().map(|k| self.overlay[k]).collect();
        Ok(RecordBatch::try_new(
            base_schema(),
            vec![
                Arc::new(UInt64Array::from_iter_values(
                    keys.iter().map(|k| (k >> 64) as u64),
                )) as ArrayRef,
                Arc::new(UInt64Array::from_iter_values(
                    keys.iter().map(|k| *k as u64),
                )),
                Arc::new(Int64Array::from_iter_values(
                    winners.iter().map(|w| w.received_at),
                )),
                Arc::new(Int32Array::from_iter_values(
                    winners.iter().map(|w| w.partition),
                )),
                Arc::new(Int64Array::from_iter_values(
                    winners.iter().map(|w| w.offset),
                )),
                Arc::new(Int32Array::from_iter_values(winners.iter().map(|w| w.day))),
            ],
        )?)
    }

    /// Applies a saved delta on top of what is loaded (later deltas win).
    pub fn load_delta(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.schema().fields() != base_schema().fields() {
            return Err(Error::Invalid(
                "bronze index delta has an unknown layout".into(),
            ));
        }
        let hi = column::unsigned_longs_at(batch, 0)?;
        let lo = column::unsigned_longs_at(batch, 1)?;
        let received = column::longs_at(batch, 2)?;
        let partition = column::ints_at(batch, 3)?;
        let offset = column::longs_at(batch, 4)?;
        let day = column::ints_at(batch, 5)?;
        for i in 0..batch.num_rows() {
            self.overlay.insert(
                ((hi.value(i) as u128) << 64) | lo.value(i) as u128,
                Winner {
                    received_at: received.value(i),
                    partition: partition.value(i),
                    offset: offset.value(i),
                    day: day.value(i),
                },
            );
        }
        Ok(())
    }

    /// Forgets which entries changed: they are saved.
    pub fn mark_saved(&mut self) {
        self.changed.clear();
    }
}

struct Columns {
    hi: Vec<u64>,
    lo: Vec<u64>,
    received_at: Vec<i64>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    day: Vec<i32>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Columns {
            hi: Vec::with_capacity(n),
            lo: Vec::with_capacity(n),
            received_at: Vec::with_capacity(n),
            partition: Vec::with_capacity(n),
            offset: Vec::with_capacity(n),
            day: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, key: u128, w: &Winner) {
        self.hi.push((key >> 64) as u64);
        self.lo.push(key as u64);
        self.received_at.push(w.received_at);
        self.partition.push(w.partition);
        self.offset.push(w.offset);
        self.day.push(w.day);
    }

    fn finish(self) -> Base {
        Base {
            hi: self.hi.into(),
            lo: self.lo.into(),
            received_at: self.received_at.into(),
            partition: self.partition.into(),
            offset: self.offset.into(),
            day: self.day.into(),
        }
    }
}

fn winner_fields() -> [Field; 4] {
    [
        Field::new("received_at", DataType::Int64, false),
        Field::new("log_partition", DataType::Int32, false),
        Field::new("log_offset", DataType::Int64, false),
        Field::new("event_day", DataType::Int32, false),
    ]
}

pub fn base_schema() -> Arc<Schema> {
    let mut fields = vec![
        Field::new("key_hi", DataType::UInt64, false),
        Field::new("key_lo", DataType::UInt64, false),
    ];
    fields.extend(winner_fields());
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::event::id_key as key_of;

    fn w(received_at: i64, offset: i64) -> Winner {
        Winner {
            received_at,
            partition: 0,
            offset,
            day: 1,
        }
    }

    #[test]
    fn overlay_wins_over_base_and_compaction_keeps_every_key() {
        let ids = [
            "00000000-0000-0000-0000-000000000001",
            "00000000-0000-0000-0000-000000000003",
            "00000000-0000-0000-0000-000000000005",
        ];
        let mut winners = Winners::from_sorted(
            ids.iter()
                .enumerate()
                .map(|(i, id)| (key_of(id), w(10, i as i64)))
                .collect(),
        );
        winners.set(key_of("00000000-0000-0000-0000-000000000003"), w(5, 9));
        winners.set(key_of("00000000-0000-0000-0000-000000000004"), w(7, 8));
        winners.set(key_of("not-a-uuid"), w(1, 7));
        let lookups = [
            ("00000000-0000-0000-0000-000000000001", Some(w(10, 0))),
            ("00000000-0000-0000-0000-000000000002", None),
            ("00000000-0000-0000-0000-000000000003", Some(w(5, 9))),
            ("00000000-0000-0000-0000-000000000004", Some(w(7, 8))),
            ("00000000-0000-0000-0000-000000000005", Some(w(10, 2))),
            ("NOT-A-UUID", None),
            ("not-a-uuid", Some(w(1, 7))),
        ];
        let check = |winners: &Winners| {
            let mut keys: Vec<(Key, Option<Winner>)> =
                lookups.iter().map(|(id, e)| (key_of(id), *e)).collect();
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            let mut cursor = winners.cursor();
            for (key, expected) in keys {
                assert_eq!(cursor.get(key), expected, "{key:?}");
            }
        };
        check(&winners);
        winners.compact();
        check(&winners);
        assert_eq!(winners.len(), 5);
        assert_eq!(winners.overlay_len(), 0, "text ids are compacted too");
    }

    #[test]
    fn a_copy_received_first_beats_one_received_later_then_the_lower_position() {
        assert!(w(1, 9).beats(&w(2, 0)));
        assert!(w(2, 0).beats(&w(2, 1)));
        assert!(!w(2, 1).beats(&w(2, 1)));
    }
}
