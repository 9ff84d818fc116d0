//! Torn tails: what a crash in the middle of an unacknowledged write leaves.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use strata_log::{EmbeddedLog, FRAME_HEADER_LEN, Log, LogError, encode_frame};

use crate::{active_segment, config, payload, read_all, segment_files};

const PAYLOAD_LEN: usize = 100;
const FRAME_LEN: u64 = (FRAME_HEADER_LEN + PAYLOAD_LEN) as u64;

/// Writes five records to partition 0 and closes the log.
async fn five_records(dir: &Path) {
    let log = EmbeddedLog::open(dir, config(2, 1 << 20)).unwrap();
    let records: Vec<Bytes> = (0..5).map(|i| payload(i, PAYLOAD_LEN)).collect();
    assert_eq!(log.append(0, records).await.unwrap(), 0..5);
    log.close();
}

/// Reopens and checks that exactly `intact` records survived and that new
/// appends continue right after them.
async fn assert_recovers_to(dir: &Path, intact: u64) {
    let log = EmbeddedLog::open(dir, config(2, 1 << 20)).unwrap();
    assert_eq!(log.end_offset(0).unwrap(), intact);
    let entries = read_all(log.as_ref(), 0, usize::MAX).await;
    assert_eq!(entries.len() as u64, intact);
    for entry in &entries {
        assert_eq!(entry.payload, payload(entry.offset, PAYLOAD_LEN));
    }
    let range = log.append(0, vec![payload(99, 7)]).await.unwrap();
    assert_eq!(range, intact..intact + 1);
    log.close();

    // The new record is durable and follows the intact prefix.
    let log = EmbeddedLog::open(dir, config(2, 1 << 20)).unwrap();
    let entries = read_all(log.as_ref(), 0, usize::MAX).await;
    assert_eq!(entries.len() as u64, intact + 1);
    assert_eq!(entries[intact as usize].payload, payload(99, 7));
    assert_eq!(entries[intact as usize].offset, intact);
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[tokio::test]
async fn garbage_after_the_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    five_records(dir.path()).await;
    let segment = active_segment(dir.path(), 0);
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[0xAB; 37]).unwrap();
    drop(file);
    assert_recovers_to(dir.path(), 5).await;
    assert_eq!(file_len(&segment), 5 * FRAME_LEN + 16 + 7);
}

#[tokio::test]
async fn a_last_record_chopped_in_half_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    five_records(dir.path()).await;
    let segment = active_segment(dir.path(), 0);
    let file = OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len(5 * FRAME_LEN - FRAME_LEN / 2).unwrap();
    drop(file);
    assert_recovers_to(dir.path(), 4).await;
}

#[tokio::test]
async fn a_partial_header_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    five_records(dir.path()).await;
    let segment = active_segment(dir.path(), 0);
    let file = OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len(4 * FRAME_LEN + 5).unwrap();
    drop(file);
    assert_recovers_to(dir.path(), 4).await;
}

#[tokio::test]
async fn a_flipped_payload_byte_in_the_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    five_records(dir.path()).await;
    let segment = active_segment(dir.path(), 0);
    let mut bytes = std::fs::read(&segment).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&segment, bytes).unwrap();
    assert_recovers_to(dir.path(), 4).await;
}

#[tokio::test]
async fn a_valid_frame_with_the_wrong_offset_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    five_records(dir.path()).await;
    let segment = active_segment(dir.path(), 0);
    // Checksums fine, but it claims offset 3 where 5 is due.
    let mut frame = Vec::new();
    encode_frame(&mut frame, 3, b"stale").unwrap();
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&frame).unwrap();
    drop(file);
    assert_recovers_to(dir.path(), 5).await;
}

#[tokio::test]
async fn a_complete_unacknowledged_frame_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    five_records(dir.path()).await;
    let segment = active_segment(dir.path(), 0);
    // The write reached the disk but the crash beat the acknowledgement.
    let mut frames = Vec::new();
    encode_frame(&mut frames, 5, &payload(5, PAYLOAD_LEN)).unwrap();
    encode_frame(&mut frames, 6, &payload(6, PAYLOAD_LEN)).unwrap();
    frames.truncate(frames.len() - 1);
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&frames).unwrap();
    drop(file);
    assert_recovers_to(dir.path(), 6).await;
}

#[tokio::test]
async fn an_empty_active_segment_recovers() {
    let dir = tempfile::tempdir().unwrap();
    five_records(dir.path()).await;
    let segment = active_segment(dir.path(), 0);
    std::fs::write(&segment, b"").unwrap();
    assert_recovers_to(dir.path(), 0).await;
}

#[tokio::test]
async fn corruption_in_a_closed_segment_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(dir.path(), config(1, 300)).unwrap();
        let records: Vec<Bytes> = (0..20).map(|i| payload(i, PAYLOAD_LEN)).collect();
        log.append(0, records).await.unwrap();
    }
    let segments = segment_files(dir.path(), 0);
    assert!(segments.len() >= 3);
    // Flip a payload byte of the second record of the first segment.
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    bytes[FRAME_LEN as usize + FRAME_HEADER_LEN + 3] ^= 0x40;
    std::fs::write(&segments[0], bytes).unwrap();

    let log = EmbeddedLog::open(dir.path(), config(1, 300)).unwrap();
    // The record before the damage still reads (its budget stops early)...
    let got = log.read(0, 0, 1).await.unwrap();
    assert_eq!(got.len(), 1);
    // ...the damaged one is reported, not returned or panicked on.
    let err = log.read(0, 1, usize::MAX).await.unwrap_err();
    assert!(matches!(err, LogError::Corrupt { .. }), "{err:?}");
    // Later segments are unaffected.
    let got = log.read(0, 10, usize::MAX).await.unwrap();
    assert_eq!(got.len(), 10);

    // A closed segment that lost its tail is reported too.
    let file = OpenOptions::new().write(true).open(&segments[1]).unwrap();
    file.set_len(FRAME_LEN + 3).unwrap();
    drop(file);
    let first_of_second = segment_files(dir.path(), 0)[1]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap();
    let err = log
        .read(0, first_of_second + 1, usize::MAX)
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::Corrupt { .. }), "{err:?}");
}
