//! `POST /api/sql` under a runaway query: stopped with a clear error, the
//! server goes on answering, and calls beyond the concurrency limit wait
//! their turn with 503 + Retry-After.

use std::time::{Duration, Instant};

use strata_lake::Lake;

use crate::support::{TOKEN, serve_configured};

/// A thousand billion rows: never finishes on its own.
const RUNAWAY: &str = r#"{"query":"select count(*) from generate_series(1, 1000000) a cross join generate_series(1, 1000000) b"}"#;

#[tokio::test]
async fn a_runaway_cross_join_is_cancelled_and_the_server_stays_up() {
    let api = serve_configured(
        true,
        |c| c.sql.statement_timeout = Duration::from_secs(1),
        async |_: &Lake| {},
    )
    .await;
    let started = Instant::now();
    let (status, said) = api.post("/api/sql", Some(TOKEN), RUNAWAY).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, 400, "{said}");
    let error = said["error"].as_str().unwrap();
    assert!(
        error.contains("cancelled after 1s") && error.contains("sql.statement_timeout"),
        "{error}"
    );
    let (status, said) = api
        .post("/api/sql", Some(TOKEN), r#"{"query":"select 41 + 1 as n"}"#)
        .await;
    assert_eq!(
        (status, said["rows"][0][0].as_i64()),
        (200, Some(42)),
        "{said}"
    );
}

#[tokio::test]
async fn a_query_over_its_memory_is_refused_naming_the_limit() {
    let api = serve_configured(
        true,
        |c| c.sql.max_query_memory = 8 << 20,
        async |_: &Lake| {},
    )
    .await;
    // Sorting five million rows needs far more than 8 MiB, and nothing spills.
    let sort = r#"{"query":"select value from generate_series(1, 5000000) order by value % 7919, value desc"}"#;
    let (status, said) = api.post("/api/sql", Some(TOKEN), sort).await;
    assert_eq!(status, 400, "{said}");
    let error = said["error"].as_str().unwrap();
    assert!(error.contains("sql.max_query_memory (8 MiB)"), "{error}");
    // The same rows counted need almost no memory.
    let count = r#"{"query":"select count(*) from generate_series(1, 5000000)"}"#;
    let (status, said) = api.post("/api/sql", Some(TOKEN), count).await;
    assert_eq!(
        (status, said["rows"][0][0].as_i64()),
        (200, Some(5_000_000)),
        "{said}"
    );
}

#[tokio::test]
async fn calls_beyond_max_concurrent_queries_are_503_with_retry_after() {
    let api = serve_configured(
        true,
        |c| {
            c.sql.max_concurrent_queries = 1;
            c.sql.statement_timeout = Duration::from_secs(3);
        },
        async |_: &Lake| {},
    )
    .await;
    let runaway = {
        let client = api.client.clone();
        let url = format!("{}/api/sql", api.url);
        tokio::spawn(async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(RUNAWAY)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let response = api
        .client
        .post(format!("{}/api/sql", api.url))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(r#"{"query":"select 1"}"#)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").cloned();
    let said = response.text().await.unwrap();
    assert_eq!(status, 503, "{said}");
    assert_eq!(retry_after.unwrap(), "1");
    assert!(said.contains("sql.max_concurrent_queries"), "{said}");
    // Read-only panels are not SQL calls and still answer.
    assert_eq!(api.get("/api/pipeline").await.0, 200);
    assert_eq!(runaway.await.unwrap(), 400);
    let (status, _) = api
        .post("/api/sql", Some(TOKEN), r#"{"query":"select 1"}"#)
        .await;
    assert_eq!(status, 200);
}

/// A thousand billion rows asked for: the answer stops at 10,000 and says
/// so, at once. Were the rows collected before truncating, the statement
/// would run into its timeout instead (and hold every row meanwhile).
#[tokio::test]
async fn a_huge_answer_stops_at_the_row_limit() {
    let api = serve_configured(
        true,
        |c| c.sql.statement_timeout = Duration::from_secs(10),
        async |_: &Lake| {},
    )
    .await;
    let started = Instant::now();
    let (status, said) = api
        .post(
            "/api/sql",
            Some(TOKEN),
            r#"{"query":"select * from generate_series(1, 1000000000000)"}"#,
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, 200, "{said}");
    let rows = said["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 10_000);
    assert_eq!(rows[0][0], 1);
    assert_eq!(rows[9_999][0], 10_000);
    assert_eq!(said["truncated"], true);
    assert_eq!(said["columns"], serde_json::json!(["value"]));
}
