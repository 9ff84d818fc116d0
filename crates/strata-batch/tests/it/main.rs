mod config_change;
mod crosscheck;
mod golden;
mod harness;
mod idempotency;
mod incremental;
mod index;
