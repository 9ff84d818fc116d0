//! Models that are plain SQL over one silver partition.

use deltalake::arrow::array::RecordBatch;

use crate::dates::{Day, format_day};
use crate::error::Result;
use crate::io::LakeIo;
use crate::tables::SILVER_EVENTS;

pub const ACTIVE_DAYS_SQL: &str = include_str!("sql/active_days.sql");
pub const HOURLY_EVENTS_SQL: &str = include_str!("sql/hourly_events.sql");
pub const IDENTIFIES_SQL: &str = include_str!("sql/identifies.sql");

/// Runs a one-date model whose only input is `silver.events`, registered as
/// `events`; `{date}` in the SQL is the partition's date.
pub async fn run(io: &LakeIo, sql: &str, day: Day) -> Result<Vec<RecordBatch>> {
    let sql = sql.replace("{date}", &format_day(day));
    io.sql(&[("events", &SILVER_EVENTS)], &sql).await
}
