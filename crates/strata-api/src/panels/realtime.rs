//! `GET /api/realtime?minutes=N`: the stream processor's live figures, with
//! the series cut to the event names that had most events. Anyone who can
//! reach the listen address may ask, and 20,000 distinct names once made one
//! answer 601 MB.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use strata_stream::api::{DEFAULT_MINUTES, MAX_MINUTES};
use strata_stream::view::{RealtimeHandle, RealtimeReport, SeriesPoint};

use crate::error::{Error, Result};

/// Event names with series of their own; the rest are summed into one.
pub const MAX_SERIES_NAMES: usize = 50;

/// The name of the series the other names are summed into.
pub const OTHER: &str = "(other)";

#[derive(Debug, Deserialize)]
pub struct Params {
    minutes: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Realtime {
    #[serde(flatten)]
    pub report: RealtimeReport,
    /// Distinct event names summed into the `(other)` series.
    pub folded_event_names: usize,
}

pub fn answer(handle: &RealtimeHandle, params: &Params, now: i64) -> Result<Realtime> {
    let minutes = match params.minutes.as_deref() {
        None => DEFAULT_MINUTES,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_MINUTES).contains(&n) => n,
            _ => {
                return Err(Error::BadRequest(format!(
                    "minutes must be a whole number from 1 to {MAX_MINUTES}, not {text:?}"
                )));
            }
        },
    };
    let mut report = handle.report(minutes, now);
    let (series, folded_event_names) = fold(std::mem::take(&mut report.series));
    report.series = series;
    Ok(Realtime {
        report,
        folded_event_names,
    })
}

/// Keeps the points of the [`MAX_SERIES_NAMES`] names with most events over
/// the whole window (ties by name) and sums the others into one `(other)`
/// point per minute: its users are their sum, an upper bound, and it is
/// final when all it sums are. Returns the points, ordered by minute and
/// name, and how many names were folded.
pub fn fold(series: Vec<SeriesPoint>) -> (Vec<SeriesPoint>, usize) {
    let mut totals: HashMap<&str, u64> = HashMap::new();
    for point in &series {
        *totals.entry(point.event_name.as_str()).or_default() += point.events;
    }
    if totals.len() <= MAX_SERIES_NAMES {
        return (series, 0);
    }
    let folded = totals.len() - MAX_SERIES_NAMES;
    let mut ranked: Vec<(&str, u64)> = totals
        .into_iter()
        // A real event of that name goes with the others, not beside them.
        .filter(|(name, _)| *name != OTHER)
        .collect();
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let kept: HashSet<String> = ranked
        .iter()
        .take(MAX_SERIES_NAMES)
        .map(|(name, _)| (*name).to_owned())
        .collect();
    let mut out = Vec::with_capacity(kept.len() * 2);
    let mut other: BTreeMap<String, SeriesPoint> = BTreeMap::new();
    for point in series {
        if kept.contains(&point.event_name) {
            out.push(point);
            continue;
        }
        let sum = other
            .entry(point.minute.clone())
            .or_insert_with(|| SeriesPoint {
                minute: point.minute.clone(),
                event_name: OTHER.to_owned(),
                events: 0,
                users: 0,
                r#final: true,
            });
        sum.events += point.events;
        sum.users += point.users;
        sum.r#final &= point.r#final;
    }
    out.extend(other.into_values());
    // Minutes are RFC 3339 in UTC to the second: as text, in time order.
    out.sort_by(|a, b| (&a.minute, &a.event_name).cmp(&(&b.minute, &b.event_name)));
    (out, folded)
}
