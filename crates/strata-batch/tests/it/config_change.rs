//! A model built from the configuration (funnels, the conversion event) is
//! rebuilt everywhere when that configuration changes, by the next dirty
//! run, without a backfill being asked for.

use std::time::Duration;

use chrono::NaiveDate;
use strata_batch::Model;
use strata_batch::dates::day_of;
use strata_core::config::{Config, FunnelConfig};
use strata_core::event::BronzeEvent;

use crate::harness::{Cell, Env, track};

fn at(d: u32, hour: u32, minute: u32) -> i64 {
    NaiveDate::from_ymd_opt(2026, 3, d)
        .unwrap()
        .and_hms_opt(hour, minute, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

/// A track event with these properties, received when it happened.
fn tracked(id: &str, person: &str, name: &str, ts: i64, properties: &str) -> BronzeEvent {
    BronzeEvent {
        properties: Some(properties.into()),
        ..track(id, person, name, ts, ts)
    }
}

fn text(cells: &[Cell]) -> Vec<String> {
    cells.iter().map(ToString::to_string).collect()
}

/// Some columns of a table, as text, sorted.
async fn sorted(env: &Env, model: Model, columns: &[&str]) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = env
        .rows(model.table(), columns)
        .await
        .iter()
        .map(|r| text(r))
        .collect();
    rows.sort();
    rows
}

async fn results(env: &Env) -> Vec<Vec<String>> {
    let columns = ["variant", "exposed_users", "converted_users"];
    sorted(env, Model::ExperimentResults, &columns).await
}

async fn funnel(env: &Env) -> Vec<Vec<String>> {
    let columns = ["funnel", "entry_date", "step", "users"];
    sorted(env, Model::FunnelDaily, &columns).await
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|c| (*c).to_owned()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_conversion_event_or_funnel_rebuilds_what_used_it() {
    let viewed = |variant: &str| format!(r#"{{"experiment_id":"e1","variation_id":"{variant}"}}"#);
    let events = vec![
        tracked(
            "a1",
            "p1",
            "Experiment Viewed",
            at(1, 10, 0),
            &viewed("control"),
        ),
        tracked("a2", "p2", "Experiment Viewed", at(1, 10, 5), &viewed("b")),
        tracked("a3", "p1", "Signup", at(1, 11, 0), "{}"),
        tracked("a4", "p2", "Order Completed", at(2, 9, 0), "{}"),
    ];
    let mut env = Env::new(Config::default());
    env.land(
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| (0, i as u64, e))
            .collect(),
    )
    .await;
    let (first, last) = (
        day_of(NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()),
        day_of(NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()),
    );
    env.backfill(first, last).await;
    // Conversion = Order Completed: p2 (variant b) converted within 7 days.
    assert_eq!(
        results(&env).await,
        strings(&[&["b", "1", "1"], &["control", "1", "0"]])
    );

    // Nothing changed: a dirty run has nothing to do.
    assert_eq!(env.run_dirty().await.partitions(), 0);

    env.config.experiments.conversion_event = "Signup".into();
    env.config.funnels = vec![FunnelConfig {
        name: "try".into(),
        steps: vec!["Experiment Viewed".into(), "Signup".into()],
        window: Duration::from_secs(3600),
    }];
    let summary = env.run_dirty().await;
    assert!(summary.partitions() > 0, "{summary:?}");
    // Conversion = Signup: only p1 (control) signed up.
    assert_eq!(
        results(&env).await,
        strings(&[&["b", "1", "0"], &["control", "1", "1"]])
    );
    // Entered on day 1: p1 and p2; p1 signed up 60 minutes later, within
    // the hour. Day 2 has no entries: zero rows, as for every silver date.
    assert_eq!(
        funnel(&env).await,
        strings(&[
            &["try", "2026-03-01", "1", "2"],
            &["try", "2026-03-01", "2", "1"],
            &["try", "2026-03-02", "1", "0"],
            &["try", "2026-03-02", "2", "0"],
        ])
    );
    assert_eq!(env.run_dirty().await.partitions(), 0);
}

/// A data dir from before the extracts existed: a one-day backfill builds
/// each extract for every silver date before the whole-table models read
/// it, so no user or exposure of another date goes missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_extract_is_built_for_every_date_first() {
    let env = Env::new(Config::default());
    env.land(crate::idempotency::generated(150, 4, 11)).await;
    let day = |d: u32| day_of(NaiveDate::from_ymd_opt(2026, 3, d).unwrap());
    env.backfill(day(1), day(4)).await;
    let before = crate::idempotency::snapshot(&env).await;
    assert!(!before["gold.dim_users"].is_empty());
    for table in ["identifies", "experiment_events"] {
        std::fs::remove_dir_all(env.lake().table_path("silver", table)).unwrap();
    }
    let summary = env.backfill(day(4), day(4)).await;
    let identifies = &summary.models["silver.identifies"];
    assert_eq!(
        identifies.partitions + identifies.unchanged,
        4,
        "{summary:?}"
    );
    let after = crate::idempotency::snapshot(&env).await;
    for table in [
        "silver.identifies",
        "silver.experiment_events",
        "gold.dim_users",
        "gold.experiment_results",
    ] {
        assert!(before[table] == after[table], "{table} differs");
    }
}
