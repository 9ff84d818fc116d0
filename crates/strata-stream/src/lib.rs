//! The realtime path (SPEC §5): per-minute event counts and approximate
//! users, seconds behind the collector, read straight from the log.
//!
//! ```text
//! log ─▶ source ─▶ parse (+ watermark) ─▶ dedup ─▶ window ─▶ sink ─▶ realtime.events_minute
//!                                                    │
//!                                                    └─▶ GET /api/realtime (open windows live)
//! ```
//!
//! Every stage is an [`Operator`] with hooks for watermarks and checkpoints.
//! A checkpoint commits the sink (rows and log positions in one Delta
//! commit) and then a manifest of every operator's state with the same
//! positions; a restart resumes from the manifest and replays the log.

pub mod api;
pub mod checkpoint;
mod error;
pub mod operator;
pub mod operators;
mod processor;
pub mod view;

pub use error::{Error, Result};
pub use operator::{Batch, Context, Event, MinuteRow, Operator};
pub use operators::sink::REALTIME_EVENTS_MINUTE;
pub use processor::{CONSUMER, Step, StreamProcessor, now_micros};
pub use view::{RealtimeHandle, RealtimeReport};
