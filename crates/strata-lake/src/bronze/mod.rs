//! The bronze loader: log → `bronze.events` / `bronze.quarantine`, exactly once.
//!
//! Each Delta commit carries, as application transactions (`txn` actions),
//! the next log offset of every partition it covers. Before each write the
//! loader re-reads those versions from the table and drops every record below
//! them, so a re-delivery after a crash, or a second loader, writes nothing
//! twice. Positions live only in the tables: there is no side file to get out
//! of step with the data.

mod rows;

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::DeltaTable;
use deltalake::delta_datafusion::DeltaSessionContext;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use deltalake::{FilterOp, FilterValue};
use strata_core::config::LoaderConfig;
use strata_core::event::BronzeEvent;
use strata_log::{Log, LogEntry, LogError};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::schema::{BRONZE_EVENTS, BRONZE_QUARANTINE, TableDef};
use crate::table::Lake;

pub use rows::{Decoded, Rows};

/// The name under which the loader reports its progress to the log.
pub const CONSUMER: &str = "bronze";
const READ_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Log records decoded and converted to Arrow at a time.
const CONVERT_ROWS: usize = 16 * 1024;
/// Compaction holds the file it writes in memory until the file is
/// complete, so its size bounds what compaction adds to the loader's peak.
const OPTIMIZE_TARGET_BYTES: u64 = 64 * 1024 * 1024;
const COMPACTED_ROW_GROUP_ROWS: usize = 32 * 1024;

fn app_id(partition: u32) -> String {
    format!("strata-bronze-p{partition}")
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoadStats {
    pub events: usize,
    pub quarantined: usize,
    /// Records already present in the table (re-deliveries).
    pub skipped: usize,
}

/// One bronze table with the log positions it has committed.
struct Sink {
    def: &'static TableDef,
    table: DeltaTable,
    committed: Vec<u64>,
}

impl Sink {
    async fn open(lake: &Lake, def: &'static TableDef, partitions: u32) -> Result<Self> {
        let table = lake.open_or_create(def).await?;
        let mut sink = Self {
            def,
            table,
            committed: vec![0; partitions as usize],
        };
        sink.read_positions().await?;
        Ok(sink)
    }

    /// The check before each write: another writer (or our own previous
    /// life) may have committed since we last looked.
    async fn refresh(&mut self) -> Result<()> {
        self.table
            .update_state()
            .await
            .map_err(Error::delta(self.def.qualified_name()))?;
        self.read_positions().await
    }

    async fn read_positions(&mut self) -> Result<()> {
        let state = self
            .table
            .snapshot()
            .map_err(Error::delta(self.def.qualified_name()))?;
        let log_store = self.table.log_store();
        for (partition, position) in self.committed.iter_mut().enumerate() {
            let version = state
                .transaction_version(log_store.as_ref(), app_id(partition as u32))
                .await
                .map_err(Error::delta(self.def.qualified_name()))?;
            *position = version.map_or(0, |v| v.max(0) as u64);
        }
        Ok(())
    }

    async fn append(
        &mut self,
        batches: Vec<deltalake::arrow::record_batch::RecordBatch>,
        ends: &BTreeMap<u32, u64>,
    ) -> Result<()> {
        let txns = ends
            .iter()
            .map(|(p, end)| Transaction::new(app_id(*p), *end as i64))
            .collect();
        let table = self
            .table
            .clone()
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(CommitProperties::default().with_application_transactions(txns))
            .await
            .map_err(Error::delta(self.def.qualified_name()))?;
        self.table = table;
        for (p, end) in ends {
            self.committed[*p as usize] = *end;
        }
        Ok(())
    }

    async fn optimize(&mut self, since: &str) -> Result<()> {
        let filters = [("ingest_date", FilterOp::Ge, FilterValue::Scalar(since))];
        let (table, metrics) = self
            .table
            .clone()
            .optimize()
            .with_filters(&filters)
            .with_target_size(NonZeroU64::new(OPTIMIZE_TARGET_BYTES).expect("non-zero"))
            // One file at a time: compaction runs beside ingest, and each
            // file in progress is held in memory whole.
            .with_max_concurrent_tasks(1)
            .with_session_state(compaction_session()?)
            .with_writer_properties(compaction_writer())
            .await
            .map_err(Error::delta(self.def.qualified_name()))?;
        self.table = table;
        tracing::info!(
            table = %self.def.qualified_name(),
            files_added = metrics.num_files_added,
            files_removed = metrics.num_files_removed,
            "compacted small files"
        );
        Ok(())
    }
}

/// Compaction reads its input files one after another (the default scan
/// reads a partition per core side by side, each with its row groups in
/// memory), beside ingest at its busiest.
fn compaction_session() -> Result<Arc<dyn deltalake::datafusion::catalog::Session>> {
    let overrides = [(
        "datafusion.execution.target_partitions".to_string(),
        "1".to_string(),
    )]
    .into_iter()
    .collect();
    let context = DeltaSessionContext::new_with_session_overrides(&overrides)
        .map_err(Error::delta("bronze compaction"))?;
    Ok(Arc::new(context.state()))
}

/// The writer's defaults, zstd level 4 as delta-rs compacts, but row groups
/// cut at [`COMPACTED_ROW_GROUP_ROWS`]: a row group is encoded in memory
/// whole, and bronze rows are large.
fn compaction_writer() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(4).expect("a zstd level"),
        ))
        .set_max_row_group_row_count(Some(COMPACTED_ROW_GROUP_ROWS))
        .build()
}

