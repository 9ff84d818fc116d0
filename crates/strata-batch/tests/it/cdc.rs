//! `silver.<table>` and `silver.<table>_history` from PostgreSQL CDC changes
//! (SPEC §7). Expected rows are written by hand from the changes.

use deltalake::arrow::datatypes::DataType;
use serde_json::json;
use strata_batch::plan::Outcome;
use strata_core::event::ChangeOp::{Insert, Snapshot, Truncate, Update};

use crate::cdc_feed::*;
use crate::harness::Env;

#[tokio::test]
async fn snapshot_then_inserts_updates_deletes_and_a_truncate() {
    let env = Env::new(config(false));
    let (lake, io) = (env.lake(), env.io());
    land(
        &lake,
        vec![
            relation(0x100, &ACCOUNTS),
            account(Snapshot, 0x100, 0, 0, 1, "a@x", "free"),
            account(Snapshot, 0x100, 1, 0, 2, "b@x", "pro"),
            account(Snapshot, 0x100, 2, 0, 3, "c@x", "free"),
        ],
    )
    .await;
    assert_eq!(build(&io, state()).await, Outcome::Written(3));
    land(
        &lake,
        vec![
            account(Insert, 0x200, 0, 1, 4, "d@x", "free"),
            // email is absent: an unchanged TOASTed value keeps its value.
            row(Update, 0x300, 0, 2, json!({"id": 1, "plan": "pro"})),
            // The primary key changes from 2 to 20.
            change(
                Update,
                0x400,
                0,
                at(3),
                json!({"id": 20}),
                Some(json!({"id": 2})),
                Some(json!({"id": 20, "email": "b@x", "plan": "team"})),
            ),
            delete(0x500, 0, 4, 3),
        ],
    )
    .await;
    assert_eq!(build(&io, state()).await, Outcome::Written(3));
    assert_eq!(
        rows(&lake, CURRENT).await,
        [
            "1|a@x|pro|0/300|2026-03-01T12:02:00Z",
            "4|d@x|free|0/200|2026-03-01T12:01:00Z",
            "20|b@x|team|0/400|2026-03-01T12:03:00Z",
        ]
    );
    assert_eq!(build(&io, state()).await, Outcome::Unchanged);

    land(
        &lake,
        vec![
            change(Truncate, 0x600, 0, at(5), json!({}), None, None),
            account(Insert, 0x700, 0, 6, 7, "g@x", "free"),
        ],
    )
    .await;
    assert_eq!(build(&io, state()).await, Outcome::Written(1));
    assert_eq!(
        rows(&lake, CURRENT).await,
        ["7|g@x|free|0/700|2026-03-01T12:06:00Z"]
    );
}

