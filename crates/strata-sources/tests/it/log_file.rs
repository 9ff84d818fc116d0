//! Backend log files (SPEC §7): lines tailed as they are written, rotation
//! by rename and by truncation, and exactly once across crashes.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_core::config::SourceConfig;
use strata_core::event::{LogRecord, RejectReason};
use strata_lake::Lake;
use strata_log::{EmbeddedLog, EmbeddedLogConfig};

use crate::harness::{Running, records_of};
use strata_sources::{Producer, Source, SourceContext};

const SOURCE: &str = "backend";

struct Tail {
    dir: tempfile::TempDir,
    log: Arc<EmbeddedLog>,
}

impl Tail {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(
            dir.path().join("log"),
            EmbeddedLogConfig {
                partitions: 3,
                ..EmbeddedLogConfig::default()
            },
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        Self { dir, log }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("app").join("events.log")
    }

    fn source(&self) -> Box<dyn Source> {
        let mut options = toml::Table::new();
        options.insert(
            "path".into(),
            toml::Value::String(self.file().display().to_string()),
        );
        let config = SourceConfig {
            name: SOURCE.into(),
            kind: "log_file".into(),
            options,
        };
        let context = SourceContext {
            producer: Producer::new(self.log.clone()),
            lake: Lake::new(self.dir.path().join("lake")),
            state_dir: self.dir.path().join("sources").join(SOURCE),
            limits: Default::default(),
        };
        (strata_sources::log_file::KIND.build.unwrap())(&config, &context).unwrap()
    }

    async fn start(&self) -> Running {
        Running::run(self.source()).await
    }

    /// The records in the log.
    async fn records(&self) -> Vec<LogRecord> {
        records_of(self.log.as_ref()).await
    }

    /// Message ids landed, with how often each landed.
    async fn landed(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for record in self.records().await {
            if let LogRecord::Event(e) = record {
                assert_eq!(e.source, SOURCE);
                *counts.entry(e.event_id).or_insert(0) += 1;
            }
        }
        counts
    }

