//! Shared vocabulary of Strata: configuration, the normalised event model that
//! travels through the log, and the rules that turn Segment messages into it.

pub mod codec;
pub mod config;
pub mod error;
pub mod event;
pub mod feed;
pub mod format;
pub mod normalize;

pub use config::Config;
pub use error::{Error, Result};
pub use event::{
    BronzeEvent, ChangeOp, ChangeRecord, EventType, LogRecord, QuarantineRecord, RejectReason,
    RelationRecord,
};

/// The tracing target of the lines that mark the start of a durable step
/// (`bronze_commit`, `stream_checkpoint`, `partition_commit`, `compaction`):
/// `STRATA_LOG=strata::phase=debug` shows them, and `strata bench chaos`
/// kills the server on them.
pub const PHASE: &str = "strata::phase";
