//! Late data: a late event rebuilds exactly the partitions that read its
//! date, and the rolling metrics and cohort it reaches change by hand-counted
//! amounts; every other partition keeps its files.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use strata_batch::Model;
use strata_batch::dates::day_of;
use strata_core::event::BronzeEvent;

use crate::harness::{Cell, Env, track};

fn day(d: u32) -> i32 {
    day_of(NaiveDate::from_ymd_opt(2026, 3, d).unwrap())
}

fn at(d: u32, hour: u32) -> i64 {
    NaiveDate::from_ymd_opt(2026, 3, d)
        .unwrap()
        .and_hms_opt(hour, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

/// Per table, per partition date (or "all"), the data files it is made of.
async fn files(env: &Env) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut out = BTreeMap::new();
    for model in Model::ALL {
        let def = model.table();
        let path = env.lake().table_path(def.layer, def.name);
        if !path.join("_delta_log").is_dir() {
            continue;
        }
        let table = env.lake().open(def.layer, def.name).await.expect("open");
        let snapshot = table.snapshot().expect("snapshot");
        let mut partitions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in snapshot.log_data().iter() {
            let key = def
                .partition_by
                .first()
                .and_then(|c| file.partition_values_map().get(*c).cloned().flatten())
                .unwrap_or_else(|| "all".into());
            partitions
                .entry(key)
                .or_default()
                .insert(file.path().to_string());
        }
        out.insert(def.qualified_name(), partitions);
    }
    out
}

async fn dau(env: &Env) -> BTreeMap<String, Vec<String>> {
    env.rows(
        Model::DailyActiveUsers.table(),
        &["date", "dau", "wau", "mau", "new_users"],
    )
    .await
    .into_iter()
    .map(|r| {
        let cells: Vec<String> = r.iter().map(|c| c.to_string()).collect();
        (cells[0].clone(), cells[1..].to_vec())
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_rebuilds_exactly_what_reads_its_date() {
    let env = Env::new(strata_core::config::Config::default());
    // p1 active every day 1..=10; p2 on days 1 and 5; p3 on day 8.
    let mut events = Vec::new();
    let mut offset = 0u64;
    let mut push = |e: BronzeEvent| {
        events.push((0u32, offset, e));
        offset += 1;
    };
    for d in 1..=10 {
        push(track(
            &format!("p1-{d}"),
            "p1",
            "Product Viewed",
            at(d, 9),
            at(d, 9),
        ));
    }
    push(track("p2-1", "p2", "Product Viewed", at(1, 12), at(1, 12)));
    push(track("p2-5", "p2", "Product Viewed", at(5, 12), at(5, 12)));
    push(track("p3-8", "p3", "Product Viewed", at(8, 12), at(8, 12)));
    env.land(events).await;
    env.backfill(day(1), day(10)).await;

    let before_files = files(&env).await;
    let before = dau(&env).await;
    // By hand: day 3 has only p1 active; WAU(3) = p1, p2 = 2; MAU(3) = 2.
    assert_eq!(before["2026-03-03"], vec!["1", "2", "2", "0"]);
    assert_eq!(before["2026-03-10"], vec!["1", "3", "3", "0"]);

    // p9's event of day 3 arrives on day 10, at log offset 13.
    env.land(vec![(
        1,
        0,
        track("late-1", "p9", "Product Viewed", at(3, 15), at(10, 20)),
    )])
    .await;
    let summary = env.run_dirty().await;
    assert_eq!(summary.still_dirty, 0, "{summary:?}");

    let after = dau(&env).await;
    // Day 3: p1 and p9 active, p9 new; WAU counts p9 on days 3..=9, MAU on 3..=10.
    assert_eq!(after["2026-03-01"], before["2026-03-01"]);
    assert_eq!(after["2026-03-02"], before["2026-03-02"]);
    assert_eq!(after["2026-03-03"], vec!["2", "3", "3", "1"]);
    for d in 4..=9 {
        let key = format!("2026-03-{d:02}");
        let (b, a) = (&before[&key], &after[&key]);
        assert_eq!(a[0], b[0], "dau of {key} unchanged");
        assert_eq!(
            a[1].parse::<i64>().unwrap(),
            b[1].parse::<i64>().unwrap() + 1,
            "wau of {key}"
        );
        assert_eq!(
            a[2].parse::<i64>().unwrap(),
            b[2].parse::<i64>().unwrap() + 1,
            "mau of {key}"
        );
    }
    assert_eq!(after["2026-03-10"], vec!["1", "3", "4", "0"]);

    let retention = env
        .rows(
            Model::Retention.table(),
            &["cohort_date", "day_offset", "cohort_size", "retained_users"],
        )
        .await;
    let cohort3: Vec<Vec<Cell>> = retention
        .into_iter()
        .filter(|r| r[0] == Cell::Text("2026-03-03".into()))
        .collect();
    // Cohort of day 3 = {p9}, active on day 3 only; offsets 0..=7 up to day 10.
    assert_eq!(cohort3.len(), 8);
    for row in &cohort3 {
        let offset: i64 = row[1].to_string().parse().unwrap();
        assert_eq!(row[2], Cell::Text("1".into()));
        assert_eq!(
            row[3],
            Cell::Text(if offset == 0 { "1" } else { "0" }.into())
        );
    }

    // Files: only these partitions may differ.
    let after_files = files(&env).await;
    let rewritten = |table: &str| -> BTreeSet<String> {
        let (b, a) = (&before_files.get(table), &after_files[table]);
        let mut keys: BTreeSet<&String> = a.keys().collect();
        if let Some(b) = b {
            keys.extend(b.keys());
        }
        keys.into_iter()
            .filter(|k| b.and_then(|b| b.get(*k)) != a.get(*k))
            .cloned()
            .collect()
    };
    let dates =
        |ds: &[u32]| -> BTreeSet<String> { ds.iter().map(|d| format!("2026-03-{d:02}")).collect() };
    assert_eq!(rewritten("silver.events"), dates(&[3]));
    assert_eq!(rewritten("silver.active_days"), dates(&[3]));
    assert_eq!(rewritten("gold.hourly_events"), dates(&[3]));
    assert_eq!(rewritten("gold.fct_sessions"), dates(&[3]));
    assert_eq!(rewritten("gold.funnel_daily"), dates(&[3]));
    assert_eq!(
        rewritten("gold.daily_active_users"),
        dates(&[3, 4, 5, 6, 7, 8, 9, 10])
    );
    assert_eq!(rewritten("gold.retention"), dates(&[3]));
    assert_eq!(rewritten("silver.identity"), BTreeSet::new());
    // The late event is neither an identify nor an experiment's: the
    // extracts of day 3 are rebuilt unchanged, so what reads all of them
    // is not even dirty.
    assert_eq!(rewritten("silver.identifies"), BTreeSet::new());
    assert_eq!(rewritten("silver.experiment_events"), BTreeSet::new());
    assert_eq!(rewritten("gold.dim_users"), BTreeSet::new());
    assert_eq!(rewritten("gold.experiment_results"), BTreeSet::new());

    // Nothing is left to do: a second dirty run writes nothing.
    let again = env.run_dirty().await;
    assert_eq!(again.partitions(), 0, "{again:?}");
}
