//! The per-partition writer thread and its group commit.
//!
//! Every request that queued up while the previous batch was being written
//! and fsync'd goes into the next batch, which is written with one `write`
//! and made durable with one `fsync`. Under load the batch grows by itself,
//! so the fsync rate stays roughly constant while the request rate climbs.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::partition::{PartitionShared, SegmentState, WriterStart};
use super::segment::{INDEX_INTERVAL, Segment, write_frame};
use super::{io_error, sync_dir_io};
use crate::{LogError, Offset, Result};

pub(crate) struct AppendRequest {
    /// Every record's length was checked to fit the frame's u32 length.
    pub records: Vec<Bytes>,
    pub reply: oneshot::Sender<Result<Range<Offset>>>,
}

/// State shared by all writers of one log.
#[derive(Clone)]
pub(crate) struct WriterShared {
    pub notify: Arc<watch::Sender<u64>>,
    pub fsyncs: Arc<AtomicU64>,
    pub segment_bytes: u64,
    pub fsync: bool,
}

/// What one batch has done so far.
struct Progress {
    ranges: Vec<Range<Offset>>,
    touched: Vec<SegmentState>,
    durable: Durable,
}

/// The end of what is fsync'd in the active segment.
#[derive(Clone, Copy)]
struct Durable {
    offset: Offset,
    len: u64,
    last_indexed: u64,
}

pub(crate) struct Writer {
    partition: Arc<PartitionShared>,
    shared: WriterShared,
    active: Arc<Segment>,
    /// Bytes written to the active segment (durable or not).
    len: u64,
    next_offset: Offset,
    last_indexed: u64,
    /// Set after an IO error. The page cache can no longer be trusted to
    /// match the file (see PostgreSQL's "fsyncgate"), so the writer fails
    /// every later request instead of retrying; reopening recovers.
    failed: Option<String>,
}

impl Writer {
    pub fn new(partition: Arc<PartitionShared>, start: WriterStart, shared: WriterShared) -> Self {
        let last_indexed = start.active.index_floor(start.next_offset).1;
        Writer {
            partition,
            shared,
            active: start.active,
            len: start.len,
            next_offset: start.next_offset,
            last_indexed,
            failed: None,
        }
    }

    pub fn spawn(self, requests: mpsc::Receiver<AppendRequest>) -> Result<JoinHandle<()>> {
        let dir = self.partition.dir.clone();
        thread::Builder::new()
            .name(format!("strata-log-p{}", self.partition.id))
            .spawn(move || self.run(requests))
            .map_err(io_error(&dir))
    }

    /// Runs until every sender is gone and the queue is drained, so requests
    /// accepted before close still complete.
    fn run(mut self, requests: mpsc::Receiver<AppendRequest>) {
        while let Ok(first) = requests.recv() {
            let mut batch = vec![first];
            batch.extend(requests.try_iter());
            self.commit(batch);
        }
    }

    fn commit(&mut self, batch: Vec<AppendRequest>) {
        if let Some(reason) = &self.failed {
            for request in batch {
                let _ = request.reply.send(Err(LogError::WriterFailed {
                    partition: self.partition.id,
                    reason: reason.clone(),
                }));
            }
            return;
        }
        let first_offset = self.next_offset;
        let mut progress = Progress {
            ranges: Vec::with_capacity(batch.len()),
            touched: vec![self.segment_state()],
            durable: self.durable_point(),
        };
        match self.write_batch(&batch, &mut progress) {
            Ok(()) => {
                self.publish(progress.touched);
                metrics::counter!("strata_log_appended_records_total")
                    .increment(self.next_offset - first_offset);
                for (request, range) in batch.into_iter().zip(progress.ranges) {
                    // The appender may have stopped waiting; nothing to do then.
                    let _ = request.reply.send(Ok(range));
                }
            }
            Err(err) if err.is_disk_full() => self.give_back(batch, progress, &err),
            Err(err) => {
                tracing::error!(
                    partition = self.partition.id,
                    error = %err,
                    "log writer failed; failing this and all later appends to the partition"
                );
                self.failed = Some(err.to_string());
                for request in batch {
                    let _ = request.reply.send(Err(duplicate(&err, self.partition.id)));
                }
            }
        }
    }

    /// A full disk is not the end of the writer: what was made durable
    /// before it filled is published and acknowledged, the rest is cut off
    /// the file and refused, and the next batch tries again, so appends
    /// resume by themselves once space is freed.
    fn give_back(&mut self, batch: Vec<AppendRequest>, mut progress: Progress, err: &LogError) {
        let durable = progress.durable;
        // Shrinking a file needs no space. Bytes past the durable point were
        // never acknowledged; without them the file is what recovery would
        // keep after a crash.
        if let Err(e) = self.active.file.set_len(durable.len) {
            let reason = format!("{err}; then cutting off the unwritten tail failed: {e}");
            tracing::error!(partition = self.partition.id, %reason, "log writer failed");
            self.failed = Some(reason.clone());
            for request in batch {
                let _ = request.reply.send(Err(LogError::WriterFailed {
                    partition: self.partition.id,
                    reason: reason.clone(),
                }));
            }
            return;
        }
        self.len = durable.len;
        self.next_offset = durable.offset;
        self.last_indexed = durable.last_indexed;
        self.active.index_truncate(durable.offset);
        if let Some(last) = progress.touched.last_mut() {
            *last = self.segment_state();
        }
        self.publish(progress.touched);
        metrics::counter!("strata_log_disk_full_total").increment(1);
        tracing::warn!(
            partition = self.partition.id,
            error = %err,
            "the log's disk is full; appends are refused until space is freed"
        );
        let mut ranges = progress.ranges.into_iter();
        for request in batch {
            let answer = match ranges.next() {
                Some(range) if range.end <= durable.offset => Ok(range),
                _ => Err(LogError::DiskFull {
                    partition: self.partition.id,
                    reason: err.to_string(),
                }),
            };
            let _ = request.reply.send(answer);
        }
    }

