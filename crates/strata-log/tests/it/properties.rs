//! Model-based test: random appends, reopens and simulated crashes in the
//! middle of unacknowledged writes never lose, duplicate, reorder or
//! renumber an acknowledged record.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use strata_log::{EmbeddedLog, EmbeddedLogConfig, Log, encode_frame};

use crate::{active_segment, read_all};

const PARTITIONS: u32 = 3;

#[derive(Debug, Clone)]
enum Op {
    Append {
        partition: u32,
        records: Vec<Vec<u8>>,
    },
    Reopen {
        crash: Option<Crash>,
    },
}

/// A write that was in flight when the process died: some frames (never
/// acknowledged) plus maybe garbage, then an arbitrary amount of that tail
/// lost.
#[derive(Debug, Clone)]
struct Crash {
    partition: u32,
    in_flight: Vec<Vec<u8>>,
    garbage: Vec<u8>,
    /// A byte of the tail that reached the disk damaged.
    flip: Option<(Index, u8)>,
    keep: Index,
}

fn payloads(max_records: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 0..max_records)
}

fn op() -> impl Strategy<Value = Op> {
    let crash = (
        0..PARTITIONS,
        payloads(4),
        prop::collection::vec(any::<u8>(), 0..24),
        prop::option::weighted(0.3, (any::<Index>(), 1..=255u8)),
        any::<Index>(),
    )
        .prop_map(|(partition, in_flight, garbage, flip, keep)| Crash {
            partition,
            in_flight,
            garbage,
            flip,
            keep,
        });
    prop_oneof![
        6 => (0..PARTITIONS, payloads(6))
            .prop_map(|(partition, records)| Op::Append { partition, records }),
        1 => Just(Op::Reopen { crash: None }),
        2 => crash.prop_map(|c| Op::Reopen { crash: Some(c) }),
    ]
}

fn open(dir: &Path, segment_bytes: u64) -> std::sync::Arc<EmbeddedLog> {
    let config = EmbeddedLogConfig {
        partitions: PARTITIONS,
        segment_bytes,
        consumers: Vec::new(),
        // Crashes are simulated by editing files after a clean close, so
        // fsync adds nothing here but time.
        fsync: false,
    };
    EmbeddedLog::open(dir, config).expect("open")
}

/// Appends the in-flight frames to the closed log's active segment, then
/// keeps only part of them. Acknowledged bytes are never touched.
fn simulate_crash(dir: &Path, crash: &Crash, next_offset: u64) {
    let segment = active_segment(dir, crash.partition);
    let mut tail = Vec::new();
    for (i, payload) in crash.in_flight.iter().enumerate() {
        encode_frame(&mut tail, next_offset + i as u64, payload).expect("encode");
    }
    tail.extend_from_slice(&crash.garbage);
    if let Some((at, mask)) = crash.flip
        && !tail.is_empty()
    {
        let at = at.index(tail.len());
        tail[at] ^= mask;
    }
    let keep = crash.keep.index(tail.len() + 1);
    let mut file = OpenOptions::new()
        .append(true)
        .open(&segment)
        .expect("open segment");
    file.write_all(&tail[..keep]).expect("write tail");
}

async fn check(log: &EmbeddedLog, model: &[Vec<Bytes>]) -> Result<(), TestCaseError> {
    for partition in 0..PARTITIONS {
        let expected = &model[partition as usize];
        prop_assert_eq!(log.end_offset(partition).unwrap(), expected.len() as u64);
        let entries = read_all(log, partition, 300).await;
        prop_assert_eq!(entries.len(), expected.len());
        for (i, entry) in entries.iter().enumerate() {
            prop_assert_eq!(entry.offset, i as u64);
            prop_assert_eq!(&entry.payload, &expected[i]);
        }
    }
    Ok(())
}

async fn run(ops: Vec<Op>, segment_bytes: u64) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), segment_bytes);
    let mut model: Vec<Vec<Bytes>> = vec![Vec::new(); PARTITIONS as usize];
    for op in ops {
        match op {
            Op::Append { partition, records } => {
                let records: Vec<Bytes> = records.into_iter().map(Bytes::from).collect();
                let acked = &mut model[partition as usize];
                let range = log.append(partition, records.clone()).await.unwrap();
                prop_assert_eq!(
                    range,
                    acked.len() as u64..(acked.len() + records.len()) as u64
                );
                acked.extend(records);
            }
            Op::Reopen { crash } => {
                log.close();
                drop(log);
                if let Some(crash) = &crash {
                    let acked = model[crash.partition as usize].len() as u64;
                    simulate_crash(dir.path(), crash, acked);
                }
                log = open(dir.path(), segment_bytes);
                if let Some(crash) = &crash {
                    // Complete in-flight frames may legitimately survive; they
                    // are now part of the log, right after the acked records.
                    let acked = &mut model[crash.partition as usize];
                    let end = log.end_offset(crash.partition).unwrap();
                    prop_assert!(end >= acked.len() as u64);
                    let survived = (end - acked.len() as u64) as usize;
                    prop_assert!(survived <= crash.in_flight.len());
                    acked.extend(
                        crash.in_flight[..survived]
                            .iter()
                            .map(|p| Bytes::from(p.clone())),
                    );
                }
                check(&log, &model).await?;
            }
        }
    }
    check(&log, &model).await
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn acknowledged_records_survive_reopens_and_torn_tails(
        ops in prop::collection::vec(op(), 1..40),
        segment_bytes in prop_oneof![Just(64u64), Just(300), Just(1 << 20)],
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(ops, segment_bytes))?;
    }
}
