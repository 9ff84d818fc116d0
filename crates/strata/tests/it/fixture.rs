//! A data dir written by the previous release opens with this one: it is
//! read, served, appended to and rebuilt, and every figure is the one the
//! previous release gave (written by hand in the fixture's README).

use std::path::{Path, PathBuf};

use crate::process::{Served, assert_success, count, post, run};

fn fixture_copy(into: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/previous-release");
    let data = into.join("data");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(&fixture)
        .arg(&data)
        .status()
        .unwrap();
    assert!(status.success());
    data
}

fn daily_active(data: &Path) -> String {
    let out = run(
        &[
            "sql",
            "select date, dau, wau, mau from gold.daily_active_users order by date",
            "--format",
            "csv",
        ],
        data,
    );
    assert_success(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const DAU: &str = "date,dau,wau,mau\n2026-03-01,4,4,4\n2026-03-02,6,8,8\n2026-03-03,6,12,12\n";

#[test]
fn a_data_dir_of_the_previous_release_opens_serves_takes_events_and_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture_copy(dir.path());
    assert_eq!(count(&data, "select count(*) from bronze.events"), 375);
    assert_eq!(count(&data, "select count(*) from silver.events"), 372);
    assert_eq!(
        count(&data, "select sum(events) from realtime.events_minute"),
        372
    );
    assert_eq!(daily_active(&data), DAU);

    // Every role opens the old log, checkpoint, batch state and run store.
    let served = Served::start(&data);
    let answer = std::process::Command::new("curl")
        .args([
            "-sf",
            &format!(
                "{}/api/active-users?from=2026-03-01&to=2026-03-03",
                served.base
            ),
        ])
        .output()
        .unwrap();
    assert_success(&answer);
    let said: serde_json::Value = serde_json::from_slice(&answer.stdout).unwrap();
    assert!(said.to_string().contains("2026-03-03"), "{said}");
    let now = chrono::Utc::now().to_rfc3339();
    let batch = serde_json::json!({"batch": (1..=3).map(|i| serde_json::json!({
        "type": "track", "messageId": format!("fixture-new-{i}"), "userId": "fixture-new",
        "event": "Product Viewed", "timestamp": now
    })).collect::<Vec<_>>()});
    assert_success(&post(&served.base, "/v1/batch", &batch.to_string()));
    assert!(served.terminate().success());

    // The old rows and the new ones, each once, after a second clean stop.
    assert_eq!(count(&data, "select count(*) from bronze.events"), 378);
    assert_eq!(
        count(
            &data,
            "select count(distinct log_partition || ':' || log_offset) from bronze.events"
        ),
        378
    );
    assert_eq!(
        count(&data, "select sum(events) from realtime.events_minute"),
        375
    );
    // A second start on what this release wrote over the old files.
    let served = Served::start(&data);
    assert!(served.terminate().success());

    let out = run(
        &[
            "backfill",
            "all",
            "--from",
            "2026-03-01",
            "--to",
            "2026-03-03",
        ],
        &data,
    );
    assert_success(&out);
    assert_eq!(
        count(
            &data,
            "select count(*) from silver.events where event_date <= '2026-03-03'"
        ),
        372
    );
    // The old days as they were; the new event's day, if the scheduler got
    // to it, follows.
    let rebuilt = daily_active(&data);
    assert!(rebuilt.starts_with(DAU), "{rebuilt}");
}
