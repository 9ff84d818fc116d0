//! CDC silver tables as they follow a stream: whole transactions only,
//! histories continued from their open versions, replaced files deleted.
//! Expected rows are written by hand from the changes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use strata_core::event::ChangeOp::{Insert, Snapshot, Update};
use strata_lake::Lake;

use crate::cdc_feed::*;
use crate::harness::Env;

#[tokio::test]
async fn a_transaction_bronze_holds_part_of_waits_for_its_last_change() {
    let env = Env::new(config(false));
    let (lake, io) = (env.lake(), env.io());
    land_logged(
        env.dir.path(),
        &lake,
        vec![
            relation(0x100, &ACCOUNTS),
            account(Snapshot, 0x100, 0, 0, 1, "a", "free"),
            ends(account(Snapshot, 0x100, 1, 0, 2, "b", "free")),
        ],
    )
    .await;
    // A loader micro-batch ended inside the transaction at 0/200.
    land_logged(
        env.dir.path(),
        &lake,
        vec![row(Update, 0x200, 0, 1, json!({"id": 1, "plan": "pro"}))],
    )
    .await;
    build_both(&io).await;
    assert_eq!(
        rows(&lake, CURRENT).await,
        [
            "1|a|free|0/100|2026-03-01T12:00:00Z",
            "2|b|free|0/100|2026-03-01T12:00:00Z",
        ]
    );
    assert_eq!(
        rows(&lake, VERSIONS).await,
        [
            "1|a|free|2026-03-01T12:00:00Z|∅|true|false",
            "2|b|free|2026-03-01T12:00:00Z|∅|true|false",
        ]
    );
    land_logged(
        env.dir.path(),
        &lake,
        vec![ends(row(
            Update,
            0x200,
            1,
            1,
            json!({"id": 2, "plan": "pro"}),
        ))],
    )
    .await;
    build_both(&io).await;
    assert_eq!(
        rows(&lake, CURRENT).await,
        [
            "1|a|pro|0/200|2026-03-01T12:01:00Z",
            "2|b|pro|0/200|2026-03-01T12:01:00Z",
        ]
    );
    assert_eq!(
        rows(&lake, VERSIONS).await,
        [
            "1|a|free|2026-03-01T12:00:00Z|2026-03-01T12:01:00Z|false|false",
            "1|a|pro|2026-03-01T12:01:00Z|∅|true|false",
            "2|b|free|2026-03-01T12:00:00Z|2026-03-01T12:01:00Z|false|false",
            "2|b|pro|2026-03-01T12:01:00Z|∅|true|false",
        ]
    );
}

async fn build_both(io: &strata_batch::LakeIo) {
    build(io, state()).await;
    build(io, history()).await;
}

/// The history's files and their row counts.
async fn history_files(lake: &Lake) -> BTreeMap<String, usize> {
    let table = lake
        .open("silver", "accounts_history")
        .await
        .expect("history");
    table
        .snapshot()
        .expect("snapshot")
        .log_data()
        .iter()
        .map(|f| (f.path().to_string(), f.num_records().expect("row count")))
        .collect()
}

#[tokio::test]
async fn a_history_continues_from_its_open_versions_and_leaves_closed_files_alone() {
    let env = Env::new(config(false));
    let (lake, io) = (env.lake(), env.io());
    land(
        &lake,
        vec![
            relation(0x100, &ACCOUNTS),
            account(Snapshot, 0x100, 0, 0, 1, "a", "free"),
            account(Snapshot, 0x100, 1, 0, 2, "b", "free"),
            account(Snapshot, 0x100, 2, 0, 3, "c", "free"),
        ],
    )
    .await;
    build(&io, history()).await;
    land(
        &lake,
        vec![row(Update, 0x200, 0, 1, json!({"id": 1, "plan": "pro"}))],
    )
    .await;
    build(&io, history()).await;
    let before = history_files(&lake).await;
    land(
        &lake,
        vec![
            row(Update, 0x300, 0, 2, json!({"id": 1, "email": "a2"})),
            delete(0x300, 1, 2, 2),
        ],
    )
    .await;
    build(&io, history()).await;
    let after = history_files(&lake).await;
    // The file of the one version the second build closed is still there.
    let kept: Vec<usize> = before
        .iter()
        .filter(|(path, _)| after.contains_key(*path))
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(kept, [1], "files before {before:?}, after {after:?}");
    land(
        &lake,
        vec![
            // Alters nothing: no version.
            account(Update, 0x400, 0, 3, 3, "c", "free"),
            account(Insert, 0x400, 1, 3, 4, "d", "free"),
        ],
    )
    .await;
    build(&io, history()).await;
    let versions = rows(&lake, VERSIONS).await;
    assert_eq!(
        versions,
        [
            "1|a|free|2026-03-01T12:00:00Z|2026-03-01T12:01:00Z|false|false",
            "1|a|pro|2026-03-01T12:01:00Z|2026-03-01T12:02:00Z|false|false",
            "1|a2|pro|2026-03-01T12:02:00Z|∅|true|false",
            "2|b|free|2026-03-01T12:00:00Z|2026-03-01T12:02:00Z|false|true",
            "3|c|free|2026-03-01T12:00:00Z|∅|true|false",
            "4|d|free|2026-03-01T12:03:00Z|∅|true|false",
        ]
    );
    // Built in one go from bronze, the same versions.
    std::fs::remove_dir_all(lake.table_path("silver", "accounts_history")).unwrap();
    build(&io, history()).await;
    assert_eq!(rows(&lake, VERSIONS).await, versions);
}

fn parquet_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "parquet")
        })
        .count()
}

#[tokio::test]
async fn files_a_build_replaced_are_deleted_once_old_enough() {
    let env = Env::new(config(false));
    let (lake, io) = (env.lake(), env.io());
    land(
        &lake,
        vec![
            relation(0x100, &ACCOUNTS),
            account(Snapshot, 0x100, 0, 0, 1, "a", "free"),
        ],
    )
    .await;
    for (i, plan) in ["pro", "team", "free", "pro"].into_iter().enumerate() {
        let i = i as u64 + 1;
        land(
            &lake,
            vec![row(
                Update,
                0x100 + 0x100 * i,
                0,
                i as i64,
                json!({"id": 1, "plan": plan}),
            )],
        )
        .await;
        build_both(&io).await;
    }
    let state_dir = lake.table_path("silver", "accounts");
    assert!(parquet_files(&state_dir) > 1);
    // Younger than the builds' own retention: kept for readers.
    assert_eq!(
        strata_batch::cdc::vacuum_replaced(&io, state(), Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert!(
        strata_batch::cdc::vacuum_replaced(&io, state(), Duration::ZERO)
            .await
            .unwrap()
            > 0
    );
    strata_batch::cdc::vacuum_replaced(&io, history(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(parquet_files(&state_dir), 1);
    let history_dir = lake.table_path("silver", "accounts_history");
    assert_eq!(
        parquet_files(&history_dir),
        history_files(&lake).await.len()
    );
    assert_eq!(
        rows(&lake, CURRENT).await,
        ["1|a|pro|0/500|2026-03-01T12:04:00Z"]
    );
    assert_eq!(rows(&lake, VERSIONS).await.len(), 5);
}
