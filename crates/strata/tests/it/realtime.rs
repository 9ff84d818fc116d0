//! The realtime path seen from outside: `/api/realtime` within seconds of a
//! collector's 200, exact agreement with the batch path on closed minutes,
//! and exactly-once counts across `kill -9`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::process::{KEY, Served, assert_success, run, send_generated, strata};

fn get(url: &str) -> (u16, Value) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn post(base: &str, body: &str) -> bool {
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}"])
        .args([
            "-u",
            &format!("{KEY}:"),
            "-H",
            "content-type: application/json",
        ])
        .args(["--data-binary", body])
        .arg(format!("{base}/v1/batch"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout) == "200"
}

fn wait_for(base: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, report) = get(&format!("{base}/api/realtime?minutes=5"));
        if code == 200 && done(&report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {report}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn realtime_figures_move_within_seconds_of_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let now = chrono::Utc::now().to_rfc3339();
    let batch = json!({"batch": [
        {"type": "track", "event": "Product Viewed", "anonymousId": "a1", "timestamp": now, "messageId": "rt-1"},
        {"type": "track", "event": "Product Viewed", "anonymousId": "a2", "timestamp": now, "messageId": "rt-2"},
        {"type": "track", "event": "Order Completed", "anonymousId": "a1", "timestamp": now, "messageId": "rt-3"},
        {"type": "track", "event": "Product Viewed", "anonymousId": "a2", "timestamp": now, "messageId": "rt-2"},
    ]});
    let acked = Instant::now();
    assert!(post(&served.base, &batch.to_string()));
    let report = wait_for(&served.base, "three events", |r| r["events_counted"] == 3);
    assert!(
        acked.elapsed() < Duration::from_secs(5),
        "{:?}",
        acked.elapsed()
    );
    assert_eq!(report["duplicates"], 1);
    assert_eq!(report["active_users"]["last_5m"], 2);
    assert_eq!(report["active_users"]["today"], 2);
    assert!(
        report["freshness_seconds"].as_f64().unwrap() < 5.0,
        "{report}"
    );
    let viewed: Vec<&Value> = report["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event_name"] == "Product Viewed")
        .collect();
    assert_eq!(viewed.len(), 1, "{report}");
    assert_eq!(
        (viewed[0]["events"].as_u64(), viewed[0]["users"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(viewed[0]["final"], false);

    let (code, body) = get(&format!("{}/api/realtime?minutes=0", served.base));
    assert_eq!(code, 400);
    assert!(
        body["error"].as_str().unwrap().contains("minutes"),
        "{body}"
    );
    assert!(served.terminate().success());
}

/// `strata sql` → rows of strings.
fn rows(dir: &Path, sql: &str) -> Vec<Vec<String>> {
    let out = run(&["sql", sql, "--format", "csv"], dir);
    assert_success(&out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

type Minutes = BTreeMap<(i64, String), (i64, i64)>;

fn minutes(dir: &Path, sql: &str) -> Minutes {
    rows(dir, sql)
        .into_iter()
        .map(|r| {
            (
                (r[0].parse().unwrap(), r[1].clone()),
                (r[2].parse().unwrap(), r[3].parse().unwrap()),
            )
        })
        .collect()
}

const REALTIME: &str = "select cast(minute as bigint), event_name, events, users \
                        from realtime.events_minute";

#[test]
fn closed_minutes_match_the_batch_path() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    send_generated(&served.base, "2", "150", "11");
    // Everything the log holds has passed the stream processor.
    wait_for(&served.base, "the stream to catch up", |r| {
        r["lag_records"] == 0 && r["events_counted"].as_u64() > Some(0)
    });
    std::thread::sleep(Duration::from_millis(700));
    let (_, report) = get(&format!("{}/api/realtime", served.base));
    let watermark = chrono::DateTime::parse_from_rfc3339(report["watermark"].as_str().unwrap())
        .unwrap()
        .timestamp_micros();
    let too_late = report["too_late"].as_i64().unwrap();
    assert_eq!(report["dropped"], 0);
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
        dir.path(),
    );
    assert_success(&out);
    let batch = minutes(
        dir.path(),
        "select cast(event_ts as bigint) / 60000000 * 60000000 as m, event_name, count(*), \
         count(distinct person_id) from silver.events group by 1, 2",
    );
    let realtime = minutes(dir.path(), REALTIME);

    // A minute is closed once the watermark passed its end plus 10 min;
    // only the backfilled dates are compared (a skewed client clock can
    // put an event before them).
    let (first, after) = (1_772_323_200_000_000i64, 1_772_582_400_000_000i64); // 03-01, 03-04
    let closed =
        |minute: i64| minute + 11 * 60_000_000 < watermark && minute >= first && minute < after;
    let (mut missing, mut users_exact, mut users_diff, mut compared) = (0, 0, 0, 0);
    for ((minute, name), (events, users)) in batch.iter().filter(|((m, _), _)| closed(*m)) {
        let (rt_events, rt_users) = realtime
            .get(&(*minute, name.clone()))
            .copied()
            .unwrap_or((0, 0));
        assert!(
            rt_events <= *events,
            "{minute} {name}: realtime {rt_events} > batch {events}"
        );
        missing += events - rt_events;
        if rt_events == *events {
            compared += 1;
            users_exact += users;
            users_diff += (users - rt_users).abs();
            assert!(
                (users - rt_users).abs() as f64 <= (0.02 * *users as f64).max(1.0),
                "{minute} {name}: users {rt_users} vs exact {users}"
            );
        }
    }
    for key in realtime.keys().filter(|(m, _)| closed(*m)) {
        assert!(
            batch.contains_key(key),
            "realtime row {key:?} has no batch events"
        );
    }
    // Every event the realtime path did not count, it counted as too late.
    assert_eq!(missing, too_late);
    assert!(compared > 500, "{compared} minutes compared");
    assert!(
        users_diff as f64 <= 0.02 * users_exact as f64,
        "users off by {users_diff} of {users_exact}"
    );
}

#[test]
fn kill_minus_nine_mid_stream_counts_every_event_once() {
    // Long lateness: nothing is too late, so both runs must agree exactly
    // whatever order the retried requests land in.
    let config =
        "[stream]\nallowed_lateness = \"30d\"\ndedup_ttl = \"30d\"\ncheckpoint_interval = \"1s\"\n";
    let messages = {
        let out = strata()
            .args(["generate", "--days", "1", "--users", "120", "--seed", "21"])
            .args(["--start", "2026-03-01", "--out", "-"])
            .output()
            .unwrap();
        assert_success(&out);
        String::from_utf8(out.stdout).unwrap()
    };
    // Without sentAt the event time is the message's own timestamp, the
    // same in both runs (with it, the collector would correct it by the
    // send time).
    let messages: Vec<String> = messages
        .lines()
        .map(|line| {
            let mut m: Value = serde_json::from_str(line).unwrap();
            if let Some(o) = m.as_object_mut() {
                o.remove("sentAt");
            }
            m.to_string()
        })
        .collect();
    let batches: Vec<String> = messages
        .chunks(150)
        .map(|c| format!("{{\"batch\":[{}]}}", c.join(",")))
        .collect();

    let run_once = |kills: &[usize]| -> Minutes {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("strata.toml");
        std::fs::write(&config_path, config).unwrap();
        let args = ["--config", config_path.to_str().unwrap()];
        let mut served = Served::start_with(dir.path(), &args);
        for (i, body) in batches.iter().enumerate() {
            if kills.contains(&i) {
                // Let a checkpoint or two pass, then die mid-stream.
                std::thread::sleep(Duration::from_millis(1300));
                served.kill();
                served = Served::start_with(dir.path(), &args);
            }
            let mut tries = 0;
            while !post(&served.base, body) {
                tries += 1;
                assert!(tries < 50, "batch {i} was refused 50 times");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        assert!(served.terminate().success());
        minutes(dir.path(), REALTIME)
    };
    assert!(batches.len() > 6, "{} batches", batches.len());
    let clean = run_once(&[]);
    let killed = run_once(&[batches.len() / 3, 2 * batches.len() / 3]);
    assert!(!clean.is_empty());
    assert_eq!(killed, clean);
}

/// However many event names arrive, the answer has 50 series of its own
/// and one `(other)` summing the rest.
#[test]
fn sixty_event_names_answer_fifty_series_and_other() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    // The middle of the minute before this one: one point per name.
    let now = chrono::Utc::now().timestamp();
    let at = chrono::DateTime::from_timestamp(now - now % 60 - 30, 0)
        .unwrap()
        .to_rfc3339();
    // Name n has n + 1 events, each from a user of its own: names 10 to 59
    // have most, 0 to 9 have 1 + 2 + … + 10 = 55 events and users.
    let messages: Vec<Value> = (0..60)
        .flat_map(|n| (0..=n).map(move |i| (n, i)))
        .map(|(n, i)| {
            json!({"type": "track", "event": format!("name {n:02}"), "anonymousId": format!("u{n}-{i}"),
                   "timestamp": at, "messageId": format!("fold-{n}-{i}")})
        })
        .collect();
    assert_eq!(messages.len(), 1830);
    for chunk in messages.chunks(200) {
        assert!(post(&served.base, &json!({"batch": chunk}).to_string()));
    }
    let report = wait_for(&served.base, "1830 events", |r| r["events_counted"] == 1830);
    let series = report["series"].as_array().unwrap();
    assert_eq!(series.len(), 51, "{report}");
    assert_eq!(report["folded_event_names"], 10);
    let named = |name: &str| -> &Value {
        series
            .iter()
            .find(|p| p["event_name"] == name)
            .unwrap_or_else(|| panic!("{name} in {report}"))
    };
    let other = named("(other)");
    assert_eq!(
        (&other["events"], &other["users"]),
        (&json!(55), &json!(55))
    );
    assert_eq!(named("name 10")["events"], 11);
    assert_eq!(named("name 59")["events"], 60);
    assert!(!series.iter().any(|p| p["event_name"] == "name 09"));
    assert!(served.terminate().success());
}
