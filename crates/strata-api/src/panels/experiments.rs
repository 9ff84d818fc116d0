//! `GET /api/experiments`: each experiment's variants against control, with
//! the sample-ratio-mismatch warning.

use std::collections::BTreeMap;

use deltalake::arrow::array::{Array, Float64Array, RecordBatch};
use serde::Serialize;
use strata_batch::tables::GOLD_EXPERIMENT_RESULTS;
use strata_lake::columns::{doubles, longs, strings};
use strata_lake::schema::TableDef;

use super::Status;
use crate::error::Result;
use crate::snapshot::Snapshot;

/// Below this SRM p-value the split of exposures is too far from equal to
/// be chance: the assignment is likely broken.
pub const SRM_THRESHOLD: f64 = 0.001;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    pub variant: String,
    pub is_control: bool,
    pub exposed_users: i64,
    pub converted_users: i64,
    pub conversion_rate: f64,
    pub lift: Option<f64>,
    pub p_value: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    pub experiment_id: String,
    pub exposed_users: i64,
    pub srm_p_value: Option<f64>,
    pub srm_warning: bool,
    pub variants: Vec<Variant>,
}

/// gold.experiment_results by experiment, control first.
pub struct Results(pub Vec<Experiment>);

impl Snapshot for Results {
    const TABLE: TableDef = GOLD_EXPERIMENT_RESULTS;
    const COLUMNS: &'static [&'static str] = &[
        "experiment_id",
        "variant",
        "exposed_users",
        "converted_users",
        "conversion_rate",
        "lift",
        "p_value",
        "ci_low",
        "ci_high",
        "srm_p_value",
    ];

    fn from_batches(batches: &[RecordBatch]) -> Result<Self> {
        let mut by_id: BTreeMap<String, (Option<f64>, Vec<Variant>)> = BTreeMap::new();
        for batch in batches {
            let id = strings(batch, "experiment_id")?;
            let variant = strings(batch, "variant")?;
            let exposed = longs(batch, "exposed_users")?;
            let converted = longs(batch, "converted_users")?;
            let rate = doubles(batch, "conversion_rate")?;
            let lift = doubles(batch, "lift")?;
            let p = doubles(batch, "p_value")?;
            let low = doubles(batch, "ci_low")?;
            let high = doubles(batch, "ci_high")?;
            let srm = doubles(batch, "srm_p_value")?;
            for i in 0..batch.num_rows() {
                if id.is_null(i) || variant.is_null(i) {
                    continue;
                }
                let entry = by_id.entry(id.value(i).to_owned()).or_default();
                entry.0 = entry.0.or(optional(&srm, i));
                entry.1.push(Variant {
                    variant: variant.value(i).to_owned(),
                    is_control: false,
                    exposed_users: exposed.value(i),
                    converted_users: converted.value(i),
                    conversion_rate: rate.value(i),
                    lift: optional(&lift, i),
                    p_value: optional(&p, i),
                    ci_low: optional(&low, i),
                    ci_high: optional(&high, i),
                });
            }
        }
        let experiments = by_id
            .into_iter()
            .map(|(experiment_id, (srm_p_value, mut variants))| {
                // SPEC §4: control is the variant named `control`, else the
                // first by name.
                variants.sort_by(|a, b| a.variant.cmp(&b.variant));
                let control = variants
                    .iter()
                    .position(|v| v.variant == "control")
                    .unwrap_or(0);
                if let Some(v) = variants.get_mut(control) {
                    v.is_control = true;
                }
                let control = variants.remove(control);
                variants.insert(0, control);
                Experiment {
                    exposed_users: variants.iter().map(|v| v.exposed_users).sum(),
                    srm_warning: srm_p_value.is_some_and(|p| p < SRM_THRESHOLD),
                    srm_p_value,
                    experiment_id,
                    variants,
                }
            })
            .collect();
        Ok(Results(experiments))
    }
}

fn optional(array: &Float64Array, i: usize) -> Option<f64> {
    (array.is_valid(i) && array.value(i).is_finite()).then(|| array.value(i))
}

#[derive(Debug, Clone, Serialize)]
pub struct Experiments {
    pub status: Status,
    pub message: Option<String>,
    pub srm_threshold: f64,
    pub experiments: Vec<Experiment>,
}

pub fn answer(table: Option<&Results>) -> Experiments {
    let experiments = table.map(|t| t.0.clone()).unwrap_or_default();
    let empty = experiments.is_empty();
    Experiments {
        status: if empty { Status::Empty } else { Status::Ok },
        message: empty.then(|| {
            format!(
                "no experiments in {} yet: track `Experiment Viewed` with experiment_id and variation_id, then run `strata run {}`",
                GOLD_EXPERIMENT_RESULTS.qualified_name(),
                GOLD_EXPERIMENT_RESULTS.qualified_name()
            )
        }),
        srm_threshold: SRM_THRESHOLD,
        experiments,
    }
}
