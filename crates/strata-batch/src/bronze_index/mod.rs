//! What every silver partition needs to know about the whole of bronze:
//! which copies of an event id lose to an earlier-received copy (whatever
//! date they landed on), which ingest dates hold the rows of each event
//! date, which event dates changed since the last run, and the identity
//! links.
//!
//! The index is saved in the data dir, so a run reads only the bronze rows
//! past the saved log positions and merges them in; it is rebuilt from all
//! of bronze when it is missing or does not match the batch state.

mod links;
mod store;
mod winners;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::{Expr, col, lit};
use futures::StreamExt;
use strata_core::event::id_key;
use strata_lake::schema::BRONZE_EVENTS;

pub use links::Link;
use links::LinkTally;
use store::{Meta, Store};
use winners::{Key, Winner, Winners};

use crate::dates::{Day, day_of_micros};
use crate::error::{Error, Result};
use crate::io::{LakeIo, column};

/// A log position: `(log_partition, log_offset)`.
pub type Position = (i32, i64);

pub struct BronzeIndex {
    /// Copies of an event id that are not its first-received copy.
    pub losers: HashSet<Position>,
    /// For each event date (of winning copies), the ingest dates holding them.
    pub ingest_days: BTreeMap<Day, BTreeSet<Day>>,
    /// Event dates whose winning rows changed with the rows beyond the
    /// positions the caller had seen.
    pub new_days: BTreeSet<Day>,
    /// One past the highest offset indexed, per log partition.
    pub ends: BTreeMap<i32, i64>,
    /// Whether this run extended a saved index (rather than reading all of bronze).
    pub incremental: bool,
    /// Rows read from bronze to build or extend the index.
    pub rows_read: usize,
    winners: Winners,
    tally: LinkTally,
    store: Store,
    saved: Option<Meta>,
    dirty: bool,
}

/// One bronze row as the index sees it.
struct Copy {
    key: Key,
    winner: Winner,
    ingest_day: Day,
    new: bool,
}

const INDEX_COLUMNS: [&str; 6] = [
    "event_id",
    "received_at",
    "log_partition",
    "log_offset",
    "event_ts",
    "ingest_date",
];

impl BronzeIndex {
    /// The index of bronze as it is now; rows at or beyond `seen` count as
    /// new. `dir` is the batch state directory.
    pub async fn build(io: &LakeIo, dir: &Path, seen: &BTreeMap<i32, i64>) -> Result<Self> {
        let store = Store::new(dir.join("index"));
        let mut index = BronzeIndex {
            losers: HashSet::new(),
            ingest_days: BTreeMap::new(),
            new_days: BTreeSet::new(),
            ends: BTreeMap::new(),
            incremental: false,
            rows_read: 0,
            winners: Winners::default(),
            tally: LinkTally::default(),
            store,
            saved: None,
            dirty: true,
        };
        match index.store.meta()? {
            // The saved index covers exactly what the state has seen.
            Some(meta) if meta.ends == *seen => {
                index.load(meta)?;
                index.extend(io).await?;
            }
            _ => index.rebuild(io, seen).await?,
        }
        Ok(index)
    }

    pub fn links(&self) -> BTreeMap<String, Link> {
        self.tally.links()
    }

    /// Loads the saved index, except the winners: a run that finds no new
    /// bronze rows never needs them, and they are most of the index.
    fn load(&mut self, meta: Meta) -> Result<()> {
        for name in meta.losers.iter() {
            for batch in self.store.read(name)? {
                let partitions = column::ints(&batch, "log_partition")?;
                let offsets = column::longs(&batch, "log_offset")?;
                self.losers
                    .extend((0..batch.num_rows()).map(|i| (partitions.value(i), offsets.value(i))));
            }
        }
        for name in meta.links.iter() {
            for batch in self.store.read(name)? {
                self.tally.load(&batch)?;
            }
        }
        self.ingest_days = meta.ingest_days.clone();
        self.ends = meta.ends.clone();
        self.saved = Some(meta);
        self.incremental = true;
        self.dirty = false;
        Ok(())
    }

    fn load_winners(&mut self) -> Result<()> {
        let Some(meta) = &self.saved else {
            return Ok(());
        };
        for name in meta.base.iter() {
            self.winners.load_base(&self.store.read(name)?)?;
        }
        for name in &meta.deltas {
            for batch in self.store.read(name)? {
                self.winners.load_delta(&batch)?;
            }
        }
        Ok(())
    }

