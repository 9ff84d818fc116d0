//! One-minute tumbling event-time windows per `event_name`: an event count
//! and a HyperLogLog sketch of users per window, plus per-minute and per-day
//! sketches over all events, whose unions answer "active users in the last
//! N minutes" and "today". A window takes events until the watermark passes
//! its end plus the allowed lateness; later ones are counted as too late.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use datasketches::hll::{Coupon, HllSketch, HllType, HllUnion};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::CheckpointDir;
use crate::error::{Error, Result};
use crate::operator::{Barrier, Batch, Context, Emitted, MINUTE_MICROS, MinuteRow, Operator};

/// Window sketches: 2^12 registers, about 1.6% standard error, exact while
/// a window has few users (the sketch keeps coupons until it fills).
const LG_K_WINDOW: u8 = 12;
/// Sketches that are unioned over minutes and days: about 0.8%.
const LG_K_TOTAL: u8 = 14;
pub const DAY_MICROS: i64 = 86_400_000_000;
/// Closed minutes kept in memory for the API's series.
const KEEP_CLOSED: i64 = DAY_MICROS + MINUTE_MICROS;
/// Minute sketches kept for "active in the last 60 minutes".
const KEEP_MINUTE_USERS: i64 = 61 * MINUTE_MICROS;

/// What an open window may come to hold: its name, and its sketch once
/// full (2^12 one-byte registers) with the map's overhead. Charged in full
/// when the window opens, so the bound holds however many users arrive.
fn open_cost(name: &str) -> usize {
    name.len() + (1 << LG_K_WINDOW) + 96
}

/// A closed minute's row: its name, two counts and the boxed name's header.
fn closed_cost(name: &str) -> usize {
    name.len() + 48
}

/// `closed_cost` of a closed minute's rows.
fn closed_rows_cost<'a>(rows: impl IntoIterator<Item = &'a (Box<str>, u64, u64)>) -> usize {
    rows.into_iter().map(|(name, _, _)| closed_cost(name)).sum()
}

fn new_sketch(lg_k: u8) -> HllSketch {
    HllSketch::new(lg_k, HllType::Hll8).expect("lg_k within 4..=21")
}

/// The watermark is past `end` plus the allowed lateness: nothing more
/// can arrive for what ends there.
fn passed(watermark: Option<i64>, lateness: i64, end: i64) -> bool {
    watermark.is_some_and(|wm| wm > end + lateness)
}

fn estimate(sketch: &HllSketch) -> u64 {
    sketch.estimate().round().max(0.0) as u64
}

struct Window {
    events: u64,
    users: HllSketch,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Counters {
    pub events: u64,
    pub too_late: u64,
    /// Events beyond `max_open_windows` or `max_window_state_bytes`.
    pub dropped: u64,
    pub newest_received_at: Option<i64>,
    pub newest_event_ts: Option<i64>,
    pub watermark: Option<i64>,
}

/// Bounds on the windows' state; see `StreamConfig`.
#[derive(Debug, Clone, Copy)]
pub struct WindowLimits {
    pub max_open: usize,
    pub max_bytes: usize,
}

/// The windows and sketches; shared with the HTTP API, which reads open
/// windows as they are updated.
pub struct WindowState {
    lateness: i64,
    limits: WindowLimits,
    open: BTreeMap<i64, HashMap<Box<str>, Window>>,
    open_count: usize,
    /// `open_cost` of the open windows plus `closed_cost` of the closed
    /// rows held: what `limits.max_bytes` bounds.
    charged_bytes: usize,
    closed: BTreeMap<i64, Vec<(Box<str>, u64, u64)>>,
    minute_users: BTreeMap<i64, HllSketch>,
    day_users: BTreeMap<i64, HllSketch>,
    /// Smallest minute changed since the sink last committed.
    changed_from: Option<i64>,
    counters: Counters,
}

/// One row of the API's series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesRow {
    pub minute: i64,
    pub event_name: String,
    pub events: u64,
    pub users: u64,
    /// The watermark has passed the window's end plus the allowed
    /// lateness: it will not change any more.
    pub r#final: bool,
}

