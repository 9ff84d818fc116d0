//! `GET /api/funnels`: each configured funnel's steps over a date range.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use deltalake::arrow::array::{Array, RecordBatch};
use serde::Serialize;
use strata_batch::dates::date_of;
use strata_batch::tables::GOLD_FUNNEL_DAILY;
use strata_core::config::FunnelConfig;
use strata_lake::columns::{days, ints, longs, strings};
use strata_lake::schema::TableDef;

use super::{Frame, available, ratio};
use crate::error::Result;
use crate::range::DateRange;
use crate::snapshot::Snapshot;

/// gold.funnel_daily: persons per (funnel, entry date, step).
pub struct FunnelDaily(pub BTreeMap<(String, NaiveDate, i32), i64>);

impl Snapshot for FunnelDaily {
    const TABLE: TableDef = GOLD_FUNNEL_DAILY;
    const COLUMNS: &'static [&'static str] = &["funnel", "entry_date", "step", "users"];

    fn from_batches(batches: &[RecordBatch]) -> Result<Self> {
        let mut rows = BTreeMap::new();
        for batch in batches {
            let (funnel, date, step, users) = (
                strings(batch, "funnel")?,
                days(batch, "entry_date")?,
                ints(batch, "step")?,
                longs(batch, "users")?,
            );
            for i in 0..batch.num_rows() {
                if funnel.is_null(i) || date.is_null(i) {
                    continue;
                }
                let key = (
                    funnel.value(i).to_owned(),
                    date_of(date.value(i)),
                    step.value(i),
                );
                *rows.entry(key).or_insert(0) += users.value(i);
            }
        }
        Ok(FunnelDaily(rows))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub step: usize,
    pub name: String,
    pub users: i64,
    pub conversion_from_previous: Option<f64>,
    pub conversion_from_start: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Funnel {
    pub name: String,
    pub window: String,
    pub window_seconds: u64,
    pub steps: Vec<Step>,
    pub overall_conversion: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Funnels {
    #[serde(flatten)]
    pub frame: Frame,
    pub funnels: Vec<Funnel>,
}

pub fn answer(table: Option<&FunnelDaily>, funnels: &[FunnelConfig], range: DateRange) -> Funnels {
    let empty = BTreeMap::new();
    let rows = table.map(|t| &t.0).unwrap_or(&empty);
    let mut dates: Vec<NaiveDate> = rows.keys().map(|(_, d, _)| *d).collect();
    dates.sort();
    dates.dedup();
    let mut entered = 0;
    let funnels: Vec<Funnel> = funnels
        .iter()
        .map(|config| {
            let mut users = vec![0i64; config.steps.len()];
            let from = (config.name.clone(), range.from, i32::MIN);
            let to = (config.name.clone(), range.to, i32::MAX);
            for ((_, _, step), n) in rows.range(from..=to) {
                if let Some(slot) = usize::try_from(*step - 1)
                    .ok()
                    .and_then(|s| users.get_mut(s))
                {
                    *slot += n;
                }
            }
            entered += users.first().copied().unwrap_or(0);
            let first = users.first().copied().unwrap_or(0);
            let steps: Vec<Step> = config
                .steps
                .iter()
                .enumerate()
                .map(|(i, name)| Step {
                    step: i + 1,
                    name: name.clone(),
                    users: users[i],
                    conversion_from_previous: (i > 0)
                        .then(|| ratio(users[i], users[i - 1]))
                        .flatten(),
                    conversion_from_start: ratio(users[i], first),
                })
                .collect();
            Funnel {
                name: config.name.clone(),
                window: format_window(config.window.as_secs()),
                window_seconds: config.window.as_secs(),
                overall_conversion: steps.last().and_then(|s| s.conversion_from_start),
                steps,
            }
        })
        .collect();
    Funnels {
        frame: Frame::new(
            &GOLD_FUNNEL_DAILY.qualified_name(),
            range,
            available(dates.into_iter()),
            entered > 0,
        ),
        funnels,
    }
}

/// `24h`, `90m`, `45s`: the largest unit that divides the window.
fn format_window(seconds: u64) -> String {
    match seconds {
        s if s > 0 && s % 86_400 == 0 && s / 86_400 > 1 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn windows_read_as_configured() {
        assert_eq!(super::format_window(86_400), "24h");
        assert_eq!(super::format_window(7 * 86_400), "7d");
        assert_eq!(super::format_window(5_400), "90m");
        assert_eq!(super::format_window(45), "45s");
    }
}
