//! Backend log files (SPEC §7, `kind = "log_file"`): JSON lines of Segment
//! messages, tailed as they are written, normalised exactly as HTTP
//! messages are ([`crate::messages`]).
//!
//! Every record of one source goes to one log partition, in file order,
//! one record (event or quarantine row) per non-blank line, in one append
//! per batch of lines. The checkpoint ([`checkpoint`]) names the file by
//! device, inode and first bytes, the byte position, and the log offset
//! from which the source's records are not yet accounted for; it is written
//! after each durable append. A restart counts the source's records past
//! that offset and skips as many lines: whatever part of a batch was
//! durable when the process died lands once, and the rest is read again.
//!
//! Rotation: a rename (`app.log` → `app.log.1`, a new `app.log`) is seen
//! when the path names another inode: the old file is read to its end
//! (its unterminated last line included, once it stopped growing) and the
//! new one from its start. A truncation (copy-truncate) is seen when the
//! file is shorter than the position or its first bytes changed: it is read
//! again from its start. As with any tailer, lines written between the copy
//! and the truncate of a copy-truncate are not in the file Strata reads.

mod checkpoint;
mod lines;

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use strata_core::config::{CollectorConfig, SourceConfig};
use strata_core::event::{LogRecord, RejectReason};
use strata_core::normalize::Envelope;
use strata_log::partition_for_key;
use tokio::sync::watch;

use crate::messages::{MessageRules, Outcome, rejected};
use crate::{Error, Producer, Result, Source, SourceContext};
use checkpoint::{Checkpoint, FileIdentity};
use lines::{Line, LineReader};

pub use checkpoint::FINGERPRINT_BYTES;

/// The keys of an `[[sources]]` entry of kind `log_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFileConfig {
    /// The file of JSON lines; it may appear after Strata starts.
    pub path: PathBuf,
}

pub const KIND: crate::Kind = crate::Kind {
    name: "log_file",
    check: |source| crate::parse_options::<LogFileConfig>(source).map(|_| ()),
    build: Some(|source, context| {
        Ok(Box::new(LogFileSource::new(source, context)?) as Box<dyn Source>)
    }),
};

/// How often the end of the file is looked at again.
const POLL: Duration = Duration::from_millis(200);
/// A file rotated away is finished once it has not grown for this long.
const ROTATED_QUIET: Duration = Duration::from_secs(1);
const BATCH_LINES: usize = 2_000;
const BATCH_BYTES: usize = 4 << 20;
/// After a failed append, the wait before reading the checkpoint again.
const RETRY: Duration = Duration::from_secs(1);

pub struct LogFileSource {
    name: String,
    path: PathBuf,
    producer: Producer,
    limits: CollectorConfig,
    checkpoint_path: PathBuf,
    partition: u32,
    open: Option<OpenFile>,
    status: Arc<Mutex<Vec<(String, String)>>>,
}

/// The file being read.
struct OpenFile {
    path: PathBuf,
    reader: LineReader,
    identity: FileIdentity,
    /// When the file was last seen to grow.
    grew_at: Instant,
    last_len: u64,
}

impl LogFileSource {
    pub fn new(source: &SourceConfig, context: &SourceContext) -> Result<Self> {
        let config: LogFileConfig = crate::parse_options(source)?;
        let partitions = context.producer.log().partition_count();
        Ok(Self {
            name: source.name.clone(),
            path: config.path,
            producer: context.producer.clone(),
            limits: context.limits.clone(),
            checkpoint_path: context.state_dir.join("log_file.json"),
            partition: partition_for_key(&source.name, partitions),
            open: None,
            status: Arc::default(),
        })
    }

    fn config_error(&self, what: String) -> Error {
        Error::Config(format!(
            "source {:?} (kind \"log_file\"): {what}",
            self.name
        ))
    }

