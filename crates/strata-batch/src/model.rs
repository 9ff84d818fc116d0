//! The models, what each reads, and the order that follows from it. Each
//! model declares its inputs and how far around an output partition it
//! reads; the build order and the partitions a change makes dirty are both
//! derived from these declarations.

use std::collections::{BTreeMap, BTreeSet};

use strata_lake::schema::TableDef;

use crate::cdc::{self, CdcId};
use crate::dates::Day;
use crate::error::{Error, Result};
use crate::tables::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Model {
    Identity,
    Events,
    ActiveDays,
    HourlyEvents,
    Sessions,
    FunnelDaily,
    DailyActiveUsers,
    Retention,
    Identifies,
    DimUsers,
    ExperimentEvents,
    ExperimentResults,
    /// `silver.<table>`: a captured table's current state (`crate::cdc`).
    CdcState(CdcId),
    /// `silver.<table>_history`: every version of a captured table's rows.
    CdcHistory(CdcId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// Every copy of every event in `bronze.events`, whatever its ingest date.
    Bronze,
    /// The changes of captured database tables in `bronze.cdc_changes`.
    CdcChanges,
    Model(Model),
}

/// Which upstream partitions one output partition of date `d` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// `d` only.
    SameDate,
    /// `d - before ..= d + after`.
    Dates { before: i32, after: i32 },
    /// `d ..= d + the longest funnel window` (from the configuration).
    FunnelWindow,
    /// The whole upstream table.
    Everything,
}

#[derive(Debug, Clone, Copy)]
pub struct Input {
    pub upstream: Upstream,
    pub reach: Reach,
    pub why: &'static str,
}

pub(crate) const fn input(upstream: Upstream, reach: Reach, why: &'static str) -> Input {
    Input {
        upstream,
        reach,
        why,
    }
}

use Model as M;
use Reach as R;
use Upstream::{Bronze, CdcChanges, Model as Of};

impl Model {
    pub const ALL: [Model; 12] = [
        M::Identity,
        M::Events,
        M::ActiveDays,
        M::HourlyEvents,
        M::Sessions,
        M::FunnelDaily,
        M::DailyActiveUsers,
        M::Retention,
        M::Identifies,
        M::DimUsers,
        M::ExperimentEvents,
        M::ExperimentResults,
    ];

    /// The built-in models and one pair per captured table registered
    /// with [`cdc::configure`].
    pub fn all() -> Vec<Model> {
        let mut all = Model::ALL.to_vec();
        for id in cdc::ids() {
            all.extend([M::CdcState(id), M::CdcHistory(id)]);
        }
        all
    }

    pub fn is_cdc(self) -> bool {
        matches!(self, M::CdcState(_) | M::CdcHistory(_))
    }

    pub fn table(self) -> &'static TableDef {
        match self {
            M::CdcState(id) => &cdc::table(id).state,
            M::CdcHistory(id) => &cdc::table(id).history,
            M::Identity => &SILVER_IDENTITY,
            M::Events => &SILVER_EVENTS,
            M::ActiveDays => &SILVER_ACTIVE_DAYS,
            M::HourlyEvents => &GOLD_HOURLY_EVENTS,
            M::Sessions => &GOLD_FCT_SESSIONS,
            M::FunnelDaily => &GOLD_FUNNEL_DAILY,
            M::DailyActiveUsers => &GOLD_DAILY_ACTIVE_USERS,
            M::Retention => &GOLD_RETENTION,
            M::Identifies => &SILVER_IDENTIFIES,
            M::ExperimentEvents => &SILVER_EXPERIMENT_EVENTS,
            M::DimUsers => &GOLD_DIM_USERS,
            M::ExperimentResults => &GOLD_EXPERIMENT_RESULTS,
        }
    }

    pub fn name(self) -> String {
        self.table().qualified_name()
    }

    /// Partitioned by a date; otherwise the whole table is one unit.
    pub fn is_daily(self) -> bool {
        !self.table().partition_by.is_empty()
    }

    /// A daily model whose partition reads a bounded span of silver dates
    /// (not the whole history), built date by date.
    pub fn reads_one_date(self) -> bool {
        matches!(
            self,
            M::ActiveDays
                | M::HourlyEvents
                | M::Sessions
                | M::FunnelDaily
                | M::Identifies
                | M::ExperimentEvents
        )
    }

    pub fn inputs(self) -> &'static [Input] {
        match self {
            M::Identity => {
                const {
                    &[input(
                        Bronze,
                        R::Everything,
                        "the earliest link of an anonymous id may be on any date",
                    )]
                }
            }
            M::Events => {
                const {
                    &[
                        input(
                            Bronze,
                            R::Everything,
                            "every copy of an event id, on any ingest date, decides which copy wins",
                        ),
                        input(Of(M::Identity), R::Everything, "links apply retroactively"),
                        input(
                            Of(M::Events),
                            R::Dates {
                                before: 1,
                                after: 0,
                            },
                            "sessions go on from the previous date's last half hour",
                        ),
                    ]
                }
            }
            M::ActiveDays => {
                const {
                    &[input(
                        Of(M::Events),
                        R::SameDate,
                        "active persons of the date",
                    )]
                }
            }
            M::HourlyEvents => {
                const {
                    &[input(
                        Of(M::Events),
                        R::SameDate,
                        "events of the date's hours",
                    )]
                }
            }
            M::Sessions => {
                const {
                    &[input(
                        Of(M::Events),
                        R::Dates {
                            before: 0,
                            after: 1,
                        },
                        "a session may run past midnight",
                    )]
                }
            }
            M::FunnelDaily => {
                const {
                    &[input(
                        Of(M::Events),
                        R::FunnelWindow,
                        "steps may follow entry within the window",
                    )]
                }
            }
            M::DailyActiveUsers => {
                const {
                    &[input(
                        Of(M::ActiveDays),
                        R::Everything,
                        "new users need every earlier date; MAU the last 28",
                    )]
                }
            }
            M::Retention => {
                const {
                    &[input(
                        Of(M::ActiveDays),
                        R::Everything,
                        "cohorts need every earlier date; offsets the next 28",
                    )]
                }
            }
            M::Identifies => {
                const {
                    &[input(
                        Of(M::Events),
                        R::SameDate,
                        "identify events of the date",
                    )]
                }
            }
            M::DimUsers => cdc::users_inputs().unwrap_or(
                const {
                    &[input(
                        Of(M::Identifies),
                        R::Everything,
                        "identify traits of all time, in order",
                    )]
                },
            ),
            M::CdcState(_) => {
                const {
                    &[input(
                        CdcChanges,
                        R::Everything,
                        "the table's changes after the last one it holds",
                    )]
                }
            }
            M::CdcHistory(_) => {
                const {
                    &[input(
                        CdcChanges,
                        R::Everything,
                        "every change of the table: versions close anywhere in its history",
                    )]
                }
            }
            M::ExperimentEvents => {
                const {
                    &[input(
                        Of(M::Events),
                        R::SameDate,
                        "exposures and conversions of the date",
                    )]
                }
            }
            M::ExperimentResults => {
                const {
                    &[input(
                        Of(M::ExperimentEvents),
                        R::Everything,
                        "exposures and conversions of all time",
                    )]
                }
            }
        }
    }

    pub fn parse(text: &str) -> Result<Model> {
        let all = Model::all();
        all.iter()
            .copied()
            .find(|m| m.name() == text || m.table().name == text)
            .ok_or_else(|| {
                let known: Vec<String> = all.iter().map(|m| m.name()).collect();
                Error::UnknownModel(text.to_owned(), known.join(", "))
            })
    }
}