    async fn wait_for_events(&self, n: usize) -> BTreeMap<String, usize> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let landed = self.landed().await;
            if landed.values().sum::<usize>() >= n {
                return landed;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} events landed",
                landed.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn line(i: usize) -> String {
    format!(
        "{{\"type\":\"track\",\"messageId\":\"m{i}\",\"userId\":\"u{}\",\"event\":\"Job Ran\",\"properties\":{{\"n\":{i}}}}}\n",
        i % 7
    )
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn ids(range: std::ops::Range<usize>) -> BTreeMap<String, usize> {
    range.map(|i| (format!("m{i}"), 1)).collect()
}

#[tokio::test]
async fn lines_land_as_written_and_a_partial_line_waits_for_its_newline() {
    let t = Tail::new();
    let running = t.start().await;
    // The file appears after the source started.
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(
        &t.file(),
        &format!("{}{}\n   \nnot json\n", line(0), line(1)),
    );
    let half = line(2);
    let (head, tail) = half.split_at(30);
    append(&t.file(), head);
    assert_eq!(t.wait_for_events(2).await, ids(0..2));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(t.landed().await, ids(0..2), "the partial line must wait");
    append(&t.file(), tail);
    assert_eq!(t.wait_for_events(3).await, ids(0..3));
    running.stop().await;

    let quarantined: Vec<_> = t
        .records()
        .await
        .into_iter()
        .filter_map(|r| match r {
            LogRecord::Quarantine(q) => Some(q),
            _ => None,
        })
        .collect();
    assert_eq!(quarantined.len(), 1, "the blank line is no message");
    assert_eq!(quarantined[0].reason, RejectReason::InvalidJson);
    assert_eq!(quarantined[0].raw, "not json");
    assert_eq!(quarantined[0].source, SOURCE);
}

#[tokio::test]
async fn normalisation_is_that_of_http() {
    let t = Tail::new();
    let big = "x".repeat(40 * 1024);
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let when = hour_ago.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    append(
        &t.file(),
        &format!(
            "{}{{\"type\":\"identify\",\"anonymousId\":\"a1\",\"timestamp\":\"{when}\",\"traits\":{{\"plan\":\"pro\"}}}}\n\
             {{\"type\":\"track\",\"event\":\"No One\"}}\n\
             {{\"type\":\"track\",\"userId\":\"u\",\"event\":\"Big\",\"properties\":{{\"b\":\"{big}\"}}}}\n\
             \u{ff}\n",
            line(0)
        ),
    );
    // Not UTF-8: a byte that cannot start a character.
    let mut bad = std::fs::read(t.file()).unwrap();
    let at = bad.iter().rposition(|b| *b == 0xc3).unwrap();
    bad[at] = 0xff;
    std::fs::write(t.file(), bad).unwrap();
    let running = t.start().await;
    t.wait_for_events(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    let records = t.records().await;
    let identify = records
        .iter()
        .find_map(|r| match r {
            LogRecord::Event(e) if e.event_name == "$identify" => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(identify.anonymous_id.as_deref(), Some("a1"));
    assert_eq!(identify.event_ts, hour_ago.timestamp() * 1_000_000);
    assert!(!identify.event_id.is_empty() && identify.id_generated);
    let mut reasons: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            LogRecord::Quarantine(q) => Some(q.reason.as_str()),
            _ => None,
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["invalid_line", "message_too_large", "missing_identity"]
    );
}

#[tokio::test]
async fn rotation_by_rename_and_by_truncation_while_writing() {
    let t = Tail::new();
    let path = t.file();
    let running = t.start().await;
    for i in 0..500 {
        append(&path, &line(i));
    }
    // (A file rotated away before the source ever saw it is out of its reach.)
    t.wait_for_events(300).await;
    // Rename: the writer goes on in the old file for a moment, then opens a
    // new one under the old name.
    std::fs::rename(&path, path.with_extension("log.1")).unwrap();
    let mut old = OpenOptions::new()
        .append(true)
        .open(path.with_extension("log.1"))
        .unwrap();
    for i in 500..600 {
        old.write_all(line(i).as_bytes()).unwrap();
    }
    // The old file's last line has no newline: it is whole once rotated.
    old.write_all(line(600).trim_end().as_bytes()).unwrap();
    for i in 601..1_000 {
        append(&path, &line(i));
    }
    assert_eq!(t.wait_for_events(1_000).await, ids(0..1_000));

    // Copy-truncate, with the file growing past the old position before
    // the source looks again: its first bytes tell it is another content.
    std::fs::copy(&path, path.with_extension("log.2")).unwrap();
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let burst: String = (1_000..2_000).map(line).collect();
    append(&path, &burst);
    assert_eq!(t.wait_for_events(2_000).await, ids(0..2_000));

    // A plain truncation to nothing, then more lines.
    tokio::time::sleep(Duration::from_millis(300)).await;
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 2_000..2_100 {
        append(&path, &line(i));
    }
    assert_eq!(t.wait_for_events(2_100).await, ids(0..2_100));
    running.stop().await;
}

#[tokio::test]
async fn killed_at_any_point_no_line_is_lost_or_doubled() {
    let t = Tail::new();
    let path = t.file();
    let total = 30_000;
    let text: String = (0..total).map(line).collect();
    append(&path, &text);
    // Kill the source again and again, wherever it is: mid-append, between
    // an append and its checkpoint, mid-read.
    for round in 0..12u64 {
        let running = t.start().await;
        tokio::time::sleep(Duration::from_millis(15 + round * 23)).await;
        running.task.abort();
        let _ = running.task.await;
        // An append handed to the log before the abort still completes (a
        // crash would have settled it either way before a restart).
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A restart after the file was rotated away while Strata was down.
    std::fs::rename(&path, path.with_extension("log.1")).unwrap();
    for i in total..total + 100 {
        append(&path, &line(i));
    }
    let running = t.start().await;
    let landed = t.wait_for_events(total + 100).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    assert_eq!(t.landed().await, landed);
    let doubled: Vec<_> = landed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "landed twice: {doubled:?}");
    assert_eq!(landed, ids(0..total + 100));
}
