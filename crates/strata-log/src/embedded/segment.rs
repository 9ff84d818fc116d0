//! Segment files: record framing, scanning, tail recovery and the sparse index.
//!
//! Frame layout (little-endian):
//! `[u32 payload_len][u32 crc32(offset bytes + payload)][u64 offset][payload]`.
//! Covering the offset with the checksum lets recovery tell a stale or
//! misplaced frame from the one it expects.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

use super::io_error;
use crate::{LogError, MAX_RECORD_BYTES, Offset, Result};

/// Size of the fixed frame header that precedes every payload.
pub const FRAME_HEADER_LEN: usize = 16;

/// Distance in bytes between sparse index entries. Bounds how much of a
/// segment a read has to skip over before reaching its start offset.
pub(crate) const INDEX_INTERVAL: u64 = 64 * 1024;

const SEGMENT_SUFFIX: &str = ".log";
const SEGMENT_DIGITS: usize = 20;

/// Appends one frame holding `payload` at `offset` to `buf`, exactly as the
/// embedded log stores it on disk.
pub fn encode_frame(buf: &mut Vec<u8>, offset: Offset, payload: &[u8]) -> Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| LogError::RecordTooLarge {
        len: payload.len(),
        max: MAX_RECORD_BYTES,
    })?;
    write_frame(buf, offset, payload, len);
    Ok(())
}

/// `len` must be `payload.len()`; callers validated that it fits in u32.
pub(crate) fn write_frame(buf: &mut Vec<u8>, offset: Offset, payload: &[u8], len: u32) {
    buf.reserve(FRAME_HEADER_LEN + payload.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&checksum(offset, payload).to_le_bytes());
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(payload);
}

fn checksum(offset: Offset, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&offset.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

pub(crate) fn segment_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!(
        "{base:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_DIGITS
    ))
}

/// The base offset encoded in a segment file name, or None for other files.
pub(crate) fn parse_segment_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One segment file. Only the partition's writer ever writes to it (and only
/// while it is the active segment); readers use positional reads, so they
/// share the handle without coordination.
#[derive(Debug)]
pub(crate) struct Segment {
    pub base: Offset,
    pub path: PathBuf,
    pub file: File,
    /// Offset -> byte position of that record's frame. Always holds
    /// `(base, 0)`. Filled by the writer, by recovery, and lazily by readers
    /// of segments that were closed before the log was opened.
    index: Mutex<BTreeMap<Offset, u64>>,
}

/// What tail recovery found in the active segment.
pub(crate) struct Recovered {
    pub segment: Segment,
    pub next_offset: Offset,
    pub len: u64,
}

impl Segment {
    fn new(base: Offset, path: PathBuf, file: File) -> Self {
        Segment {
            base,
            path,
            file,
            index: Mutex::new(BTreeMap::from([(base, 0)])),
        }
    }

    /// Creates a new, empty segment file; fails if it already exists.
    pub fn create(dir: &Path, base: Offset) -> Result<Segment> {
        let path = segment_path(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(&path))?;
        Ok(Segment::new(base, path, file))
    }

    /// Opens a closed segment for reading; returns it with its length.
    pub fn open_closed(path: PathBuf, base: Offset) -> Result<(Segment, u64)> {
        let file = File::open(&path).map_err(io_error(&path))?;
        let len = file.metadata().map_err(io_error(&path))?.len();
        Ok((Segment::new(base, path, file), len))
    }

    /// Opens the active segment and cuts off its torn tail: everything from
    /// the first frame that is incomplete, fails its checksum or carries an
    /// unexpected offset. Such a tail can only come from a write that was
    /// never acknowledged, because acknowledgement waits for the fsync.
    pub fn recover(path: PathBuf, base: Offset, fsync: bool) -> Result<Recovered> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let file_len = file.metadata().map_err(io_error(&path))?.len();
        let segment = Segment::new(base, path, file);

        let mut scanner = Scanner::new(&segment, 0, file_len, INDEX_INTERVAL as usize);
        let mut expected = base;
        let mut last_indexed = 0;
        let cut = loop {
            match scanner.next()? {
                Step::End => break None,
                Step::Torn(reason) => break Some((scanner.pos, reason.to_string())),
                Step::Frame(frame) => {
                    if frame.offset != expected {
                        let reason =
                            format!("expected offset {expected}, found offset {}", frame.offset);
                        break Some((frame.pos, reason));
                    }
                    if !frame.crc_ok {
                        break Some((frame.pos, "checksum mismatch".to_string()));
                    }
                    if frame.pos >= last_indexed + INDEX_INTERVAL {
                        segment.index_insert(frame.offset, frame.pos);
                        last_indexed = frame.pos;
                    }
                    expected += 1;
                }
            }
        };

