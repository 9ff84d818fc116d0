use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_log::{EmbeddedLog, EmbeddedLogConfig, Log, LogError, partition_for_key};

use crate::{config, payload, read_all, segment_files};

#[tokio::test]
async fn append_then_read_back_with_contiguous_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), config(3, 1 << 20)).unwrap();
    let mut expected: Vec<Vec<Bytes>> = vec![Vec::new(); 3];
    for i in 0..30u64 {
        let partition = (i % 3) as u32;
        let records: Vec<Bytes> = (0..(i % 4)).map(|j| payload(i * 10 + j, 20)).collect();
        let end_before = log.end_offset(partition).unwrap();
        let range = log.append(partition, records.clone()).await.unwrap();
        assert_eq!(range, end_before..end_before + records.len() as u64);
        assert_eq!(log.end_offset(partition).unwrap(), range.end);
        expected[partition as usize].extend(records);
    }
    for partition in 0..3 {
        let entries = read_all(log.as_ref(), partition, 1 << 20).await;
        let payloads: Vec<Bytes> = entries.iter().map(|e| e.payload.clone()).collect();
        assert_eq!(payloads, expected[partition as usize]);
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(entry.offset, i as u64);
            assert_eq!(entry.partition, partition);
        }
    }
}

#[tokio::test]
async fn empty_append_resolves_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), config(1, 1 << 20)).unwrap();
    log.append(0, vec![payload(0, 3), payload(1, 3)])
        .await
        .unwrap();
    assert_eq!(log.append(0, Vec::new()).await.unwrap(), 2..2);
    assert_eq!(log.append(0, vec![Bytes::new()]).await.unwrap(), 2..3);
    let entries = read_all(log.as_ref(), 0, 100).await;
    assert_eq!(entries.len(), 3);
    assert!(entries[2].payload.is_empty());
}

#[tokio::test]
async fn reads_respect_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), config(1, 1 << 20)).unwrap();
    let records: Vec<Bytes> = (0..10).map(|i| payload(i, 100)).collect();
    log.append(0, records).await.unwrap();

    let got = log.read(0, 0, 250).await.unwrap();
    assert_eq!(got.iter().map(|e| e.offset).collect::<Vec<_>>(), [0, 1]);
    // Always at least one record, even when it alone exceeds the budget.
    let got = log.read(0, 3, 0).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].offset, 3);
    assert_eq!(got[0].payload, payload(3, 100));
    assert_eq!(log.read(0, 0, 1000).await.unwrap().len(), 10);
    assert_eq!(log.read(0, 0, usize::MAX).await.unwrap().len(), 10);
    // Nothing new: empty, not an error.
    assert!(log.read(0, 10, 1000).await.unwrap().is_empty());
    assert!(log.read(0, 1000, 1000).await.unwrap().is_empty());
}

#[tokio::test]
async fn reads_from_the_middle_and_across_segment_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    // 50-byte payloads make 66-byte frames: a few records per segment.
    let log = EmbeddedLog::open(dir.path(), config(1, 200)).unwrap();
    for batch in 0..5u64 {
        let records: Vec<Bytes> = (0..7).map(|i| payload(batch * 7 + i, 50)).collect();
        log.append(0, records).await.unwrap();
    }
    let segments = segment_files(dir.path(), 0);
    assert!(segments.len() > 5, "expected many segments: {segments:?}");
    let first_name = segments[0].file_name().unwrap().to_str().unwrap();
    assert_eq!(first_name, "00000000000000000000.log");

    for from in 0..35u64 {
        let got = log.read(0, from, usize::MAX).await.unwrap();
        let offsets: Vec<u64> = got.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, (from..35).collect::<Vec<_>>());
        for entry in &got {
            assert_eq!(entry.payload, payload(entry.offset, 50));
        }
        // A budget spanning a boundary still returns contiguous records.
        let got = log.read(0, from, 420).await.unwrap();
        let offsets: Vec<u64> = got.iter().map(|e| e.offset).collect();
        let expected_len = (35 - from).min(8) as usize;
        assert_eq!(
            offsets,
            (from..from + expected_len as u64).collect::<Vec<_>>()
        );
    }
}

/// Exercises the sparse index: segments much larger than the index interval,
/// read at many offsets, before and after reopening (which rebuilds the index
/// of the active segment and lazily builds that of closed segments).
#[tokio::test]
async fn reads_at_arbitrary_offsets_in_large_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1, 1 << 20);
    let total = 2500u64;
    {
        let log = EmbeddedLog::open(dir.path(), cfg.clone()).unwrap();
        for chunk in 0..(total / 100) {
            let records = (0..100).map(|i| payload(chunk * 100 + i, 1000)).collect();
            log.append(0, records).await.unwrap();
        }
        check_offsets(log.as_ref(), total).await;
    }
    assert_eq!(segment_files(dir.path(), 0).len(), 3);
    let log = EmbeddedLog::open(dir.path(), cfg).unwrap();
    check_offsets(log.as_ref(), total).await;
    check_offsets(log.as_ref(), total).await;
}