impl WindowState {
    fn new(lateness: i64, limits: WindowLimits) -> Self {
        Self {
            lateness,
            limits,
            open: BTreeMap::new(),
            open_count: 0,
            charged_bytes: 0,
            closed: BTreeMap::new(),
            minute_users: BTreeMap::new(),
            day_users: BTreeMap::new(),
            changed_from: None,
            counters: Counters::default(),
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn lateness(&self) -> i64 {
        self.lateness
    }

    fn is_closed(&self, minute: i64) -> bool {
        passed(
            self.counters.watermark,
            self.lateness,
            minute + MINUTE_MICROS,
        )
    }

    /// Rows for minutes in `[from, to]`, open and closed, by minute and name.
    pub fn series(&self, from: i64, to: i64) -> Vec<SeriesRow> {
        let mut rows = Vec::new();
        for (minute, names) in self.closed.range(from..=to) {
            for (name, events, users) in names {
                rows.push(SeriesRow {
                    minute: *minute,
                    event_name: name.to_string(),
                    events: *events,
                    users: *users,
                    r#final: true,
                });
            }
        }
        for (minute, names) in self.open.range(from..=to) {
            for (name, w) in names {
                rows.push(SeriesRow {
                    minute: *minute,
                    event_name: name.to_string(),
                    events: w.events,
                    users: estimate(&w.users),
                    r#final: false,
                });
            }
        }
        rows.sort_by(|a, b| (a.minute, &a.event_name).cmp(&(b.minute, &b.event_name)));
        rows
    }

    /// Distinct users over the minutes in `[from, to]`.
    pub fn users_between(&self, from: i64, to: i64) -> u64 {
        let mut union = HllUnion::new(LG_K_TOTAL).expect("lg_k within range");
        for sketch in self.minute_users.range(from..=to).map(|(_, s)| s) {
            union.update(sketch);
        }
        union.estimate().round() as u64
    }

    pub fn users_on_day(&self, day_start: i64) -> u64 {
        self.day_users.get(&day_start).map_or(0, estimate)
    }

    fn add(&mut self, minute: i64, name: &str, coupon: Coupon) -> bool {
        if let Some(w) = self.open.get_mut(&minute).and_then(|m| m.get_mut(name)) {
            w.events += 1;
            w.users.update_with_coupon(coupon);
            return true;
        }
        let cost = open_cost(name);
        if self.open_count >= self.limits.max_open || !self.make_room(cost) {
            return false;
        }
        let mut users = new_sketch(LG_K_WINDOW);
        users.update_with_coupon(coupon);
        let windows = self.open.entry(minute).or_default();
        windows.insert(name.into(), Window { events: 1, users });
        self.open_count += 1;
        self.charged_bytes += cost;
        true
    }

    /// Whether `cost` more bytes fit, after giving up the oldest closed
    /// minutes the sink has written: after a flood of names the dashboard
    /// loses old minutes rather than the realtime path new ones.
    fn make_room(&mut self, cost: usize) -> bool {
        let written_before = self.changed_from.unwrap_or(i64::MAX);
        while self.charged_bytes + cost > self.limits.max_bytes {
            match self.closed.first_key_value() {
                Some((&minute, _)) if minute < written_before => {
                    let (_, rows) = self.closed.pop_first().expect("checked non-empty");
                    self.charged_bytes -= closed_rows_cost(&rows);
                }
                _ => return false,
            }
        }
        true
    }

    fn close_and_evict(&mut self, now: i64) {
        while let Some((&minute, _)) = self.open.first_key_value() {
            if !self.is_closed(minute) {
                break;
            }
            let (_, names) = self.open.pop_first().expect("checked non-empty");
            self.open_count -= names.len();
            let mut rows: Vec<_> = names
                .into_iter()
                .map(|(name, w)| {
                    self.charged_bytes = self.charged_bytes - open_cost(&name) + closed_cost(&name);
                    (name, w.events, estimate(&w.users))
                })
                .collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            self.closed.insert(minute, rows);
        }
        // Rows the sink has yet to write stay until it has.
        let pending = self.changed_from.unwrap_or(i64::MAX);
        let keep_closed = (now - KEEP_CLOSED).min(pending);
        let kept = self.closed.split_off(&keep_closed);
        let evicted = std::mem::replace(&mut self.closed, kept);
        self.charged_bytes -= closed_rows_cost(evicted.values().flatten());
        // Sketches for "active in the last N minutes" and "today" go once
        // they are out of that reach and can no longer change.
        let (wm, lateness) = (self.counters.watermark, self.lateness);
        let horizon = now - KEEP_MINUTE_USERS;
        self.minute_users
            .retain(|m, _| *m >= horizon || !passed(wm, lateness, m + MINUTE_MICROS));
        let yesterday = now.div_euclid(DAY_MICROS) * DAY_MICROS - DAY_MICROS;
        self.day_users
            .retain(|d, _| *d >= yesterday || !passed(wm, lateness, d + DAY_MICROS));
    }

    fn emit(&self) -> Option<Emitted> {
        let from = self.changed_from?;
        // `series` already orders the rows by minute and name.
        let rows = self
            .series(from, i64::MAX)
            .into_iter()
            .map(|r| MinuteRow {
                minute: r.minute,
                event_name: r.event_name,
                events: r.events,
                users: r.users,
            })
            .collect();
        Some(Emitted { from, rows })
    }

    /// Closed rows read back from the sink table at start-up.
    pub fn preload_closed(&mut self, rows: Vec<MinuteRow>) {
        for row in rows {
            if self.open.contains_key(&row.minute) {
                continue;
            }
            self.closed.entry(row.minute).or_default().push((
                row.event_name.into(),
                row.events,
                row.users,
            ));
        }
        for names in self.closed.values_mut() {
            names.sort_by(|a, b| a.0.cmp(&b.0));
            names.dedup_by(|a, b| a.0 == b.0);
        }
        self.recharge();
    }

    /// Charges the state from scratch, after it was loaded whole.
    fn recharge(&mut self) {
        let open = self
            .open
            .values()
            .flat_map(|m| m.keys())
            .map(|n| open_cost(n));
        self.charged_bytes = open.sum::<usize>() + closed_rows_cost(self.closed.values().flatten());
    }

    fn approximate_bytes(&self) -> usize {
        let sketches = self
            .open
            .values()
            .flat_map(|m| m.values())
            .map(|w| w.users.estimated_size() + 64)
            .sum::<usize>();
        sketches
            + self
                .minute_users
                .values()
                .chain(self.day_users.values())
                .map(HllSketch::estimated_size)
                .sum::<usize>()
            + self.closed.values().map(|v| v.len() * 48).sum::<usize>()
    }
}

/// The window operator; its state sits behind a lock the API also takes.
pub struct Windows {
    state: Arc<Mutex<WindowState>>,
}

impl Windows {
    pub fn new(lateness_micros: i64, limits: WindowLimits) -> Self {
        Self {
            state: Arc::new(Mutex::new(WindowState::new(lateness_micros, limits))),
        }
    }

    pub fn shared(&self) -> Arc<Mutex<WindowState>> {
        self.state.clone()
    }

    fn lock(&self) -> MutexGuard<'_, WindowState> {
        lock(&self.state)
    }
}

/// A panic elsewhere while holding the lock leaves consistent counts (each
/// update is one step), so a poisoned lock is still usable.
pub fn lock(state: &Mutex<WindowState>) -> MutexGuard<'_, WindowState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Serialize, Deserialize)]
struct SavedWindow {
    minute: i64,
    name: String,
    events: u64,
    users: String,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    open: Vec<SavedWindow>,
    minute_users: Vec<(i64, String)>,
    day_users: Vec<(i64, String)>,
    counters: Counters,
}

fn decode_sketch(text: &str, dir: &CheckpointDir) -> Result<HllSketch> {
    let bytes = B64
        .decode(text)
        .map_err(|e| Error::checkpoint(dir.root(), format!("window sketch: {e}")))?;
    HllSketch::deserialize(&bytes)
        .map_err(|e| Error::checkpoint(dir.root(), format!("window sketch: {e}")))
}

impl Operator for Windows {
    fn name(&self) -> &'static str {
        "window"
    }