    async fn run_until(&mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        self.resume().await?;
        while !*shutdown.borrow() {
            match self.step().await {
                Ok(Progress::More) => continue,
                Ok(Progress::Idle) => {}
                Err(e) => {
                    tracing::warn!(source = %self.name, error = %e, "log file source: landing failed; resuming from its checkpoint");
                    tokio::time::sleep(RETRY).await;
                    self.open = None;
                    if let Err(e) = self.resume().await {
                        tracing::warn!(source = %self.name, error = %e, "log file source: cannot resume yet");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
        Ok(())
    }

    /// Reads and lands one batch, or looks for rotation at the end.
    async fn step(&mut self) -> Result<Progress> {
        if self.open.is_none() {
            return self.open_current().await;
        }
        // Before reading on: a truncated file that grew past the position
        // again would otherwise be read from the middle.
        if self.truncated()? {
            let Some(open) = &self.open else {
                return Ok(Progress::Idle);
            };
            tracing::info!(source = %self.name, file = %open.path.display(), "log file truncated; reading it from its start");
            let path = open.path.clone();
            let file = File::open(&path).map_err(Error::io(&path))?;
            self.start_file(path, file).await?;
            return Ok(Progress::More);
        }
        let Some(open) = &mut self.open else {
            return Ok(Progress::Idle);
        };
        let mut batch = Vec::new();
        let mut bytes = 0;
        while batch.len() < BATCH_LINES && bytes < BATCH_BYTES {
            let line = open.reader.next_line().map_err(Error::io(&open.path))?;
            let Some(line) = line else { break };
            bytes += match &line {
                Line::Complete { text, .. } => text.len(),
                Line::TooLong { prefix, .. } => prefix.len(),
            };
            batch.push(line);
        }
        if !batch.is_empty() {
            let full = batch.len() >= BATCH_LINES || bytes >= BATCH_BYTES;
            self.land(batch).await?;
            return Ok(if full { Progress::More } else { Progress::Idle });
        }
        self.at_end().await
    }

    /// The open file is shorter than the position, or its first bytes are
    /// not those read.
    fn truncated(&self) -> Result<bool> {
        let Some(open) = &self.open else {
            return Ok(false);
        };
        let file = open.reader.file();
        let len = file.metadata().map_err(Error::io(&open.path))?.len();
        let same = open.identity.matches(file).map_err(Error::io(&open.path))?;
        Ok(len < open.reader.position() || !same)
    }

    /// At the end of the open file: a rotation, or nothing.
    async fn at_end(&mut self) -> Result<Progress> {
        let Some(open) = &mut self.open else {
            return Ok(Progress::Idle);
        };
        let len = open
            .reader
            .file()
            .metadata()
            .map_err(Error::io(&open.path))?
            .len();
        if len != open.last_len {
            open.last_len = len;
            open.grew_at = Instant::now();
        }
        let replaced = match std::fs::metadata(&self.path) {
            Ok(meta) => (meta.dev(), meta.ino()) != (open.identity.device, open.identity.inode),
            Err(_) => true,
        };
        if !replaced || open.grew_at.elapsed() < ROTATED_QUIET {
            return Ok(Progress::Idle);
        }
        // Rotated away and quiet: its unterminated end is a whole line.
        if let Some(rest) = open.reader.take_rest() {
            self.land(vec![rest]).await?;
        }
        match File::open(&self.path) {
            Ok(file) => {
                tracing::info!(source = %self.name, file = %self.path.display(), "log file rotated; reading the new file");
                self.start_file(self.path.clone(), file).await?;
                Ok(Progress::More)
            }
            Err(_) => Ok(Progress::Idle),
        }
    }

    /// Opens the configured path when it exists.
    async fn open_current(&mut self) -> Result<Progress> {
        match File::open(&self.path) {
            Ok(file) => {
                self.start_file(self.path.clone(), file).await?;
                Ok(Progress::More)
            }
            Err(_) => Ok(Progress::Idle),
        }
    }

    /// Reads `file` from its start, with a checkpoint that says so before
    /// any of its lines is sent.
    async fn start_file(&mut self, path: PathBuf, file: File) -> Result<()> {
        let identity = FileIdentity::of(&file, 0).map_err(Error::io(&path))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.open = Some(OpenFile {
            reader: LineReader::new(file, 0, self.limits.max_message_bytes),
            path,
            identity,
            grew_at: Instant::now(),
            last_len: len,
        });
        self.store_checkpoint()
    }

    /// Normalises lines and lands their records, then moves the checkpoint
    /// past them.
    async fn land(&mut self, batch: Vec<Line>) -> Result<()> {
        let received_at = Utc::now();
        let envelope = Envelope {
            received_at,
            source: &self.name,
            implied_type: None,
            batch_context: None,
            batch_sent_at: None,
            max_event_name_bytes: self.limits.max_event_name_bytes,
        };
        let rules = MessageRules::new(&self.limits, received_at);
        let mut outbox = self.producer.outbox();
        for line in &batch {
            if line.is_blank() {
                continue;
            }
            let outcome = match line {
                Line::TooLong { prefix, .. } => rejected(
                    &envelope,
                    &String::from_utf8_lossy(prefix),
                    RejectReason::MessageTooLarge,
                    format!("line exceeds {} bytes", self.limits.max_message_bytes),
                ),
                Line::Complete { text, .. } => match std::str::from_utf8(text) {
                    // As a request body that is no JSON at all is `invalid_json`.
                    Ok(text) if !text.trim_start().starts_with('{') => {
                        match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                            Err(e) => rejected(
                                &envelope,
                                text,
                                RejectReason::InvalidJson,
                                format!("line is not JSON: {e}"),
                            ),
                            Ok(_) => rules.apply(&envelope, text),
                        }
                    }
                    Ok(text) => rules.apply(&envelope, text),
                    Err(e) => rejected(
                        &envelope,
                        &String::from_utf8_lossy(text),
                        RejectReason::InvalidLine,
                        format!("line is not UTF-8: {e}"),
                    ),
                },
            };
            let record = match outcome {
                Outcome::Accepted(event) => LogRecord::Event(event),
                Outcome::Rejected(row) => LogRecord::Quarantine(row),
            };
            outbox.push_to(self.partition, &record);
        }
        let records = outbox.len() as u64;
        if records > 0 {
            self.producer.send(outbox).await?;
        }
        metrics::counter!("strata_log_file_lines_total", "source" => self.name.clone())
            .increment(records);
        self.store_checkpoint()
    }

    /// Records where the source stands; the identity's fingerprint grows
    /// with the position, up to [`FINGERPRINT_BYTES`].
    fn store_checkpoint(&mut self) -> Result<()> {
        let Some(open) = &mut self.open else {
            return Ok(());
        };
        let position = open.reader.position();
        // The first bytes as first read, not as the file holds them now: a
        // file rewritten since must not pass for the one read.
        let known = (open.identity.fingerprint.len() / 2) as u64;
        if known < position.min(FINGERPRINT_BYTES) {
            open.identity =
                FileIdentity::of(open.reader.file(), position).map_err(Error::io(&open.path))?;
        }
        let identity = open.identity.clone();
        let checkpoint = Checkpoint {
            version: checkpoint::VERSION,
            file: identity,
            position,
            log_partition: self.partition,
            log_offset: self.producer.log().end_offset(self.partition)?,
        };
        checkpoint::store(&self.checkpoint_path, &checkpoint)?;
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = vec![
            ("file".into(), open.path.display().to_string()),
            ("inode".into(), checkpoint.file.inode.to_string()),
            ("position".into(), position.to_string()),
        ];
        Ok(())
    }

    /// Positions the reader where the log says the source stands.
    async fn resume(&mut self) -> Result<()> {
        let Some(saved) = checkpoint::load(&self.checkpoint_path)? else {
            return Ok(());
        };
        let landed = self.records_since(&saved).await?;
        let Some((path, file)) = checkpoint::find(&self.path, &saved.file) else {
            if landed > 0 {
                tracing::warn!(source = %self.name, lines = landed, "the log file of the checkpoint is gone; reading the current file from its start");
            }
            return Ok(());
        };
        let rotated = path != self.path;
        let mut reader = LineReader::new(file, saved.position, self.limits.max_message_bytes);
        let mut skip = landed;
        while skip > 0 {
            let line = match reader.next_line().map_err(Error::io(&path))? {
                Some(line) => line,
                None if rotated => match reader.take_rest() {
                    Some(line) => line,
                    None => break,
                },
                None => break,
            };
            if !line.is_blank() {
                skip -= 1;
            }
        }
        if skip > 0 {
            tracing::warn!(source = %self.name, missing = skip, "the log holds more of this source's lines than its file has");
        }
        let identity = saved.file.clone();
        let len = reader.file().metadata().map(|m| m.len()).unwrap_or(0);
        self.open = Some(OpenFile {
            path,
            reader,
            identity,
            grew_at: Instant::now(),
            last_len: len,
        });
        self.store_checkpoint()
    }

    /// The source's records in its partition at and past the checkpoint's
    /// offset: lines landed after the checkpoint was written.
    async fn records_since(&self, saved: &Checkpoint) -> Result<u64> {
        let mut count = 0;
        self.producer
            .scan(saved.log_partition, saved.log_offset, |record| {
                let ours = match record {
                    LogRecord::Event(e) => e.source == self.name,
                    LogRecord::Quarantine(q) => q.source == self.name,
                    _ => false,
                };
                count += u64::from(ours);
            })
            .await?;
        Ok(count)
    }
}

enum Progress {
    /// More may be ready right away.
    More,
    Idle,
}

impl Source for LogFileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self) -> BoxFuture<'_, Result<()>> {
        async move {
            let dir = match self.path.parent() {
                Some(dir) if dir.as_os_str().is_empty() => Path::new("."),
                Some(dir) => dir,
                None => {
                    return Err(self.config_error(format!("`path` {:?} names no file", self.path)));
                }
            };
            if !dir.is_dir() {
                return Err(self.config_error(format!(
                    "the directory of `path` ({}) does not exist",
                    dir.display()
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
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
