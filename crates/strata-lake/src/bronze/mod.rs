//! The bronze loader: log → one bronze table per kind of record (events,
//! quarantine, CDC changes and table definitions), exactly once.
//!
//! Each Delta commit carries, as application transactions (`txn` actions),
//! the next log offset of every partition it covers. Before each write the
//! loader re-reads those versions from the table and drops every record below
//! them, so a re-delivery after a crash, or a second loader, writes nothing
//! twice. Positions live only in the tables: there is no side file to get out
//! of step with the data.

pub mod feeds;
mod rows;
mod sink;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::protocol::SaveMode;
use strata_core::config::LoaderConfig;
use strata_core::event::{BronzeEvent, FeedChunk};
use strata_log::{Log, LogEntry, LogError};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::schema::BRONZE_EVENTS;
use crate::table::Lake;

use feeds::FeedSink;
pub use rows::{Decoded, Rows, Table};
use sink::Sink;
pub use sink::{ChangePositions, SourceMarks};

/// The name under which the loader reports its progress to the log.
pub const CONSUMER: &str = "bronze";
const READ_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Log records decoded and converted to Arrow at a time.
const CONVERT_ROWS: usize = 16 * 1024;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoadStats {
    pub events: usize,
    pub quarantined: usize,
    /// CDC changes and table definitions.
    pub changes: usize,
    /// Rows of file feeds.
    pub feed_rows: usize,
    /// Records already present in their table (re-deliveries, and changes
    /// a CDC source sent again after a restart).
    pub skipped: usize,
}

/// The loader keeps one [`Sink`] per [`Table`]: the table map. Adding a
/// kind of record is a variant of `Table` and its columns, nothing here.
///
/// A table created on its first row counts in the committed positions only
/// once it exists. That is safe because tables are committed in `Table`
/// order, those created late first: no commit of the others can move past
/// a record whose table does not exist yet.
pub struct BronzeLoader {
    lake: Lake,
    log: Arc<dyn Log>,
    sinks: Vec<(Table, Sink)>,
    /// One per feed table (`bronze.feed_<table>`), opened when bronze has
    /// the table or its first chunk arrives; committed before the others,
    /// as tables created on their first row are.
    feeds: HashMap<String, FeedSink>,
    /// Next offset to read from the log, per partition.
    cursor: Vec<u64>,
    config: LoaderConfig,
    commits_since_optimize: u64,
}

impl BronzeLoader {
    pub async fn open(lake: &Lake, log: Arc<dyn Log>, config: LoaderConfig) -> Result<Self> {
        let partitions = log.partition_count();
        let mut sinks = Vec::new();
        for table in Table::ALL {
            sinks.push((table, Sink::open(lake, table, partitions).await?));
        }
        let mut feed_sinks = HashMap::new();
        for name in feeds::existing(lake) {
            let sink = FeedSink::open(lake, &name, partitions).await?;
            feed_sinks.insert(name, sink);
        }
        let mut loader = Self {
            lake: lake.clone(),
            log,
            sinks,
            feeds: feed_sinks,
            cursor: Vec::new(),
            config,
            commits_since_optimize: 0,
        };
        loader.cursor = loader.committed_positions();
        Ok(loader)
    }

    /// Per partition, the offset below which every table holds every record.
    pub fn committed_positions(&self) -> Vec<u64> {
        let partitions = self.log.partition_count() as usize;
        (0..partitions)
            .map(|p| {
                let feeds = self
                    .feeds
                    .values()
                    .filter(|sink| sink.exists())
                    .map(|sink| sink.committed[p]);
                self.sinks
                    .iter()
                    .filter(|(_, sink)| sink.exists())
                    .map(|(_, sink)| sink.committed[p])
                    .chain(feeds)
                    .min()
                    .unwrap_or(0)
            })
            .collect()
    }

    async fn feed_sink(&mut self, name: &str) -> Result<&mut FeedSink> {
        if !self.feeds.contains_key(name) {
            let sink = FeedSink::open(&self.lake, name, self.log.partition_count()).await?;
            self.feeds.insert(name.to_string(), sink);
        }
        Ok(self.feeds.get_mut(name).expect("inserted above"))
    }

    fn sink(&mut self, table: Table) -> &mut Sink {
        &mut self
            .sinks
            .iter_mut()
            .find(|(t, _)| *t == table)
            .expect("a sink per table")
            .1
    }

