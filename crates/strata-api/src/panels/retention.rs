//! `GET /api/retention`: the cohort × day-offset heatmap.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use deltalake::arrow::array::{Array, RecordBatch};
use serde::Serialize;
use strata_batch::dates::date_of;
use strata_batch::tables::GOLD_RETENTION;
use strata_lake::columns::{days, ints, longs};
use strata_lake::schema::TableDef;

use super::{Frame, available};
use crate::error::Result;
use crate::range::DateRange;
use crate::snapshot::Snapshot;

/// The day offsets gold.retention has (SPEC §4: 0 to 28).
pub const MAX_OFFSET: usize = 28;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    pub cohort_date: NaiveDate,
    pub cohort_size: i64,
    /// Retained users by day offset.
    pub retained: Vec<i64>,
    pub rates: Vec<f64>,
}

/// gold.retention as cohorts, by cohort date.
pub struct Cohorts(pub BTreeMap<NaiveDate, Cohort>);

impl Snapshot for Cohorts {
    const TABLE: TableDef = GOLD_RETENTION;
    const COLUMNS: &'static [&'static str] =
        &["cohort_date", "day_offset", "cohort_size", "retained_users"];

    fn from_batches(batches: &[RecordBatch]) -> Result<Self> {
        let mut cohorts: BTreeMap<NaiveDate, Cohort> = BTreeMap::new();
        for batch in batches {
            let (date, offset, size, retained) = (
                days(batch, "cohort_date")?,
                ints(batch, "day_offset")?,
                longs(batch, "cohort_size")?,
                longs(batch, "retained_users")?,
            );
            for i in 0..batch.num_rows() {
                let Ok(offset) = usize::try_from(offset.value(i)) else {
                    continue;
                };
                if date.is_null(i) || offset > MAX_OFFSET {
                    continue;
                }
                let cohort =
                    cohorts
                        .entry(date_of(date.value(i)))
                        .or_insert_with_key(|&cohort_date| Cohort {
                            cohort_date,
                            cohort_size: size.value(i),
                            retained: Vec::new(),
                            rates: Vec::new(),
                        });
                if cohort.retained.len() <= offset {
                    cohort.retained.resize(offset + 1, 0);
                }
                cohort.retained[offset] = retained.value(i);
            }
        }
        for cohort in cohorts.values_mut() {
            cohort.rates = cohort
                .retained
                .iter()
                .map(|&r| super::ratio(r, cohort.cohort_size).unwrap_or(0.0))
                .collect();
        }
        Ok(Cohorts(cohorts))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Average {
    pub day_offset: usize,
    pub rate: f64,
    pub cohorts: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Retention {
    #[serde(flatten)]
    pub frame: Frame,
    pub max_offset: usize,
    pub cohorts: Vec<Cohort>,
    pub average: Vec<Average>,
}

pub fn answer(table: Option<&Cohorts>, range: DateRange) -> Retention {
    let empty = BTreeMap::new();
    let all = table.map(|t| &t.0).unwrap_or(&empty);
    let cohorts: Vec<Cohort> = all
        .range(range.from..=range.to)
        .map(|(_, c)| c.clone())
        .collect();
    let reach = cohorts.iter().map(|c| c.retained.len()).max().unwrap_or(0);
    let average = (0..reach)
        .map(|offset| {
            let reaching = cohorts.iter().filter(|c| c.retained.len() > offset);
            let (retained, size, n) = reaching.fold((0, 0, 0), |(r, s, n), c| {
                (r + c.retained[offset], s + c.cohort_size, n + 1)
            });
            Average {
                day_offset: offset,
                rate: super::ratio(retained, size).unwrap_or(0.0),
                cohorts: n,
            }
        })
        .collect();
    Retention {
        frame: Frame::new(
            &GOLD_RETENTION.qualified_name(),
            range,
            available(all.keys().copied()),
            !cohorts.is_empty(),
        ),
        max_offset: MAX_OFFSET,
        cohorts,
        average,
    }
}
