use std::sync::Arc;

use bytes::Bytes;
use strata_core::config::LoaderConfig;
use strata_core::event::{BronzeEvent, EventType, LogRecord, QuarantineRecord, RejectReason};
use strata_lake::bronze::BronzeLoader;
use strata_lake::{Lake, SqlEngine};
use strata_log::{EmbeddedLog, EmbeddedLogConfig, Log, partition_for_key};

pub const PARTITIONS: u32 = 3;
/// 2026-03-01T12:00:00Z
pub const RECEIVED: i64 = 1_772_366_400_000_000;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub log: Arc<EmbeddedLog>,
    pub lake: Lake,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(
            dir.path().join("log"),
            EmbeddedLogConfig {
                partitions: PARTITIONS,
                consumers: vec!["bronze".into()],
                ..EmbeddedLogConfig::default()
            },
        )
        .unwrap();
        let lake = Lake::new(dir.path().join("lake"));
        Self { dir, log, lake }
    }

    pub async fn loader(&self) -> BronzeLoader {
        BronzeLoader::open(&self.lake, self.log.clone(), LoaderConfig::default())
            .await
            .unwrap()
    }

    /// Appends events `first..first+n` (ids `e{i}`) and every `reject_every`-th
    /// input as a quarantine record instead.
    pub async fn append(&self, first: usize, n: usize, reject_every: usize) {
        let mut per_partition = vec![Vec::new(); PARTITIONS as usize];
        for i in first..first + n {
            let user = format!("user-{}", i % 7);
            let record = if reject_every > 0 && i % reject_every == 0 {
                LogRecord::Quarantine(QuarantineRecord {
                    received_at: RECEIVED,
                    source: "web".into(),
                    reason: RejectReason::MissingIdentity,
                    detail: "test".into(),
                    raw: format!("{{\"i\":{i}}}"),
                })
            } else {
                LogRecord::Event(event(i, &user))
            };
            let p = partition_for_key(&user, PARTITIONS) as usize;
            per_partition[p].push(Bytes::from(record.encode()));
        }
        for (p, records) in per_partition.into_iter().enumerate() {
            if !records.is_empty() {
                self.log.append(p as u32, records).await.unwrap();
            }
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let engine = SqlEngine::open(&self.lake).await.unwrap();
        let batches = engine.query(sql).await.unwrap();
        strata_lake::columns::longs_at(&batches[0], 0)
            .unwrap()
            .value(0)
    }
}

pub fn event(i: usize, user: &str) -> BronzeEvent {
    BronzeEvent {
        event_id: format!("e{i}"),
        id_generated: false,
        event_type: EventType::Track,
        event_name: "Product Viewed".into(),
        user_id: Some(user.to_string()),
        anonymous_id: None,
        event_ts: RECEIVED - 1_000_000,
        ts_clamped: false,
        sent_at: None,
        received_at: RECEIVED,
        source: "web".into(),
        properties: Some("{\"price\":3}".into()),
        context: None,
        traits: None,
    }
}
