//! Durable, partitioned, append-only record log.
//!
//! The HTTP collector appends to the log; loaders and stream processors read
//! from it. Callers program against the object-safe [`Log`] trait (usually as
//! `Arc<dyn Log>`) so the embedded implementation in this crate,
//! [`EmbeddedLog`], can later be swapped for a Kafka-backed one.
//!
//! # Durability contract
//!
//! * The future returned by [`Log::append`] resolves `Ok` only after every
//!   record of the call has been written **and fsync'd**. A collector may
//!   therefore acknowledge its client as soon as the future resolves.
//! * If the future resolves with an error, or never resolves because the
//!   process died, the records may or may not be in the log: delivery is
//!   at-least-once, and clients are expected to retry.
//! * Records appended to one partition get contiguous, increasing offsets in
//!   the order of the `append` calls, and acknowledged records are never
//!   reordered or renumbered — also not across a crash and reopen.
//! * Readers only ever observe durable records: anything returned by
//!   [`Log::read`] or counted by [`Log::end_offset`] survives a crash.
//! * Records are removed only by retention, and only once every registered
//!   consumer has reported (via [`Log::consumer_passed`]) that it processed
//!   them.
//!
//! # Blocking
//!
//! `append` and `read` never block the calling task (writes happen on one
//! thread per partition, reads on Tokio's blocking pool). `consumer_passed`
//! writes and fsyncs a small file, and `EmbeddedLog::open`/`close` do file
//! IO and join threads; call them sparingly or from blocking contexts.
//! The embedded implementation uses Unix file APIs.

use std::ops::Range;
use std::path::PathBuf;

use bytes::Bytes;
use futures::future::BoxFuture;

mod embedded;

pub use embedded::{EmbeddedLog, EmbeddedLogConfig, FRAME_HEADER_LEN, encode_frame};

/// Position of a record within its partition; the first record gets 0.
pub type Offset = u64;

pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// Largest payload one record can carry (the frame stores its length as u32).
pub const MAX_RECORD_BYTES: usize = u32::MAX as usize;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt log data in {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("unknown partition {partition}: the log has {partitions} partitions")]
    UnknownPartition { partition: u32, partitions: u32 },
    #[error(
        "offset {requested} of partition {partition} is no longer retained; \
         the earliest retained offset is {earliest}"
    )]
    OffsetOutOfRange {
        partition: u32,
        requested: Offset,
        earliest: Offset,
    },
    #[error(
        "the log at {path} was created with {stored} partitions, \
         but {configured} partitions are configured"
    )]
    PartitionCountMismatch {
        path: PathBuf,
        stored: u32,
        configured: u32,
    },
    #[error("consumer {0:?} is not registered with the log")]
    UnknownConsumer(String),
    #[error("record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge { len: usize, max: usize },
    #[error("the log directory {path} is already in use by another log instance")]
    Locked { path: PathBuf },
    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),
    #[error(
        "the writer of partition {partition} stopped after an earlier failure ({reason}); \
         reopen the log to recover"
    )]
    WriterFailed { partition: u32, reason: String },
    /// Nothing of the append was acknowledged; appends resume once space
    /// is freed.
    #[error(
        "the log's disk is full, so partition {partition} took nothing of this append ({reason})"
    )]
    DiskFull { partition: u32, reason: String },
    #[error("the log is closed")]
    Closed,
    /// Written by a later Strata: the same sentence as `strata_core::format`
    /// (this crate sits below strata-core).
    #[error(
        "{what} at {path} has format version {found}, newer than version {known} that this \
         Strata reads: it was written by a later Strata release; run that release (or a newer \
         one) on this data dir"
    )]
    NewerFormat {
        what: &'static str,
        path: PathBuf,
        found: u32,
        known: u32,
    },
}

impl LogError {
    /// The disk (or the user's quota) is full: a condition that passes, so
    /// the caller may answer "try again later" instead of failing.
    pub fn is_disk_full(&self) -> bool {
        match self {
            LogError::DiskFull { .. } => true,
            LogError::Io { source, .. } => is_disk_full_io(source),
            _ => false,
        }
    }
}

/// ENOSPC or EDQUOT.
pub fn is_disk_full_io(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Reads the version of a file whose first line is `{prefix} v{N}`.
pub(crate) fn format_version(first_line: Option<&str>, prefix: &str) -> Option<u32> {
    first_line?
        .strip_prefix(prefix)?
        .strip_prefix(" v")?
        .trim()
        .parse()
        .ok()
}

/// One record as read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub partition: u32,
    pub offset: Offset,
    pub payload: Bytes,
}

/// A durable, partitioned, append-only record log.
///
/// Object-safe so callers hold `Arc<dyn Log>`.
pub trait Log: Send + Sync + 'static {
    /// Number of partitions; fixed for the lifetime of the log.
    fn partition_count(&self) -> u32;

    /// Appends records to one partition in order; resolves with the offset
    /// range they got once they are durable (fsync'd).
    ///
    /// Implementations order concurrent calls on one partition by the time
    /// `append` is *called*, not when the future is first polled.
    fn append(
        &self,
        partition: u32,
        records: Vec<Bytes>,
    ) -> BoxFuture<'static, Result<Range<Offset>>>;

    /// Reads durable records of one partition starting at `from`, up to about
    /// `max_bytes` of payload (always at least one record if any exists
    /// at/after `from`). Returns an empty Vec when nothing new. If `from` is
    /// below the earliest retained offset, returns
    /// [`LogError::OffsetOutOfRange`].
    fn read(
        &self,
        partition: u32,
        from: Offset,
        max_bytes: usize,
    ) -> BoxFuture<'_, Result<Vec<LogEntry>>>;

    /// Offset one past the last durable record.
    fn end_offset(&self, partition: u32) -> Result<Offset>;

    /// Earliest retained offset.
    fn start_offset(&self, partition: u32) -> Result<Offset>;

    /// A receiver that changes whenever any partition gets new durable
    /// records, so consumers can wait instead of polling.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;

    /// A consumer reports it has fully processed every record below `offset`
    /// in `partition`. This only drives retention; consumers keep their
    /// authoritative positions next to their own outputs.
    fn consumer_passed(&self, consumer: &str, partition: u32, offset: Offset) -> Result<()>;
}

/// Chooses the partition for a key (e.g. a person id) so that all of one
/// key's records land in one partition.
///
/// Stable across runs and versions: CRC-32 (IEEE) of the UTF-8 bytes modulo
/// `partitions`. Returns 0 when `partitions` is 0.
pub fn partition_for_key(key: &str, partitions: u32) -> u32 {
    crc32fast::hash(key.as_bytes())
        .checked_rem(partitions)
        .unwrap_or(0)
}
