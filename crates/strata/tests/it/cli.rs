use crate::process::{assert_success, run, strata};

#[test]
fn every_subcommand_has_help() {
    for sub in ["serve", "demo", "generate", "sql", "status", "bench"] {
        let out = strata().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "{sub}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{sub}"
        );
    }
}

#[test]
fn unknown_config_key_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strata.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nlisten_port = 9\n").unwrap();
    let out = strata()
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listen_port"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn missing_config_file_exits_2() {
    let out = strata()
        .args(["status", "--config", "/nonexistent/strata.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_file_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strata.toml");
    std::fs::write(&config, "nonsense = true\n").unwrap();
    let out = strata()
        .env("STRATA_CONFIG", &config)
        .args(["status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sql_errors_are_usage_errors_and_writes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["sql", "select * from bronze.nothing_here"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["sql", "create table x as select 1"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        &["sql", "select 1 + 1 as two", "--format", "csv"],
        dir.path(),
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "two\n2");
}

#[test]
fn generate_is_deterministic_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.ndjson");
    let b = dir.path().join("b.ndjson");
    for path in [&a, &b] {
        let out = strata()
            .args([
                "generate",
                "--days",
                "2",
                "--users",
                "50",
                "--seed",
                "9",
                "--start",
                "2026-01-05",
                "--out",
            ])
            .arg(path)
            .output()
            .unwrap();
        assert_success(&out);
    }
    let a = std::fs::read(&a).unwrap();
    assert!(!a.is_empty());
    assert_eq!(a, std::fs::read(&b).unwrap());
    for line in a.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert!(v.is_object());
    }
}

#[test]
fn a_bad_orchestrator_setting_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strata.toml");
    for (setting, named) in [
        (
            "database_url = \"mysql://localhost/strata\"",
            "database_url",
        ),
        ("daily_schedule = \"after midnight\"", "daily"),
    ] {
        std::fs::write(&config, format!("[orchestrator]\n{setting}\n")).unwrap();
        let out = strata()
            .args([
                "backfill",
                "all",
                "--from",
                "2026-03-01",
                "--to",
                "2026-03-01",
            ])
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{setting}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{stderr}");
    }
}

/// CSV and JSON are printed as the answer comes: an answer larger than
/// `sql.max_query_memory` prints whole, where holding it failed.
#[test]
fn sql_prints_answers_larger_than_its_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strata.toml");
    std::fs::write(&config, "[sql]\nmax_query_memory = \"2MiB\"\n").unwrap();
    let sql = |query: &str, format: &str| {
        strata()
            .args(["sql", query, "--format", format, "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    // A million 8-byte values: 8 MB held as the answer.
    let out = sql("select * from generate_series(1, 1000000)", "csv");
    assert_success(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1_000_001);
    assert_eq!(
        (lines[0], lines[1], lines[1_000_000]),
        ("value", "1", "1000000")
    );

    // Three batches' worth, as one JSON array.
    let out = sql("select value as n from generate_series(1, 20000)", "json");
    assert_success(&out);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 20_000);
    assert_eq!(rows[19_999], serde_json::json!({"n": 20000}));
    let out = sql("select 1 as n where false", "json");
    assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[]\n");
    let out = sql("select 1 as n", "json");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[\n  {\n    \"n\": 1\n  }\n]\n"
    );

    // A table needs its rows for its widths: 25,000 rows print as tables
    // of 10,000, 10,000 and 5,000.
    let out = sql("select value from generate_series(1, 25000)", "table");
    assert_success(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    let headers = text.lines().filter(|l| l.trim() == "| value |").count();
    let values: Vec<u32> = text
        .lines()
        .filter_map(|l| l.trim_matches(|c| c == '|' || c == ' ').parse().ok())
        .collect();
    assert_eq!(headers, 3, "{}", &text[..200]);
    assert_eq!(values, (1..=25_000).collect::<Vec<u32>>());
}
