//! Real HTTP on loopback against a real embedded log.

mod config;
mod cors;
mod harness;
mod hostile;
mod ingest;
mod limits;
mod postgres_cdc;
mod slow_and_old;
mod small_disk;