#[tokio::test]
async fn history_keeps_every_version_and_no_op_updates_open_none() {
    let env = Env::new(config(false));
    let (lake, io) = (env.lake(), env.io());
    land(
        &lake,
        vec![
            relation(0x100, &ACCOUNTS),
            account(Snapshot, 0x100, 0, 0, 1, "a", "free"),
            account(Snapshot, 0x100, 1, 0, 2, "b", "free"),
            row(Update, 0x200, 0, 1, json!({"id": 1, "plan": "pro"})),
            row(Update, 0x300, 0, 2, json!({"id": 1, "email": "a2"})),
            // Alters no column: no version.
            account(Update, 0x350, 0, 3, 1, "a2", "pro"),
            row(Update, 0x400, 0, 4, json!({"id": 1, "plan": "team"})),
            delete(0x500, 0, 5, 1),
            change(
                Update,
                0x600,
                0,
                at(6),
                json!({"id": 22}),
                Some(json!({"id": 2})),
                Some(json!({"id": 22, "email": "b", "plan": "free"})),
            ),
            // Inserted and updated in one transaction: one version.
            account(Insert, 0x700, 0, 7, 5, "x", "free"),
            row(Update, 0x700, 1, 7, json!({"id": 5, "plan": "pro"})),
        ],
    )
    .await;
    assert_eq!(build(&io, history()).await, Outcome::Written(7));
    assert_eq!(
        rows(&lake, VERSIONS).await,
        [
            "1|a|free|2026-03-01T12:00:00Z|2026-03-01T12:01:00Z|false|false",
            "1|a|pro|2026-03-01T12:01:00Z|2026-03-01T12:02:00Z|false|false",
            "1|a2|pro|2026-03-01T12:02:00Z|2026-03-01T12:04:00Z|false|false",
            "1|a2|team|2026-03-01T12:04:00Z|2026-03-01T12:05:00Z|false|true",
            "2|b|free|2026-03-01T12:00:00Z|2026-03-01T12:06:00Z|false|true",
            "5|x|pro|2026-03-01T12:07:00Z|∅|true|false",
            "22|b|free|2026-03-01T12:06:00Z|∅|true|false",
        ]
    );
    assert_eq!(build(&io, history()).await, Outcome::Unchanged);
    // The no-op update is still the row's last change for the current state.
    assert_eq!(build(&io, state()).await, Outcome::Written(2));
    assert_eq!(
        rows(&lake, CURRENT).await,
        [
            "5|x|pro|0/700|2026-03-01T12:07:00Z",
            "22|b|free|0/600|2026-03-01T12:06:00Z",
        ]
    );
}

#[tokio::test]
async fn a_restarted_snapshot_replaces_the_rows_and_rebuilding_gives_the_same_rows() {
    let env = Env::new(config(false));
    let (lake, io) = (env.lake(), env.io());
    land(
        &lake,
        vec![
            relation(0x100, &ACCOUNTS),
            account(Snapshot, 0x100, 0, 0, 1, "a", "free"),
            account(Snapshot, 0x100, 1, 0, 2, "b", "free"),
            account(Insert, 0x200, 0, 1, 3, "c", "free"),
        ],
    )
    .await;
    build(&io, state()).await;
    build(&io, history()).await;
    // The source crashed and snapshotted again: 2 is gone, 1 changed.
    land(
        &lake,
        vec![
            account(Snapshot, 0x900, 0, 10, 1, "a", "pro"),
            account(Snapshot, 0x900, 1, 10, 3, "c", "free"),
            row(Update, 0xA00, 0, 11, json!({"id": 3, "plan": "team"})),
        ],
    )
    .await;
    assert_eq!(build(&io, state()).await, Outcome::Written(2));
    let current = rows(&lake, CURRENT).await;
    assert_eq!(
        current,
        [
            "1|a|pro|0/900|2026-03-01T12:10:00Z",
            "3|c|team|0/A00|2026-03-01T12:11:00Z",
        ]
    );
    assert_eq!(build(&io, history()).await, Outcome::Written(5));
    let versions = rows(&lake, VERSIONS).await;
    assert_eq!(
        versions,
        [
            "1|a|free|2026-03-01T12:00:00Z|2026-03-01T12:10:00Z|false|false",
            "1|a|pro|2026-03-01T12:10:00Z|∅|true|false",
            "2|b|free|2026-03-01T12:00:00Z|2026-03-01T12:10:00Z|false|true",
            "3|c|free|2026-03-01T12:01:00Z|2026-03-01T12:11:00Z|false|false",
            "3|c|team|2026-03-01T12:11:00Z|∅|true|false",
        ]
    );
    // Built again from bronze alone, both give the same rows.
    for name in ["accounts", "accounts_history"] {
        std::fs::remove_dir_all(lake.table_path("silver", name)).unwrap();
    }
    build(&io, state()).await;
    build(&io, history()).await;
    assert_eq!(rows(&lake, CURRENT).await, current);
    assert_eq!(rows(&lake, VERSIONS).await, versions);
}

