//! CDC records reach their own bronze tables through the loader's table map,
//! each change once, however often its source sends it.

use bytes::Bytes;
use strata_core::event::{
    ChangeOp, ChangePosition, ChangeRecord, LogRecord, RelationColumn, RelationRecord,
};
use strata_lake::bronze::ChangePositions;
use strata_lake::{Lake, SqlEngine};
use strata_log::Log;

use crate::harness::{Env, RECEIVED};

/// 0/16B3748 and the next commits.
const LSN: u64 = 0x16B_3748;

fn change(source: &str, op: ChangeOp, lsn: u64, seq: u64, id: i64) -> ChangeRecord {
    ChangeRecord {
        source: source.into(),
        table_schema: "public".into(),
        table_name: "accounts".into(),
        op,
        lsn,
        commit_ts: RECEIVED - 5_000_000,
        tx_id: (op != ChangeOp::Snapshot).then_some(740 + seq as u32),
        seq,
        key: format!("{{\"id\":{id}}}"),
        before: None,
        after: (op != ChangeOp::Delete).then(|| format!("{{\"id\":{id},\"plan\":\"pro\"}}")),
        received_at: RECEIVED,
        tx_end: false,
    }
}

fn relation(source: &str) -> RelationRecord {
    RelationRecord {
        source: source.into(),
        table_schema: "public".into(),
        table_name: "accounts".into(),
        lsn: LSN,
        columns: vec![
            RelationColumn {
                name: "id".into(),
                type_name: "int8".into(),
                type_modifier: -1,
                key: true,
            },
            RelationColumn {
                name: "plan".into(),
                type_name: "text".into(),
                type_modifier: -1,
                key: false,
            },
        ],
        received_at: RECEIVED,
    }
}

async fn append(env: &Env, partition: u32, records: &[LogRecord]) {
    let records = records.iter().map(|r| Bytes::from(r.encode())).collect();
    env.log.append(partition, records).await.unwrap();
}

async fn rows(lake: &Lake, sql: &str) -> Vec<String> {
    let engine = SqlEngine::open(lake).await.unwrap();
    let batches = engine.query(sql).await.unwrap();
    let text =
        strata_lake::query::format_batches(&batches, strata_lake::OutputFormat::Csv).unwrap();
    text.lines().skip(1).map(str::to_string).collect()
}

