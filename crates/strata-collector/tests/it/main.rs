//! Real HTTP on loopback against a real embedded log.

mod harness;
mod ingest;
mod limits;
