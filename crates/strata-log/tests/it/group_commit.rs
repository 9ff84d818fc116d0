use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use strata_log::{EmbeddedLog, Log};
use tokio::sync::Barrier;

use crate::{config, payload, read_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), config(1, 64 << 20)).unwrap();
    assert!(log.config().fsync);
    const APPENDS: u64 = 200;
    let barrier = Arc::new(Barrier::new(APPENDS as usize));
    let tasks: Vec<_> = (0..APPENDS)
        .map(|i| {
            let log = log.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let range = log.append(0, vec![payload(i, 50)]).await.unwrap();
                (i, range)
            })
        })
        .collect();
    let mut by_offset = BTreeMap::new();
    for task in tasks {
        let (i, range) = task.await.unwrap();
        assert_eq!(range.end - range.start, 1);
        assert!(by_offset.insert(range.start, i).is_none(), "offset reused");
    }
    assert_eq!(
        by_offset.keys().copied().collect::<Vec<_>>(),
        (0..APPENDS).collect::<Vec<_>>()
    );

    let fsyncs = log.fsync_count();
    eprintln!("{APPENDS} concurrent appends took {fsyncs} fsyncs");
    assert!(fsyncs >= 1);
    assert!(
        fsyncs <= APPENDS / 4,
        "{fsyncs} fsyncs for {APPENDS} appends"
    );

    // Every record sits at the offset its append was told.
    let entries = read_all(log.as_ref(), 0, 1 << 20).await;
    assert_eq!(entries.len() as u64, APPENDS);
    for entry in entries {
        assert_eq!(entry.payload, payload(by_offset[&entry.offset], 50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_appenders_records_stay_in_call_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), config(2, 4096)).unwrap();
    let tasks: Vec<_> = (0..8u64)
        .map(|task| {
            let log = log.clone();
            tokio::spawn(async move {
                for seq in 0..50u64 {
                    let partition = (task % 2) as u32;
                    let record = format!("{task}:{seq}").into_bytes();
                    log.append(partition, vec![record.into()]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut seen = HashSet::new();
    for partition in 0..2 {
        let mut last_seq: BTreeMap<String, i64> = BTreeMap::new();
        for entry in read_all(log.as_ref(), partition, 1 << 20).await {
            let text = String::from_utf8(entry.payload.to_vec()).unwrap();
            let (task, seq) = text.split_once(':').unwrap();
            let seq: i64 = seq.parse().unwrap();
            let previous = last_seq.insert(task.to_string(), seq).unwrap_or(-1);
            assert_eq!(seq, previous + 1, "task {task} out of order");
            assert!(seen.insert(text.clone()));
        }
    }
    assert_eq!(seen.len(), 400);
}