async fn check_offsets(log: &dyn Log, total: u64) {
    for from in (0..total).step_by(37).chain([total - 1]) {
        let got = log.read(0, from, 3000).await.unwrap();
        assert_eq!(got.len(), 3.min((total - from) as usize), "from {from}");
        for (i, entry) in got.iter().enumerate() {
            assert_eq!(entry.offset, from + i as u64);
            assert_eq!(entry.payload, payload(entry.offset, 1000));
        }
    }
}

#[tokio::test]
async fn unknown_partition_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), config(2, 1 << 20)).unwrap();
    assert!(matches!(
        log.append(2, vec![payload(0, 1)]).await,
        Err(LogError::UnknownPartition {
            partition: 2,
            partitions: 2
        })
    ));
    assert!(matches!(
        log.read(7, 0, 10).await,
        Err(LogError::UnknownPartition { .. })
    ));
    assert!(log.end_offset(2).is_err());
    assert!(log.start_offset(2).is_err());
}

#[test]
fn partition_count_mismatch_on_reopen_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedLog::open(dir.path(), config(4, 1 << 20)).unwrap());
    let err = EmbeddedLog::open(dir.path(), config(8, 1 << 20)).unwrap_err();
    assert!(
        matches!(
            err,
            LogError::PartitionCountMismatch {
                stored: 4,
                configured: 8,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains('4') && message.contains('8'), "{message}");
    // The original count still opens.
    EmbeddedLog::open(dir.path(), config(4, 1 << 20)).unwrap();
}

#[test]
fn invalid_config_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        config(0, 100),
        config(1, 0),
        EmbeddedLogConfig {
            consumers: vec!["a".into(), "a".into()],
            ..EmbeddedLogConfig::default()
        },
        EmbeddedLogConfig {
            consumers: vec!["line\nbreak".into()],
            ..EmbeddedLogConfig::default()
        },
    ];
    for cfg in bad {
        assert!(matches!(
            EmbeddedLog::open(dir.path(), cfg),
            Err(LogError::InvalidConfig(_))
        ));
    }
}

#[test]
fn a_directory_is_opened_by_one_instance_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), config(1, 1 << 20)).unwrap();
    assert!(matches!(
        EmbeddedLog::open(dir.path(), config(1, 1 << 20)),
        Err(LogError::Locked { .. })
    ));
    log.close();
    EmbeddedLog::open(dir.path(), config(1, 1 << 20)).unwrap();
}

#[tokio::test]
async fn subscribe_changes_after_an_append() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn Log> = EmbeddedLog::open(dir.path(), config(2, 1 << 20)).unwrap();
    let mut rx = log.subscribe();
    rx.mark_unchanged();
    let waiter = tokio::spawn(async move { rx.changed().await.is_ok() });
    log.append(1, vec![payload(0, 10)]).await.unwrap();
    let changed = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(changed);
    assert_eq!(log.end_offset(1).unwrap(), 1);
}

#[tokio::test]
async fn appends_and_reads_after_close_fail() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), config(1, 1 << 20)).unwrap();
    let pending = log.append(0, vec![payload(0, 10)]);
    log.close();
    // Accepted before close, so it still completes.
    assert_eq!(pending.await.unwrap(), 0..1);
    assert!(matches!(
        log.append(0, vec![payload(1, 10)]).await,
        Err(LogError::Closed)
    ));
    assert!(matches!(log.read(0, 0, 10).await, Err(LogError::Closed)));
    log.close();
    let log = EmbeddedLog::open(dir.path(), config(1, 1 << 20)).unwrap();
    assert_eq!(log.end_offset(0).unwrap(), 1);
}

#[test]
fn works_without_a_tokio_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), config(1, 1 << 20)).unwrap();
    let range = futures::executor::block_on(log.append(0, vec![payload(0, 5)])).unwrap();
    assert_eq!(range, 0..1);
    let got = futures::executor::block_on(log.read(0, 0, 100)).unwrap();
    assert_eq!(got[0].payload, payload(0, 5));
}

#[test]
fn partition_for_key_is_crc32_modulo_partitions() {
    // 0xCBF43926 is the standard CRC-32 check value of "123456789"; pinning
    // it keeps the key -> partition mapping stable across versions.
    for partitions in 1..20u32 {
        assert_eq!(
            partition_for_key("123456789", partitions),
            0xCBF4_3926 % partitions
        );
    }
    assert_eq!(partition_for_key("abc", 4), 0x3524_41C2 % 4);
    assert_eq!(partition_for_key("anything", 0), 0);
}
