use std::sync::Arc;

use bytes::Bytes;
use strata_core::config::StreamConfig;
use strata_core::event::{BronzeEvent, EventType, LogRecord};
use strata_lake::{Lake, SqlEngine};
use strata_log::{EmbeddedLog, EmbeddedLogConfig, Log};
use strata_stream::{RealtimeReport, StreamProcessor};

/// 2026-03-01T10:00:00Z
pub const T0: i64 = 1_772_359_200_000_000;
pub const SEC: i64 = 1_000_000;
pub const MIN: i64 = 60 * SEC;

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub log: Arc<EmbeddedLog>,
    pub lake: Lake,
    pub config: StreamConfig,
}

/// One event as the collector would have logged it.
pub fn event(id: &str, name: &str, person: &str, event_ts: i64, received_at: i64) -> BronzeEvent {
    BronzeEvent {
        event_id: id.into(),
        id_generated: false,
        event_type: EventType::Track,
        event_name: name.into(),
        user_id: Some(person.into()),
        anonymous_id: None,
        event_ts,
        ts_clamped: false,
        sent_at: None,
        received_at,
        source: "web".into(),
        properties: Some("{}".into()),
        context: None,
        traits: None,
    }
}

impl Rig {
    pub fn new(partitions: u32, config: StreamConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path(), partitions);
        let lake = Lake::new(dir.path().join("lake"));
        Self {
            dir,
            log,
            lake,
            config,
        }
    }

    pub async fn append(&self, partition: u32, events: &[BronzeEvent]) {
        let records = events
            .iter()
            .map(|e| Bytes::from(LogRecord::Event(e.clone()).encode()))
            .collect();
        self.log.append(partition, records).await.unwrap();
    }

    pub async fn append_raw(&self, partition: u32, payload: &[u8]) {
        self.log
            .append(partition, vec![Bytes::copy_from_slice(payload)])
            .await
            .unwrap();
    }

    pub async fn processor(&self) -> StreamProcessor {
        self.open_processor().await.unwrap()
    }

    /// Opens the processor on the rig's checkpoint dir, which may refuse.
    pub async fn open_processor(&self) -> strata_stream::Result<StreamProcessor> {
        let log: Arc<dyn Log> = self.log.clone();
        StreamProcessor::open(
            &self.config,
            &self.lake,
            log,
            self.dir.path().join("stream"),
        )
        .await
    }

    /// Steps until the log has nothing more.
    pub async fn drain(processor: &mut StreamProcessor) {
        while processor.step().await.unwrap().records > 0 {}
    }

    /// `realtime.events_minute` as (minute offset from T0 in minutes, name, events, users).
    pub async fn table(&self) -> Vec<(i64, String, i64, i64)> {
        let engine = SqlEngine::open(&self.lake).await.unwrap();
        let batches = engine
            .query(
                "select cast(minute as bigint) as m, event_name, events, users \
                 from realtime.events_minute order by m, event_name",
            )
            .await
            .unwrap();
        let mut rows = Vec::new();
        for b in batches {
            use deltalake::arrow::array::Array;
            use strata_lake::columns;
            let m = columns::longs(&b, "m").unwrap();
            let name = columns::strings(&b, "event_name").unwrap();
            let events = columns::longs(&b, "events").unwrap();
            let users = columns::longs(&b, "users").unwrap();
            for i in 0..b.num_rows() {
                assert!(!m.is_null(i));
                rows.push((
                    (m.value(i) - T0).div_euclid(MIN),
                    name.value(i).to_string(),
                    events.value(i),
                    users.value(i),
                ));
            }
        }
        rows
    }
}

pub fn open_log(dir: &std::path::Path, partitions: u32) -> Arc<EmbeddedLog> {
    EmbeddedLog::open(
        dir.join("log"),
        EmbeddedLogConfig {
            partitions,
            consumers: vec![strata_stream::CONSUMER.into()],
            fsync: false,
            ..EmbeddedLogConfig::default()
        },
    )
    .unwrap()
}

pub fn config() -> StreamConfig {
    StreamConfig::default()
}

/// The report for a wall clock inside the test's minutes.
pub fn report(processor: &StreamProcessor, minutes: u32, now: i64) -> RealtimeReport {
    processor.handle().report(minutes, now)
}
