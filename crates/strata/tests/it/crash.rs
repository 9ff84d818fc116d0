use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::process::{KEY, Served, count, run};

fn post(base: &str, batch: &serde_json::Value) -> bool {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            &format!("{KEY}:"),
        ])
        .args([
            "-H",
            "content-type: application/json",
            "-d",
            &batch.to_string(),
        ])
        .arg(format!("{base}/v1/batch"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout) == "200"
}

/// SIGKILL the server while it ingests and loads, twice, restart it each
/// time: every acknowledged event is in bronze exactly once.
#[test]
fn kill_minus_nine_during_ingest_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: HashSet<String> = HashSet::new();
    let mut next = 0usize;
    for round in 0..3 {
        let served = Served::start(dir.path());
        let until = Instant::now() + Duration::from_millis(2500 + round * 700);
        while Instant::now() < until {
            let ids: Vec<String> = (next..next + 50).map(|i| format!("crash-{i}")).collect();
            next += 50;
            let batch = serde_json::json!({"batch": ids.iter().map(|id| serde_json::json!({
                "type": "track", "userId": format!("u{}", id.len() % 5), "event": "Tick", "messageId": id
            })).collect::<Vec<_>>()});
            if post(&served.base, &batch) {
                acked.extend(ids);
            }
        }
        served.kill();
    }
    // A final clean run drains whatever the killed ones left in the log.
    let served = Served::start(dir.path());
    std::thread::sleep(Duration::from_millis(500));
    assert!(served.terminate().success());

    let data_dir = dir.path();
    let rows = count(data_dir, "select count(*) from bronze.events");
    let distinct = count(
        data_dir,
        "select count(distinct event_id) from bronze.events",
    );
    assert_eq!(rows, distinct, "a log record was loaded twice");
    assert!(rows as usize >= acked.len());
    let out = run(
        &[
            "sql",
            "select event_id from bronze.events",
            "--format",
            "csv",
        ],
        data_dir,
    );
    let loaded: HashSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    let missing: Vec<_> = acked.difference(&loaded).take(5).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in bronze: {missing:?}"
    );
}

/// `strata bench chaos`, short: two clean stops and five kills, one aimed at
/// each durable step (ingest, a bronze commit, a stream checkpoint, a
/// partition commit of a scheduled run, a compaction). The command itself
/// checks bronze, silver, gold, realtime and the run store against clean
/// rebuilds and exits 1 when any differs; here every kill must also have hit
/// its step.
#[test]
fn chaos_short_every_restart_keeps_every_table_exact() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::process::strata()
        .args(["bench", "chaos", "--sigterms", "2", "--kills", "5"])
        .args(["--users", "300", "--days", "2", "--seed", "11", "--keep"])
        .arg(dir.path().join("chaos"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    for phase in [
        "during ingest",
        "in a bronze commit",
        "in a stream checkpoint",
        "in a partition commit of a scheduled run",
        "in a compaction",
    ] {
        assert!(
            stdout.contains(&format!("| kill -9 {phase} | 1 (1 at the phase line) |")),
            "{phase}: {stdout}"
        );
    }
    assert!(
        stdout.contains("| clean stops (SIGTERM → exit 0) | 3 "),
        "{stdout}"
    );
}
