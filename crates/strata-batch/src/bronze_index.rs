//! One pass over the narrow columns of `bronze.events` that answers what
//! every silver partition needs to know about the whole of bronze: which
//! copies of an event id lose to an earlier-received copy (whatever date
//! they landed on), which ingest dates hold the rows of each event date, and
//! which rows are new since the last run.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use deltalake::arrow::array::Array;
use futures::StreamExt;
use strata_lake::schema::BRONZE_EVENTS;

use crate::dates::{Day, day_of_micros};
use crate::error::Result;
use crate::io::{LakeIo, column};

/// A log position: `(log_partition, log_offset)`.
pub type Position = (i32, i64);

#[derive(Debug, Default)]
pub struct BronzeIndex {
    /// Copies of an event id that are not its first-received copy.
    pub losers: HashSet<Position>,
    /// For each event date (of winning copies), the ingest dates holding them.
    pub ingest_days: BTreeMap<Day, BTreeSet<Day>>,
    /// Event dates touched by rows beyond the positions the caller had seen.
    pub new_days: BTreeSet<Day>,
    /// One past the highest offset seen, per log partition.
    pub ends: BTreeMap<i32, i64>,
    pub rows: usize,
}

/// One bronze row as the index sees it; ten million of these are sorted,
/// so the fields are laid out to fit 64 bytes.
struct Copy {
    key: Key,
    received_at: i64,
    offset: i64,
    partition: i32,
    day: Day,
    ingest_day: Day,
    new: bool,
}

impl Copy {
    fn position(&self) -> Position {
        (self.partition, self.offset)
    }
}

/// Event ids are UUIDs almost always; comparing 16 bytes instead of strings
/// keeps the sort of ten million ids cheap. Anything else is kept verbatim.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Uuid(u128),
    Text(Box<str>),
}

fn key_of(id: &str) -> Key {
    if id.len() == 36 {
        if let Ok(uuid) = uuid::Uuid::try_parse(id) {
            // The text form is canonical only in lower case; keep other
            // spellings distinct, as the string comparison would.
            if uuid.hyphenated().to_string() == id {
                return Key::Uuid(uuid.as_u128());
            }
        }
    }
    Key::Text(id.into())
}

impl BronzeIndex {
    /// Scans bronze; rows at or beyond `seen[partition]` count as new.
    /// Batches are folded in as they are decoded, so the scan never holds
    /// more than one batch of strings.
    pub async fn build(io: &LakeIo, seen: &BTreeMap<i32, i64>) -> Result<Self> {
        let mut index = BronzeIndex::default();
        // Sized once: growing a vector of ten million copies by doubling
        // would hold the old and the new buffer at the same time.
        let mut copies = Vec::with_capacity(io.row_count_hint(&BRONZE_EVENTS).await?);
        let stream = io
            .scan_stream(
                &BRONZE_EVENTS,
                &[
                    "event_id",
                    "received_at",
                    "log_partition",
                    "log_offset",
                    "event_ts",
                    "ingest_date",
                ],
                None,
            )
            .await?;
        if let Some(mut stream) = stream {
            while let Some(batch) = stream.next().await {
                index.add_batch(&batch?, seen, &mut copies)?;
            }
        }
        tokio::task::spawn_blocking(move || index.resolve(copies))
            .await
            .map_err(|e| crate::Error::Task(e.to_string()))?
    }

    fn add_batch(
        &mut self,
        batch: &deltalake::arrow::array::RecordBatch,
        seen: &BTreeMap<i32, i64>,
        copies: &mut Vec<Copy>,
    ) -> Result<()> {
        self.rows += batch.num_rows();
        let ids = column::strings(batch, "event_id")?;
        let received = column::micros(batch, "received_at")?;
        let partitions = column::ints(batch, "log_partition")?;
        let offsets = column::longs(batch, "log_offset")?;
        let ts = column::micros(batch, "event_ts")?;
        let ingest = column::days(batch, "ingest_date")?;
        copies.reserve(batch.num_rows());
        for i in 0..batch.num_rows() {
            let position = (partitions.value(i), offsets.value(i));
            let end = self.ends.entry(position.0).or_insert(0);
            *end = (*end).max(position.1 + 1);
            let new = position.1 >= seen.get(&position.0).copied().unwrap_or(0);
            copies.push(Copy {
                key: key_of(ids.value(i)),
                received_at: received.value(i),
                offset: position.1,
                partition: position.0,
                day: day_of_micros(ts.value(i)),
                ingest_day: ingest.value(i),
                new,
            });
        }
        Ok(())
    }

