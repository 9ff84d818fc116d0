//! File feeds (SPEC §7, `kind = "file"`): partner drops of CSV, NDJSON,
//! Parquet or Avro files in a directory, each landed once, identified by
//! the SHA-256 of its content, into `bronze.feed_<table>`.
//!
//! A file is read once it has stopped changing: its size and modification
//! time the same at two looks a poll apart (a second), or written as
//! `name.tmp` and renamed (files ending in `.tmp` and hidden files are not
//! read). Its rows go through the log in chunks ([`read`]); rows that do
//! not parse or fit the columns go to the quarantine as `feed_bad_row`
//! with `<file>:<row>: <why>`, and the rest of the file lands. Exactly
//! once across crashes: see [`state`].

mod read;
mod readers;
mod state;
mod values;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use strata_core::config::SourceConfig;
use strata_core::event::LogRecord;
use strata_core::feed::{ColumnType, FeedSchema, RESERVED_COLUMNS};
use strata_log::partition_for_key;
use tokio::sync::{mpsc, watch};

use crate::{Error, Producer, Result, Source, SourceContext};
use read::{FileJob, Piece};
use state::{Completed, FeedState, InProgress};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Ndjson,
    Parquet,
    Avro,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
            Format::Parquet => "parquet",
            Format::Avro => "avro",
        }
    }

    /// The file name endings a feed of this format reads.
    fn extensions(self) -> &'static [&'static str] {
        match self {
            Format::Csv => &["csv", "tsv", "txt"],
            Format::Ndjson => &["ndjson", "jsonl", "json"],
            Format::Parquet => &["parquet", "pq"],
            Format::Avro => &["avro"],
        }
    }
}

/// The keys of an `[[sources]]` entry of kind `file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFeedConfig {
    /// The directory partners drop files into.
    pub path: String,
    pub format: Format,
    /// Rows land in `bronze.feed_<table>`.
    pub table: String,
    /// `column = "type"`; without it the columns are inferred from the
    /// first file and later files may add columns.
    #[serde(default)]
    pub schema: Option<toml::Table>,
}

pub const KIND: crate::Kind = crate::Kind {
    name: "file",
    check: |source| FeedConfig::from_source(source).map(|_| ()),
    build: Some(|source, context| Ok(Box::new(FileFeed::new(source, context)?) as Box<dyn Source>)),
};

/// The entry's keys, checked.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    pub dir: PathBuf,
    pub format: Format,
    pub table: String,
    pub schema: Option<FeedSchema>,
}

impl FeedConfig {
    pub fn from_source(source: &SourceConfig) -> Result<Self> {
        let raw: FileFeedConfig = crate::parse_options(source)?;
        let bad = |what: String| {
            Error::Config(format!("source {:?} (kind \"file\"): {what}", source.name))
        };
        if raw.path.contains("://") {
            return Err(bad(format!(
                "`path` {:?} is a URL; feeds read a local directory until tables can live in object storage",
                raw.path
            )));
        }
        let valid_table = !raw.table.is_empty()
            && raw.table.len() <= 64
            && raw
                .table
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid_table {
            return Err(bad(format!(
                "`table` {:?} is not a table name (1 to 64 of a-z, 0-9 and _)",
                raw.table
            )));
        }
        let schema = match raw.schema {
            None => None,
            Some(table) => {
                let mut columns = Vec::new();
                for (name, t) in table {
                    let t = t.as_str().and_then(ColumnType::parse).ok_or_else(|| {
                        bad(format!(
                            "column {name:?} of `schema` has type {t}; the types are string, long, double, boolean, date, timestamp"
                        ))
                    })?;
                    if RESERVED_COLUMNS.contains(&name.as_str()) {
                        return Err(bad(format!(
                            "column {name:?} of `schema` is one bronze adds to every row"
                        )));
                    }
                    columns.push((name, t));
                }
                if columns.is_empty() {
                    return Err(bad("`schema` names no column".into()));
                }
                Some(FeedSchema { columns })
            }
        };
        Ok(Self {
            dir: PathBuf::from(raw.path),
            format: raw.format,
            table: raw.table,
            schema,
        })
    }
}

/// How often the directory is looked at; a file must look the same at two
/// looks to be read.
const POLL: Duration = Duration::from_secs(1);

pub struct FileFeed {
    name: String,
    config: FeedConfig,
    producer: Producer,
    state_path: PathBuf,
    partition: u32,
    state: FeedState,
    /// Files looked at: their size and modification time at the last look,
    /// and whether they were dealt with at that size and time.
    seen: HashMap<PathBuf, (u64, i64, bool)>,
    status: Arc<Mutex<Status>>,
}

