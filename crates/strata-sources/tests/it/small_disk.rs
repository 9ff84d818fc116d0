//! A full disk under the log: the collector answers 503 and acknowledges
//! nothing it did not persist, and takes writes again once space is freed.
//! The disk is the small tmpfs that `scripts/test` mounts and names in
//! `STRATA_TEST_SMALL_DISK`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;
use strata_core::config::CollectorConfig;

use crate::harness::{Harness, json_of};

/// The small disk, locked for this test: the tests that fill it take turns.
fn small_disk() -> Option<(PathBuf, std::fs::File)> {
    let Some(dir) = std::env::var_os("STRATA_TEST_SMALL_DISK") else {
        eprintln!("STRATA_TEST_SMALL_DISK is not set: skipped (scripts/test mounts one)");
        return None;
    };
    let dir = PathBuf::from(dir);
    let lock = std::fs::File::create(dir.join(".lock")).unwrap();
    lock.lock().unwrap();
    Some((dir, lock))
}

/// Fills the disk to the last byte; the file is the space to free later.
fn fill(disk: &Path) -> PathBuf {
    let path = disk.join("ballast");
    let mut file = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let bytes = vec![0u8; chunk];
        while file.write_all(&bytes).is_ok() {}
    }
    path
}

fn batch(tag: &str, n: usize) -> Vec<u8> {
    // Each message is larger than a page, so no message fits in the room
    // left in the last page of the segment file.
    let pad = "p".repeat(5000);
    let messages: Vec<_> = (0..n)
        .map(|i| json!({"type": "track", "messageId": format!("{tag}-{i}"), "userId": "u", "event": "A", "properties": {"pad": pad}}))
        .collect();
    serde_json::to_vec(&json!({ "batch": messages })).unwrap()
}

#[tokio::test]
async fn a_full_disk_is_503_and_the_collector_resumes_when_space_frees() {
    let Some((disk, _lock)) = small_disk() else {
        return;
    };
    let dir = tempfile::tempdir_in(&disk).unwrap();
    // One partition: a refused request then provably left nothing behind.
    let h = Harness::in_dir(dir, 1, CollectorConfig::default()).await;
    let (status, _) = h.send("/v1/batch", batch("before", 3)).await;
    assert_eq!(status, 200);

    let ballast = fill(&disk);
    let refused = h
        .post_auth("/v1/batch")
        .body(batch("full", 4))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let (status, said) = json_of(refused).await;
    assert_eq!(status, 503, "{said}");
    assert_eq!(said["error"], "disk_full");

    std::fs::remove_file(&ballast).unwrap();
    let (status, said) = h.send("/v1/batch", batch("after", 2)).await;
    assert_eq!(
        (status, said["accepted"].as_u64()),
        (200, Some(2)),
        "{said}"
    );

    // The log holds exactly what was acknowledged, in order, each once, and
    // reads back whole: the refused request's partial write was cut off.
    let ids: Vec<String> = h.events().await.into_iter().map(|e| e.event_id).collect();
    assert_eq!(
        ids,
        ["before-0", "before-1", "before-2", "after-0", "after-1"]
    );
}