/// Models in dependency order (Kahn's algorithm over the declared inputs; a
/// model's dependency on its own previous date is not an edge).
pub fn topological() -> Vec<Model> {
    levels().concat()
}

/// Models grouped by dependency depth: every model's inputs are in earlier
/// groups, so the models of one group can be built at the same time.
pub fn levels() -> Vec<Vec<Model>> {
    let mut remaining: BTreeSet<Model> = Model::all().into_iter().collect();
    let mut order = Vec::with_capacity(remaining.len());
    while !remaining.is_empty() {
        let ready: Vec<Model> = remaining
            .iter()
            .copied()
            .filter(|m| {
                m.inputs().iter().all(|i| match i.upstream {
                    Of(u) => u == *m || !remaining.contains(&u),
                    Bronze | CdcChanges => true,
                })
            })
            .collect();
        assert!(!ready.is_empty(), "model inputs form a cycle");
        for m in &ready {
            remaining.remove(m);
        }
        order.push(ready);
    }
    order
}

/// What a rebuilt upstream partition makes dirty downstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affected {
    Dates(BTreeSet<Day>),
    Everything,
}

/// The downstream partitions that read partition `day` of `upstream`
/// (`None` for a whole-table upstream).
pub fn downstream(
    upstream: Model,
    day: Option<Day>,
    funnel_days: i32,
) -> BTreeMap<Model, Affected> {
    let mut out = BTreeMap::new();
    for model in Model::all() {
        for i in model.inputs() {
            if i.upstream != Of(upstream) || model == upstream {
                continue;
            }
            let affected = match (day, i.reach, model.is_daily()) {
                (_, _, false) | (None, _, _) | (_, R::Everything, _) => Affected::Everything,
                (Some(d), R::SameDate, true) => Affected::Dates([d].into()),
                (Some(d), R::Dates { before, after }, true) => {
                    Affected::Dates((d - after..=d + before).collect())
                }
                (Some(d), R::FunnelWindow, true) => {
                    Affected::Dates((d - funnel_days..=d).collect())
                }
            };
            out.insert(model, affected);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_level_holds_every_model_that_reads_only_silver_events() {
        let levels = levels();
        assert_eq!(levels[0], [Model::Identity]);
        assert_eq!(levels[1], [Model::Events]);
        let one_date: Vec<Model> = Model::ALL
            .into_iter()
            .filter(|m| m.reads_one_date())
            .collect();
        assert_eq!(levels[2], one_date);
    }

    #[test]
    fn order_follows_inputs() {
        let order = topological();
        let pos = |m: Model| order.iter().position(|x| *x == m).unwrap();
        assert_eq!(order.len(), Model::ALL.len());
        for m in Model::ALL {
            for i in m.inputs() {
                if let Of(u) = i.upstream {
                    assert!(u == m || pos(u) < pos(m), "{m:?} before its input {u:?}");
                }
            }
        }
    }

    #[test]
    fn a_silver_date_dirties_what_reads_it() {
        let d = downstream(Model::Events, Some(10), 1);
        assert_eq!(d[&Model::ActiveDays], Affected::Dates([10].into()));
        assert_eq!(d[&Model::Sessions], Affected::Dates([9, 10].into()));
        assert_eq!(d[&Model::FunnelDaily], Affected::Dates([9, 10].into()));
        assert_eq!(d[&Model::Identifies], Affected::Dates([10].into()));
        assert_eq!(d[&Model::ExperimentEvents], Affected::Dates([10].into()));
        assert!(!d.contains_key(&Model::DimUsers));
        let i = downstream(Model::Identifies, Some(10), 1);
        assert_eq!(i[&Model::DimUsers], Affected::Everything);
        assert!(!d.contains_key(&Model::Events));
        let a = downstream(Model::ActiveDays, Some(10), 1);
        assert_eq!(a[&Model::DailyActiveUsers], Affected::Everything);
    }
}
