//! `gold.funnel_daily` for one entry date (SPEC §4, Funnels).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use deltalake::datafusion::prelude::{col, lit};
use strata_core::config::FunnelConfig;

use crate::dates::{Day, day_of_micros, days_spanned};
use crate::error::Result;
use crate::io::{LakeIo, column, date_lit};
use crate::tables::{GOLD_FUNNEL_DAILY, SILVER_EVENTS};

pub fn window_micros(funnel: &FunnelConfig) -> i64 {
    funnel.window.as_micros().min(i64::MAX as u128) as i64
}

/// How many dates after the entry date a funnel's window can reach.
pub fn days_after(funnels: &[FunnelConfig]) -> i32 {
    funnels
        .iter()
        .map(|f| days_spanned(window_micros(f)))
        .max()
        .unwrap_or(0)
}

pub async fn build(io: &LakeIo, funnels: &[FunnelConfig], day: Day) -> Result<RecordBatch> {
    let names: BTreeSet<&str> = funnels
        .iter()
        .flat_map(|f| f.steps.iter().map(String::as_str))
        .collect();
    let mut events: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    if !names.is_empty() {
        let last = day + days_after(funnels);
        let filter = col("event_date")
            .between(date_lit(day), date_lit(last))
            .and(col("event_name").in_list(names.iter().map(|n| lit(*n)).collect(), false));
        let batches = io
            .scan(
                &SILVER_EVENTS,
                &["person_id", "event_name", "event_ts"],
                Some(filter),
            )
            .await?;
        for batch in &batches {
            let person = column::strings(batch, "person_id")?;
            let name = column::strings(batch, "event_name")?;
            let ts = column::micros(batch, "event_ts")?;
            for i in 0..batch.num_rows() {
                events
                    .entry(person.value(i).to_owned())
                    .or_default()
                    .push((ts.value(i), name.value(i).to_owned()));
            }
        }
    }
    for list in events.values_mut() {
        list.sort_unstable();
    }

    let (mut funnel_col, mut step_col, mut name_col, mut users_col) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for funnel in funnels {
        let reached = count_steps(funnel, &events, day);
        for (j, step) in funnel.steps.iter().enumerate() {
            funnel_col.push(funnel.name.clone());
            step_col.push(j as i32 + 1);
            name_col.push(step.clone());
            users_col.push(reached[j]);
        }
    }
    let n = funnel_col.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(funnel_col)),
        Arc::new(Date32Array::from(vec![day; n])),
        Arc::new(Int32Array::from(step_col)),
        Arc::new(StringArray::from(name_col)),
        Arc::new(Int64Array::from(users_col)),
    ];
    Ok(RecordBatch::try_new(
        GOLD_FUNNEL_DAILY.arrow_schema(),
        columns,
    )?)
}

/// Persons reaching each step: entry at the earliest step-1 event on `day`,
/// then for each later step its earliest event strictly after the previous
/// step and no later than entry + window.
fn count_steps(
    funnel: &FunnelConfig,
    events: &HashMap<String, Vec<(i64, String)>>,
    day: Day,
) -> Vec<i64> {
    let mut reached = vec![0i64; funnel.steps.len()];
    let Some(first_step) = funnel.steps.first() else {
        return reached;
    };
    let window = window_micros(funnel);
    for list in events.values() {
        let Some(&(t1, _)) = list
            .iter()
            .find(|(t, name)| name == first_step && day_of_micros(*t) == day)
        else {
            continue;
        };
        reached[0] += 1;
        let deadline = t1.saturating_add(window);
        let mut previous = t1;
        for (j, step) in funnel.steps.iter().enumerate().skip(1) {
            let next = list
                .iter()
                .find(|(t, name)| *t > previous && *t <= deadline && name == step);
            match next {
                Some(&(t, _)) => {
                    reached[j] += 1;
                    previous = t;
                }
                None => break,
            }
        }
    }
    reached
}

#[cfg(test)]
mod tests {
    use super::*;

    fn funnel() -> FunnelConfig {
        FunnelConfig {
            name: "f".into(),
            steps: vec!["a".into(), "b".into(), "c".into()],
            window: std::time::Duration::from_secs(3600),
        }
    }

    fn list(items: &[(i64, &str)]) -> Vec<(i64, String)> {
        items
            .iter()
            .map(|(t, n)| (t * 1_000_000, n.to_string()))
            .collect()
    }

    #[test]
    fn strict_order_inside_the_window() {
        let mut events = HashMap::new();
        // c before b: only a, b count. Equal times do not advance.
        events.insert("p1".into(), list(&[(10, "a"), (20, "c"), (30, "b")]));
        events.insert(
            "p2".into(),
            list(&[(10, "a"), (10, "b"), (40, "b"), (40, "c")]),
        );
        // The window is inclusive: c exactly one hour after entry counts.
        events.insert(
            "p3".into(),
            list(&[(0, "a"), (5, "a"), (6, "b"), (3600, "c")]),
        );
        // Past the window.
        events.insert("p4".into(), list(&[(0, "a"), (3601, "b")]));
        assert_eq!(count_steps(&funnel(), &events, 0), vec![4, 3, 1]);
    }
}
