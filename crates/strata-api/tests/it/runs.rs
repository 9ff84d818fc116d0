//! `GET /api/runs` a page at a time, and `GET /api/pipeline` with counts
//! of every run but a bounded list of problems: a backfill of thousands of
//! partitions once made the one answer 95 MB and the other take seconds.

use std::time::Duration;

use serde_json::{Value, json};
use strata_lake::Lake;
use strata_orchestrator::store::now_micros;

use crate::support::{Served, TOKEN, serve};

const DAU: &str = "gold.daily_active_users";

/// `model` backfilled from 2026-01-01 for `days` days: all queued.
async fn queued(api: &Served, days: u64) {
    let from = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let to = from + chrono::Days::new(days - 1);
    let (status, said) = api
        .post(
            "/api/backfill",
            Some(TOKEN),
            &format!(r#"{{"model":"{DAU}","from":"{from}","to":"{to}"}}"#),
        )
        .await;
    assert_eq!(status, 202, "{said}");
}

fn partitions(report: &Value) -> Vec<String> {
    report["models"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["partitions"].as_array().unwrap())
        .map(|p| p["partition"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn runs_come_a_page_at_a_time_without_overlap() {
    let api = serve(true, async |_: &Lake| {}).await;
    queued(&api, 5).await;

    let (status, first) = api.get("/api/runs?limit=2").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(partitions(&first), ["2026-01-01", "2026-01-02"]);
    assert_eq!(first["next"], 2);
    // Every page has every model and its counts.
    assert_eq!(first["models"].as_array().unwrap().len(), 11);
    let dau = |report: &Value| -> Value {
        report["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model"] == DAU)
            .unwrap()["partitions_by_state"]
            .clone()
    };
    assert_eq!(
        dau(&first),
        json!({"queued": 5, "running": 0, "succeeded": 0, "failed": 0, "blocked": 0})
    );
    assert_eq!(first["store"], "sqlite");

    let (_, second) = api.get("/api/runs?limit=2&offset=2").await;
    assert_eq!(partitions(&second), ["2026-01-03", "2026-01-04"]);
    assert_eq!(second["next"], 4);
    assert_eq!(dau(&second)["queued"], 5);
    let (_, last) = api.get("/api/runs?limit=2&offset=4").await;
    assert_eq!(partitions(&last), ["2026-01-05"]);
    assert_eq!(last["next"], Value::Null);

    // Filters narrow what is paged.
    let (status, one) = api
        .get(&format!(
            "/api/runs?model={DAU}&state=queued&limit=3&offset=3"
        ))
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["models"].as_array().unwrap().len(), 1);
    assert_eq!(partitions(&one), ["2026-01-04", "2026-01-05"]);
    assert_eq!(one["next"], Value::Null);
    let (_, none) = api.get("/api/runs?state=failed").await;
    assert!(partitions(&none).is_empty(), "{none}");

    for (query, says) in [
        ("limit=0", "limit must be a whole number from 1 to 1000"),
        ("limit=1001", "limit must be a whole number from 1 to 1000"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        (
            "state=done",
            "state must be queued, running, succeeded, failed or blocked",
        ),
    ] {
        let (status, said) = api.get(&format!("/api/runs?{query}")).await;
        assert_eq!(status, 400, "{query}: {said}");
        assert!(said["error"].as_str().unwrap().contains(says), "{said}");
    }
}

#[tokio::test]
async fn runs_list_100_by_default_and_1000_at_most() {
    let api = serve(true, async |_: &Lake| {}).await;
    queued(&api, 150).await;
    let (_, first) = api.get("/api/runs").await;
    let listed = partitions(&first);
    assert_eq!(listed.len(), 100);
    assert_eq!(listed[99], "2026-04-10");
    assert_eq!(first["next"], 100);
    let (_, rest) = api.get("/api/runs?offset=100&limit=1000").await;
    let rest = partitions(&rest);
    assert_eq!(rest.len(), 50);
    assert_eq!(rest[0], "2026-04-11");
    assert_eq!(rest[49], "2026-05-30");
}

#[tokio::test]
async fn the_pipeline_counts_every_run_and_lists_20_problems_per_model() {
    let api = serve(true, async |_: &Lake| {}).await;
    queued(&api, 30).await;
    let mut pending = api.store.pending().await.unwrap();
    pending.sort_by(|a, b| a.key.partition.cmp(&b.key.partition));
    let failing: Vec<String> = pending.iter().take(25).map(|r| r.id.clone()).collect();
    let now = now_micros();
    let taken = api
        .store
        .claim_many(&failing, "w1", now, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(taken.len(), 25);
    for id in &failing {
        assert!(api.store.fail(id, "w1", "boom", None, now).await.unwrap());
    }

    let (status, body) = api.get("/api/pipeline").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["runs"]["by_state"],
        json!({"queued": 5, "running": 0, "succeeded": 0, "failed": 25, "blocked": 0})
    );
    let model = body["runs"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == DAU)
        .unwrap();
    assert_eq!(model["partitions_by_state"]["failed"], 25);
    let problems = model["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 20);
    assert_eq!(
        problems[0],
        json!({"partition": "2026-01-01", "state": "failed", "attempts": 1, "error": "boom"})
    );
    assert_eq!(problems[19]["partition"], "2026-01-20");
}