#[derive(Debug, Clone, Default)]
struct Status {
    ingested: u64,
    skipped: u64,
    reading: Option<String>,
}

enum Outcome {
    Landed,
    /// Stopped by shutdown before the file's last chunk.
    Interrupted,
}

impl FileFeed {
    pub fn new(source: &SourceConfig, context: &SourceContext) -> Result<Self> {
        let config = FeedConfig::from_source(source)?;
        let partitions = context.producer.log().partition_count();
        Ok(Self {
            name: source.name.clone(),
            config,
            producer: context.producer.clone(),
            state_path: context.state_dir.join("file_feed.json"),
            partition: partition_for_key(&source.name, partitions),
            state: FeedState::default(),
            seen: HashMap::new(),
            status: Arc::default(),
        })
    }

    async fn run_until(&mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        self.state = state::load(&self.state_path)?;
        if let Some(schema) = &self.config.schema {
            self.state.columns = schema.columns.clone();
        }
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ingested = self.state.completed.len() as u64;
        while !*shutdown.borrow() {
            if let Err(e) = self.look(&shutdown).await {
                tracing::warn!(source = %self.name, error = %e, "file feed: landing failed; resuming from its state");
                self.seen.clear();
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
        Ok(())
    }

    /// Finishes a file a crash interrupted, then lands every settled file.
    async fn look(&mut self, shutdown: &watch::Receiver<bool>) -> Result<()> {
        if let Some(progress) = self.state.in_progress.clone()
            && let Outcome::Interrupted = self.resume(progress, shutdown).await?
        {
            return Ok(());
        }
        for (path, len, modified) in self.settled_files()? {
            if *shutdown.borrow() {
                return Ok(());
            }
            let sha256 = hash_file(&path).await.map_err(Error::io(&path))?;
            let name = file_name(&path);
            if let Some(done) = self.state.completed.get(&sha256) {
                let same_file = done.file == name && done.len == len && done.modified == modified;
                if !same_file {
                    tracing::info!(source = %self.name, file = %name, landed_as = %done.file, "file feed: content landed before; skipped");
                    metrics::counter!("strata_feed_files_total", "source" => self.name.clone(), "outcome" => "skipped").increment(1);
                    self.status
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .skipped += 1;
                }
                self.seen.insert(path, (len, modified, true));
                continue;
            }
            let progress = InProgress {
                sha256,
                file: name,
                log_partition: self.partition,
                log_offset: self.producer.log().end_offset(self.partition)?,
            };
            self.state.in_progress = Some(progress.clone());
            state::store(&self.state_path, &self.state)?;
            match self
                .land(&path, &progress, 1, len, modified, shutdown)
                .await?
            {
                Outcome::Landed => {
                    self.seen.insert(path, (len, modified, true));
                }
                Outcome::Interrupted => return Ok(()),
            }
        }
        Ok(())
    }

    /// The files of the directory that look as they did at the last look
    /// and have not been dealt with, oldest first.
    fn settled_files(&mut self) -> Result<Vec<(PathBuf, u64, i64)>> {
        let dir = &self.config.dir;
        let listing = std::fs::read_dir(dir).map_err(Error::io(dir))?;
        let mut files = Vec::new();
        for entry in listing.flatten() {
            let path = entry.path();
            let name = file_name(&path);
            let extension = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .unwrap_or_default();
            if name.starts_with('.')
                || !self
                    .config
                    .format
                    .extensions()
                    .contains(&extension.as_str())
            {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_micros() as i64);
            let now = (meta.len(), modified);
            match self.seen.get(&path) {
                Some((len, time, done)) if (*len, *time) == now => {
                    if !done {
                        files.push((path, now.0, now.1));
                    }
                }
                _ => {
                    self.seen.insert(path, (now.0, now.1, false));
                }
            }
        }
        files.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
        Ok(files)
    }

    /// A file whose landing a crash or an error interrupted: how far its
    /// chunks got, then the rest.
    async fn resume(
        &mut self,
        progress: InProgress,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Outcome> {
        let (end_row, last) = self.landed_so_far(&progress).await?;
        let path = self.config.dir.join(&progress.file);
        let current = matches!(hash_file(&path).await, Ok(sha) if sha == progress.sha256);
        let (len, modified) = stat(&path).unwrap_or((0, 0));
        if last || !current {
            if !last {
                tracing::warn!(source = %self.name, file = %progress.file, rows_landed = end_row.saturating_sub(1), "file feed: the file being landed changed or is gone; its remaining rows are not landed");
            }
            self.complete(&progress, len, modified, end_row.saturating_sub(1), 0)?;
            return Ok(Outcome::Landed);
        }
        let outcome = self
            .land(&path, &progress, end_row.max(1), len, modified, shutdown)
            .await?;
        if let Outcome::Landed = outcome {
            self.seen.insert(path, (len, modified, true));
        }
        Ok(outcome)
    }

    /// The row after the last one of the file's chunks in the log, and
    /// whether its last chunk is there.
    async fn landed_so_far(&self, progress: &InProgress) -> Result<(u64, bool)> {
        let (mut end_row, mut last) = (0u64, false);
        self.producer
            .scan(progress.log_partition, progress.log_offset, |record| {
                if let LogRecord::Feed(chunk) = record
                    && chunk.source == self.name
                    && chunk.sha256 == progress.sha256
                {
                    end_row = end_row.max(chunk.end_row);
                    last |= chunk.last;
                }
            })
            .await?;
        Ok((end_row, last))
    }

    /// Reads `path` from row `resume_from` on and sends its chunks, each
    /// durable before the next is sent.
    async fn land(
        &mut self,
        path: &Path,
        progress: &InProgress,
        resume_from: u64,
        len: u64,
        modified: i64,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Outcome> {
        let job = FileJob {
            source: self.name.clone(),
            table: self.config.table.clone(),
            path: path.to_path_buf(),
            name: progress.file.clone(),
            sha256: progress.sha256.clone(),
            format: self.config.format,
            schema: self.state.schema(),
            declared: self.config.schema.is_some(),
            resume_from,
        };
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reading = Some(progress.file.clone());
        let (tx, mut rx) = mpsc::channel(2);
        let reader = tokio::task::spawn_blocking(move || read::read_file(job, tx));
        let (mut rows, mut bad) = (0u64, 0u64);
        let mut landed = false;
        while let Some(piece) = rx.recv().await {
            match piece {
                Piece::Columns(schema, ignored) => {
                    if !ignored.is_empty() {
                        tracing::warn!(source = %self.name, file = %progress.file, columns = ?ignored, "file feed: columns the declared schema does not have are not loaded");
                    }
                    if schema.columns != self.state.columns {
                        self.state.columns = schema.columns;
                        state::store(&self.state_path, &self.state)?;
                    }
                }
                Piece::Chunk(chunk) => {
                    let last = chunk.last;
                    rows += chunk.rows.lines().count() as u64;
                    bad += chunk.bad_rows.len() as u64;
                    let mut outbox = self.producer.outbox();
                    outbox.push_to(self.partition, &LogRecord::Feed(chunk));
                    self.producer.send(outbox).await?;
                    if last {
                        landed = true;
                        break;
                    }
                }
            }
            if *shutdown.borrow() {
                break;
            }
        }
        drop(rx);
        let _ = reader.await;
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reading = None;
        if !landed {
            return Ok(Outcome::Interrupted);
        }
        tracing::info!(source = %self.name, file = %progress.file, rows, bad_rows = bad, "file feed: file landed");
        self.complete(progress, len, modified, rows, bad)?;
        Ok(Outcome::Landed)
    }

    fn complete(
        &mut self,
        progress: &InProgress,
        len: u64,
        modified: i64,
        rows: u64,
        bad_rows: u64,
    ) -> Result<()> {
        self.state.completed.insert(
            progress.sha256.clone(),
            Completed {
                file: progress.file.clone(),
                rows,
                bad_rows,
                len,
                modified,
            },
        );
        self.state.in_progress = None;
        state::store(&self.state_path, &self.state)?;
        metrics::counter!("strata_feed_files_total", "source" => self.name.clone(), "outcome" => "landed").increment(1);
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ingested += 1;
        Ok(())
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn stat(path: &Path) -> Option<(u64, i64)> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_micros() as i64;
    Some((meta.len(), modified))
}

/// SHA-256 of the file's content, lower-case hex, read in pieces.
async fn hash_file(path: &Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    })
    .await
    .map_err(std::io::Error::other)?
}

impl Source for FileFeed {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self) -> BoxFuture<'_, Result<()>> {
        async move {
            if !self.config.dir.is_dir() {
                return Err(Error::Config(format!(
                    "source {:?} (kind \"file\"): `path` {} is not a directory",
                    self.name,
                    self.config.dir.display()
                )));
            }
            Ok(())
        }
        .boxed()
    }

    fn run(&mut self, shutdown: watch::Receiver<bool>) -> BoxFuture<'_, Result<()>> {
        self.run_until(shutdown).boxed()
    }

    fn positions(&self) -> Vec<(String, String)> {
        let status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = vec![
            ("files landed".into(), status.ingested.to_string()),
            ("files skipped".into(), status.skipped.to_string()),
        ];
        if let Some(file) = status.reading {
            out.push(("reading".into(), file));
        }
        out
    }
}
