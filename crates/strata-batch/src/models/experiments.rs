//! Experiments (SPEC §4): each date's exposures and conversions are
//! extracted into `silver.experiment_events`, so `gold.experiment_results`,
//! which needs all of time, reads that small table instead of every event.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use deltalake::datafusion::prelude::{col, lit};
use serde_json::Value;
use strata_core::config::ExperimentsConfig;

use crate::dates::Day;
use crate::error::Result;
use crate::io::{LakeIo, column, on_date};
use crate::stats;
use crate::tables::{GOLD_EXPERIMENT_RESULTS, SILVER_EVENTS, SILVER_EXPERIMENT_EVENTS};

pub const EXPOSURE_EVENT: &str = "Experiment Viewed";

/// An id in `properties`: a string, or a number written as text.
fn property(properties: &Value, key: &str) -> Option<String> {
    match properties.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `silver.experiment_events` of one date: every exposure with its
/// experiment and variant parsed from `properties`, and every conversion
/// event. Exposures without both ids are not exposures and are left out.
pub async fn extract(io: &LakeIo, config: &ExperimentsConfig, day: Day) -> Result<RecordBatch> {
    let exposure = col("event_name")
        .eq(lit(EXPOSURE_EVENT))
        .and(col("event_type").eq(lit("track")));
    let conversion = col("event_name").eq(lit(config.conversion_event.as_str()));
    let batches = io
        .scan(
            &SILVER_EVENTS,
            &[
                "event_name",
                "event_type",
                "person_id",
                "event_ts",
                "event_id",
                "properties",
            ],
            Some(on_date("event_date", day).and(exposure.or(conversion))),
        )
        .await?;
    let mut out = ExtractRows::default();
    for batch in &batches {
        let name = column::strings(batch, "event_name")?;
        let kind = column::strings(batch, "event_type")?;
        let person = column::strings(batch, "person_id")?;
        let ts = column::micros(batch, "event_ts")?;
        let ids = column::strings(batch, "event_id")?;
        let properties = column::strings(batch, "properties")?;
        for i in 0..batch.num_rows() {
            let row = (person.value(i), ts.value(i), ids.value(i));
            if name.value(i) == config.conversion_event {
                out.push(CONVERSION, None, row);
            }
            if name.value(i) != EXPOSURE_EVENT || kind.value(i) != "track" || properties.is_null(i)
            {
                continue;
            }
            let Ok(props) = serde_json::from_str::<Value>(properties.value(i)) else {
                continue;
            };
            if let (Some(experiment), Some(variant)) = (
                property(&props, "experiment_id"),
                property(&props, "variation_id"),
            ) {
                out.push(EXPOSURE, Some((experiment, variant)), row);
            }
        }
    }
    out.finish(day)
}

const EXPOSURE: &str = "exposure";
const CONVERSION: &str = "conversion";

#[derive(Default)]
struct ExtractRows {
    kind: Vec<&'static str>,
    experiment: Vec<Option<String>>,
    variant: Vec<Option<String>>,
    person: Vec<String>,
    ts: Vec<i64>,
    event_id: Vec<String>,
}

impl ExtractRows {
    fn push(
        &mut self,
        kind: &'static str,
        assignment: Option<(String, String)>,
        (person, ts, event_id): (&str, i64, &str),
    ) {
        let (experiment, variant) = assignment.unzip();
        self.kind.push(kind);
        self.experiment.push(experiment);
        self.variant.push(variant);
        self.person.push(person.to_owned());
        self.ts.push(ts);
        self.event_id.push(event_id.to_owned());
    }

    fn finish(self, day: Day) -> Result<RecordBatch> {
        let rows = self.kind.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.kind)),
            Arc::new(StringArray::from(self.experiment)),
            Arc::new(StringArray::from(self.variant)),
            Arc::new(StringArray::from(self.person)),
            Arc::new(TimestampMicrosecondArray::from(self.ts).with_timezone("UTC")),
            Arc::new(StringArray::from(self.event_id)),
            Arc::new(Date32Array::from(vec![day; rows])),
        ];
        Ok(RecordBatch::try_new(
            SILVER_EXPERIMENT_EVENTS.arrow_schema(),
            columns,
        )?)
    }
}

#[derive(Default)]
struct Assignment {
    first: Option<(i64, String, String)>, // (ts, event_id, variant)
    variants: BTreeSet<String>,
}

