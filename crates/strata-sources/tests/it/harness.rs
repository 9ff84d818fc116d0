use std::sync::Arc;

use strata_core::config::{CollectorConfig, SourceConfig};
use strata_core::event::LogRecord;
use strata_log::{EmbeddedLog, EmbeddedLogConfig, Log};
use strata_sources::Collector;

pub const KEY: &str = "wk_test";

pub struct Harness {
    pub base: String,
    /// `host:port` of the listener, for raw TCP clients.
    pub addr: String,
    pub log: Arc<EmbeddedLog>,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Self {
        Self::with_limits(CollectorConfig::default()).await
    }

    pub async fn with_limits(limits: CollectorConfig) -> Self {
        Self::in_dir(tempfile::tempdir().unwrap(), 3, limits).await
    }

    /// A collector whose log of `partitions` lives in `dir`.
    pub async fn in_dir(dir: tempfile::TempDir, partitions: u32, limits: CollectorConfig) -> Self {
        let log = EmbeddedLog::open(
            dir.path().join("log"),
            EmbeddedLogConfig {
                partitions,
                ..EmbeddedLogConfig::default()
            },
        )
        .unwrap();
        let sources = vec![SourceConfig::http("web", KEY)];
        let header_read_timeout = limits.header_read_timeout;
        let collector = Collector::new(&sources, log.clone(), limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let app = strata_sources::http::router(collector);
            strata_sources::http::serve(listener, app, header_read_timeout, std::future::pending())
                .await
                .unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            addr: addr.to_string(),
            log,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
    }

    pub fn post_auth(&self, path: &str) -> reqwest::RequestBuilder {
        self.post(path).basic_auth(KEY, Some(""))
    }

    /// `body` posted to `path` with the write key: the status and the JSON
    /// answer.
    pub async fn send(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        json_of(self.post_auth(path).body(body).send().await.unwrap()).await
    }

    /// As [`Self::send`], with a JSON value as the body.
    pub async fn send_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.send(path, serde_json::to_vec(body).unwrap()).await
    }

    /// Every record durable in the log, across partitions.
    pub async fn records(&self) -> Vec<LogRecord> {
        records_of(self.log.as_ref()).await
    }

    pub async fn events(&self) -> Vec<strata_core::BronzeEvent> {
        self.records()
            .await
            .into_iter()
            .filter_map(|r| match r {
                LogRecord::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    pub async fn quarantined(&self) -> Vec<strata_core::QuarantineRecord> {
        self.records()
            .await
            .into_iter()
            .filter_map(|r| match r {
                LogRecord::Quarantine(q) => Some(q),
                _ => None,
            })
            .collect()
    }
}

pub async fn json_of(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// Every record durable in `log`, partition after partition, each in log
/// order.
pub async fn records_of(log: &dyn Log) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for p in 0..log.partition_count() {
        let mut from = 0;
        loop {
            let entries = log.read(p, from, 1 << 20).await.unwrap();
            let Some(last) = entries.last() else { break };
            from = last.offset + 1;
            out.extend(
                entries
                    .iter()
                    .map(|e| LogRecord::decode(&e.payload).unwrap()),
            );
        }
    }
    out
}

/// A source running on a task of its own until told to stop (or aborted,
/// as a crash would stop it).
pub struct Running {
    pub stop: tokio::sync::watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts `source` and runs it.
    pub async fn run(mut source: Box<dyn strata_sources::Source>) -> Self {
        source.start().await.unwrap();
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move { source.run(shutdown).await.unwrap() });
        Self { stop, task }
    }

    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}
