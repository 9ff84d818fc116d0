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
