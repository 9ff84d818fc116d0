//! `strata serve` with every role on a disk that fills up: the collector
//! answers 503 and acknowledges nothing it did not persist, the loader keeps
//! retrying its commit, and once space is freed everything acknowledged is
//! in bronze exactly once. The disk is the small tmpfs that `scripts/test`
//! mounts and names in `STRATA_TEST_SMALL_DISK`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::process::{KEY, Served, count};

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

/// Posts `n` events tagged `tag`, each larger than a page; the HTTP status.
fn post(base: &str, tag: &str, n: usize) -> String {
    let pad = "p".repeat(5000);
    let batch: Vec<_> = (0..n)
        .map(|i| serde_json::json!({"type": "track", "messageId": format!("{tag}-{i}"), "userId": format!("u{i}"), "event": "A", "properties": {"pad": pad}}))
        .collect();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-m",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            &format!("{KEY}:"),
        ])
        .args(["-H", "content-type: application/json", "-d"])
        .arg(serde_json::json!({ "batch": batch }).to_string())
        .arg(format!("{base}/v1/batch"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_full_disk_refuses_ingest_and_everything_resumes_when_space_frees() {
    let Some((disk, _lock)) = small_disk() else {
        return;
    };
    let dir = tempfile::tempdir_in(&disk).unwrap();
    let served = Served::start(dir.path());
    // Acknowledged, then the disk fills before the loader's next commit.
    assert_eq!(post(&served.base, "before", 5), "200");
    let ballast = fill(&disk);
    assert_eq!(post(&served.base, "full", 5), "503");
    // The loader's commits fail meanwhile; the server stays up.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(post(&served.base, "still-full", 2), "503");
    std::fs::remove_file(&ballast).unwrap();
    assert_eq!(post(&served.base, "after", 4), "200");

    let deadline = Instant::now() + Duration::from_secs(60);
    let sql = "select count(*) from bronze.events";
    while count(dir.path(), sql) < 9 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        served.terminate().success(),
        "a clean stop after the disk was full"
    );
    let ids = "select count(*) from bronze.events where event_id like 'before-%' or event_id like 'after-%'";
    assert_eq!(count(dir.path(), sql), 9);
    assert_eq!(count(dir.path(), ids), 9);
    let distinct = "select count(distinct event_id) from bronze.events";
    assert_eq!(count(dir.path(), distinct), 9);
}
