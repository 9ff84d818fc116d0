mod config_change;
mod crosscheck;
mod formats;
mod golden;
mod harness;
mod idempotency;
mod incremental;
mod index;
