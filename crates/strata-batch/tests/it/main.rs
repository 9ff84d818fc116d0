mod golden;
mod harness;
mod idempotency;
mod incremental;
