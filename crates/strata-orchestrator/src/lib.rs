//! The orchestrator: model runs kept in a run store (SQLite in the data dir,
//! or PostgreSQL shared by several schedulers), ordered by the partition
//! graph that the models' declared inputs imply, fired by cron schedules and
//! by a late-data sensor, claimed under leases, retried with backoff, and
//! requeued when their worker dies.

pub mod backfill;
pub mod dag;
mod error;
pub mod run;
pub mod schedule;
pub mod scheduler;
pub mod status;
pub mod store;
pub mod workload;

pub use error::{Error, Result};
pub use scheduler::{Scheduler, SchedulerConfig, Tick};
pub use store::{Run, RunKey, RunState, RunStore};
pub use workload::{BatchWorkload, Workload};
