//! The lakehouse side of Strata: Delta table definitions, the bronze loader
//! that moves the log into Delta exactly once, and read-only SQL over every
//! table.

pub mod bronze;
pub mod columns;
mod error;
pub mod query;
pub mod schema;
mod sql_guard;
pub mod table;
mod yielding;

pub use error::{Error, Result};
pub use query::{OutputFormat, SqlEngine};
pub use table::Lake;

pub use deltalake::arrow;
pub use deltalake::datafusion;
pub use deltalake::parquet;
