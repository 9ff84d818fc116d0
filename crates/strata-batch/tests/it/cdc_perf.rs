//! How long `silver.<table>` (and its history) takes to take in a loader micro-batch of
//! changes on a large table (the target: 10,000 changes/s on a 1M-row table
//! with silver at most one 2 s micro-batch behind). A measurement, not a
//! check of rows: `cargo nextest run ... --run-ignored only -E 'test(cdc_perf)'`.
//! `STRATA_CDC_PERF_ROWS` sets the table's size (default 1,000,000).

use std::time::Instant;

use serde_json::json;
use strata_batch::plan::Outcome;
use strata_core::event::ChangeOp::{Insert, Snapshot, Update};

use crate::cdc_feed::*;
use crate::harness::Env;

const COLUMNS: [(&str, &str, i32, bool); 6] = [
    ("id", "int8", -1, true),
    ("user_id", "text", -1, false),
    ("email", "text", -1, false),
    ("plan", "text", -1, false),
    ("balance", "numeric", ((12 << 16) | 2) + 4, false),
    ("updated", "timestamptz", -1, false),
];

fn account(id: u64, plan: &str, minute: i64) -> serde_json::Value {
    json!({
        "id": id,
        "user_id": format!("u{id}"),
        "email": format!("user{id}@example.com"),
        "plan": plan,
        "balance": format!("{}.{:02}", id % 10_000, id % 100),
        "updated": format!("2026-03-01 12:{:02}:00+00", minute % 60),
    })
}

/// `changes` updates of pseudo-random existing ids and a few inserts,
/// as transactions of 10 changes from `lsn` on.
fn micro_batch(
    rows: u64,
    changes: u64,
    lsn: u64,
    minute: i64,
    seed: u64,
) -> Vec<strata_lake::bronze::Decoded> {
    let mut x = seed;
    (0..changes)
        .map(|i| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let tx = lsn + i / 10;
            if i % 100 == 99 {
                row(
                    Insert,
                    tx,
                    i % 10,
                    minute,
                    account(rows + seed * changes + i, "free", minute),
                )
            } else {
                let id = (x >> 33) % rows;
                row(
                    Update,
                    tx,
                    i % 10,
                    minute,
                    json!({"id": id, "plan": format!("p{}", i % 7)}),
                )
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run on its own"]
async fn cdc_perf_one_micro_batch_on_a_large_table() {
    let rows: u64 = std::env::var("STRATA_CDC_PERF_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let env = Env::new(config(false));
    let (lake, io) = (env.lake(), env.io());
    land(&lake, vec![relation(0x100, &COLUMNS)]).await;
    let landing = Instant::now();
    for chunk in 0..rows.div_ceil(100_000) {
        let records = (chunk * 100_000..((chunk + 1) * 100_000).min(rows))
            .map(|id| row(Snapshot, 0x100, id, 0, account(id, "free", 0)))
            .collect();
        land(&lake, records).await;
    }
    eprintln!("landed a {rows}-row snapshot in {:?}", landing.elapsed());

    let started = Instant::now();
    assert_eq!(build(&io, state()).await, Outcome::Written(rows as usize));
    eprintln!("full build of silver.accounts: {:?}", started.elapsed());

    let mut expected = rows as usize;
    for round in 1..=3u64 {
        land(
            &lake,
            micro_batch(rows, 10_000, 0x1000 * round, round as i64, round),
        )
        .await;
        expected += 100;
        let started = Instant::now();
        assert_eq!(build(&io, state()).await, Outcome::Written(expected));
        eprintln!(
            "incremental build, 10,000 changes on {expected} rows: {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    build(&io, history()).await;
    eprintln!(
        "full build of silver.accounts_history: {:?}",
        started.elapsed()
    );
    for round in 4..=6u64 {
        land(
            &lake,
            micro_batch(rows, 10_000, 0x1000 * round, round as i64, round),
        )
        .await;
        let started = Instant::now();
        build(&io, history()).await;
        eprintln!(
            "incremental build of silver.accounts_history, 10,000 changes: {:?}",
            started.elapsed()
        );
    }
}
