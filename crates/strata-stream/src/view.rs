//! What `GET /api/realtime` reports, read from the live operator state so
//! open windows show up the moment an event is counted.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::operator::MINUTE_MICROS;
use crate::operators::window::{DAY_MICROS, WindowState, lock};

/// The realtime path's promise: figures at most five minutes behind ingest.
pub const FRESHNESS_SLA: std::time::Duration = std::time::Duration::from_secs(300);

/// Figures the processor updates after every batch.
#[derive(Debug, Default)]
pub struct Stats {
    pub duplicates: AtomicU64,
    pub dedup_ids: AtomicU64,
    pub dedup_bytes: AtomicU64,
    pub lag_records: AtomicU64,
    pub checkpoints: AtomicU64,
    /// Wall clock of the last checkpoint, microseconds; 0 before the first.
    pub last_checkpoint_at: AtomicI64,
}

/// A cheap, cloneable view of the running processor for the API.
#[derive(Clone)]
pub struct RealtimeHandle {
    pub(crate) windows: Arc<Mutex<WindowState>>,
    pub(crate) stats: Arc<Stats>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveUsers {
    pub last_5m: u64,
    pub last_30m: u64,
    pub last_60m: u64,
    pub today: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    pub minute: String,
    pub event_name: String,
    pub events: u64,
    pub users: u64,
    pub r#final: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RealtimeReport {
    pub now: String,
    pub minutes: u32,
    pub series: Vec<SeriesPoint>,
    pub active_users: ActiveUsers,
    /// Now minus the newest processed event's `received_at`.
    pub freshness_seconds: Option<f64>,
    /// How far the figures trail what the collector accepted: 0 when the
    /// processor has consumed the whole log, else `freshness_seconds`.
    pub behind_seconds: Option<f64>,
    pub freshness_sla_seconds: f64,
    /// `behind_seconds` within the SLA (true before the first event).
    pub freshness_ok: bool,
    pub newest_received_at: Option<String>,
    pub watermark: Option<String>,
    pub allowed_lateness_seconds: f64,
    pub too_late: u64,
    pub dropped: u64,
    pub duplicates: u64,
    pub events_counted: u64,
    pub lag_records: u64,
    pub dedup_ids: u64,
    pub dedup_state_bytes: u64,
    pub last_checkpoint_at: Option<String>,
}

pub fn format_micros(micros: i64, format: SecondsFormat) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(format, true)
}

impl RealtimeHandle {
    /// Events that arrived after their window closed, so far.
    pub fn too_late(&self) -> u64 {
        lock(&self.windows).counters().too_late
    }

    /// The last `minutes` minutes up to the one containing `now` (wall
    /// clock, microseconds).
    pub fn report(&self, minutes: u32, now: i64) -> RealtimeReport {
        let this_minute = now.div_euclid(MINUTE_MICROS) * MINUTE_MICROS;
        let back = |n: i64| this_minute - (n - 1) * MINUTE_MICROS;
        let state = lock(&self.windows);
        let series = state
            .series(back(i64::from(minutes.max(1))), this_minute)
            .into_iter()
            .map(|r| SeriesPoint {
                minute: format_micros(r.minute, SecondsFormat::Secs),
                event_name: r.event_name,
                events: r.events,
                users: r.users,
                r#final: r.r#final,
            })
            .collect();
        let active_users = ActiveUsers {
            last_5m: state.users_between(back(5), this_minute),
            last_30m: state.users_between(back(30), this_minute),
            last_60m: state.users_between(back(60), this_minute),
            today: state.users_on_day(now.div_euclid(DAY_MICROS) * DAY_MICROS),
        };
        let c = state.counters();
        let lateness = state.lateness();
        drop(state);
        let checkpoint_at = self.stats.last_checkpoint_at.load(Ordering::Relaxed);
        let lag_records = self.stats.lag_records.load(Ordering::Relaxed);
        let freshness_seconds = c.newest_received_at.map(|t| (now - t).max(0) as f64 / 1e6);
        let behind_seconds = if lag_records == 0 {
            Some(0.0)
        } else {
            freshness_seconds
        };
        RealtimeReport {
            now: format_micros(now, SecondsFormat::Millis),
            minutes,
            series,
            active_users,
            freshness_seconds,
            behind_seconds,
            freshness_sla_seconds: FRESHNESS_SLA.as_secs_f64(),
            freshness_ok: behind_seconds.is_none_or(|s| s <= FRESHNESS_SLA.as_secs_f64()),
            newest_received_at: c
                .newest_received_at
                .map(|t| format_micros(t, SecondsFormat::Micros)),
            watermark: c.watermark.map(|t| format_micros(t, SecondsFormat::Micros)),
            allowed_lateness_seconds: lateness as f64 / 1e6,
            too_late: c.too_late,
            dropped: c.dropped,
            duplicates: self.stats.duplicates.load(Ordering::Relaxed),
            events_counted: c.events,
            lag_records,
            dedup_ids: self.stats.dedup_ids.load(Ordering::Relaxed),
            dedup_state_bytes: self.stats.dedup_bytes.load(Ordering::Relaxed),
            last_checkpoint_at: (checkpoint_at > 0)
                .then(|| format_micros(checkpoint_at, SecondsFormat::Millis)),
        }
    }
}
