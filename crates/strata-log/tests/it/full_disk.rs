//! A full disk under the log: appends are refused with `DiskFull` (a
//! condition that passes), what was acknowledged stays readable, and the
//! writer takes appends again once space is freed, also across segment
//! rolls. Runs on the small tmpfs `scripts/test` names in
//! `STRATA_TEST_SMALL_DISK`.

use std::io::Write;
use std::path::{Path, PathBuf};

use strata_log::{EmbeddedLog, Log, LogError};

use crate::{config, payload, read_all};

fn small_disk() -> Option<(PathBuf, std::fs::File)> {
    let Some(dir) = std::env::var_os("STRATA_TEST_SMALL_DISK") else {
        eprintln!("STRATA_TEST_SMALL_DISK is not set: skipped (scripts/test mounts one)");
        return None;
    };
    let dir = PathBuf::from(dir);
    // The tests that fill the disk take turns.
    let lock = std::fs::File::create(dir.join(".lock")).unwrap();
    lock.lock().unwrap();
    Some((dir, lock))
}

fn fill(disk: &Path) -> PathBuf {
    let path = disk.join("ballast");
    let mut file = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let bytes = vec![0u8; chunk];
        while file.write_all(&bytes).is_ok() {}
    }
    path
}

#[tokio::test]
async fn a_full_disk_refuses_appends_until_space_frees_across_segment_rolls() {
    let Some((disk, _lock)) = small_disk() else {
        return;
    };
    let dir = tempfile::tempdir_in(&disk).unwrap();
    // Segments of 20 KB: the appends below roll several of them.
    let log = EmbeddedLog::open(dir.path().join("log"), config(1, 20_000)).unwrap();
    let first: Vec<_> = (0..3).map(|i| payload(i, 6000)).collect();
    assert_eq!(log.append(0, first).await.unwrap(), 0..3);

    let ballast = fill(&disk);
    for attempt in 0..3 {
        // 60 KB: more pages than are left, and a roll in the middle.
        let refused: Vec<_> = (0..10).map(|i| payload(100 + i, 6000)).collect();
        match log.append(0, refused).await {
            Err(e @ LogError::DiskFull { .. }) => {
                assert!(e.is_disk_full());
                assert!(e.to_string().contains("disk is full"), "{e}");
            }
            Ok(range) => panic!("attempt {attempt}: acknowledged {range:?} on a full disk"),
            Err(other) => panic!("attempt {attempt}: {other}"),
        }
    }
    assert_eq!(log.end_offset(0).unwrap(), 3);

    std::fs::remove_file(&ballast).unwrap();
    let after: Vec<_> = (0..10).map(|i| payload(200 + i, 6000)).collect();
    assert_eq!(log.append(0, after).await.unwrap(), 3..13);
    let read: Vec<_> = read_all(log.as_ref(), 0, 1 << 20).await;
    let offsets: Vec<u64> = read.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, (0..13).collect::<Vec<_>>());
    assert_eq!(read[0].payload, payload(0, 6000));
    assert_eq!(read[3].payload, payload(200, 6000));
    assert_eq!(read[12].payload, payload(209, 6000));
    log.close();

    // Reopened, the segments hold exactly the acknowledged records.
    let log = EmbeddedLog::open(dir.path().join("log"), config(1, 20_000)).unwrap();
    assert_eq!(log.end_offset(0).unwrap(), 13);
    let read = read_all(log.as_ref(), 0, 1 << 20).await;
    assert_eq!(read.len(), 13);
    assert_eq!(read[3].payload, payload(200, 6000));
}
