//! The `strata` binary driven as a user would: real processes, real HTTP on
//! loopback, real files.

mod attacks;
mod backfill;
mod cdc;
mod cli;
mod crash;
mod deep_sql;
mod e2e;
mod fixture;
mod hostile;
mod process;
mod realtime;
mod scheduler;
mod small_disk;
mod sources;
