//! `strata backfill` as a process: killed in the middle, every partition of
//! every table is the old or the new version, never a mix; a re-run
//! completes it, and running again changes nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::{Served, assert_success, run, send_generated, strata};

const TABLES: [(&str, Option<&str>); 12] = [
    ("silver.events", Some("event_date")),
    ("silver.identity", None),
    ("silver.active_days", Some("event_date")),
    ("silver.identifies", Some("event_date")),
    ("silver.experiment_events", Some("event_date")),
    ("gold.hourly_events", Some("event_date")),
    ("gold.fct_sessions", Some("session_date")),
    ("gold.funnel_daily", Some("entry_date")),
    ("gold.daily_active_users", Some("date")),
    ("gold.retention", Some("cohort_date")),
    ("gold.dim_users", None),
    ("gold.experiment_results", None),
];

type Snapshot = BTreeMap<(String, String), Vec<String>>;

/// Every table's rows, by partition.
fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    for (table, partition) in TABLES {
        let output = run(
            &["sql", &format!("select * from {table}"), "--format", "json"],
            dir,
        );
        assert_success(&output);
        let rows: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_default();
        for row in rows {
            let key = partition
                .and_then(|p| row.get(p).map(|v| v.to_string()))
                .unwrap_or_else(|| "all".into());
            out.entry((table.to_owned(), key))
                .or_default()
                .push(row.to_string());
        }
    }
    for rows in out.values_mut() {
        rows.sort();
    }
    out
}

fn send_traffic(dir: &Path, seed: &str) {
    let served = Served::start(dir);
    send_generated(&served.base, "3", "120", seed);
    assert!(served.terminate().success());
}

fn backfill_args() -> Vec<&'static str> {
    vec![
        "backfill",
        "all",
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-04",
    ]
}

fn commits(dir: &Path, table: &str) -> usize {
    let log = dir.join("lake/silver").join(table).join("_delta_log");
    std::fs::read_dir(log)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn an_interrupted_backfill_leaves_whole_partitions_and_a_rerun_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    send_traffic(dir, "11");
    let out = run(&backfill_args(), dir);
    assert_success(&out);
    let old = snapshot(dir);

    // More people on the same dates: every partition gets a new version.
    send_traffic(dir, "12");
    let before = commits(dir, "events");
    let mut child = strata()
        .args(backfill_args())
        .arg("--data-dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill once two silver partitions are committed, mid-run.
    let deadline = Instant::now() + Duration::from_secs(120);
    while commits(dir, "events") < before + 2 {
        assert!(Instant::now() < deadline, "the backfill made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backfill ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = snapshot(dir);

    let out = run(&backfill_args(), dir);
    assert_success(&out);
    let new = snapshot(dir);
    assert_ne!(old, new, "the second traffic changed nothing");
    assert_ne!(killed, new, "the kill came after the backfill had finished");

    let mut moved = 0;
    let keys: std::collections::BTreeSet<_> =
        old.keys().chain(new.keys()).chain(killed.keys()).collect();
    for key in keys {
        let k = killed.get(key);
        assert!(
            k == old.get(key) || k == new.get(key),
            "{key:?} is neither the old nor the new version"
        );
        if k != old.get(key) {
            moved += 1;
        }
    }
    assert!(moved >= 2, "some partitions were replaced before the kill");
    // The killed process's runs were taken over at once (its pid is gone)
    // and completed: every partition's newest run succeeded, some on a
    // second attempt, and no event was written twice.
    let out = run(&["status", "--json"], dir);
    assert_success(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let partitions: Vec<&Value> = report["models"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["partitions"].as_array().unwrap())
        .collect();
    assert!(
        partitions.iter().all(|p| p["state"] == "succeeded"),
        "{report}"
    );
    assert!(partitions.iter().any(|p| p["attempts"] == 2), "{report}");
    assert_eq!(
        crate::process::count(
            dir,
            "select count(*) - count(distinct event_id) from silver.events"
        ),
        0
    );

    // Running again changes nothing.
    let out = run(&backfill_args(), dir);
    assert!(out.status.success());
    assert_eq!(snapshot(dir), new);
}

#[test]
fn run_and_backfill_refuse_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["run", "gold.nope", "--date", "2026-03-01"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model `gold.nope`"));
    let out = run(&["run", "gold.daily_active_users"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        &[
            "backfill",
            "all",
            "--from",
            "2026-03-05",
            "--to",
            "2026-03-01",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        &["backfill", "all", "--from", "March", "--to", "2026-03-01"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    // Nothing in the lake yet: a backfill succeeds and builds empty tables.
    let out = run(
        &[
            "backfill",
            "all",
            "--from",
            "2026-03-01",
            "--to",
            "2026-03-02",
        ],
        dir.path(),
    );
    assert_success(&out);
}
