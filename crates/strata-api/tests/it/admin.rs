use serde_json::{Value, json};
use strata_lake::Lake;

use crate::support::{TOKEN, serve, two_days_of_dau};

const ACTIONS: [(&str, &str); 4] = [
    (
        "/api/backfill",
        r#"{"model":"all","from":"2026-03-01","to":"2026-03-02"}"#,
    ),
    (
        "/api/runs",
        r#"{"model":"gold.retention","date":"2026-03-01"}"#,
    ),
    ("/api/sql", r#"{"query":"select 1"}"#),
    ("/api/sql", r#"{"query":"drop table gold.retention"}"#),
];

#[tokio::test]
async fn admin_actions_refuse_a_missing_malformed_or_wrong_token() {
    let api = serve(true, async |_: &Lake| {}).await;
    for (path, body) in ACTIONS {
        let response = api
            .client
            .post(format!("{}{path}", api.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path} without a token");
        assert_eq!(
            response.headers()["www-authenticate"].to_str().unwrap(),
            "Bearer realm=\"strata admin\""
        );
        let said: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert!(
            said["error"]
                .as_str()
                .unwrap()
                .contains("Authorization: Bearer")
        );

        let basic = api
            .client
            .post(format!("{}{path}", api.url))
            .header("authorization", format!("Basic {TOKEN}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status().as_u16(), 401, "{path} with Basic auth");

        let (status, said) = api.post(path, Some("not-the-token"), body).await;
        assert_eq!(status, 401, "{path} with a wrong token");
        assert_eq!(said["error"], "the admin token is wrong");
    }
    // Nothing was queued by the refused calls.
    assert!(api.store.pending().await.unwrap().is_empty());
}

#[tokio::test]
async fn without_a_configured_token_admin_actions_are_disabled() {
    let api = serve(false, async |_: &Lake| {}).await;
    for (path, body) in ACTIONS {
        for token in [None, Some(""), Some(TOKEN)] {
            let (status, said) = api.post(path, token, body).await;
            assert_eq!(status, 403, "{path} {token:?}");
            assert!(
                said["error"]
                    .as_str()
                    .unwrap()
                    .contains("STRATA_ADMIN_TOKEN")
            );
        }
    }
    assert!(api.store.pending().await.unwrap().is_empty());
}

#[tokio::test]
async fn backfill_queues_the_range_and_a_second_ask_resumes_it() {
    let api = serve(true, async |_: &Lake| {}).await;
    let body = r#"{"model":"gold.daily_active_users","from":"2026-03-01","to":"2026-03-03"}"#;
    let (status, first) = api.post("/api/backfill", Some(TOKEN), body).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["runs"], 3);
    assert_eq!(first["resumed"], false);
    let pending = api.store.pending().await.unwrap();
    let mut keys: Vec<String> = pending.iter().map(|r| r.key.to_string()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "gold.daily_active_users 2026-03-01",
            "gold.daily_active_users 2026-03-02",
            "gold.daily_active_users 2026-03-03"
        ]
    );
    let (status, again) = api.post("/api/backfill", Some(TOKEN), body).await;
    assert_eq!(status, 202);
    assert_eq!(again["resumed"], true);
    assert_eq!(again["backfill_id"], first["backfill_id"]);
    assert_eq!(
        api.store.pending().await.unwrap().len(),
        3,
        "nothing queued twice"
    );

    let (status, run) = api
        .post(
            "/api/runs",
            Some(TOKEN),
            r#"{"model":"gold.retention","date":"2026-03-02"}"#,
        )
        .await;
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["runs"], 1);
    assert!(
        api.store
            .pending()
            .await
            .unwrap()
            .iter()
            .any(|r| r.key.to_string() == "gold.retention 2026-03-02")
    );
    // A whole-table model needs no date.
    let (status, _) = api
        .post(
            "/api/runs",
            Some(TOKEN),
            r#"{"model":"gold.experiment_results"}"#,
        )
        .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn bad_admin_requests_answer_400_and_queue_nothing() {
    let api = serve(true, async |_: &Lake| {}).await;
    for (path, body, says) in [
        (
            "/api/backfill",
            r#"{"model":"gold.nope","from":"2026-03-01","to":"2026-03-02"}"#,
            "gold.nope",
        ),
        (
            "/api/backfill",
            r#"{"model":"all","from":"2026-03-05","to":"2026-03-02"}"#,
            "after",
        ),
        (
            "/api/backfill",
            r#"{"model":"all","from":"March 1st","to":"2026-03-02"}"#,
            "YYYY-MM-DD",
        ),
        (
            "/api/backfill",
            r#"{"model":"all","from":"2026-03-01"}"#,
            "to",
        ),
        (
            "/api/backfill",
            r#"{"model":"all","from":"2026-03-01","to":"2026-03-02","force":true}"#,
            "force",
        ),
        ("/api/backfill", "not json", "body"),
        (
            "/api/runs",
            r#"{"model":"gold.retention"}"#,
            "partitioned by date",
        ),
        (
            "/api/sql",
            r#"{"query":"insert into gold.retention values (1)"}"#,
            "",
        ),
        (
            "/api/sql",
            r#"{"query":"select * from gold.nothing_here"}"#,
            "nothing_here",
        ),
        ("/api/sql", r#"{"sql":"select 1"}"#, "query"),
    ] {
        let (status, said) = api.post(path, Some(TOKEN), body).await;
        assert_eq!(status, 400, "{path} {body}: {said}");
        assert!(
            said["error"].as_str().unwrap().contains(says),
            "{path} {body}: {said}"
        );
    }
    assert!(api.store.pending().await.unwrap().is_empty());
}

#[tokio::test]
async fn sql_answers_columns_and_typed_rows_and_caps_the_row_count() {
    let api = serve(true, async |lake: &Lake| {
        two_days_of_dau(lake).await;
    })
    .await;
    let (status, body) = api
        .post(
            "/api/sql",
            Some(TOKEN),
            r#"{"query":"select date, dau from gold.daily_active_users order by date"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"columns": ["date", "dau"], "rows": [["2026-03-01", 3], ["2026-03-02", 2]], "truncated": false})
    );
    let (status, big) = api
        .post(
            "/api/sql",
            Some(TOKEN),
            r#"{"query":"select * from range(10005)"}"#,
        )
        .await;
    assert_eq!(status, 200, "{big}");
    assert_eq!(big["rows"].as_array().unwrap().len(), 10_000);
    assert_eq!(big["truncated"], true);
}

#[tokio::test]
async fn a_backfill_covers_at_most_366_days_from_1970_to_tomorrow() {
    let api = serve(true, async |_: &Lake| {}).await;
    let tomorrow = chrono::Utc::now().date_naive() + chrono::Days::new(1);
    let after_tomorrow = tomorrow + chrono::Days::new(1);
    for (from, to, says) in [
        // 2024 is a leap year: 2024-01-01 to 2025-01-01 is 367 days.
        ("2024-01-01", "2025-01-01".to_string(), "is 367 days"),
        ("1900-01-01", "1900-01-02".to_string(), "before 1970-01-01"),
        ("1969-12-31", "1970-01-01".to_string(), "before 1970-01-01"),
        ("2026-03-01", after_tomorrow.to_string(), "after tomorrow"),
    ] {
        let body = format!(r#"{{"model":"all","from":"{from}","to":"{to}"}}"#);
        let (status, said) = api.post("/api/backfill", Some(TOKEN), &body).await;
        assert_eq!(status, 400, "{body}: {said}");
        let error = said["error"].as_str().unwrap();
        assert!(error.contains(says), "{body}: {error}");
        if says.starts_with("is ") {
            assert!(error.contains("at most 366 days"), "{error}");
        }
    }
    assert!(api.store.pending().await.unwrap().is_empty());
    let (status, said) = api
        .post(
            "/api/runs",
            Some(TOKEN),
            r#"{"model":"gold.retention","date":"1900-01-01"}"#,
        )
        .await;
    assert_eq!(status, 400, "{said}");
    assert!(api.store.pending().await.unwrap().is_empty());

    // A leap year whole is 366 days, one partition each.
    let (status, said) = api
        .post(
            "/api/backfill",
            Some(TOKEN),
            r#"{"model":"gold.daily_active_users","from":"2024-01-01","to":"2024-12-31"}"#,
        )
        .await;
    assert_eq!(status, 202, "{said}");
    assert_eq!(said["runs"], 366);
    // From 1970-01-01, and up to tomorrow, are accepted.
    for body in [
        r#"{"model":"gold.daily_active_users","from":"1970-01-01","to":"1970-01-01"}"#.to_string(),
        format!(r#"{{"model":"gold.daily_active_users","from":"{tomorrow}","to":"{tomorrow}"}}"#),
    ] {
        let (status, said) = api.post("/api/backfill", Some(TOKEN), &body).await;
        assert_eq!((status, &said["runs"]), (202, &json!(1)), "{body}: {said}");
    }
    assert_eq!(api.store.pending().await.unwrap().len(), 368);
}
