//! Real HTTP on loopback against a real embedded log.

mod config;
mod cors;
mod file_feed;
mod harness;
mod hostile;
mod ingest;
mod limits;
mod log_file;
pub mod postgres_cdc;
mod slow_and_old;
mod small_disk;
mod wire_formats;
