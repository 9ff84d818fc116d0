//! `strata serve` as the scheduler: left running, it keeps gold current on
//! its own after late data, and reports its runs at `GET /api/runs`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::{Served, run, send_generated};

/// A number from `strata sql`, or None while the table does not exist yet.
fn number(dir: &Path, sql: &str) -> Option<i64> {
    let out = run(&["sql", sql, "--format", "json"], dir);
    if !out.status.success() {
        return None;
    }
    let rows: Value = serde_json::from_slice(&out.stdout).ok()?;
    rows[0].as_object()?.values().next()?.as_i64()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn get(url: &str) -> (u16, Value) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn post_track(base: &str, body: &str) {
    let out = crate::process::post(base, "/v1/track", body);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_keeps_gold_fresh_after_late_data_and_reports_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let config = dir.join("strata.toml");
    std::fs::write(&config, "[orchestrator]\ndirty_check_interval = \"1s\"\n").unwrap();
    let served = Served::start_with(dir, &["--config", config.to_str().unwrap()]);
    send_generated(&served.base, "2", "40", "31");
    let dau = |d: &str| {
        number(
            dir,
            &format!("select dau from gold.daily_active_users where date = '{d}'"),
        )
    };
    // No backfill is asked for: the sensor finds the new dates.
    wait_for("the first DAU", Duration::from_secs(120), || {
        dau("2026-03-02").is_some_and(|n| n > 0)
    });
    let before = dau("2026-03-01").expect("DAU of the 1st");

    // A person never seen before, on the 1st, arrives now.
    post_track(
        &served.base,
        r#"{"userId":"late-visitor","event":"Product Viewed","timestamp":"2026-03-01T12:00:00Z","messageId":"late-visitor-1"}"#,
    );
    wait_for("the late event in DAU", Duration::from_secs(60), || {
        dau("2026-03-01") == Some(before + 1)
    });
    assert_eq!(
        number(
            dir,
            "select count(*) - count(distinct event_id) from silver.events"
        ),
        Some(0)
    );

    let (code, report) = get(&format!("{}/api/runs", served.base));
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["store"], "sqlite");
    assert!(!report["live_workers"].as_array().unwrap().is_empty());
    let models = report["models"].as_array().unwrap();
    let dau_model = models
        .iter()
        .find(|m| m["model"] == "gold.daily_active_users")
        .expect("DAU in the report");
    assert!(dau_model["last_success_at"].is_string(), "{dau_model}");
    assert!(dau_model["next_scheduled_at"].is_string(), "{dau_model}");
    for m in models {
        assert_eq!(m["partitions_by_state"]["failed"], 0, "{m}");
    }
    let (code, one) = get(&format!(
        "{}/api/runs?model=silver.events&state=succeeded",
        served.base
    ));
    assert_eq!(code, 200);
    assert_eq!(one["models"].as_array().unwrap().len(), 1);
    assert!(
        one["models"][0]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["partition"] == "2026-03-01" && p["state"] == "succeeded")
    );
    let (code, _) = get(&format!("{}/api/runs?model=gold.nope", served.base));
    assert_eq!(code, 404);

    // The dashboard's panels read the same gold the scheduler keeps fresh.
    let (code, active) = get(&format!(
        "{}/api/active-users?from=2026-03-01&to=2026-03-02",
        served.base
    ));
    assert_eq!(code, 200, "{active}");
    assert_eq!(active["status"], "ok");
    assert_eq!(active["days"][0]["date"], "2026-03-01");
    assert_eq!(active["days"][0]["dau"], dau("2026-03-01").unwrap());
    assert_eq!(active["days"][1]["dau"], dau("2026-03-02").unwrap());
    let (code, realtime) = get(&format!("{}/api/realtime", served.base));
    assert_eq!(code, 200);
    assert_eq!(realtime["freshness_sla_seconds"], 300.0);
    assert!(realtime["freshness_ok"].is_boolean(), "{realtime}");
    // No admin token configured: admin actions are off.
    let refused = std::process::Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-H",
            "content-type: application/json",
        ])
        .args([
            "-d",
            r#"{"model":"all","from":"2026-03-01","to":"2026-03-01"}"#,
        ])
        .arg(format!("{}/api/backfill", served.base))
        .output()
        .unwrap();
    let refused = String::from_utf8_lossy(&refused.stdout).to_string();
    assert!(refused.ends_with("\n403"), "{refused}");
    assert!(refused.contains("STRATA_ADMIN_TOKEN"), "{refused}");
    assert!(served.terminate().success());

    // The same runs, from the command line.
    let out = run(&["status"], dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("model runs (sqlite store"), "{text}");
    assert!(text.contains("gold.daily_active_users"), "{text}");
}

/// `psql` as the server's superuser, on the `postgres` database.
fn psql(sql: &str, database: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            database,
            "-tAc",
            sql,
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn two_scheduler_processes_share_one_postgres_store() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let database = format!("strata_cli_{}_{nanos}", std::process::id());
    psql(&format!("CREATE DATABASE {database}"), "postgres");
    let config = dir.join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[orchestrator]\ndatabase_url = \"postgres://postgres@127.0.0.1:5432/{database}\"\n\
             dirty_check_interval = \"1s\"\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    // Events land through a collector and loader alone.
    let served = Served::start_with(
        dir,
        &[
            "--config",
            config,
            "--role",
            "collector",
            "--role",
            "loader",
        ],
    );
    send_generated(&served.base, "3", "40", "41");
    assert!(served.terminate().success());

    // Two scheduler processes, started together, migrate the same store
    // and share its runs.
    let spawn = || {
        crate::process::strata()
            .args([
                "serve",
                "--role",
                "scheduler",
                "--config",
                config,
                "--data-dir",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let schedulers = [spawn(), spawn()];
    wait_for(
        "gold built by the schedulers",
        Duration::from_secs(120),
        || {
            number(dir, "select count(*) from gold.daily_active_users").is_some_and(|n| n >= 3)
                && psql(
                    "select count(*) from runs where state in ('queued', 'running')",
                    &database,
                ) == "0"
                && psql("select count(*) from runs", &database) != "0"
                // On a loaded machine one process may finish every run
                // before the other has even registered.
                && psql("select count(distinct pid) from workers", &database) == "2"
        },
    );
    assert_eq!(
        psql(
            "select count(*) from runs where state in ('failed', 'blocked')",
            &database
        ),
        "0"
    );
    assert_eq!(
        psql("select count(distinct pid) from workers", &database),
        "2"
    );
    assert_eq!(
        number(
            dir,
            "select count(*) - count(distinct event_id) from silver.events"
        ),
        Some(0)
    );
    for mut child in schedulers {
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(child.wait().unwrap().success());
    }
    psql(
        &format!("DROP DATABASE {database} WITH (FORCE)"),
        "postgres",
    );
}