#[tokio::test]
async fn postgres_types_map_to_arrow_and_bad_values_become_null() {
    let env = Env::new(config(false));
    let (lake, io) = (env.lake(), env.io());
    let columns = [
        ("id", "int4", -1, true),
        ("flag", "bool", -1, false),
        ("small", "int2", -1, false),
        ("big", "int8", -1, false),
        ("ratio", "float4", -1, false),
        ("score", "float8", -1, false),
        ("amount", "numeric", ((10 << 16) | 2) + 4, false),
        ("exact", "numeric", -1, false),
        ("born", "date", -1, false),
        ("seen", "timestamptz", -1, false),
        ("local", "timestamp", -1, false),
        ("tags", "_text", -1, false),
        ("nums", "_int4", -1, false),
        ("doc", "jsonb", -1, false),
        ("mood", "mood", -1, false),
    ];
    land(
        &lake,
        vec![
            relation(0x100, &columns),
            row(
                Insert,
                0x200,
                0,
                1,
                json!({"id": 1, "flag": "t", "small": -3, "big": 9007199254740993u64,
                       "ratio": 0.5, "score": "NaN", "amount": 12.345,
                       "exact": "123.456789012345678901234567890", "born": "1990-05-17",
                       "seen": "2026-03-01 17:30:00.25+05:30", "local": "2026-03-01 12:00:00",
                       "tags": "{a,\"b c\",NULL}", "nums": "{1,2}", "doc": "{\"k\": [1, 2]}",
                       "mood": "happy"}),
            ),
            row(
                Insert,
                0x300,
                0,
                2,
                json!({"id": 2, "flag": "maybe", "small": 70000, "big": "x", "ratio": "x",
                       "score": "x", "amount": "123456789.5", "born": "2026-13-45",
                       "seen": "yesterday", "local": "infinity", "tags": "{unclosed",
                       "nums": "{1,2", "doc": "[1", "mood": "ok"}),
            ),
        ],
    )
    .await;
    assert_eq!(build(&io, state()).await, Outcome::Written(2));
    // The types as the Delta log declares them, which every reader sees.
    let table = lake.open("silver", "accounts").await.unwrap();
    let schema = table.snapshot().unwrap().snapshot().arrow_schema();
    let types: Vec<(&str, &DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    let utc = DataType::Timestamp(
        deltalake::arrow::datatypes::TimeUnit::Microsecond,
        Some("UTC".into()),
    );
    assert_eq!(
        types,
        [
            ("id", &DataType::Int32),
            ("flag", &DataType::Boolean),
            ("small", &DataType::Int16),
            ("big", &DataType::Int64),
            ("ratio", &DataType::Float32),
            ("score", &DataType::Float64),
            ("amount", &DataType::Decimal128(10, 2)),
            ("exact", &DataType::Utf8),
            ("born", &DataType::Date32),
            ("seen", &utc),
            ("local", &utc),
            ("tags", &DataType::Utf8),
            ("nums", &DataType::Utf8),
            ("doc", &DataType::Utf8),
            ("mood", &DataType::Utf8),
            ("_lsn", &DataType::Utf8),
            ("_updated_at", &utc),
        ]
    );
    // 2026-03-01T12:00:00Z is 1772366400000000 µs; 17:30:00.25+05:30 is 250 ms later.
    let query = "select id, flag, small, big, ratio, score, amount, exact, born, \
                 cast(seen as bigint), cast(local as bigint), tags, nums, doc, mood \
                 from silver.accounts order by id";
    assert_eq!(
        rows(&lake, query).await,
        [
            "1|true|-3|9007199254740993|0.5|NaN|12.35|123.456789012345678901234567890|1990-05-17|\
             1772366400250000|1772366400000000|[\"a\",\"b c\",null]|[1,2]|{\"k\": [1, 2]}|happy",
            "2|∅|∅|∅|∅|∅|∅|∅|∅|∅|∅|∅|∅|[1|ok",
        ]
    );
}
