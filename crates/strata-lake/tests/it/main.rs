//! Real Delta tables on disk fed from a real embedded log.

mod cdc_routing;
mod exactly_once;
mod harness;
mod sql;
