//! In-memory view of one partition's segments, shared by its writer,
//! readers and retention.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::segment::{INDEX_INTERVAL, Scanner, Segment, Step, parse_segment_name};
use super::{io_error, sync_dir};
use crate::{LogEntry, LogError, Offset, Result};

/// A segment together with how much of it is durable. For closed segments
/// `end` is the next segment's base offset.
#[derive(Debug, Clone)]
pub(crate) struct SegmentState {
    pub segment: Arc<Segment>,
    /// One past the last durable offset in this segment.
    pub end: Offset,
    /// Durable length in bytes; readers never look past it.
    pub len: u64,
}

#[derive(Debug)]
pub(crate) struct PartitionState {
    /// Ordered by base offset; never empty, the last one is active.
    pub segments: VecDeque<SegmentState>,
}

impl PartitionState {
    pub fn start_offset(&self) -> Offset {
        self.segments.front().map_or(0, |s| s.segment.base)
    }

    pub fn end_offset(&self) -> Offset {
        self.segments.back().map_or(0, |s| s.end)
    }
}

#[derive(Debug)]
pub(crate) struct PartitionShared {
    pub id: u32,
    pub dir: PathBuf,
    state: RwLock<PartitionState>,
}

/// Where the writer picks up after opening a partition.
pub(crate) struct WriterStart {
    pub active: Arc<Segment>,
    pub len: u64,
    pub next_offset: Offset,
}

impl PartitionShared {
    /// Loads the partition's segments and recovers the active one's tail.
    pub fn open(root: &Path, id: u32, fsync: bool) -> Result<(PartitionShared, WriterStart)> {
        let dir = root.join(format!("partition-{id}"));
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let name = entry.file_name();
            match name.to_str().and_then(parse_segment_name) {
                Some(base) => bases.push(base),
                None => tracing::warn!(
                    path = %entry.path().display(),
                    "ignoring unexpected file in log partition directory"
                ),
            }
        }
        bases.sort_unstable();

        let mut segments = VecDeque::with_capacity(bases.len().max(1));
        let Some((&last_base, closed)) = bases.split_last() else {
            let segment = Segment::create(&dir, 0)?;
            if fsync {
                sync_dir(&dir)?;
            }
            let segment = Arc::new(segment);
            segments.push_back(SegmentState {
                segment: segment.clone(),
                end: 0,
                len: 0,
            });
            let start = WriterStart {
                active: segment,
                len: 0,
                next_offset: 0,
            };
            return Ok((Self::with_segments(id, dir, segments), start));
        };

        for (i, &base) in closed.iter().enumerate() {
            let end = bases.get(i + 1).copied().unwrap_or(last_base);
            let (segment, len) =
                Segment::open_closed(super::segment::segment_path(&dir, base), base)?;
            segments.push_back(SegmentState {
                segment: Arc::new(segment),
                end,
                len,
            });
        }
        let recovered = Segment::recover(
            super::segment::segment_path(&dir, last_base),
            last_base,
            fsync,
        )?;
        let active = Arc::new(recovered.segment);
        segments.push_back(SegmentState {
            segment: active.clone(),
            end: recovered.next_offset,
            len: recovered.len,
        });
        let start = WriterStart {
            active,
            len: recovered.len,
            next_offset: recovered.next_offset,
        };
        Ok((Self::with_segments(id, dir, segments), start))
    }

    fn with_segments(id: u32, dir: PathBuf, segments: VecDeque<SegmentState>) -> Self {
        PartitionShared {
            id,
            dir,
            state: RwLock::new(PartitionState { segments }),
        }
    }

    pub fn state(&self) -> RwLockReadGuard<'_, PartitionState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn state_mut(&self) -> RwLockWriteGuard<'_, PartitionState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Snapshots what a read from `from` needs, so the file IO can run
    /// without holding the lock. None means there is nothing to read.
    pub fn plan_read(&self, from: Offset, max_bytes: usize) -> Result<Option<ReadPlan>> {
        let state = self.state();
        let earliest = state.start_offset();
        if from < earliest {
            return Err(LogError::OffsetOutOfRange {
                partition: self.id,
                requested: from,
                earliest,
            });
        }
        if from >= state.end_offset() {
            return Ok(None);
        }
        let first = state.segments.partition_point(|s| s.end <= from);
        let mut segments = Vec::new();
        let mut following_bytes = 0u64;
        for s in state.segments.iter().skip(first) {
            // Later segments are only worth snapshotting while they could
            // still contribute to a read of `max_bytes`.
            if !segments.is_empty() && following_bytes >= max_bytes as u64 {
                break;
            }
            if !segments.is_empty() {
                following_bytes += s.len;
            }
            segments.push(s.clone());
        }
        Ok(Some(ReadPlan {
            partition: self.id,
            from,
            max_bytes,
            segments,
        }))
    }

    /// Drops closed segments that end at or below `below` from the view and
    /// returns them so their files can be deleted outside the lock. The
    /// active segment is never returned.
    pub fn trim_below(&self, below: Offset) -> Vec<Arc<Segment>> {
        let mut state = self.state_mut();
        let mut removed = Vec::new();
        while state.segments.len() > 1 {
            match state.segments.front() {
                Some(front) if front.end <= below => {}
                _ => break,
            }
            if let Some(front) = state.segments.pop_front() {
                removed.push(front.segment);
            }
        }
        removed
    }
}

pub(crate) struct ReadPlan {
    partition: u32,
    from: Offset,
    max_bytes: usize,
    segments: Vec<SegmentState>,
}

impl ReadPlan {
    /// Blocking: performs the positional reads.
    pub fn execute(self) -> Result<Vec<LogEntry>> {
        let chunk_size = self
            .max_bytes
            .saturating_add(INDEX_INTERVAL as usize)
            .clamp(INDEX_INTERVAL as usize, 8 << 20);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next = self.from;
        for view in &self.segments {
            if next >= view.end {
                continue;
            }
            let segment = &view.segment;
            let (mut expected, pos) = segment.index_floor(next);
            let mut scanner = Scanner::new(segment, pos, view.len, chunk_size);
            let mut last_indexed = pos;
            while expected < view.end {
                let frame = match scanner.next()? {
                    Step::Frame(frame) => frame,
                    Step::End | Step::Torn(_) => {
                        return Err(segment.corrupt(
                            scanner.pos,
                            format!("segment ends before offset {expected}"),
                        ));
                    }
                };
                if frame.offset != expected {
                    return Err(segment.corrupt(
                        frame.pos,
                        format!("expected offset {expected}, found offset {}", frame.offset),
                    ));
                }
                if frame.pos >= last_indexed + INDEX_INTERVAL {
                    segment.index_insert(frame.offset, frame.pos);
                    last_indexed = frame.pos;
                }
                expected += 1;
                if frame.offset < next {
                    continue;
                }
                if !out.is_empty() && bytes.saturating_add(frame.payload.len()) > self.max_bytes {
                    return Ok(out);
                }
                if !frame.crc_ok {
                    return Err(segment.corrupt(
                        frame.pos,
                        format!("checksum mismatch in record at offset {}", frame.offset),
                    ));
                }
                bytes += frame.payload.len();
                next = frame.offset + 1;
                out.push(LogEntry {
                    partition: self.partition,
                    offset: frame.offset,
                    payload: frame.payload,
                });
            }
        }
        Ok(out)
    }
}