        let len = match cut {
            None => file_len,
            Some((position, reason)) => {
                tracing::warn!(
                    path = %segment.path.display(),
                    position,
                    bytes_cut = file_len - position,
                    reason = %reason,
                    "truncating torn tail of log segment"
                );
                segment
                    .file
                    .set_len(position)
                    .map_err(io_error(&segment.path))?;
                if fsync {
                    segment.file.sync_all().map_err(io_error(&segment.path))?;
                }
                position
            }
        };
        Ok(Recovered {
            segment,
            next_offset: expected,
            len,
        })
    }

    /// The indexed record closest to (at or before) `offset`.
    pub fn index_floor(&self, offset: Offset) -> (Offset, u64) {
        let index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        index
            .range(..=offset)
            .next_back()
            .map(|(&o, &p)| (o, p))
            .unwrap_or((self.base, 0))
    }

    /// Forgets the positions of `offset` and after (records that were
    /// never made durable), keeping the segment's base.
    pub fn index_truncate(&self, offset: Offset) {
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        index.split_off(&offset.max(self.base + 1));
    }

    pub fn index_insert(&self, offset: Offset, position: u64) {
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        index.insert(offset, position);
    }

    pub fn corrupt(&self, position: u64, reason: impl Into<String>) -> LogError {
        LogError::Corrupt {
            path: self.path.clone(),
            position,
            reason: reason.into(),
        }
    }
}

pub(crate) struct Frame {
    pub pos: u64,
    pub offset: Offset,
    pub payload: Bytes,
    pub crc_ok: bool,
}

pub(crate) enum Step {
    Frame(Frame),
    /// Clean end: the scanner is exactly at `limit`.
    End,
    /// Bytes remain before `limit`, but not a complete frame.
    Torn(&'static str),
}

/// Walks the frames of a segment between a start position and `limit`,
/// reading the file in large chunks so small records do not cost a syscall
/// each; payloads are zero-copy slices of those chunks.
pub(crate) struct Scanner<'a> {
    segment: &'a Segment,
    pub pos: u64,
    limit: u64,
    chunk: Bytes,
    chunk_start: u64,
    chunk_size: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(segment: &'a Segment, pos: u64, limit: u64, chunk_size: usize) -> Self {
        Scanner {
            segment,
            pos,
            limit,
            chunk: Bytes::new(),
            chunk_start: 0,
            chunk_size: chunk_size.max(FRAME_HEADER_LEN),
        }
    }

    /// Makes `[pos, pos + need)` available in `chunk`; the caller guarantees
    /// that range lies below `limit`.
    fn fill(&mut self, need: u64) -> Result<()> {
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        if self.pos >= self.chunk_start && self.pos + need <= chunk_end {
            return Ok(());
        }
        let want = need.max(self.chunk_size as u64).min(self.limit - self.pos);
        let want = usize::try_from(want)
            .map_err(|_| self.segment.corrupt(self.pos, "frame larger than memory"))?;
        let mut buf = vec![0u8; want];
        self.segment
            .file
            .read_exact_at(&mut buf, self.pos)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => self
                    .segment
                    .corrupt(self.pos, "segment file is shorter than expected"),
                _ => io_error(&self.segment.path)(e),
            })?;
        self.chunk = Bytes::from(buf);
        self.chunk_start = self.pos;
        Ok(())
    }

    pub fn next(&mut self) -> Result<Step> {
        if self.pos >= self.limit {
            return Ok(Step::End);
        }
        let remaining = self.limit - self.pos;
        if remaining < FRAME_HEADER_LEN as u64 {
            return Ok(Step::Torn("incomplete frame header"));
        }
        self.fill(FRAME_HEADER_LEN as u64)?;
        let start = (self.pos - self.chunk_start) as usize;
        let header = &self.chunk[start..start + FRAME_HEADER_LEN];
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let mut offset_bytes = [0u8; 8];
        offset_bytes.copy_from_slice(&header[8..16]);
        let offset = u64::from_le_bytes(offset_bytes);

        let total = FRAME_HEADER_LEN as u64 + u64::from(len);
        if total > remaining {
            return Ok(Step::Torn("incomplete frame"));
        }
        self.fill(total)?;
        let start = (self.pos - self.chunk_start) as usize;
        let payload = self
            .chunk
            .slice(start + FRAME_HEADER_LEN..start + FRAME_HEADER_LEN + len as usize);
        let frame = Frame {
            pos: self.pos,
            offset,
            crc_ok: checksum(offset, &payload) == crc,
            payload,
        };
        self.pos += total;
        Ok(Step::Frame(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let path = segment_path(Path::new("/x"), 42);
        let name = path.file_name().and_then(|n| n.to_str());
        assert_eq!(name, Some("00000000000000000042.log"));
        assert_eq!(parse_segment_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.log"), None);
        assert_eq!(parse_segment_name("00000000000000000042.tmp"), None);
        assert_eq!(parse_segment_name("99999999999999999999.log"), None);
    }

    #[test]
    fn frame_layout() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 7, b"abc").ok();
        assert_eq!(buf.len(), FRAME_HEADER_LEN + 3);
        assert_eq!(&buf[0..4], &3u32.to_le_bytes());
        assert_eq!(&buf[4..8], &checksum(7, b"abc").to_le_bytes());
        assert_eq!(&buf[8..16], &7u64.to_le_bytes());
        assert_eq!(&buf[16..], b"abc");
    }
}