/// `gold.experiment_results` from every date's exposures and conversions.
pub async fn build(io: &LakeIo, config: &ExperimentsConfig) -> Result<RecordBatch> {
    let batches = io.scan(&SILVER_EXPERIMENT_EVENTS, &[], None).await?;
    let mut conversions: HashMap<String, Vec<i64>> = HashMap::new();
    let mut assignments: BTreeMap<String, HashMap<String, Assignment>> = BTreeMap::new();
    for batch in &batches {
        let kind = column::strings(batch, "kind")?;
        let experiment = column::strings(batch, "experiment_id")?;
        let variant = column::strings(batch, "variant")?;
        let person = column::strings(batch, "person_id")?;
        let ts = column::micros(batch, "event_ts")?;
        let ids = column::strings(batch, "event_id")?;
        for i in 0..batch.num_rows() {
            let t = ts.value(i);
            if kind.value(i) == CONVERSION {
                conversions
                    .entry(person.value(i).to_owned())
                    .or_default()
                    .push(t);
                continue;
            }
            let variant = variant.value(i);
            let entry = assignments
                .entry(experiment.value(i).to_owned())
                .or_default()
                .entry(person.value(i).to_owned())
                .or_default();
            if entry
                .first
                .as_ref()
                .is_none_or(|f| (t, ids.value(i)) < (f.0, f.1.as_str()))
            {
                entry.first = Some((t, ids.value(i).to_owned(), variant.to_owned()));
            }
            if !entry.variants.contains(variant) {
                entry.variants.insert(variant.to_owned());
            }
        }
    }
    let window = config.conversion_window.as_micros().min(i64::MAX as u128) as i64;

    let mut rows = Rows::default();
    for (experiment, persons) in &assignments {
        let mut excluded = 0i64;
        let mut counts: BTreeMap<&str, (u64, u64)> = BTreeMap::new(); // variant -> (converted, exposed)
        for (person, assignment) in persons {
            if assignment.variants.len() > 1 {
                excluded += 1;
                continue;
            }
            let Some((t0, _, variant)) = &assignment.first else {
                continue;
            };
            let converted = conversions.get(person).is_some_and(|times| {
                times
                    .iter()
                    .any(|&t| t >= *t0 && t <= t0.saturating_add(window))
            });
            let entry = counts.entry(variant.as_str()).or_default();
            entry.1 += 1;
            if converted {
                entry.0 += 1;
            }
        }
        if counts.is_empty() {
            continue;
        }
        let control = if counts.contains_key("control") {
            "control"
        } else {
            counts.keys().next().copied().unwrap_or_default()
        };
        let control_counts = counts[control];
        let exposed: Vec<u64> = counts.values().map(|c| c.1).collect();
        let srm = stats::srm_p_value(&exposed);
        for (variant, &(converted, n)) in &counts {
            let comparison =
                (*variant != control).then(|| stats::compare(control_counts, (converted, n)));
            rows.push(experiment, variant, n, converted, comparison, srm, excluded);
        }
    }
    rows.finish()
}

#[derive(Default)]
struct Rows {
    experiment: Vec<String>,
    variant: Vec<String>,
    exposed: Vec<i64>,
    converted: Vec<i64>,
    rate: Vec<f64>,
    lift: Vec<Option<f64>>,
    p_value: Vec<Option<f64>>,
    ci_low: Vec<Option<f64>>,
    ci_high: Vec<Option<f64>>,
    srm: Vec<Option<f64>>,
    excluded: Vec<i64>,
}

impl Rows {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        experiment: &str,
        variant: &str,
        exposed: u64,
        converted: u64,
        comparison: Option<stats::Comparison>,
        srm: Option<f64>,
        excluded: i64,
    ) {
        self.experiment.push(experiment.to_owned());
        self.variant.push(variant.to_owned());
        self.exposed.push(exposed as i64);
        self.converted.push(converted as i64);
        self.rate.push(converted as f64 / exposed as f64);
        self.lift.push(comparison.and_then(|c| c.lift));
        self.p_value.push(comparison.map(|c| c.p_value));
        self.ci_low.push(comparison.map(|c| c.ci_low));
        self.ci_high.push(comparison.map(|c| c.ci_high));
        self.srm.push(srm);
        self.excluded.push(excluded);
    }

    fn finish(self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.experiment)),
            Arc::new(StringArray::from(self.variant)),
            Arc::new(Int64Array::from(self.exposed)),
            Arc::new(Int64Array::from(self.converted)),
            Arc::new(Float64Array::from(self.rate)),
            Arc::new(Float64Array::from(self.lift)),
            Arc::new(Float64Array::from(self.p_value)),
            Arc::new(Float64Array::from(self.ci_low)),
            Arc::new(Float64Array::from(self.ci_high)),
            Arc::new(Float64Array::from(self.srm)),
            Arc::new(Int64Array::from(self.excluded)),
        ];
        Ok(RecordBatch::try_new(
            GOLD_EXPERIMENT_RESULTS.arrow_schema(),
            columns,
        )?)
    }
}
