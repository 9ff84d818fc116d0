//! Deterministic synthetic traffic for a fictional web and mobile shop.
//!
//! The generator simulates a population of shoppers and emits what their
//! devices would send to a Segment-compatible HTTP Tracking API: `track`,
//! `identify`, `page`, `screen`, `alias` and `group` messages as
//! [`serde_json::Value`] objects, in the order they reach the server.
//!
//! What it models, so that analytics built on top have something real to find:
//! - user lifecycles: people sign up over the run, come back with a decaying
//!   probability, and are busier on weekends and in their local evenings;
//! - identity: anonymous browsing on one or two devices (web, iOS, Android),
//!   then an `identify` linking the anonymous id to a user id, occasional
//!   `alias` calls, visitors who never sign up;
//! - a shop funnel (Product Viewed → Product Added → Checkout Started →
//!   Order Completed) with realistic drop-off;
//! - an A/B test (`checkout_redesign`) whose treatment really lifts checkout
//!   conversion, with a few people leaking into both variants;
//! - plan upgrades carried by later `identify` traits and `group` calls;
//! - delivery faults: duplicates, offline batches arriving days late, device
//!   clocks that are off, and malformed messages.
//!
//! Generation is lazy and deterministic: the same [`GeneratorConfig`] yields a
//! byte-identical sequence, every random choice comes from ChaCha8 streams keyed
//! by `(seed, user, day, session)`, and only a bounded window of in-flight
//! messages is held in memory, so `days: None` can run forever.

mod faults;
mod messages;
mod population;
mod session;

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use faults::FaultRates;
use messages::Kind;
use population::{Keys, SessionPlan, User};

const DAY_MS: i64 = 86_400_000;

/// The `userId` of user number `user` of a generator with `seed`, as its
/// `identify` calls send it: lets a demo database hold accounts of the same
/// people the events come from.
pub fn user_id(seed: u64, user: u64) -> String {
    format!("usr_{:016x}", Keys::new(seed).user_hash(user))
}

/// With an unbounded run, new users arrive at `users / NEW_USER_DAYS` per day.
const NEW_USER_DAYS: u128 = 30;

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Size of the user population over the whole run. With `days: None`,
    /// `users / 30` new users arrive each day instead.
    pub users: u32,
    /// First simulated day (UTC).
    pub start: NaiveDate,
    /// Number of simulated days; `None` keeps going forever.
    pub days: Option<u32>,
    pub faults: FaultRates,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            users: 1000,
            start: NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date"),
            days: Some(7),
            faults: FaultRates::default(),
        }
    }
}

/// A configuration the generator would have to silently adjust.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("fault rate `{name}` must be within 0..=1, got {value}")]
    Rate { name: &'static str, value: f64 },
    #[error("`days` must be at least 1 (use no limit for an endless run)")]
    ZeroDays,
}

impl GeneratorConfig {
    /// Checks the values [`Generator::new`] would otherwise clamp.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.days == Some(0) {
            return Err(ConfigError::ZeroDays);
        }
        self.faults.validate()
    }
}

/// One message as a client sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// True wall-clock time at which the client sends the message.
    pub send_at: DateTime<Utc>,
    /// One Segment message object.
    pub message: Value,
}

/// Counters over the messages yielded so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub messages: u64,
    pub track: u64,
    pub identify: u64,
    pub page: u64,
    pub screen: u64,
    pub alias: u64,
    pub group: u64,
    /// Redeliveries of a message already sent (same `messageId`).
    pub duplicates: u64,
    /// Messages from offline batches sent an hour or more after the event.
    pub late: u64,
    /// Messages deliberately broken; counted here, not under their type.
    pub malformed: u64,
    /// Users that have appeared so far.
    pub users: u64,
    /// Days fully or partly generated so far.
    pub days: u64,
}

pub(crate) const FLAG_DUPLICATE: u8 = 1;
pub(crate) const FLAG_LATE: u8 = 2;
pub(crate) const FLAG_MALFORMED: u8 = 4;

struct Entry {
    send_ms: i64,
    seq: u64,
    flags: u8,
    pending: messages::Pending,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap and we want the earliest send first;
    // `seq` breaks ties so equal send times keep generation order.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.send_ms, other.seq).cmp(&(self.send_ms, self.seq))
    }
}

/// Lazily yields [`Generated`] messages ordered by `send_at`.
///
/// Each day is first planned as a sorted list of session start times (a few
/// bytes per session); sessions are then generated in start order into a
/// min-heap keyed by `(send time, sequence)`. A message is yielded once its
/// send time is before the start of the next session still to be generated,
/// which no later message can precede. The heap therefore holds only about
/// the last hour of traffic plus offline batches due within three days, and
/// messages are rendered to JSON only when yielded.
pub struct Generator {
    config: GeneratorConfig,
    keys: Keys,
    start_ms: i64,
    first_weekday: u32,
    next_day: u64,
    next_user: u64,
    live: Vec<User>,
    plans: Vec<SessionPlan>,
    cursor: usize,
    heap: BinaryHeap<Entry>,
    seq: u64,
    /// Nothing generated from now on can be sent before this instant, because
    /// every remaining session starts at or after it.
    horizon_ms: i64,
    exhausted: bool,
    drafts: Vec<messages::Draft>,
    summary: Summary,
}