#[tokio::test]
async fn changes_and_schemas_land_in_their_tables_with_the_lsn_as_text() {
    let env = Env::new();
    append(
        &env,
        1,
        &[
            LogRecord::Relation(relation("shop")),
            LogRecord::Change(change("shop", ChangeOp::Snapshot, LSN, 0, 1)),
            LogRecord::Change(change("shop", ChangeOp::Insert, LSN + 0x100, 0, 2)),
            LogRecord::Change(change("shop", ChangeOp::Delete, 0x1_0000_0010, 0, 1)),
        ],
    )
    .await;
    let mut loader = env.loader().await;
    let stats = loader.catch_up().await.unwrap();
    assert_eq!(stats.changes, 4);
    assert_eq!(stats.events, 0);
    assert_eq!(
        rows(
            &env.lake,
            "select op, lsn, seq, key, after, tx_id, lsn_value, log_partition, log_offset \
             from bronze.cdc_changes order by log_offset"
        )
        .await,
        [
            "snapshot,0/16B3748,0,\"{\"\"id\"\":1}\",\"{\"\"id\"\":1,\"\"plan\"\":\"\"pro\"\"}\",,23803720,1,1",
            "insert,0/16B3848,0,\"{\"\"id\"\":2}\",\"{\"\"id\"\":2,\"\"plan\"\":\"\"pro\"\"}\",740,23803976,1,2",
            "delete,1/10,0,\"{\"\"id\"\":1}\",,740,4294967312,1,3",
        ]
    );
    assert_eq!(
        rows(
            &env.lake,
            "select table_name, lsn, columns from bronze.cdc_schemas"
        )
        .await,
        [
            "accounts,0/16B3748,\"[{\"\"name\"\":\"\"id\"\",\"\"type_name\"\":\"\"int8\"\",\"\"type_modifier\"\":-1,\"\"key\"\":true},{\"\"name\"\":\"\"plan\"\",\"\"type_name\"\":\"\"text\"\",\"\"type_modifier\"\":-1,\"\"key\"\":false}]\""
        ]
    );
    assert_eq!(
        ChangePositions::new(env.lake.clone())
            .get("shop")
            .await
            .unwrap(),
        Some(ChangePosition {
            lsn: 0x1_0000_0010,
            // A streamed change's rank, above every snapshot row's.
            rank: 1 << 62
        })
    );
    assert_eq!(
        ChangePositions::new(env.lake.clone())
            .get("other")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_source_sending_again_after_a_restart_lands_each_change_once() {
    let env = Env::new();
    let first_tx: Vec<LogRecord> = (0..3)
        .map(|seq| LogRecord::Change(change("shop", ChangeOp::Update, LSN, seq, seq as i64)))
        .collect();
    // Two changes of the transaction reach the log, then the source dies.
    append(&env, 0, &first_tx[..2]).await;
    let mut loader = env.loader().await;
    loader.catch_up().await.unwrap();
    // Restarted, the source gets the whole transaction again and the next.
    append(&env, 0, &first_tx).await;
    append(
        &env,
        0,
        &[LogRecord::Change(change(
            "shop",
            ChangeOp::Insert,
            LSN + 8,
            0,
            9,
        ))],
    )
    .await;
    let stats = loader.catch_up().await.unwrap();
    assert_eq!((stats.changes, stats.skipped), (2, 2));
    // A second source's positions are its own.
    append(
        &env,
        2,
        &[LogRecord::Change(change(
            "crm",
            ChangeOp::Insert,
            LSN,
            0,
            1,
        ))],
    )
    .await;
    // A new loader reads the positions back from the table.
    let mut fresh = env.loader().await;
    append(&env, 0, &first_tx).await;
    let stats = fresh.catch_up().await.unwrap();
    // Partition 0's six records are below the table's log position, the
    // second copy of the transaction below the source's position.
    assert_eq!((stats.changes, stats.skipped), (1, 9));
    assert_eq!(
        rows(
            &env.lake,
            "select source, lsn, seq from bronze.cdc_changes order by source, lsn_value, seq"
        )
        .await,
        [
            "crm,0/16B3748,0",
            "shop,0/16B3748,0",
            "shop,0/16B3748,1",
            "shop,0/16B3748,2",
            "shop,0/16B3750,0",
        ]
    );
}

#[tokio::test]
async fn cdc_tables_appear_only_with_their_first_row_and_do_not_hold_back_the_loader() {
    let env = Env::new();
    env.append(0, 50, 5).await;
    let mut loader = env.loader().await;
    loader.catch_up().await.unwrap();
    assert!(!env.lake.exists("bronze", "cdc_changes"));
    assert!(!env.lake.exists("bronze", "cdc_schemas"));
    // A restarted loader starts where events are, not at offset zero.
    let restarted = env.loader().await;
    let ends: Vec<u64> = (0..crate::harness::PARTITIONS)
        .map(|p| env.log.end_offset(p).unwrap())
        .collect();
    assert_eq!(restarted.committed_positions(), ends);
}

#[tokio::test]
async fn a_crash_between_the_change_commit_and_the_events_commit_loses_nothing() {
    let env = Env::new();
    env.append(0, 20, 0).await;
    append(
        &env,
        0,
        &[LogRecord::Change(change(
            "shop",
            ChangeOp::Insert,
            LSN,
            0,
            1,
        ))],
    )
    .await;
    env.append(20, 20, 0).await;
    // Only the change table's commit of a batch happens before the crash:
    // simulated by a loader that writes the change records alone.
    let mut first = env.loader().await;
    let entries = first.read_available(100_000).await.unwrap();
    let changes: Vec<_> = entries
        .iter()
        .filter(|e| matches!(LogRecord::decode(&e.payload), Ok(LogRecord::Change(_))))
        .cloned()
        .collect();
    first.write(&changes).await.unwrap();
    drop(first);
    let mut second = env.loader().await;
    let stats = second.catch_up().await.unwrap();
    assert_eq!((stats.events, stats.changes), (40, 0));
    assert_eq!(env.count("select count(*) from bronze.events").await, 40);
    assert_eq!(
        env.count("select count(*) from bronze.cdc_changes").await,
        1
    );
}

#[tokio::test]
async fn a_sources_through_mark_moves_only_with_a_change_that_ends_a_transaction() {
    let env = Env::new();
    let ending = |mut c: ChangeRecord| {
        c.tx_end = true;
        LogRecord::Change(c)
    };
    append(
        &env,
        0,
        &[
            LogRecord::Change(change("shop", ChangeOp::Update, LSN, 0, 1)),
            ending(change("shop", ChangeOp::Update, LSN, 1, 2)),
            // The next transaction, cut off before its last change.
            LogRecord::Change(change("shop", ChangeOp::Update, LSN + 0x100, 0, 3)),
        ],
    )
    .await;
    let mut loader = env.loader().await;
    loader.catch_up().await.unwrap();
    let streamed = |seq: u64| (1 << 62) | seq;
    let marks = || async {
        ChangePositions::new(env.lake.clone())
            .marks("shop")
            .await
            .unwrap()
            .unwrap()
    };
    let m = marks().await;
    assert_eq!(
        (m.last, m.through),
        (
            ChangePosition {
                lsn: LSN + 0x100,
                rank: streamed(0)
            },
            ChangePosition {
                lsn: LSN,
                rank: streamed(1)
            }
        )
    );
    // Its end lands in a later micro-batch, and after a restart of the
    // loader the mark is read back from the table.
    append(
        &env,
        0,
        &[ending(change("shop", ChangeOp::Update, LSN + 0x100, 1, 4))],
    )
    .await;
    let mut loader = env.loader().await;
    loader.catch_up().await.unwrap();
    let m = marks().await;
    assert_eq!(
        m.through,
        ChangePosition {
            lsn: LSN + 0x100,
            rank: streamed(1)
        }
    );
    assert_eq!(m.last, m.through);
}
