//! Real HTTP on loopback against a real embedded log.

mod config;
mod file_feed;
mod cors;
mod harness;
mod hostile;
mod ingest;
mod limits;
mod log_file;
pub mod postgres_cdc;
mod slow_and_old;
mod small_disk;
mod wire_formats;