impl Generator {
    /// Builds a generator; out-of-range fault rates are clamped to `0..=1`
    /// (see [`GeneratorConfig::validate`]).
    pub fn new(mut config: GeneratorConfig) -> Self {
        config.faults = config.faults.clamped();
        let start = config
            .start
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc();
        let start_ms = start.timestamp_millis();
        let exhausted = config.users == 0 || config.days == Some(0);
        Self {
            keys: Keys::new(config.seed),
            first_weekday: config.start.weekday().num_days_from_monday(),
            config,
            start_ms,
            next_day: 0,
            next_user: 0,
            live: Vec::new(),
            plans: Vec::new(),
            cursor: 0,
            heap: BinaryHeap::new(),
            seq: 0,
            horizon_ms: start_ms,
            exhausted,
            drafts: Vec::new(),
            summary: Summary::default(),
        }
    }

    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// Counters over everything yielded so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Messages generated but not yet yielded (in-flight and late ones).
    #[doc(hidden)]
    pub fn buffered(&self) -> usize {
        self.heap.len()
    }

    /// Users currently kept in memory (born and not yet churned).
    #[doc(hidden)]
    pub fn live_users(&self) -> usize {
        self.live.len()
    }

    fn day_start(&self, day: u64) -> i64 {
        self.start_ms + day as i64 * DAY_MS
    }

    /// How many users have appeared by the end of `day`.
    fn born_by(&self, day: u64) -> u64 {
        let users = u128::from(self.config.users);
        let (per, over) = match self.config.days {
            Some(n) => (users, u128::from(n)),
            None => (users, NEW_USER_DAYS),
        };
        let born = per * (u128::from(day) + 1) / over;
        match self.config.days {
            Some(_) => born.min(users) as u64,
            None => born.min(u128::from(u64::MAX)) as u64,
        }
    }

    fn plan_day(&mut self) {
        let day = self.next_day;
        self.next_day += 1;
        self.summary.days = self.next_day;
        let born = self.born_by(day);
        while self.next_user < born {
            let user = User::new(&self.keys, self.next_user, day, &self.config.faults);
            self.live.push(user);
            self.next_user += 1;
            self.summary.users += 1;
        }
        self.live.retain(|u| u.last_day >= day);

        self.plans.clear();
        self.cursor = 0;
        let weekday = (self.first_weekday as u64 + day) % 7;
        let day_start = self.day_start(day);
        for (pos, user) in self.live.iter().enumerate() {
            user.plan_day(
                &self.keys,
                day,
                weekday as usize,
                day_start,
                pos,
                &mut self.plans,
            );
        }
        self.plans
            .sort_unstable_by_key(|p| (p.start_ms, p.user_index, p.slot));
        self.horizon_ms = self
            .plans
            .first()
            .map_or(self.day_start(self.next_day), |p| p.start_ms);
    }

    fn run_next_session(&mut self) {
        let plan = self.plans[self.cursor];
        self.cursor += 1;
        let user = &mut self.live[plan.pos as usize];
        let mut rng = self.keys.rng(user.index, plan.stream());
        let device = session::run(user, &plan, &mut rng, &mut self.drafts);
        let (heap, seq) = (&mut self.heap, &mut self.seq);
        faults::deliver(
            &mut self.drafts,
            &mut rng,
            &self.config.faults,
            device,
            |send_ms, flags, pending| {
                heap.push(Entry {
                    send_ms,
                    seq: *seq,
                    flags,
                    pending,
                });
                *seq += 1;
            },
        );
        self.horizon_ms = self
            .plans
            .get(self.cursor)
            .map_or(self.day_start(self.next_day), |p| p.start_ms);
    }

    fn advance(&mut self) {
        if self.cursor < self.plans.len() {
            self.run_next_session();
        } else if self
            .config
            .days
            .is_some_and(|n| self.next_day >= u64::from(n))
        {
            self.exhausted = true;
        } else {
            self.plan_day();
        }
    }

    fn count(&mut self, entry: &Entry) {
        let s = &mut self.summary;
        s.messages += 1;
        if entry.flags & FLAG_DUPLICATE != 0 {
            s.duplicates += 1;
        }
        if entry.flags & FLAG_LATE != 0 {
            s.late += 1;
        }
        if entry.flags & FLAG_MALFORMED != 0 {
            s.malformed += 1;
            return;
        }
        *match entry.pending.draft.kind {
            Kind::Track => &mut s.track,
            Kind::Identify => &mut s.identify,
            Kind::Page => &mut s.page,
            Kind::Screen => &mut s.screen,
            Kind::Alias => &mut s.alias,
            Kind::Group => &mut s.group,
        } += 1;
    }
}

impl Iterator for Generator {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        loop {
            match self.heap.peek() {
                Some(top) if self.exhausted || top.send_ms < self.horizon_ms => {
                    let entry = self.heap.pop().expect("peeked");
                    self.count(&entry);
                    let send_at =
                        DateTime::from_timestamp_millis(entry.send_ms).expect("time in range");
                    return Some(Generated {
                        send_at,
                        message: entry.pending.render(),
                    });
                }
                None if self.exhausted => return None,
                _ => self.advance(),
            }
        }
    }
}
