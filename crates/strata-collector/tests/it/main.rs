//! Real HTTP on loopback against a real embedded log.

mod cors;
mod harness;
mod hostile;
mod ingest;
mod limits;
mod slow_and_old;
mod small_disk;
