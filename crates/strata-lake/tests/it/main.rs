//! Real Delta tables on disk fed from a real embedded log.

mod exactly_once;
mod harness;
mod sql;