    /// Merges the bronze rows beyond the saved positions into the index.
    async fn extend(&mut self, io: &LakeIo) -> Result<()> {
        let mut columns = INDEX_COLUMNS.to_vec();
        columns.extend(["anonymous_id", "user_id"]);
        let stream = io
            .scan_stream(&BRONZE_EVENTS, &columns, beyond(&self.ends))
            .await?;
        let Some(mut stream) = stream else {
            return Ok(());
        };
        let known = self.ends.clone();
        let mut copies = Vec::new();
        // Link events among the new rows, kept until it is known which win.
        let mut link_rows: Vec<(Position, String, String, i64, String)> = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let anon = column::strings(&batch, "anonymous_id")?;
            let user = column::strings(&batch, "user_id")?;
            let ids = column::strings(&batch, "event_id")?;
            let ts = column::micros(&batch, "event_ts")?;
            let before = copies.len();
            self.add_batch(&batch, &known, &mut copies)?;
            for (i, copy) in copies[before..].iter().enumerate() {
                debug_assert!(copy.new, "the scan filter passes only unindexed rows");
                if anon.is_valid(i) && user.is_valid(i) {
                    link_rows.push((
                        copy.winner.position(),
                        anon.value(i).to_owned(),
                        user.value(i).to_owned(),
                        ts.value(i),
                        ids.value(i).to_owned(),
                    ));
                }
            }
        }
        if copies.is_empty() {
            return Ok(());
        }
        self.load_winners()?;
        self.dirty = true;
        let displaced = self.merge(copies);
        if displaced {
            // An indexed copy lost its place: its link, if it was one, has
            // to leave the tally, and only a recount knows which it was.
            self.tally = tally_links(io, &self.losers).await?;
        } else {
            for (position, anon, user, ts, id) in &link_rows {
                if !self.losers.contains(position) {
                    self.tally.add(anon, user, *ts, id);
                }
            }
        }
        Ok(())
    }

    /// Folds new copies into the saved winners; returns whether any saved
    /// winner was displaced.
    fn merge(&mut self, mut copies: Vec<Copy>) -> bool {
        sort_by_arrival(&mut copies);
        let mut displaced = false;
        let mut updates = Vec::new();
        let mut cursor = self.winners.cursor();
        for group in copies.chunk_by(|a, b| a.key == b.key) {
            let best = &group[0];
            self.losers
                .extend(group[1..].iter().map(|c| c.winner.position()));
            match cursor.get(best.key) {
                Some(old) if !best.winner.beats(&old) => {
                    self.losers.insert(best.winner.position());
                }
                old => {
                    if let Some(old) = old {
                        displaced = true;
                        self.losers.insert(old.position());
                        self.new_days.insert(old.day);
                    }
                    self.new_days.insert(best.winner.day);
                    self.ingest_days
                        .entry(best.winner.day)
                        .or_default()
                        .insert(best.ingest_day);
                    updates.push((best.key, best.winner));
                }
            }
        }
        for (key, winner) in updates {
            self.winners.set(key, winner);
        }
        displaced
    }

    /// Reads the index columns of all of bronze.
    async fn rebuild(&mut self, io: &LakeIo, seen: &BTreeMap<i32, i64>) -> Result<()> {
        // Sized once: growing a vector of ten million copies by doubling
        // would hold the old and the new buffer at the same time.
        let mut copies = Vec::with_capacity(io.row_count_hint(&BRONZE_EVENTS).await?);
        if let Some(mut stream) = io.scan_stream(&BRONZE_EVENTS, &INDEX_COLUMNS, None).await? {
            while let Some(batch) = stream.next().await {
                self.add_batch(&batch?, seen, &mut copies)?;
            }
        }
        let resolved = tokio::task::spawn_blocking(move || resolve(copies))
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
        self.winners = resolved.winners;
        self.losers = resolved.losers;
        self.ingest_days = resolved.ingest_days;
        self.new_days = resolved.new_days;
        self.tally = tally_links(io, &self.losers).await?;
        Ok(())
    }

    /// Appends one copy per row of `batch`, new when at or beyond `seen`.
    fn add_batch(
        &mut self,
        batch: &RecordBatch,
        seen: &BTreeMap<i32, i64>,
        copies: &mut Vec<Copy>,
    ) -> Result<()> {
        self.rows_read += batch.num_rows();
        let ids = column::strings(batch, "event_id")?;
        let received = column::micros(batch, "received_at")?;
        let partitions = column::ints(batch, "log_partition")?;
        let offsets = column::longs(batch, "log_offset")?;
        let ts = column::micros(batch, "event_ts")?;
        let ingest = column::days(batch, "ingest_date")?;
        copies.reserve(batch.num_rows());
        for i in 0..batch.num_rows() {
            let (partition, offset) = (partitions.value(i), offsets.value(i));
            let end = self.ends.entry(partition).or_insert(0);
            *end = (*end).max(offset + 1);
            copies.push(Copy {
                key: id_key(ids.value(i)),
                winner: Winner {
                    received_at: received.value(i),
                    partition,
                    offset,
                    day: day_of_micros(ts.value(i)),
                },
                ingest_day: ingest.value(i),
                new: offset >= seen.get(&partition).copied().unwrap_or(0),
            });
        }
        Ok(())
    }

    /// Saves the index, once the batch state records its positions as seen:
    /// the next run extends it from there.
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let previous = self.saved.clone().unwrap_or_default();
        let generation = previous.generation + 1;
        let mut meta = Meta {
            generation,
            ends: self.ends.clone(),
            ingest_days: self.ingest_days.clone(),
            ..Meta::default()
        };
        if !self.incremental || self.winners.wants_compaction() {
            if self.incremental {
                self.winners.compact();
            }
            let base = self.winners.base_batch()?;
            meta.base = Some(self.store.write("base", generation, &base)?);
        } else {
            meta.base = previous.base.clone();
            meta.deltas = previous.deltas.clone();
        }
        let delta = self.winners.delta_batch()?;
        if delta.num_rows() > 0 {
            meta.deltas
                .push(self.store.write("delta", generation, &delta)?);
        }
        meta.losers = Some(
            self.store
                .write("losers", generation, &losers_batch(&self.losers)?)?,
        );
        meta.links = Some(
            self.store
                .write("links", generation, &self.tally.to_batch()?)?,
        );
        self.store.commit(meta.clone())?;
        self.winners.mark_saved();
        self.saved = Some(meta);
        self.incremental = true;
        self.dirty = false;
        Ok(())
    }
}

