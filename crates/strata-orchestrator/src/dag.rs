//! The graph of partitions, derived from the models' declared inputs
//! (`strata_batch::model`): which partitions of which models a partition
//! reads, directly or through other models, including rolling windows
//! (DAU's 28 days, retention's cohorts) and previous-date tails (sessions).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use strata_batch::Model;
use strata_batch::dates::{Day, day_of};
use strata_batch::model::{Reach, Upstream, levels};

use crate::error::Result;
use crate::store::{ALL, NewRun, RunKey};

/// Which partitions of an upstream model a partition of date `d` reads,
/// as offsets from `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Span {
    Dates { lo: i32, hi: i32 },
    Everything,
}

impl Span {
    fn then(self, next: Span) -> Span {
        match (self, next) {
            (Span::Dates { lo, hi }, Span::Dates { lo: l2, hi: h2 }) => Span::Dates {
                lo: lo + l2,
                hi: hi + h2,
            },
            _ => Span::Everything,
        }
    }

    fn union(self, other: Span) -> Span {
        match (self, other) {
            (Span::Dates { lo, hi }, Span::Dates { lo: l2, hi: h2 }) => Span::Dates {
                lo: lo.min(l2),
                hi: hi.max(h2),
            },
            _ => Span::Everything,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Graph {
    /// Per (model, ancestor): the ancestor's partitions it reads, through
    /// any path of declared inputs.
    reads: BTreeMap<(Model, Model), Span>,
    level: BTreeMap<Model, i64>,
}

/// How many days past its entry date the config's longest funnel reaches:
/// what the graph and the schedules need to know of the funnels.
///
/// Every graph is made from this, so it also registers the configuration's
/// captured tables as models (`strata_batch::configure`): the graph then has
/// their nodes.
pub fn funnel_days(config: &strata_core::Config) -> i32 {
    // A table left out is reported once, by `BatchWorkload::new`: this runs
    // for every status page too.
    let _ = strata_batch::configure(config);
    strata_batch::models::funnels::days_after(&config.effective_funnels())
}

impl Graph {
    /// `funnel_days`: the longest funnel window in days, the reach of
    /// `gold.funnel_daily` into later dates.
    pub fn new(funnel_days: i32) -> Self {
        let mut level = BTreeMap::new();
        let mut reads: BTreeMap<(Model, Model), Span> = BTreeMap::new();
        // Levels are in dependency order, so a model's inputs are complete
        // when it is reached.
        for (depth, models) in levels().into_iter().enumerate() {
            for model in models {
                level.insert(model, depth as i64);
                for input in model.inputs() {
                    let Upstream::Model(up) = input.upstream else {
                        continue;
                    };
                    if up == model {
                        continue;
                    }
                    let direct = match input.reach {
                        Reach::SameDate => Span::Dates { lo: 0, hi: 0 },
                        Reach::Dates { before, after } => Span::Dates {
                            lo: -before,
                            hi: after,
                        },
                        Reach::FunnelWindow => Span::Dates {
                            lo: 0,
                            hi: funnel_days,
                        },
                        Reach::Everything => Span::Everything,
                    };
                    let inherited: Vec<(Model, Span)> = reads
                        .iter()
                        .filter(|((m, _), _)| *m == up)
                        .map(|((_, a), s)| (*a, direct.then(*s)))
                        .collect();
                    for (ancestor, span) in std::iter::once((up, direct)).chain(inherited) {
                        reads
                            .entry((model, ancestor))
                            .and_modify(|s| *s = s.union(span))
                            .or_insert(span);
                    }
                }
            }
        }
        Self { reads, level }
    }

    pub fn level(&self, model: Model) -> i64 {
        self.level.get(&model).copied().unwrap_or(0)
    }

    /// The runs of a set of partitions, each at its model's level.
    pub fn new_runs(
        &self,
        keys: impl IntoIterator<Item = RunKey>,
        reason: &str,
        backfill: Option<&str>,
        if_stale: impl Fn(&RunKey) -> bool,
    ) -> Result<Vec<NewRun>> {
        keys.into_iter()
            .map(|key| {
                let model = Model::parse(&key.model)?;
                Ok(NewRun {
                    level: self.level(model),
                    reason: reason.into(),
                    backfill_id: backfill.map(str::to_owned),
                    if_stale: if_stale(&key),
                    key,
                })
            })
            .collect()
    }

    /// Whether partition `run` must wait for (or is spoiled by a failure
    /// of) partition `upstream`.
    pub fn reads(&self, run: &RunKey, upstream: &RunKey) -> bool {
        match (Node::of(run), Node::of(upstream)) {
            (Some(run), Some(upstream)) => self.node_reads(run, upstream),
            _ => false,
        }
    }

    /// Whether some partition of `model` may read some partition of
    /// `upstream`.
    pub fn may_read(&self, model: Model, upstream: Model) -> bool {
        self.reads.contains_key(&(model, upstream)) || (model == upstream && model == Model::Events)
    }

    /// `reads`, for partitions parsed once.
    pub fn node_reads(&self, run: Node, upstream: Node) -> bool {
        if run.model == upstream.model {
            // A date's sessions go on from the previous date's tail.
            return run.model == Model::Events
                && matches!((run.day, upstream.day), (Some(d), Some(u)) if u == d - 1);
        }
        match (
            self.reads.get(&(run.model, upstream.model)),
            run.day,
            upstream.day,
        ) {
            (None, _, _) => false,
            (Some(Span::Everything), _, _) | (Some(_), None, _) | (Some(_), _, None) => true,
            (Some(Span::Dates { lo, hi }), Some(d), Some(u)) => u >= d + lo && u <= d + hi,
        }
    }
}

/// A partition as the graph sees it: a model and a date, or None for `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub model: Model,
    pub day: Option<Day>,
}

impl Node {
    /// None for a model this build does not know.
    pub fn of(key: &RunKey) -> Option<Node> {
        Some(Node {
            model: Model::parse(&key.model).ok()?,
            day: partition_day(&key.partition),
        })
    }
}

/// The day of a `YYYY-MM-DD` partition key; None for `all`.
pub fn partition_day(partition: &str) -> Option<Day> {
    if partition == ALL {
        return None;
    }
    NaiveDate::parse_from_str(partition, "%Y-%m-%d")
        .ok()
        .map(day_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(model: Model, partition: &str) -> RunKey {
        RunKey::new(model.name(), partition)
    }

    #[test]
    fn reach_follows_declared_inputs_through_every_path() {
        let graph = Graph::new(1);
        let sessions = key(Model::Sessions, "2026-03-10");
        // A session may run past midnight: the next date's events too.
        assert!(graph.reads(&sessions, &key(Model::Events, "2026-03-10")));
        assert!(graph.reads(&sessions, &key(Model::Events, "2026-03-11")));
        assert!(!graph.reads(&sessions, &key(Model::Events, "2026-03-09")));
        // DAU reads every active day, so every silver date, transitively.
        let dau = key(Model::DailyActiveUsers, "2026-03-10");
        assert!(graph.reads(&dau, &key(Model::Events, "2025-01-01")));
        assert!(graph.reads(&dau, &key(Model::ActiveDays, "2026-04-30")));
        // A funnel entered on a date follows its steps into the window.
        let funnel = key(Model::FunnelDaily, "2026-03-10");
        assert!(graph.reads(&funnel, &key(Model::Events, "2026-03-11")));
        assert!(!graph.reads(&funnel, &key(Model::Events, "2026-03-12")));
        // Whole-table models read every date of what they read.
        let dim = key(Model::DimUsers, ALL);
        assert!(graph.reads(&dim, &key(Model::Events, "2026-01-01")));
        assert!(!graph.reads(&dim, &key(Model::ExperimentEvents, "2026-01-01")));
        // The previous date's tail, and nothing of other models downstream.
        let events = key(Model::Events, "2026-03-10");
        assert!(graph.reads(&events, &key(Model::Events, "2026-03-09")));
        assert!(!graph.reads(&events, &key(Model::Events, "2026-03-11")));
        assert!(!graph.reads(&events, &key(Model::ActiveDays, "2026-03-10")));
        assert!(graph.level(Model::Events) < graph.level(Model::Sessions));
    }
}
