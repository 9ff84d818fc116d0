use strata_lake::query::format_batches;
use strata_lake::{OutputFormat, SqlEngine};

use crate::harness::Env;

#[tokio::test]
async fn formats_table_csv_and_json() {
    let env = Env::new();
    env.append(0, 3, 0).await;
    env.loader().await.catch_up().await.unwrap();
    let engine = SqlEngine::open(&env.lake).await.unwrap();
    assert_eq!(engine.tables(), ["bronze.events", "bronze.quarantine"]);
    let batches = engine
        .query(
            "select event_id, event_ts, log_offset >= 0 as ok from bronze.events order by event_id",
        )
        .await
        .unwrap();
    let table = format_batches(&batches, OutputFormat::Table).unwrap();
    assert!(table.contains("| e0 "), "{table}");
    let csv = format_batches(&batches, OutputFormat::Csv).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "event_id,event_ts,ok");
    assert_eq!(csv.lines().count(), 4);
    let json: serde_json::Value =
        serde_json::from_str(&format_batches(&batches, OutputFormat::Json).unwrap()).unwrap();
    assert_eq!(json[0]["event_id"], "e0");
    assert_eq!(json[0]["ok"], true);
    assert_eq!(json[0]["event_ts"], "2026-03-01T11:59:59Z");
}

#[tokio::test]
async fn writes_are_refused() {
    let env = Env::new();
    env.append(0, 1, 0).await;
    env.loader().await.catch_up().await.unwrap();
    let engine = SqlEngine::open(&env.lake).await.unwrap();
    for statement in [
        "insert into bronze.events select * from bronze.events",
        "drop table bronze.events",
        "create table t as select 1",
        "delete from bronze.events",
    ] {
        assert!(engine.query(statement).await.is_err(), "{statement}");
    }
    assert_eq!(env.count("select count(*) from bronze.events").await, 1);
}

/// `select 1+1+…+1` with `terms` ones: the query is one level, each `+`
/// one more, the innermost `1` one more, so `terms + 1` levels deep.
fn chain(terms: usize) -> String {
    format!("select {}", vec!["1"; terms].join("+"))
}

#[tokio::test]
async fn expressions_nested_beyond_the_depth_limit_are_refused_before_planning() {
    let env = Env::new();
    let limits = strata_core::config::SqlConfig {
        max_expression_depth: 10,
        ..Default::default()
    };
    let engine = SqlEngine::open_with(&env.lake, &limits).await.unwrap();
    let batches = engine.query(&chain(9)).await.unwrap();
    let csv = format_batches(&batches, OutputFormat::Csv).unwrap();
    assert!(csv.ends_with("\n9\n"), "{csv}");

    let refused = engine.query(&chain(10)).await.unwrap_err().to_string();
    assert!(refused.contains("more than 10 deep"), "{refused}");
    // Subqueries count too: each is a query inside a subquery expression.
    // Three queries, two subquery expressions and the literal: 6 levels.
    assert!(engine.query("select (select (select 1))").await.is_ok());
    // Ten queries, nine subquery expressions and the literal: 20.
    let deep =
        "select (select (select (select (select (select (select (select (select (select 1)))))))))";
    assert!(engine.query(deep).await.is_err());
}

#[tokio::test]
async fn a_query_longer_than_max_query_bytes_is_refused() {
    let env = Env::new();
    let limits = strata_core::config::SqlConfig {
        max_query_bytes: 64,
        ..Default::default()
    };
    let engine = SqlEngine::open_with(&env.lake, &limits).await.unwrap();
    let exactly = format!("select 1 --{}", "x".repeat(64 - 11));
    assert_eq!(exactly.len(), 64);
    assert!(engine.query(&exactly).await.is_ok());
    let refused = engine
        .query(&format!("{exactly}x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("65 bytes, longer than sql.max_query_bytes (64 bytes)"),
        "{refused}"
    );
}
