//! The orchestrator against real run stores: a SQLite file and the
//! PostgreSQL on this machine (127.0.0.1:5432, or `STRATA_TEST_POSTGRES`).
//! Every scenario of `suite` runs on both.

mod batch;
mod cdc;
mod db;
mod formats;
mod listing;
mod scripted;
mod suite;