    /// Records the log holds beyond what bronze has read.
    pub fn lag(&self) -> Result<u64> {
        let mut lag = 0;
        for (p, cursor) in self.cursor.iter().enumerate() {
            lag += self.log.end_offset(p as u32)?.saturating_sub(*cursor);
        }
        Ok(lag)
    }

    /// Reads what the log has beyond the cursor, up to `max_records`.
    pub async fn read_available(&mut self, max_records: usize) -> Result<Vec<LogEntry>> {
        self.read_limited(max_records, usize::MAX).await
    }

    /// Reads what the log has beyond the cursor, up to `max_records` or
    /// about `max_bytes` of records (one read chunk more at most).
    pub async fn read_limited(
        &mut self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>> {
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        for partition in 0..self.log.partition_count() {
            while entries.len() < max_records && bytes < max_bytes {
                let from = self.cursor[partition as usize];
                let chunk = match self.log.read(partition, from, READ_CHUNK_BYTES).await {
                    Ok(chunk) => chunk,
                    // Retention only removes segments we reported as passed,
                    // so what is gone was loaded already.
                    Err(LogError::OffsetOutOfRange { earliest, .. }) => {
                        self.cursor[partition as usize] = earliest;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let Some(last) = chunk.last() else { break };
                self.cursor[partition as usize] = last.offset + 1;
                bytes += chunk.iter().map(|e| e.payload.len()).sum::<usize>();
                entries.extend(chunk);
            }
        }
        Ok(entries)
    }

    /// Writes a micro-batch exactly once: records a table already holds are
    /// dropped, the rest go in with the new positions in the same commit.
    pub async fn write(&mut self, entries: &[LogEntry]) -> Result<LoadStats> {
        if entries.is_empty() {
            return Ok(LoadStats::default());
        }
        for (_, sink) in &mut self.sinks {
            sink.refresh(&self.lake).await?;
        }
        for sink in self.feeds.values_mut() {
            sink.refresh(&self.lake).await?;
        }

        let mut feed_chunks: BTreeMap<String, Vec<(u32, u64, FeedChunk)>> = BTreeMap::new();
        let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
        let mut stats = LoadStats::default();
        let mut batches: HashMap<Table, Vec<_>> = HashMap::new();
        // Per CDC source, its last change in this batch and its last change
        // that ended a transaction.
        let mut sources: HashMap<String, SourceMarks> = HashMap::new();
        // Decoded rows are a third copy of the batch: hold one chunk of them
        // at a time, next to the log records and the Arrow arrays.
        for chunk in entries.chunks(CONVERT_ROWS) {
            let mut rows = Rows::default();
            for entry in chunk {
                let p = entry.partition as usize;
                let end = ends.entry(entry.partition).or_insert(0);
                *end = (*end).max(entry.offset + 1);
                let record = rows::decode(entry);
                if let Decoded::Feed(chunk) = record {
                    let name = feeds::table_name(&chunk.table);
                    let feed_new = entry.offset >= self.feed_sink(&name).await?.committed[p];
                    let quarantine_new = entry.offset >= self.sink(Table::Quarantine).committed[p];
                    if !feed_new && !quarantine_new {
                        stats.skipped += 1;
                        continue;
                    }
                    if quarantine_new {
                        for bad in &chunk.bad_rows {
                            rows.push_quarantine(
                                entry.partition,
                                entry.offset,
                                rows::bad_row_record(&chunk, bad),
                            );
                        }
                    }
                    if feed_new {
                        feed_chunks.entry(name).or_default().push((
                            entry.partition,
                            entry.offset,
                            chunk,
                        ));
                    }
                    continue;
                }
                let table = record.table();
                if entry.offset < self.sink(table).committed[p] {
                    stats.skipped += 1;
                    continue;
                }
                if let Decoded::Change(change) = &record {
                    // A CDC source re-sends what its database had not seen
                    // acknowledged: the position tells the copies apart.
                    let mut marks = match sources.get(&change.source) {
                        Some(marks) => *marks,
                        None => self.sink(table).source_position(&change.source).await?,
                    };
                    if change.position() <= marks.last {
                        stats.skipped += 1;
                        continue;
                    }
                    marks.last = change.position();
                    if change.tx_end {
                        marks.through = change.position();
                    }
                    sources.insert(change.source.clone(), marks);
                }
                rows.push(entry.partition, entry.offset, record);
            }
            stats.events += rows.count(Table::Events);
            stats.quarantined += rows.count(Table::Quarantine);
            stats.changes += rows.count(Table::CdcChanges) + rows.count(Table::CdcSchemas);
            for table in Table::ALL {
                if rows.count(table) > 0 {
                    batches.entry(table).or_default().push(rows.batch(table)?);
                }
            }
        }

        let started = Instant::now();
        tracing::debug!(target: strata_core::PHASE, "bronze_commit");
        // Feed tables first: a table that may not exist yet can hold
        // nothing the others have moved past.
        for (name, chunks) in feed_chunks {
            let (parts, undecodable) = feeds::chunks_batches(chunks)?;
            if !undecodable.is_empty() {
                let mut kept = Rows::default();
                for (partition, offset, record) in undecodable {
                    kept.push_quarantine(partition, offset, record);
                }
                batches
                    .entry(Table::Quarantine)
                    .or_default()
                    .push(kept.batch(Table::Quarantine)?);
            }
            // Chunks of bad rows only: nothing for the feed table.
            if parts.is_empty() {
                continue;
            }
            stats.feed_rows += parts.iter().map(RecordBatch::num_rows).sum::<usize>();
            let lake = self.lake.clone();
            let sink = self.feed_sink(&name).await?;
            let table_ends = advancing(&ends, &sink.committed);
            sink.append(&lake, parts, &table_ends).await?;
        }
        let no_sources = HashMap::new();
        for table in Table::ALL {
            let Some(batches) = batches.remove(&table) else {
                continue;
            };
            let lake = self.lake.clone();
            let sink = self.sink(table);
            let table_ends = advancing(&ends, &sink.committed);
            let positions = if table == Table::CdcChanges {
                &sources
            } else {
                &no_sources
            };
            sink.append(&lake, batches, &table_ends, positions).await?;
            if table == Table::Events {
                self.commits_since_optimize += 1;
            }
        }
        metrics::histogram!("strata_bronze_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("strata_bronze_rows_total", "table" => "events")
            .increment(stats.events as u64);
        metrics::counter!("strata_bronze_rows_total", "table" => "quarantine")
            .increment(stats.quarantined as u64);
        if stats.changes > 0 {
            metrics::counter!("strata_bronze_rows_total", "table" => "cdc")
                .increment(stats.changes as u64);
        }

        // Every table now holds everything below `end` of this batch.
        for (p, end) in &ends {
            let cursor = &mut self.cursor[*p as usize];
            *cursor = (*cursor).max(*end);
        }
        // The progress report fsyncs a small file: keep it off the async workers.
        let log = self.log.clone();
        let report = tokio::task::spawn_blocking(move || {
            for (p, end) in ends {
                log.consumer_passed(CONSUMER, p, end)?;
            }
            Ok::<_, LogError>(())
        });
        match report.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not report bronze progress for retention")
            }
            Err(e) => tracing::warn!(error = %e, "bronze progress report failed"),
        }
        Ok(stats)
    }

    /// Rewrites the small files of the last two ingest dates into large ones.
    pub async fn optimize(&mut self) -> Result<()> {
        tracing::debug!(target: strata_core::PHASE, "compaction");
        let since = (chrono::Utc::now() - chrono::Duration::days(1))
            .date_naive()
            .to_string();
        for (_, sink) in &mut self.sinks {
            sink.optimize(&since).await?;
        }
        self.commits_since_optimize = 0;
        Ok(())
    }

    /// Loads everything the log holds right now; used by `strata` commands
    /// and tests that need bronze caught up.
    pub async fn catch_up(&mut self) -> Result<LoadStats> {
        let mut total = LoadStats::default();
        loop {
            let entries = self
                .read_limited(self.config.max_batch_records, self.config.max_batch_bytes)
                .await?;
            if entries.is_empty() {
                return Ok(total);
            }
            let stats = self.write(&entries).await?;
            total.events += stats.events;
            total.quarantined += stats.quarantined;
            total.changes += stats.changes;
            total.feed_rows += stats.feed_rows;
            total.skipped += stats.skipped;
        }
    }

    /// Micro-batches until `shutdown` turns true, then drains the log and
    /// commits before returning.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let mut notify = self.log.subscribe();
        let mut pending: Vec<LogEntry> = Vec::new();
        let mut batch_started: Option<Instant> = None;
        let interval = self.config.flush_interval;
        let max = self.config.max_batch_records.max(1);
        let max_bytes = self.config.max_batch_bytes.max(1);
        let mut pending_bytes = 0usize;
        loop {
            let stopping = *shutdown.borrow();
            let fresh = self
                .read_limited(
                    max.saturating_sub(pending.len()),
                    max_bytes.saturating_sub(pending_bytes),
                )
                .await?;
            if !fresh.is_empty() {
                batch_started.get_or_insert_with(Instant::now);
                pending_bytes += fresh.iter().map(|e| e.payload.len()).sum::<usize>();
                pending.extend(fresh);
            }
            let due = batch_started.is_some_and(|t| t.elapsed() >= interval);
            let full = pending.len() >= max || pending_bytes >= max_bytes;
            if !pending.is_empty() && (full || due || stopping) {
                self.write_with_retry(&pending, &shutdown).await?;
                pending.clear();
                pending_bytes = 0;
                batch_started = None;
                let lag = self.lag().ok();
                if let Some(lag) = lag {
                    metrics::gauge!("strata_bronze_lag_records").set(lag as f64);
                }
                // Not while a full batch waits: under a burst the files are
                // large already, and compaction's memory and CPU would come
                // on top of the loader's at its busiest.
                let caught_up = lag.is_some_and(|lag| lag < max as u64);
                if caught_up
                    && self.commits_since_optimize >= self.config.optimize_every_commits
                    && let Err(e) = self.optimize().await
                {
                    tracing::warn!(error = %e, "bronze compaction failed; will retry later");
                    self.commits_since_optimize = 0;
                }
                continue;
            }
            if stopping {
                tracing::info!("bronze loader drained and committed");
                return Ok(());
            }
            let wait = batch_started.map_or(interval, |t| interval.saturating_sub(t.elapsed()));
            tokio::select! {
                _ = notify.changed() => {}
                _ = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Commit failures (a full disk, a concurrent writer) are retried: the
    /// write re-checks positions, so retrying the same records is safe.
    async fn write_with_retry(
        &mut self,
        entries: &[LogEntry],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<()> {
        let mut delay = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            match self.write(entries).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    attempts += 1;
                    tracing::warn!(error = %e, attempts, "bronze commit failed; retrying");
                    metrics::counter!("strata_bronze_commit_failures_total").increment(1);
                    if attempts >= 10 && *shutdown.borrow() {
                        return Err(e);
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// The end offsets that move a table's committed positions forward.
fn advancing(ends: &BTreeMap<u32, u64>, committed: &[u64]) -> BTreeMap<u32, u64> {
    ends.iter()
        .filter(|(p, end)| **end > committed[**p as usize])
        .map(|(p, end)| (*p, *end))
        .collect()
}

/// Log records below the committed positions of `bronze.events`, summed over
/// `partitions`: what a reader outside the loader can see as loaded.
pub async fn loaded_records(lake: &Lake, partitions: u32) -> Result<u64> {
    // Fails as opening does when there is no table yet.
    lake.open(BRONZE_EVENTS.layer, BRONZE_EVENTS.name).await?;
    let sink = Sink::open(lake, Table::Events, partitions).await?;
    Ok(sink.committed.iter().sum())
}

/// Appends already-normalised events to `bronze.events` in one commit,
/// bypassing the log: for fixtures, benchmarks and imports whose positions
/// are assigned by the caller (`(log_partition, log_offset, event)`).
pub async fn append_events(
    lake: &Lake,
    events: impl IntoIterator<Item = (u32, u64, BronzeEvent)>,
) -> Result<()> {
    let mut rows = Rows::default();
    for (partition, offset, event) in events {
        rows.push_event(partition, offset, event);
    }
    if rows.event_count() == 0 {
        return Ok(());
    }
    let table = lake.open_or_create(&BRONZE_EVENTS).await?;
    table
        .write(vec![rows.events_batch()?])
        .with_save_mode(SaveMode::Append)
        .await
        .map_err(Error::delta(BRONZE_EVENTS.qualified_name()))?;
    Ok(())
}
