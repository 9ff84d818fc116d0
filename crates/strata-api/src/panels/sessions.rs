//! `GET /api/sessions`: session count, median duration and the split by
//! platform over a date range.

use chrono::NaiveDate;
use deltalake::arrow::array::{Array, RecordBatch};
use serde::Serialize;
use strata_batch::dates::date_of;
use strata_batch::tables::GOLD_FCT_SESSIONS;
use strata_lake::columns::{days, doubles, longs, strings};
use strata_lake::schema::TableDef;

use super::{Frame, available, median};
use crate::error::Result;
use crate::range::DateRange;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Copy)]
struct Session {
    date: NaiveDate,
    duration_s: f64,
    events: i64,
    /// Index into `Sessions::platforms`.
    platform: usize,
}

/// gold.fct_sessions without ids: a session is 32 bytes here, so 90 days of
/// a busy app fit in a few tens of megabytes.
pub struct Sessions {
    rows: Vec<Session>,
    platforms: Vec<String>,
}

impl Snapshot for Sessions {
    const TABLE: TableDef = GOLD_FCT_SESSIONS;
    const COLUMNS: &'static [&'static str] =
        &["session_date", "duration_s", "event_count", "platform"];

    fn from_batches(batches: &[RecordBatch]) -> Result<Self> {
        let mut rows = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
        let mut platforms: Vec<String> = Vec::new();
        for batch in batches {
            let (date, duration, events, platform) = (
                days(batch, "session_date")?,
                doubles(batch, "duration_s")?,
                longs(batch, "event_count")?,
                strings(batch, "platform")?,
            );
            for i in 0..batch.num_rows() {
                if date.is_null(i) {
                    continue;
                }
                let name = if platform.is_null(i) {
                    ""
                } else {
                    platform.value(i)
                };
                let platform = match platforms.iter().position(|p| p == name) {
                    Some(p) => p,
                    None => {
                        platforms.push(name.to_owned());
                        platforms.len() - 1
                    }
                };
                rows.push(Session {
                    date: date_of(date.value(i)),
                    duration_s: duration.value(i),
                    events: events.value(i),
                    platform,
                });
            }
        }
        rows.sort_by_key(|s| s.date);
        Ok(Sessions { rows, platforms })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub sessions: usize,
    pub median_duration_s: f64,
    pub avg_events: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Platform {
    pub platform: String,
    pub sessions: usize,
    pub share: f64,
    pub median_duration_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaySessions {
    pub date: NaiveDate,
    pub sessions: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionsAnswer {
    #[serde(flatten)]
    pub frame: Frame,
    pub summary: Option<Summary>,
    pub by_platform: Vec<Platform>,
    pub days: Vec<DaySessions>,
}

pub fn answer(table: Option<&Sessions>, range: DateRange) -> SessionsAnswer {
    let all: &[Session] = table.map(|t| t.rows.as_slice()).unwrap_or_default();
    let names: &[String] = table.map(|t| t.platforms.as_slice()).unwrap_or_default();
    let start = all.partition_point(|s| s.date < range.from);
    let end = all.partition_point(|s| s.date <= range.to);
    let shown = &all[start..end];

    let mut durations: Vec<f64> = shown.iter().map(|s| s.duration_s).collect();
    let summary = median(&mut durations).map(|median_duration_s| Summary {
        sessions: shown.len(),
        median_duration_s,
        avg_events: shown.iter().map(|s| s.events).sum::<i64>() as f64 / shown.len() as f64,
    });
    let mut per_platform: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for s in shown {
        per_platform[s.platform].push(s.duration_s);
    }
    let mut by_platform: Vec<Platform> = per_platform
        .into_iter()
        .zip(names)
        .filter_map(|(mut durations, name)| {
            let sessions = durations.len();
            median(&mut durations).map(|median_duration_s| Platform {
                platform: name.clone(),
                sessions,
                share: sessions as f64 / shown.len() as f64,
                median_duration_s,
            })
        })
        .collect();
    by_platform.sort_by(|a, b| {
        b.sessions
            .cmp(&a.sessions)
            .then(a.platform.cmp(&b.platform))
    });
    let mut days: Vec<DaySessions> = Vec::new();
    for s in shown {
        match days.last_mut() {
            Some(day) if day.date == s.date => day.sessions += 1,
            _ => days.push(DaySessions {
                date: s.date,
                sessions: 1,
            }),
        }
    }
    SessionsAnswer {
        frame: Frame::new(
            &GOLD_FCT_SESSIONS.qualified_name(),
            range,
            available(all.iter().map(|s| s.date)),
            !shown.is_empty(),
        ),
        summary,
        by_platform,
        days,
    }
}