    fn process(&mut self, batch: &mut Batch<'_>, ctx: &mut Context) -> Result<()> {
        let mut state = self.lock();
        let state = &mut *state;
        for e in &batch.events {
            let minute = e.minute();
            state.counters.newest_received_at = Some(
                state
                    .counters
                    .newest_received_at
                    .map_or(e.received_at, |t| t.max(e.received_at)),
            );
            if state.is_closed(minute) {
                state.counters.too_late += 1;
                metrics::counter!("strata_stream_too_late_total").increment(1);
                continue;
            }
            let coupon = Coupon::from_value(e.person);
            if !state.add(minute, e.name, coupon) {
                state.counters.dropped += 1;
                metrics::counter!("strata_stream_dropped_total").increment(1);
                continue;
            }
            state.counters.events += 1;
            state.counters.newest_event_ts = Some(
                state
                    .counters
                    .newest_event_ts
                    .map_or(e.event_ts, |t| t.max(e.event_ts)),
            );
            state
                .minute_users
                .entry(minute)
                .or_insert_with(|| new_sketch(LG_K_TOTAL))
                .update_with_coupon(coupon);
            state
                .day_users
                .entry(e.event_ts.div_euclid(DAY_MICROS) * DAY_MICROS)
                .or_insert_with(|| new_sketch(LG_K_TOTAL))
                .update_with_coupon(coupon);
            state.changed_from = Some(state.changed_from.map_or(minute, |m| m.min(minute)));
        }
        let _ = ctx;
        Ok(())
    }

