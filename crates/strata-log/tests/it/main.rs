//! Integration tests for the embedded log, against real files in tempdirs.

mod basic;
mod formats;
mod full_disk;
mod group_commit;
mod properties;
mod recovery;
mod retention;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use strata_log::{EmbeddedLogConfig, Log, LogEntry};

pub fn config(partitions: u32, segment_bytes: u64) -> EmbeddedLogConfig {
    EmbeddedLogConfig {
        partitions,
        segment_bytes,
        ..EmbeddedLogConfig::default()
    }
}

/// A recognisable payload of exactly `len` bytes.
pub fn payload(i: u64, len: usize) -> Bytes {
    let tag = format!("record-{i}-");
    Bytes::from(tag.bytes().cycle().take(len).collect::<Vec<u8>>())
}

/// Reads a whole partition the way a sequential consumer would.
pub async fn read_all(log: &dyn Log, partition: u32, max_bytes: usize) -> Vec<LogEntry> {
    let mut out: Vec<LogEntry> = Vec::new();
    let mut next = log.start_offset(partition).expect("start offset");
    loop {
        let batch = log.read(partition, next, max_bytes).await.expect("read");
        let Some(last) = batch.last() else {
            return out;
        };
        next = last.offset + 1;
        out.extend(batch);
    }
}

pub fn partition_dir(dir: &Path, partition: u32) -> PathBuf {
    dir.join(format!("partition-{partition}"))
}

/// Segment files of a partition, oldest first.
pub fn segment_files(dir: &Path, partition: u32) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(partition_dir(dir, partition))
        .expect("read partition dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

pub fn active_segment(dir: &Path, partition: u32) -> PathBuf {
    segment_files(dir, partition)
        .pop()
        .expect("partition has a segment")
}