    fn resolve(mut self, mut copies: Vec<Copy>) -> Result<Self> {
        let index = &mut self;
        copies.sort_unstable_by(|a, b| {
            (&a.key, a.received_at, a.position()).cmp(&(&b.key, b.received_at, b.position()))
        });
        let mut start = 0;
        while start < copies.len() {
            let mut end = start + 1;
            while end < copies.len() && copies[end].key == copies[start].key {
                end += 1;
            }
            let group = &copies[start..end];
            let winner = &group[0];
            index
                .ingest_days
                .entry(winner.day)
                .or_default()
                .insert(winner.ingest_day);
            if group.iter().any(|c| c.new) {
                // A new copy may have displaced the old winner or been
                // displaced: every date of the group is to be rebuilt.
                index.new_days.extend(group.iter().map(|c| c.day));
            }
            for loser in &group[1..] {
                index.losers.insert(loser.position());
            }
            start = end;
        }
        Ok(self)
    }
}

/// The winning link of one anonymous id (SPEC §4, Person).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub user_id: String,
    pub linked_at: i64,
    pub link_event_id: String,
    pub ignored_links: i64,
}

/// Earliest link by `(event_ts, event_id)` per anonymous id, from the
/// deduplicated events carrying both ids (identify, alias, or any other).
pub async fn links(io: &LakeIo, index: &BronzeIndex) -> Result<BTreeMap<String, Link>> {
    use deltalake::datafusion::prelude::col;
    let filter = col("anonymous_id")
        .is_not_null()
        .and(col("user_id").is_not_null());
    let stream = io
        .scan_stream(
            &BRONZE_EVENTS,
            &[
                "anonymous_id",
                "user_id",
                "event_ts",
                "event_id",
                "log_partition",
                "log_offset",
            ],
            Some(filter),
        )
        .await?;
    let Some(mut stream) = stream else {
        return Ok(BTreeMap::new());
    };
    // Most link events repeat a known (anonymous id, user) pair: they only
    // bump a count, without allocating.
    struct Candidates {
        earliest: (i64, String, String),
        per_user: Vec<(String, i64)>,
    }
    let mut by_anon: HashMap<String, Candidates> = HashMap::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let anon = column::strings(&batch, "anonymous_id")?;
        let user = column::strings(&batch, "user_id")?;
        let ts = column::micros(&batch, "event_ts")?;
        let ids = column::strings(&batch, "event_id")?;
        let partitions = column::ints(&batch, "log_partition")?;
        let offsets = column::longs(&batch, "log_offset")?;
        for i in 0..batch.num_rows() {
            if anon.is_null(i) || user.is_null(i) {
                continue;
            }
            if index
                .losers
                .contains(&(partitions.value(i), offsets.value(i)))
            {
                continue;
            }
            let (a, u, t, id) = (anon.value(i), user.value(i), ts.value(i), ids.value(i));
            match by_anon.get_mut(a) {
                None => {
                    by_anon.insert(
                        a.to_owned(),
                        Candidates {
                            earliest: (t, id.to_owned(), u.to_owned()),
                            per_user: vec![(u.to_owned(), 1)],
                        },
                    );
                }
                Some(c) => {
                    if (t, id) < (c.earliest.0, c.earliest.1.as_str()) {
                        c.earliest = (t, id.to_owned(), u.to_owned());
                    }
                    match c.per_user.iter_mut().find(|(name, _)| name == u) {
                        Some((_, n)) => *n += 1,
                        None => c.per_user.push((u.to_owned(), 1)),
                    }
                }
            }
        }
    }
    Ok(by_anon
        .into_iter()
        .map(|(anon, c)| {
            let (linked_at, link_event_id, user_id) = c.earliest;
            let ignored_links = c
                .per_user
                .iter()
                .filter(|(name, _)| *name != user_id)
                .map(|(_, n)| n)
                .sum();
            (
                anon,
                Link {
                    user_id,
                    linked_at,
                    link_event_id,
                    ignored_links,
                },
            )
        })
        .collect())
}