    fn durable_point(&self) -> Durable {
        Durable {
            offset: self.next_offset,
            len: self.len,
            last_indexed: self.last_indexed,
        }
    }

    /// Writes the batch and makes it durable, recording each request's
    /// range, the segments whose durable state changed (oldest first) and
    /// the last point known durable.
    fn write_batch(&mut self, batch: &[AppendRequest], progress: &mut Progress) -> Result<()> {
        let mut buf = Vec::new();
        let mut dirty = false;
        for request in batch {
            let start = self.next_offset;
            for record in &request.records {
                let position = self.len + buf.len() as u64;
                if position > 0 && position >= self.shared.segment_bytes {
                    self.flush(&mut buf)?;
                    self.sync()?;
                    progress.durable = self.durable_point();
                    if let Some(last) = progress.touched.last_mut() {
                        *last = self.segment_state();
                    }
                    self.roll()?;
                    progress.durable = self.durable_point();
                    progress.touched.push(self.segment_state());
                }
                let position = self.len + buf.len() as u64;
                if position >= self.last_indexed + INDEX_INTERVAL {
                    self.active.index_insert(self.next_offset, position);
                    self.last_indexed = position;
                }
                let len = u32::try_from(record.len()).map_err(|_| LogError::RecordTooLarge {
                    len: record.len(),
                    max: crate::MAX_RECORD_BYTES,
                })?;
                write_frame(&mut buf, self.next_offset, record, len);
                self.next_offset += 1;
                dirty = true;
            }
            progress.ranges.push(start..self.next_offset);
        }
        if dirty {
            self.flush(&mut buf)?;
            self.sync()?;
        }
        if let Some(last) = progress.touched.last_mut() {
            *last = self.segment_state();
        }
        Ok(())
    }

    fn segment_state(&self) -> SegmentState {
        SegmentState {
            segment: self.active.clone(),
            end: self.next_offset,
            len: self.len,
        }
    }

    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        use std::os::unix::fs::FileExt;
        self.active
            .file
            .write_all_at(buf, self.len)
            .map_err(io_error(&self.active.path))?;
        self.len += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        if !self.shared.fsync {
            return Ok(());
        }
        self.timed_fsync(|| self.active.file.sync_data())
            .map_err(io_error(&self.active.path))
    }

    fn timed_fsync(&self, f: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
        let started = Instant::now();
        let result = f();
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("strata_log_fsyncs_total").increment(1);
        metrics::histogram!("strata_log_fsync_seconds").record(started.elapsed().as_secs_f64());
        result
    }

    /// Starts a new segment at the next offset. The caller made the old one
    /// durable first, so a crash never leaves a torn record in a closed
    /// segment.
    fn roll(&mut self) -> Result<()> {
        let segment = Segment::create(&self.partition.dir, self.next_offset)?;
        if self.shared.fsync {
            // Without this the new file's directory entry may not survive a
            // crash, and records acknowledged in it would vanish.
            if let Err(e) = self.timed_fsync(|| sync_dir_io(&self.partition.dir)) {
                // The next roll creates the same file again.
                let _ = std::fs::remove_file(&segment.path);
                return Err(io_error(&self.partition.dir)(e));
            }
        }
        tracing::debug!(
            partition = self.partition.id,
            base = self.next_offset,
            "rolled log segment"
        );
        self.active = Arc::new(segment);
        self.len = 0;
        self.last_indexed = 0;
        Ok(())
    }

    /// Makes the batch visible to readers; only called after the fsync.
    fn publish(&self, touched: Vec<SegmentState>) {
        let end = self.next_offset;
        {
            let mut state = self.partition.state_mut();
            // The last entry is always the segment that was active when the
            // batch started: only this writer touches the back.
            if let (Some(back), Some(first)) = (state.segments.back(), touched.first())
                && Arc::ptr_eq(&back.segment, &first.segment)
            {
                state.segments.pop_back();
            }
            state.segments.extend(touched);
        }
        metrics::gauge!("strata_log_end_offset", "partition" => self.partition.id.to_string())
            .set(end as f64);
        self.shared.notify.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// io::Error is not Clone, but every request of a failed batch needs its own
/// error value.
fn duplicate(err: &LogError, partition: u32) -> LogError {
    match err {
        LogError::Io { path, source } => LogError::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => LogError::WriterFailed {
            partition,
            reason: other.to_string(),
        },
    }
}
