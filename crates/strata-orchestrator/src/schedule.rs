//! Cron schedules: hourly models shortly after each hour, daily models after
//! midnight UTC, each a straggler delay after its cron time. A fire is
//! claimed in the run store, so several schedulers fire it once; fires missed
//! while no scheduler ran are made up by one fire, for the latest.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use strata_batch::Model;
use strata_batch::dates::{day_of_micros, format_day};

use crate::error::{Error, Result};
use crate::store::{ALL, RunKey, micros};

#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    cron: cron::Schedule,
    pub delay: Duration,
    /// The models it runs; for each, the partition of the period that ended.
    pub models: Vec<Model>,
}

impl Schedule {
    pub fn new(name: &str, expression: &str, delay: Duration, models: Vec<Model>) -> Result<Self> {
        let cron = cron::Schedule::from_str(expression).map_err(|e| Error::Schedule {
            name: name.into(),
            message: format!(
                "{expression:?} is not a cron expression (sec min hour day month weekday): {e}"
            ),
        })?;
        Ok(Self {
            name: name.into(),
            cron,
            delay,
            models,
        })
    }

    /// `hourly`: silver.events and gold.hourly_events of the hour that ended.
    pub fn hourly(expression: &str, delay: Duration) -> Result<Self> {
        Self::new(
            "hourly",
            expression,
            delay,
            vec![Model::Events, Model::HourlyEvents],
        )
    }

    /// `daily`: every model's partition of the day that ended, and the
    /// whole-table models (captured tables' too, when registered).
    pub fn daily(expression: &str, delay: Duration) -> Result<Self> {
        let models = Model::all()
            .into_iter()
            .filter(|m| *m != Model::Identity)
            .collect();
        Self::new("daily", expression, delay, models)
    }

    /// The cron time of the latest fire due at `now` (its time plus the
    /// delay has passed) after `last`, if any.
    pub fn due(&self, last: i64, now: i64) -> Option<i64> {
        let last = DateTime::<Utc>::from_timestamp_micros(last)?;
        self.cron
            .after(&last)
            .map(|t| t.timestamp_micros())
            .take_while(|t| t + micros(self.delay) <= now)
            .last()
    }

    /// The latest cron time at or before `at` (where a new scheduler starts
    /// counting from, so it does not fire for all of history).
    pub fn latest_at(&self, at: i64) -> i64 {
        let at_time = DateTime::<Utc>::from_timestamp_micros(at).unwrap_or_default();
        let week_before = at_time - chrono::Duration::days(8);
        self.cron
            .after(&week_before)
            .map(|t| t.timestamp_micros())
            .take_while(|t| *t <= at)
            .last()
            .unwrap_or(at)
    }

    /// When it next runs after its last fire: cron time plus delay.
    pub fn next_run(&self, last: i64) -> Option<i64> {
        let last = DateTime::<Utc>::from_timestamp_micros(last)?;
        self.cron
            .after(&last)
            .next()
            .map(|t| t.timestamp_micros() + micros(self.delay))
    }

    /// The partitions a fire at cron time `fire` asks for: each model's
    /// partition of the date the period before `fire` falls on.
    pub fn partitions(&self, fire: i64) -> Vec<RunKey> {
        let date = format_day(day_of_micros(fire - 1));
        self.models
            .iter()
            .map(|m| {
                let partition = if m.is_daily() {
                    date.clone()
                } else {
                    ALL.into()
                };
                RunKey::new(m.name(), partition)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn a_fire_waits_for_its_delay_and_missed_fires_make_one() {
        let daily = Schedule::daily("0 0 0 * * *", Duration::from_secs(600)).unwrap();
        let last = at("2026-03-10T00:00:00Z");
        assert_eq!(daily.due(last, at("2026-03-11T00:09:59Z")), None);
        assert_eq!(
            daily.due(last, at("2026-03-11T00:10:00Z")),
            Some(at("2026-03-11T00:00:00Z"))
        );
        // Down for three days: one fire, for the latest midnight.
        assert_eq!(
            daily.due(last, at("2026-03-14T05:00:00Z")),
            Some(at("2026-03-14T00:00:00Z"))
        );
        let keys = daily.partitions(at("2026-03-11T00:00:00Z"));
        assert!(keys.contains(&RunKey::new("gold.daily_active_users", "2026-03-10")));
        assert!(keys.contains(&RunKey::new("gold.dim_users", ALL)));
        assert_eq!(daily.next_run(last), Some(at("2026-03-11T00:10:00Z")));
        let hourly = Schedule::hourly("0 0 * * * *", Duration::from_secs(300)).unwrap();
        assert_eq!(
            hourly.latest_at(at("2026-03-10T13:42:00Z")),
            at("2026-03-10T13:00:00Z")
        );
        let keys = hourly.partitions(at("2026-03-11T00:00:00Z"));
        assert_eq!(keys[1], RunKey::new("gold.hourly_events", "2026-03-10"));
        assert!(Schedule::hourly("every hour", Duration::ZERO).is_err());
    }
}