pub struct BronzeLoader {
    log: Arc<dyn Log>,
    events: Sink,
    quarantine: Sink,
    /// Next offset to read from the log, per partition.
    cursor: Vec<u64>,
    config: LoaderConfig,
    commits_since_optimize: u64,
}

impl BronzeLoader {
    pub async fn open(lake: &Lake, log: Arc<dyn Log>, config: LoaderConfig) -> Result<Self> {
        let partitions = log.partition_count();
        let events = Sink::open(lake, &BRONZE_EVENTS, partitions).await?;
        let quarantine = Sink::open(lake, &BRONZE_QUARANTINE, partitions).await?;
        let mut loader = Self {
            log,
            events,
            quarantine,
            cursor: Vec::new(),
            config,
            commits_since_optimize: 0,
        };
        loader.cursor = loader.committed_positions();
        Ok(loader)
    }

    /// Per partition, the offset below which both tables hold every record.
    pub fn committed_positions(&self) -> Vec<u64> {
        self.events
            .committed
            .iter()
            .zip(&self.quarantine.committed)
            .map(|(e, q)| *e.min(q))
            .collect()
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
        self.events.refresh().await?;
        self.quarantine.refresh().await?;

        let mut ends: BTreeMap<u32, u64> = BTreeMap::new();
        let mut stats = LoadStats::default();
        let (mut events, mut quarantine) = (Vec::new(), Vec::new());
        // Decoded rows are a third copy of the batch: hold one chunk of them
        // at a time, next to the log records and the Arrow arrays.
        for chunk in entries.chunks(CONVERT_ROWS) {
            let mut rows = Rows::default();
            for entry in chunk {
                let p = entry.partition as usize;
                let end = ends.entry(entry.partition).or_insert(0);
                *end = (*end).max(entry.offset + 1);
                match rows::decode(entry) {
                    Decoded::Event(event) if entry.offset >= self.events.committed[p] => {
                        rows.push_event(entry.partition, entry.offset, event)
                    }
                    Decoded::Quarantine(record) if entry.offset >= self.quarantine.committed[p] => {
                        rows.push_quarantine(entry.partition, entry.offset, record)
                    }
                    _ => stats.skipped += 1,
                }
            }
            stats.events += rows.event_count();
            stats.quarantined += rows.quarantine_count();
            if rows.event_count() > 0 {
                events.push(rows.events_batch()?);
            }
            if rows.quarantine_count() > 0 {
                quarantine.push(rows.quarantine_batch()?);
            }
        }

        let started = Instant::now();
        tracing::debug!(target: strata_core::PHASE, "bronze_commit");
        if stats.events > 0 {
            let ends = advancing(&ends, &self.events.committed);
            self.events.append(events, &ends).await?;
            self.commits_since_optimize += 1;
        }
        if stats.quarantined > 0 {
            let ends = advancing(&ends, &self.quarantine.committed);
            self.quarantine.append(quarantine, &ends).await?;
        }
        metrics::histogram!("strata_bronze_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("strata_bronze_rows_total", "table" => "events")
            .increment(stats.events as u64);
        metrics::counter!("strata_bronze_rows_total", "table" => "quarantine")
            .increment(stats.quarantined as u64);

        // Both tables now hold everything below `end` of this batch.
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
        self.events.optimize(&since).await?;
        self.quarantine.optimize(&since).await?;
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
    let table = lake.open(BRONZE_EVENTS.layer, BRONZE_EVENTS.name).await?;
    let mut sink = Sink {
        def: &BRONZE_EVENTS,
        table,
        committed: vec![0; partitions as usize],
    };
    sink.read_positions().await?;
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
