use std::time::Duration;

use serde_json::{Value, json};
use strata_lake::Lake;
use strata_lake::schema::BRONZE_QUARANTINE;
use strata_orchestrator::store::now_micros;

use crate::support::{TOKEN, serve, two_days_of_dau, write};

async fn lake_with_quarantine(lake: &Lake) {
    let rejected = |at: &str, reason: &str, offset: i64| {
        vec![
            json!(at),
            json!("web"),
            json!(reason),
            json!("detail"),
            json!("{}"),
            json!(&at[..10]),
            json!(0),
            json!(offset),
        ]
    };
    write(
        lake,
        &BRONZE_QUARANTINE,
        &[
            rejected("2026-03-01T10:00:00Z", "invalid_json", 1),
            rejected("2026-03-02T11:00:00Z", "invalid_json", 2),
            rejected("2026-03-02T09:30:00Z", "invalid_json", 3),
            rejected("2026-03-01T08:00:00Z", "missing_identity", 4),
        ],
    )
    .await;
    two_days_of_dau(lake).await;
}

#[tokio::test]
async fn pipeline_health_shows_runs_tables_and_quarantine() {
    let api = serve(true, async |lake: &Lake| lake_with_quarantine(lake).await).await;
    let (status, body) = api.get("/api/pipeline").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["quarantine"],
        json!({"total": 4, "by_reason": [
            {"reason": "invalid_json", "rows": 3, "last_seen": "2026-03-02T11:00:00.000000Z"},
            {"reason": "missing_identity", "rows": 1, "last_seen": "2026-03-01T08:00:00.000000Z"},
        ]})
    );
    assert_eq!(body["too_late"], json!({"realtime": null}));
    let tables = body["tables"].as_array().unwrap();
    let named = |name: &str| -> &Value {
        tables
            .iter()
            .find(|t| t["table"] == name)
            .unwrap_or_else(|| panic!("{name} in {body}"))
    };
    let dau = named("gold.daily_active_users");
    assert_eq!(dau["rows"], 2);
    // One commit to create, one per partition written.
    assert_eq!(dau["version"], 2);
    assert_eq!(dau["files"], 2);
    assert!(dau["freshness_seconds"].as_i64().unwrap() < 120);
    assert!(dau["last_commit_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(named("bronze.quarantine")["rows"], 4);
    assert_eq!(
        body["runs"]["by_state"],
        json!({"queued": 0, "running": 0, "succeeded": 0, "failed": 0, "blocked": 0})
    );

    // Runs queued through the admin API, one of them then failing for good.
    let (status, _) = api
        .post(
            "/api/backfill",
            Some(TOKEN),
            r#"{"model":"gold.daily_active_users","from":"2026-03-01","to":"2026-03-03"}"#,
        )
        .await;
    assert_eq!(status, 202);
    let pending = api.store.pending().await.unwrap();
    let failing = pending
        .iter()
        .find(|r| r.key.partition == "2026-03-02")
        .unwrap();
    let now = now_micros();
    let taken = api
        .store
        .claim_many(
            std::slice::from_ref(&failing.id),
            "w1",
            now,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert!(
        api.store
            .fail(&failing.id, "w1", "disk full", None, now)
            .await
            .unwrap()
    );

    let (_, body) = api.get("/api/pipeline").await;
    assert_eq!(
        body["runs"]["by_state"],
        json!({"queued": 2, "running": 0, "succeeded": 0, "failed": 1, "blocked": 0})
    );
    let model = body["runs"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "gold.daily_active_users")
        .unwrap();
    assert_eq!(
        model["problems"],
        json!([{"partition": "2026-03-02", "state": "failed", "attempts": 1, "error": "disk full"}])
    );

    let (status, runs) = api
        .get("/api/runs?model=gold.daily_active_users&state=failed")
        .await;
    assert_eq!(status, 200);
    assert_eq!(runs["models"][0]["partitions"].as_array().unwrap().len(), 1);
    let (status, unknown) = api.get("/api/runs?model=gold.nope").await;
    assert_eq!(status, 404);
    assert!(unknown["error"].as_str().unwrap().contains("gold.nope"));
}

fn landed_event(id: &str, source: &str, received_at: i64) -> strata_core::BronzeEvent {
    strata_core::BronzeEvent {
        event_id: id.into(),
        id_generated: false,
        event_type: strata_core::EventType::Track,
        event_name: "Order Completed".into(),
        user_id: Some("u1".into()),
        anonymous_id: None,
        event_ts: received_at,
        ts_clamped: false,
        sent_at: None,
        received_at,
        source: source.into(),
        properties: None,
        context: None,
        traits: None,
    }
}

#[tokio::test]
async fn each_source_shows_what_it_landed_since_yesterday() {
    let now = chrono::Utc::now().timestamp_micros();
    let hour = 3_600_000_000i64;
    let api = crate::support::serve_configured(
        false,
        |config| {
            let mut backend = toml::Table::new();
            backend.insert("path".into(), "/var/log/app.log".into());
            let mut partner = toml::Table::new();
            partner.insert("path".into(), "/data/drops".into());
            partner.insert("format".into(), "csv".into());
            partner.insert("table".into(), "ad_spend".into());
            config.sources = vec![
                strata_core::config::SourceConfig::http("web", "wk_web"),
                strata_core::config::SourceConfig {
                    name: "backend".into(),
                    kind: "log_file".into(),
                    options: backend,
                },
                strata_core::config::SourceConfig {
                    name: "partner".into(),
                    kind: "file".into(),
                    options: partner,
                },
            ];
        },
        async move |lake: &Lake| {
            strata_lake::bronze::append_events(
                lake,
                [
                    (0, 0, landed_event("e1", "web", now - hour)),
                    (0, 1, landed_event("e2", "web", now - 2 * hour)),
                    (1, 0, landed_event("e3", "backend", now - hour)),
                    // Three days ago: not since yesterday.
                    (1, 1, landed_event("e4", "backend", now - 72 * hour)),
                ],
            )
            .await
            .unwrap();
        },
    )
    .await;
    let (status, body) = api.get("/api/pipeline").await;
    assert_eq!(status, 200, "{body}");
    let sources = body["sources"].as_array().unwrap();
    let shown: Vec<(Value, Value, Value, Value)> = sources
        .iter()
        .map(|s| {
            (
                s["name"].clone(),
                s["kind"].clone(),
                s["lands_in"].clone(),
                s["rows_since_yesterday"].clone(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            (
                json!("web"),
                json!("http"),
                json!("bronze.events"),
                json!(2)
            ),
            (
                json!("backend"),
                json!("log_file"),
                json!("bronze.events"),
                json!(1)
            ),
            (
                json!("partner"),
                json!("file"),
                json!("bronze.feed_ad_spend"),
                Value::Null
            ),
        ]
    );
    let newest = sources[0]["last_received_at"].as_str().unwrap();
    let expected = strata_batch::dates::format_micros(now - hour);
    assert_eq!(newest, expected);
}
