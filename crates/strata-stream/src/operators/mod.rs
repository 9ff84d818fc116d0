//! The stages of the realtime pipeline, in the order events pass them:
//! `source` reads the log, `parse` decodes records and assigns event times
//! and watermarks, `dedup` drops retried event ids, `window` aggregates
//! one-minute event-time windows, `sink` upserts them into Delta.

pub mod dedup;
pub mod parse;
pub mod sink;
pub mod source;
pub mod window;