    fn on_watermark(&mut self, ctx: &mut Context) -> Result<()> {
        let mut state = self.lock();
        state.counters.watermark = ctx.watermark;
        state.close_and_evict(ctx.now);
        Ok(())
    }

    fn snapshot<'a>(
        &'a mut self,
        ctx: &'a mut Context,
        _barrier: &'a Barrier,
        dir: &'a CheckpointDir,
    ) -> BoxFuture<'a, Result<Value>> {
        let state = self.lock();
        ctx.emitted = state.emit();
        let saved = Saved {
            open: state
                .open
                .iter()
                .flat_map(|(minute, names)| {
                    names.iter().map(|(name, w)| SavedWindow {
                        minute: *minute,
                        name: name.to_string(),
                        events: w.events,
                        users: B64.encode(w.users.serialize()),
                    })
                })
                .collect(),
            minute_users: state
                .minute_users
                .iter()
                .map(|(m, s)| (*m, B64.encode(s.serialize())))
                .collect(),
            day_users: state
                .day_users
                .iter()
                .map(|(d, s)| (*d, B64.encode(s.serialize())))
                .collect(),
            counters: state.counters,
        };
        metrics::gauge!("strata_stream_window_state_bytes").set(state.approximate_bytes() as f64);
        drop(state);
        let value = serde_json::to_value(saved).map_err(|e| Error::checkpoint(dir.root(), e));
        Box::pin(async move { value })
    }

    fn committed(&mut self, _barrier: &Barrier) {
        self.lock().changed_from = None;
    }

    fn restore(&mut self, state: &Value, dir: &CheckpointDir) -> Result<()> {
        let saved: Saved = serde_json::from_value(state.clone())
            .map_err(|e| Error::checkpoint(dir.root(), format!("window state: {e}")))?;
        let mut s = self.lock();
        let (lateness, limits) = (s.lateness, s.limits);
        *s = WindowState::new(lateness, limits);
        for w in saved.open {
            s.open.entry(w.minute).or_default().insert(
                w.name.into(),
                Window {
                    events: w.events,
                    users: decode_sketch(&w.users, dir)?,
                },
            );
            s.open_count += 1;
        }
        for (m, text) in saved.minute_users {
            s.minute_users.insert(m, decode_sketch(&text, dir)?);
        }
        for (d, text) in saved.day_users {
            s.day_users.insert(d, decode_sketch(&text, dir)?);
        }
        s.counters = saved.counters;
        s.recharge();
        Ok(())
    }

    fn state_bytes(&self) -> usize {
        self.lock().approximate_bytes()
    }
}
