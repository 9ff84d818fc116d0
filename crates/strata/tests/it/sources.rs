//! The file feed and log file sources inside `strata serve`, killed with -9
//! while they land: after restarts every row and every line is in bronze
//! exactly once.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::process::{Served, run};

fn count(data: &Path, sql: &str) -> Option<String> {
    let out = run(&["sql", sql, "--format", "csv"], data);
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .map(str::to_string)
}

fn wait_for(data: &Path, sql: &str, expected: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = count(data, sql);
        if got.as_deref() == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}: {got:?}, expected {expected}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn killed_with_minus_nine_mid_file_and_mid_log_every_row_and_line_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let drops = dir.path().join("drops");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&drops).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    let log_path = logs.join("app.log");
    let config = dir.path().join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\nname = \"web\"\nwrite_key = \"wk_it\"\n\n\
             [[sources]]\nname = \"partner\"\nkind = \"file\"\npath = \"{}\"\nformat = \"csv\"\ntable = \"spend\"\n\n\
             [[sources]]\nname = \"backend\"\nkind = \"log_file\"\npath = \"{}\"\n",
            drops.display(),
            log_path.display()
        ),
    )
    .unwrap();

    let rows = 150_000u64;
    let mut csv = String::from("id,campaign,spend\n");
    for i in 1..=rows {
        csv.push_str(&format!("{i},c{},{}.5\n", i % 13, i % 100));
    }
    std::fs::write(drops.join("spend.csv.tmp"), csv).unwrap();
    std::fs::rename(drops.join("spend.csv.tmp"), drops.join("spend.csv")).unwrap();
    let lines = 20_000u64;
    let mut log = std::fs::File::create(&log_path).unwrap();
    for i in 0..lines {
        writeln!(
            log,
            "{{\"type\":\"track\",\"messageId\":\"line-{i}\",\"userId\":\"u{}\",\"event\":\"Invoice Sent\"}}",
            i % 50
        )
        .unwrap();
    }
    drop(log);

    let config = config.display().to_string();
    let state = data.join("sources").join("partner").join("file_feed.json");
    let mut killed_mid_file = 0;
    for pause in [1_800, 2_200, 2_600] {
        let served = Served::start_with(&data, &["--config", &config]);
        std::thread::sleep(Duration::from_millis(pause));
        served.kill();
        let text = std::fs::read_to_string(&state).unwrap_or_default();
        let saved: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        killed_mid_file += usize::from(!saved["in_progress"].is_null());
    }
    assert!(
        killed_mid_file > 0,
        "no kill landed while the file was being read"
    );
    let served = Served::start_with(&data, &["--config", &config]);
    let within = Duration::from_secs(240);
    wait_for(
        &data,
        "select count(*), count(distinct _row), min(_row), max(_row) from bronze.feed_spend",
        &format!("{rows},{rows},1,{rows}"),
        within,
    );
    wait_for(
        &data,
        "select count(*), count(distinct event_id) from bronze.events where source = 'backend'",
        &format!("{lines},{lines}"),
        within,
    );
    assert!(served.terminate().success());
    // Nothing more after a clean stop and start.
    let served = Served::start_with(&data, &["--config", &config]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(served.terminate().success());
    assert_eq!(
        count(&data, "select count(*) from bronze.feed_spend").as_deref(),
        Some(rows.to_string().as_str())
    );
    assert_eq!(
        count(
            &data,
            "select count(*) from bronze.events where source = 'backend'"
        )
        .as_deref(),
        Some(lines.to_string().as_str())
    );
}