struct Resolved {
    winners: Winners,
    losers: HashSet<Position>,
    ingest_days: BTreeMap<Day, BTreeSet<Day>>,
    new_days: BTreeSet<Day>,
}

/// Groups copies by event id, each group in arrival order: its first copy
/// is the one received first (ties by log position).
fn sort_by_arrival(copies: &mut [Copy]) {
    copies.sort_unstable_by(|a, b| {
        (a.key, a.winner.received_at, a.winner.position()).cmp(&(
            b.key,
            b.winner.received_at,
            b.winner.position(),
        ))
    });
}

/// Sorts all copies by event id and arrival; the first of each id wins.
fn resolve(mut copies: Vec<Copy>) -> Resolved {
    sort_by_arrival(&mut copies);
    let mut out = Resolved {
        winners: Winners::default(),
        losers: HashSet::new(),
        ingest_days: BTreeMap::new(),
        new_days: BTreeSet::new(),
    };
    let mut sorted = Vec::with_capacity(copies.len());
    for group in copies.chunk_by(|a, b| a.key == b.key) {
        let winner = &group[0];
        out.ingest_days
            .entry(winner.winner.day)
            .or_default()
            .insert(winner.ingest_day);
        if winner.new {
            // A new winner adds its date and takes the row of the best
            // copy seen before, if any, from that one's date.
            out.new_days.insert(winner.winner.day);
            if let Some(old) = group.iter().find(|c| !c.new) {
                out.new_days.insert(old.winner.day);
            }
        }
        out.losers
            .extend(group[1..].iter().map(|c| c.winner.position()));
        sorted.push((winner.key, winner.winner));
    }
    drop(copies);
    out.winners = Winners::from_sorted(sorted);
    out
}

/// Rows at or beyond `ends`, for pruning files by their log-position
/// statistics; partitions not in `ends` are read whole.
fn beyond(ends: &BTreeMap<i32, i64>) -> Option<Expr> {
    let (first, last) = (*ends.keys().next()?, *ends.keys().next_back()?);
    let mut filter = col("log_partition")
        .lt(lit(first))
        .or(col("log_partition").gt(lit(last)));
    for p in first..=last {
        filter = filter.or(match ends.get(&p) {
            Some(end) => col("log_partition")
                .eq(lit(p))
                .and(col("log_offset").gt_eq(lit(*end))),
            None => col("log_partition").eq(lit(p)),
        });
    }
    Some(filter)
}

fn losers_batch(losers: &HashSet<Position>) -> Result<RecordBatch> {
    let mut sorted: Vec<Position> = losers.iter().copied().collect();
    sorted.sort_unstable();
    let schema = Arc::new(Schema::new(vec![
        Field::new("log_partition", DataType::Int32, false),
        Field::new("log_offset", DataType::Int64, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from_iter_values(sorted.iter().map(|p| p.0))) as ArrayRef,
            Arc::new(Int64Array::from_iter_values(sorted.iter().map(|p| p.1))),
        ],
    )?)
}

/// Tallies every deduplicated bronze event that carries both ids.
async fn tally_links(io: &LakeIo, losers: &HashSet<Position>) -> Result<LinkTally> {
    let filter = col("anonymous_id")
        .is_not_null()
        .and(col("user_id").is_not_null());
    let columns = [
        "anonymous_id",
        "user_id",
        "event_ts",
        "event_id",
        "log_partition",
        "log_offset",
    ];
    let mut tally = LinkTally::default();
    let Some(mut stream) = io
        .scan_stream(&BRONZE_EVENTS, &columns, Some(filter))
        .await?
    else {
        return Ok(tally);
    };
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let anon = column::strings(&batch, "anonymous_id")?;
        let user = column::strings(&batch, "user_id")?;
        let ts = column::micros(&batch, "event_ts")?;
        let ids = column::strings(&batch, "event_id")?;
        let partitions = column::ints(&batch, "log_partition")?;
        let offsets = column::longs(&batch, "log_offset")?;
        for i in 0..batch.num_rows() {
            if anon.is_null(i)
                || user.is_null(i)
                || losers.contains(&(partitions.value(i), offsets.value(i)))
            {
                continue;
            }
            tally.add(anon.value(i), user.value(i), ts.value(i), ids.value(i));
        }
    }
    Ok(tally)
}
