//! `GET /api/active-users`: DAU, WAU, MAU and new users over a date range.

use chrono::NaiveDate;
use deltalake::arrow::array::{Array, RecordBatch};
use serde::Serialize;
use strata_batch::dates::date_of;
use strata_batch::tables::GOLD_DAILY_ACTIVE_USERS;
use strata_lake::columns::{days, longs};
use strata_lake::schema::TableDef;

use super::{Frame, available};
use crate::error::Result;
use crate::range::DateRange;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Day {
    pub date: NaiveDate,
    pub dau: i64,
    pub wau: i64,
    pub mau: i64,
    pub new_users: i64,
}

/// gold.daily_active_users, ordered by date.
pub struct DailyActive(pub Vec<Day>);

impl Snapshot for DailyActive {
    const TABLE: TableDef = GOLD_DAILY_ACTIVE_USERS;
    const COLUMNS: &'static [&'static str] = &["date", "dau", "wau", "mau", "new_users"];

    fn from_batches(batches: &[RecordBatch]) -> Result<Self> {
        let mut rows = Vec::new();
        for batch in batches {
            let (date, dau, wau, mau, new) = (
                days(batch, "date")?,
                longs(batch, "dau")?,
                longs(batch, "wau")?,
                longs(batch, "mau")?,
                longs(batch, "new_users")?,
            );
            for i in 0..batch.num_rows() {
                if date.is_null(i) {
                    continue;
                }
                rows.push(Day {
                    date: date_of(date.value(i)),
                    dau: dau.value(i),
                    wau: wau.value(i),
                    mau: mau.value(i),
                    new_users: new.value(i),
                });
            }
        }
        rows.sort_by_key(|d| d.date);
        Ok(DailyActive(rows))
    }
}

impl DailyActive {
    pub fn last_date(&self) -> Option<NaiveDate> {
        self.0.last().map(|d| d.date)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub dau: i64,
    pub wau: i64,
    pub mau: i64,
    pub new_users: i64,
    pub avg_dau: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActiveUsers {
    #[serde(flatten)]
    pub frame: Frame,
    pub days: Vec<Day>,
    pub summary: Option<Summary>,
}

pub fn answer(table: Option<&DailyActive>, range: DateRange) -> ActiveUsers {
    let all: &[Day] = table.map(|t| t.0.as_slice()).unwrap_or_default();
    let start = all.partition_point(|d| d.date < range.from);
    let end = all.partition_point(|d| d.date <= range.to);
    let days = all[start..end].to_vec();
    let summary = days.last().map(|last| Summary {
        dau: last.dau,
        wau: last.wau,
        mau: last.mau,
        new_users: days.iter().map(|d| d.new_users).sum(),
        avg_dau: days.iter().map(|d| d.dau).sum::<i64>() as f64 / days.len() as f64,
    });
    ActiveUsers {
        frame: Frame::new(
            &GOLD_DAILY_ACTIVE_USERS.qualified_name(),
            range,
            available(all.iter().map(|d| d.date)),
            !days.is_empty(),
        ),
        days,
        summary,
    }
}
