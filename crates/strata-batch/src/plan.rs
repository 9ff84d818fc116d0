//! What a run is asked to build (`Plan`), what it reports as it goes
//! (`Progress`) and what it built (`Summary`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::dates::Day;
use crate::model::Model;

/// Told about progress as partitions complete.
pub trait Progress: Send + Sync {
    /// `n` more partitions are planned.
    fn planned(&self, n: u64);
    fn done(&self, model: &str, partition: &str, rows: usize);
}

pub struct NoProgress;

impl Progress for NoProgress {
    fn planned(&self, _: u64) {}
    fn done(&self, _: &str, _: &str, _: usize) {}
}

#[derive(Debug, Default, Clone)]
pub struct ModelSummary {
    /// Partitions replaced.
    pub partitions: usize,
    /// Partitions rebuilt whose rows came out the same, so were not rewritten.
    pub unchanged: usize,
    pub rows: usize,
    pub elapsed: Duration,
}

/// What became of one rebuilt partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Written(usize),
    /// Same rows as stored: not rewritten, and nothing downstream is dirty.
    Unchanged,
}

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub models: BTreeMap<String, ModelSummary>,
    pub elapsed: Duration,
    /// Partitions left dirty outside what was asked for.
    pub still_dirty: usize,
    /// Bronze rows read to bring the dedup index up to date: only the rows
    /// new since the last run, unless the index had to be rebuilt.
    pub bronze_rows_read: usize,
}

impl Summary {
    pub fn partitions(&self) -> usize {
        self.models.values().map(|m| m.partitions).sum()
    }

    pub fn rows(&self) -> usize {
        self.models.values().map(|m| m.rows).sum()
    }
}

/// What to build, per model: dates, or the whole table.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    pub dates: BTreeMap<Model, BTreeSet<Day>>,
    pub whole: BTreeSet<Model>,
    /// Whole-table models of a date range: built when an input partition
    /// changed (they are dirty) or they were never built, since a table of
    /// all dates is not "in" a range of dates.
    pub whole_if_stale: BTreeSet<Model>,
    /// Also build every partition marked dirty.
    pub dirty: bool,
}

impl Plan {
    pub fn one(model: Model, day: Day) -> Self {
        let mut plan = Plan::default();
        plan.add(model, [day]);
        plan
    }

    pub fn range(models: &[Model], from: Day, to: Day) -> Self {
        let mut plan = Plan::default();
        for &m in models {
            if m.is_daily() {
                plan.add(m, from..=to);
            } else {
                plan.whole_if_stale.insert(m);
            }
        }
        plan
    }

    pub fn dirty() -> Self {
        Plan {
            dirty: true,
            ..Default::default()
        }
    }

    /// Dates of a daily model, or the whole of an unpartitioned one.
    pub fn add(&mut self, model: Model, days: impl IntoIterator<Item = Day>) {
        if model.is_daily() {
            self.dates.entry(model).or_default().extend(days);
        } else {
            self.whole.insert(model);
        }
    }

    /// Every partition of a model: the whole table, or each date silver
    /// has for a daily model.
    pub fn add_all(&mut self, model: Model) {
        self.whole.insert(model);
    }

    pub(crate) fn touches(&self, model: Model) -> bool {
        self.whole.contains(&model) || self.dates.get(&model).is_some_and(|d| !d.is_empty())
    }
}
