use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use strata_log::{EmbeddedLog, EmbeddedLogConfig, Log, LogError};

use crate::{payload, read_all, segment_files};

/// 40-byte payloads make 56-byte frames, so with 100-byte segments every
/// segment holds two records: bases 0, 2, 4, ...
fn config(consumers: &[&str]) -> EmbeddedLogConfig {
    EmbeddedLogConfig {
        partitions: 2,
        segment_bytes: 100,
        consumers: consumers.iter().map(|c| c.to_string()).collect(),
        fsync: true,
    }
}

async fn open_with_records(dir: &Path, consumers: &[&str], count: u64) -> Arc<EmbeddedLog> {
    let log = EmbeddedLog::open(dir, config(consumers)).unwrap();
    let start = log.end_offset(0).unwrap();
    for i in start..start + count {
        log.append(0, vec![payload(i, 40)]).await.unwrap();
    }
    log
}

fn segment_count(dir: &Path) -> usize {
    segment_files(dir, 0).len()
}

#[tokio::test]
async fn segments_are_deleted_only_after_every_consumer_passed_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_records(dir.path(), &["loader", "stream"], 10).await;
    assert_eq!(segment_count(dir.path()), 5);

    log.consumer_passed("loader", 0, 6).unwrap();
    assert_eq!(
        segment_count(dir.path()),
        5,
        "stream has not passed anything"
    );
    assert_eq!(log.start_offset(0).unwrap(), 0);

    log.consumer_passed("stream", 0, 3).unwrap();
    // Only the segment holding 0..2 lies wholly below both positions.
    assert_eq!(segment_count(dir.path()), 4);
    assert_eq!(log.start_offset(0).unwrap(), 2);
    let err = log.read(0, 1, 1000).await.unwrap_err();
    assert!(
        matches!(
            err,
            LogError::OffsetOutOfRange {
                partition: 0,
                requested: 1,
                earliest: 2
            }
        ),
        "{err:?}"
    );
    assert_eq!(log.read(0, 2, 1000).await.unwrap()[0].offset, 2);

    log.consumer_passed("stream", 0, 10).unwrap();
    assert_eq!(log.start_offset(0).unwrap(), 6, "loader is still at 6");

    log.consumer_passed("loader", 0, 10).unwrap();
    // Everything is consumed, but the active segment (8..10) stays.
    assert_eq!(log.start_offset(0).unwrap(), 8);
    assert_eq!(segment_count(dir.path()), 1);
    let remaining = read_all(log.as_ref(), 0, 1000).await;
    assert_eq!(
        remaining.iter().map(|e| e.offset).collect::<Vec<_>>(),
        [8, 9]
    );

    // Other partitions are untouched, and appends continue after retention.
    assert_eq!(log.start_offset(1).unwrap(), 0);
    assert_eq!(log.append(0, vec![payload(10, 40)]).await.unwrap(), 10..11);
}

#[tokio::test]
async fn positions_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open_with_records(dir.path(), &["a", "b"], 10).await;
        log.consumer_passed("a", 0, 10).unwrap();
        log.consumer_passed("b", 0, 4).unwrap();
        log.consumer_passed("b", 1, 0).unwrap();
        assert_eq!(log.start_offset(0).unwrap(), 4);
    }
    let log = EmbeddedLog::open(dir.path(), config(&["a", "b"])).unwrap();
    assert_eq!(log.consumer_position("a", 0).unwrap(), 10);
    assert_eq!(log.consumer_position("b", 0).unwrap(), 4);
    assert_eq!(log.consumer_position("b", 1).unwrap(), 0);
    assert_eq!(log.start_offset(0).unwrap(), 4);
    assert!(matches!(
        log.read(0, 0, 100).await,
        Err(LogError::OffsetOutOfRange { earliest: 4, .. })
    ));

    // Deleting up to 8 needs a's position from before the restart.
    log.consumer_passed("b", 0, 10).unwrap();
    assert_eq!(log.start_offset(0).unwrap(), 8);
    assert_eq!(segment_count(dir.path()), 1);
}

#[tokio::test]
async fn positions_only_move_forward_and_never_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_records(dir.path(), &["a", "b"], 10).await;
    log.consumer_passed("a", 0, 1_000).unwrap();
    assert_eq!(log.consumer_position("a", 0).unwrap(), 10);
    log.consumer_passed("a", 0, 5).unwrap();
    assert_eq!(log.consumer_position("a", 0).unwrap(), 10);

    // Records appended after the bogus report are still protected from a.
    for i in 10..20 {
        log.append(0, vec![payload(i, 40)]).await.unwrap();
    }
    log.consumer_passed("b", 0, 20).unwrap();
    assert_eq!(log.start_offset(0).unwrap(), 10);
    assert_eq!(read_all(log.as_ref(), 0, 1000).await.len(), 10);
}

#[tokio::test]
async fn unknown_consumers_and_partitions_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_records(dir.path(), &["a"], 4).await;
    assert!(matches!(
        log.consumer_passed("nobody", 0, 2),
        Err(LogError::UnknownConsumer(name)) if name == "nobody"
    ));
    assert!(matches!(
        log.consumer_passed("a", 9, 2),
        Err(LogError::UnknownPartition { .. })
    ));
    log.close();
    assert!(matches!(
        log.consumer_passed("a", 0, 2),
        Err(LogError::Closed)
    ));
}

#[tokio::test]
async fn without_registered_consumers_nothing_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_records(dir.path(), &[], 10).await;
    assert!(log.consumer_passed("a", 0, 10).is_err());
    assert_eq!(segment_count(dir.path()), 5);
    assert_eq!(log.start_offset(0).unwrap(), 0);
}

#[tokio::test]
async fn unregistering_a_consumer_releases_its_hold_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open_with_records(dir.path(), &["a", "b"], 10).await;
        log.consumer_passed("a", 0, 10).unwrap();
        assert_eq!(segment_count(dir.path()), 5);
    }
    let log = EmbeddedLog::open(dir.path(), config(&["a"])).unwrap();
    assert_eq!(log.start_offset(0).unwrap(), 8);
    assert_eq!(segment_count(dir.path()), 1);

    // Registering a new consumer holds back everything from then on.
    drop(log);
    let log = open_with_records(dir.path(), &["a", "c"], 6).await;
    log.consumer_passed("a", 0, 16).unwrap();
    assert_eq!(log.start_offset(0).unwrap(), 8);
    let payloads: Vec<Bytes> = read_all(log.as_ref(), 0, 1000)
        .await
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(payloads.len(), 8);
}
