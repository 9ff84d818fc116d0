//! CDC current-state tables on the scheduler's fast lane: a new commit of
//! `bronze.cdc_changes` queues `silver.<table>` at once (not after the
//! dirty-check interval), the lane builds it, and the main scheduler leaves
//! its runs alone while the history waits for the late-data sensor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deltalake::protocol::SaveMode;
use strata_core::config::Config;
use strata_core::event::{ChangeOp, ChangeRecord, RelationColumn, RelationRecord};
use strata_lake::bronze::{Decoded, Rows, Table};
use strata_lake::query::format_batches;
use strata_lake::{Lake, OutputFormat, SqlEngine};
use strata_orchestrator::store::now_micros;
use strata_orchestrator::{BatchWorkload, RunKey, RunState, Scheduler};

use crate::db::Db;
use crate::on_both_stores;
use crate::scripted::settings;

/// 2026-03-01T12:00:00Z
const T0: i64 = 1_772_366_400_000_000;

static OFFSET: AtomicU64 = AtomicU64::new(0);

async fn land(lake: &Lake, records: Vec<Decoded>) {
    let mut rows = Rows::default();
    for record in records {
        rows.push(0, OFFSET.fetch_add(1, Ordering::Relaxed), record);
    }
    for table in [Table::CdcSchemas, Table::CdcChanges] {
        if rows.count(table) > 0 {
            lake.open_or_create(table.def())
                .await
                .unwrap()
                .write(vec![rows.batch(table).unwrap()])
                .with_save_mode(SaveMode::Append)
                .await
                .unwrap();
        }
    }
}

fn relation() -> Decoded {
    let column = |name: &str, type_name: &str, key| RelationColumn {
        name: name.into(),
        type_name: type_name.into(),
        type_modifier: -1,
        key,
    };
    Decoded::Relation(RelationRecord {
        source: "db".into(),
        table_schema: "public".into(),
        table_name: "accounts".into(),
        lsn: 0x100,
        columns: vec![column("id", "int8", true), column("plan", "text", false)],
        received_at: T0,
    })
}

fn upsert(op: ChangeOp, lsn: u64, id: i64, plan: &str) -> Decoded {
    Decoded::Change(ChangeRecord {
        source: "db".into(),
        table_schema: "public".into(),
        table_name: "accounts".into(),
        op,
        lsn,
        commit_ts: T0 + lsn as i64,
        tx_id: None,
        seq: id as u64,
        key: format!(r#"{{"id":{id}}}"#),
        before: None,
        after: Some(format!(r#"{{"id":{id},"plan":"{plan}"}}"#)),
        received_at: T0 + lsn as i64,
        tx_end: false,
    })
}

async fn sql(lake: &Lake, query: &str) -> String {
    let engine = SqlEngine::open(lake).await.unwrap();
    format_batches(&engine.query(query).await.unwrap(), OutputFormat::Csv).unwrap()
}

on_both_stores!(the_fast_lane_refreshes_cdc_tables_when_bronze_moves);

async fn the_fast_lane_refreshes_cdc_tables_when_bronze_moves(db: &Db) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml(
        "[[sources]]\nname = \"db\"\nkind = \"postgres_cdc\"\ntables = [\"public.accounts\"]\n",
    )
    .unwrap();
    config.data_dir = dir.path().to_path_buf();
    let lake = Lake::new(config.lake_dir());
    let workload = Arc::new(BatchWorkload::new(&config, 2));
    let mut main = Scheduler::new(db.open().await, workload, settings())
        .await
        .unwrap();
    let mut lane = main
        .split_fast_lane()
        .await
        .unwrap()
        .expect("silver.accounts is a fast model");
    let accounts = RunKey::new("silver.accounts", "all");

    // Nothing landed yet: nothing to queue.
    assert_eq!(
        lane.fast_pass(now_micros(), None).await.unwrap().enqueued,
        0
    );
    land(
        &lake,
        vec![
            relation(),
            upsert(ChangeOp::Snapshot, 0x100, 1, "free"),
            upsert(ChangeOp::Snapshot, 0x100, 2, "free"),
        ],
    )
    .await;
    let tick = lane.fast_pass(now_micros(), None).await.unwrap();
    assert_eq!(tick.executed, [(accounts.clone(), RunState::Succeeded)]);
    assert_eq!(
        sql(&lake, "select id, plan from silver.accounts order by id").await,
        "id,plan\n1,free\n2,free\n"
    );

    // The same bronze version again: nothing queued.
    assert_eq!(
        lane.fast_pass(now_micros(), None).await.unwrap().enqueued,
        0
    );
    land(&lake, vec![upsert(ChangeOp::Update, 0x200, 2, "pro")]).await;
    let tick = lane.fast_pass(now_micros(), None).await.unwrap();
    assert_eq!(tick.executed, [(accounts.clone(), RunState::Succeeded)]);
    assert_eq!(
        sql(&lake, "select id, plan from silver.accounts order by id").await,
        "id,plan\n1,free\n2,pro\n"
    );

    // The late-data sensor queues both CDC models; the main scheduler
    // builds the history and leaves the current state to the lane.
    land(&lake, vec![upsert(ChangeOp::Insert, 0x300, 3, "team")]).await;
    main.sense(true, now_micros()).await.unwrap();
    let tick = main.tick(now_micros()).await.unwrap();
    assert_eq!(
        tick.executed,
        [(
            RunKey::new("silver.accounts_history", "all"),
            RunState::Succeeded
        )]
    );
    let pending: Vec<RunKey> = main
        .store()
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(pending, std::slice::from_ref(&accounts));
    let tick = lane.fast_pass(now_micros(), None).await.unwrap();
    assert_eq!(tick.executed, [(accounts, RunState::Succeeded)]);
    assert_eq!(
        sql(
            &lake,
            "select id, plan, is_current from silver.accounts_history order by id, valid_from"
        )
        .await,
        "id,plan,is_current\n1,free,true\n2,free,false\n2,pro,true\n3,team,true\n"
    );
    assert_eq!(
        sql(&lake, "select count(*) as n from silver.accounts").await,
        "n\n3\n"
    );

    // An hour on, the lane's succeeded runs are let go, but the latest.
    let store = lane.store().clone();
    let worker = lane.worker().to_owned();
    assert_eq!(store.runs_of_worker(&worker).await.unwrap().len(), 3);
    lane.fast_pass(now_micros() + 2 * 3_600_000_000, None)
        .await
        .unwrap();
    assert_eq!(store.runs_of_worker(&worker).await.unwrap().len(), 1);
}
