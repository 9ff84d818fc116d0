//! The TOML configuration of SPEC §1. Every key has a default, unknown keys are
//! errors that name the key, and `strata serve` works with no file at all.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

mod sources;

pub use sources::{CdcConfig, HTTP_KIND, SourceConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: String,
    /// Where the dashboard and `/api/*` are served instead of `listen`, so
    /// `listen` can face browsers' SDKs while analytics stay private, e.g.
    /// `"127.0.0.1:8081"`. None: both on `listen`.
    pub dashboard_listen: Option<String>,
    pub data_dir: PathBuf,
    pub admin_token: Option<String>,
    /// `Host` header values the dashboard and `/api/*` answer to, against
    /// DNS rebinding (`name` or `name:port`, `*.suffix` for subdomains).
    /// Empty: loopback names when the dashboard listens on a loopback
    /// address, else any.
    pub allowed_hosts: Vec<String>,
    pub sources: Vec<SourceConfig>,
    pub funnels: Vec<FunnelConfig>,
    pub experiments: ExperimentsConfig,
    pub cdc: CdcConfig,
    pub orchestrator: OrchestratorConfig,
    pub collector: CollectorConfig,
    pub log: LogConfig,
    pub loader: LoaderConfig,
    pub stream: StreamConfig,
    pub sql: SqlConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            dashboard_listen: None,
            data_dir: PathBuf::from("./strata-data"),
            admin_token: None,
            allowed_hosts: Vec::new(),
            sources: Vec::new(),
            funnels: Vec::new(),
            experiments: ExperimentsConfig::default(),
            cdc: CdcConfig::default(),
            orchestrator: OrchestratorConfig::default(),
            collector: CollectorConfig::default(),
            log: LogConfig::default(),
            loader: LoaderConfig::default(),
            stream: StreamConfig::default(),
            sql: SqlConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FunnelConfig {
    pub name: String,
    pub steps: Vec<String>,
    #[serde(default = "default_funnel_window", deserialize_with = "de_duration")]
    pub window: Duration,
}

fn default_funnel_window() -> Duration {
    Duration::from_secs(24 * 3600)
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentsConfig {
    pub conversion_event: String,
    #[serde(deserialize_with = "de_duration")]
    pub conversion_window: Duration,
}

impl Default for ExperimentsConfig {
    fn default() -> Self {
        Self {
            conversion_event: "Order Completed".into(),
            conversion_window: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The scheduler (`strata serve`, role `scheduler`) and its run store.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorConfig {
    /// PostgreSQL shared by several schedulers; default a SQLite file in
    /// the data dir.
    pub database_url: Option<String>,
    /// How often newly landed bronze rows are looked for and the partitions
    /// they make dirty are queued.
    #[serde(deserialize_with = "de_duration")]
    pub dirty_check_interval: Duration,
    /// Cron expression (with seconds, UTC) for the hourly models.
    pub hourly_schedule: String,
    /// Cron expression (with seconds, UTC) for the daily models.
    pub daily_schedule: String,
    /// How long after a scheduled time the run waits for stragglers.
    #[serde(deserialize_with = "de_duration")]
    pub straggler_delay: Duration,
    /// Attempts of a run before it fails for good.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each attempt, with jitter.
    #[serde(deserialize_with = "de_duration")]
    pub retry_delay: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub max_retry_delay: Duration,
    /// A run taking longer is stopped and counted as a failed attempt.
    #[serde(deserialize_with = "de_duration")]
    pub run_timeout: Duration,
    /// Per-model overrides of `run_timeout`, e.g. `"gold.dim_users" = "10m"`.
    #[serde(deserialize_with = "de_duration_map")]
    pub timeouts: BTreeMap<String, Duration>,
    /// A running run whose worker has not renewed it for this long is
    /// taken to be abandoned and queued again.
    #[serde(deserialize_with = "de_duration")]
    pub lease: Duration,
    /// How often an idle scheduler looks for work.
    #[serde(deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    /// Partitions one worker builds at the same time.
    pub parallel: usize,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            dirty_check_interval: Duration::from_secs(300),
            hourly_schedule: "0 0 * * * *".into(),
            daily_schedule: "0 0 0 * * *".into(),
            straggler_delay: Duration::from_secs(600),
            max_attempts: 3,
            retry_delay: Duration::from_secs(30),
            max_retry_delay: Duration::from_secs(900),
            run_timeout: Duration::from_secs(3600),
            timeouts: BTreeMap::new(),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            parallel: 2,
        }
    }
}

/// Limits of the HTTP collector (SPEC §2 defaults).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    pub max_message_bytes: usize,
    pub max_request_bytes: usize,
    /// Requests being parsed or waiting for fsync at once; beyond it the
    /// collector answers 503 so memory stays bounded (at most this many
    /// request bodies of `max_request_bytes`).
    pub max_inflight_requests: usize,
    /// A client that has not sent its whole request head by then is
    /// disconnected, so slow clients cannot hold connections open.
    #[serde(deserialize_with = "de_duration")]
    pub header_read_timeout: Duration,
    /// A client that has not sent its whole body by then gets `408` and
    /// gives its admission permit back.
    #[serde(deserialize_with = "de_duration")]
    pub body_read_timeout: Duration,
    /// Events older than this (by `event_ts`, against `received_at`) are
    /// quarantined as `event_ts_too_old`: one event from year 0 would
    /// otherwise make every daily model build one partition per day since.
    #[serde(deserialize_with = "de_duration")]
    pub max_event_age: Duration,
    /// A track `event` longer than this (UTF-8 bytes) is quarantined as
    /// `event_name_too_long`.
    pub max_event_name_bytes: usize,
    /// A `/v1/batch` with more items is refused whole (`413
    /// too_many_items`, its body quarantined once): a 500 KB body of `1`s
    /// would otherwise be a quarter of a million quarantine rows.
    pub max_batch_items: usize,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 32 * 1024,
            max_request_bytes: 500 * 1024,
            max_inflight_requests: 512,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_event_age: Duration::from_secs(1826 * 24 * 3600),
            max_event_name_bytes: crate::normalize::DEFAULT_MAX_EVENT_NAME_BYTES,
            max_batch_items: 2_000,
        }
    }
}

/// Limits on `strata sql` and `POST /api/sql`, so one runaway query cannot
/// take the server's memory or all of its cores.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SqlConfig {
    /// A query running longer is cancelled with an error.
    #[serde(deserialize_with = "de_duration")]
    pub statement_timeout: Duration,
    /// Memory one query may hold for sorts, joins and aggregations, e.g.
    /// `"512MiB"`; beyond it the query fails with an error naming the limit.
    #[serde(deserialize_with = "de_bytes")]
    pub max_query_memory: usize,
    /// Queries running at once; more are answered `503` with `Retry-After`.
    pub max_concurrent_queries: usize,
    /// Longest statement text accepted, e.g. `"256KiB"`.
    #[serde(deserialize_with = "de_bytes")]
    pub max_query_bytes: usize,
    /// Deepest nesting of expressions accepted; an operator chain such as
    /// `a + b + c` nests one level per operator.
    pub max_expression_depth: usize,
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            statement_timeout: Duration::from_secs(30),
            max_query_memory: 512 * 1024 * 1024,
            max_concurrent_queries: 4,
            max_query_bytes: 256 * 1024,
            max_expression_depth: 1_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub partitions: u32,
    pub segment_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            partitions: 4,
            segment_bytes: 64 * 1024 * 1024,
        }
    }
}

/// How the bronze loader cuts micro-batches.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoaderConfig {
    #[serde(deserialize_with = "de_duration")]
    pub flush_interval: Duration,
    pub max_batch_records: usize,
    /// ... or this many bytes of log records, whichever comes first: what
    /// bounds the loader's memory whatever the size of the events.
    #[serde(deserialize_with = "de_bytes")]
    pub max_batch_bytes: usize,
    /// Compact the small files of recent partitions after this many commits.
    pub optimize_every_commits: u64,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(2),
            max_batch_records: 100_000,
            max_batch_bytes: 24 * 1024 * 1024,
            optimize_every_commits: 50,
        }
    }
}

/// The realtime path (SPEC §5): event-time windows of one minute.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// How long a window keeps taking events after the watermark passed
    /// its end.
    #[serde(deserialize_with = "de_duration")]
    pub allowed_lateness: Duration,
    /// The watermark trails the newest event time by this much.
    #[serde(deserialize_with = "de_duration")]
    pub out_of_orderness: Duration,
    /// How long an `event_id` is remembered (in received time) to drop
    /// its retries; at least `allowed_lateness`.
    #[serde(deserialize_with = "de_duration")]
    pub dedup_ttl: Duration,
    /// How often operator state, log positions and the realtime table are
    /// committed together.
    #[serde(deserialize_with = "de_duration")]
    pub checkpoint_interval: Duration,
    /// A partition with no new records for this long stops holding the
    /// watermark back.
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
    /// Bound on windows held open at once; events beyond it are counted as
    /// dropped by the realtime path (the batch path still has them).
    pub max_open_windows: usize,
    /// Bound on the memory of windows and of the closed minutes kept for
    /// the dashboard, e.g. `"64MiB"`: a flood of distinct event names
    /// cannot grow it, events that would open a window beyond it are
    /// counted as dropped like those beyond `max_open_windows`.
    #[serde(deserialize_with = "de_bytes")]
    pub max_window_state_bytes: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            allowed_lateness: Duration::from_secs(600),
            out_of_orderness: Duration::from_secs(5),
            dedup_ttl: Duration::from_secs(3600),
            checkpoint_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            max_open_windows: 100_000,
            max_window_state_bytes: 64 * 1024 * 1024,
        }
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn de_duration_map<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, Duration>, D::Error> {
    BTreeMap::<String, String>::deserialize(d)?
        .into_iter()
        .map(|(k, v)| Ok((k, parse_duration(&v).map_err(serde::de::Error::custom)?)))
        .collect()
}

fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(usize),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(text) => parse_bytes(&text).map_err(serde::de::Error::custom),
    }
}

/// Parses sizes such as `"512MiB"`, `"2GB"`, `"64k"` or `"1000"` (bytes).
pub fn parse_bytes(text: &str) -> std::result::Result<usize, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: usize = digits.parse().map_err(|_| {
        format!("invalid size {text:?}: expected a number of bytes such as \"512MiB\"")
    })?;
    let multiplier: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1 << 20,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        other => return Err(format!("invalid size {text:?}: unknown unit {other:?}")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

/// Parses durations such as `"24h"`, `"7d"`, `"5m"`, `"90s"`.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

impl Config {
    /// Loads the file if one is given (else defaults), then applies the
    /// environment (`STRATA_ADMIN_TOKEN`) and validates.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::from_toml(&text).map_err(|e| match e {
                    Error::ConfigParse { message, .. } => Error::ConfigParse {
                        path: path.to_path_buf(),
                        message,
                    },
                    other => other,
                })?
            }
            None => Self::default(),
        };
        if config.admin_token.is_none() {
            config.admin_token = std::env::var("STRATA_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty());
        }
        Ok(config)
    }

    /// The address the dashboard and `/api/*` are served on.
    pub fn dashboard_address(&self) -> &str {
        self.dashboard_listen.as_deref().unwrap_or(&self.listen)
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| Error::ConfigParse {
            path: PathBuf::from("<inline>"),
            message: e.message().to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let mut names = HashSet::new();
        let mut keys = HashSet::new();
        for source in &self.sources {
            if source.name.is_empty() {
                return Err(Error::ConfigInvalid(
                    "every [[sources]] entry needs a non-empty name".into(),
                ));
            }
            if !names.insert(&source.name) {
                return Err(Error::ConfigInvalid(format!(
                    "source name {:?} is used twice",
                    source.name
                )));
            }
            if !source.is_http() {
                continue;
            }
            let key = match source.options.get("write_key") {
                Some(toml::Value::String(key)) if !key.is_empty() => key,
                _ => {
                    return Err(Error::ConfigInvalid(format!(
                        "source {:?}: an http source needs a non-empty string write_key",
                        source.name
                    )));
                }
            };
            if !keys.insert(key) {
                return Err(Error::ConfigInvalid(format!(
                    "source {:?} reuses another source's write_key",
                    source.name
                )));
            }
        }
        for funnel in &self.funnels {
            if funnel.steps.len() < 2 {
                return Err(Error::ConfigInvalid(format!(
                    "funnel {:?} needs at least two steps",
                    funnel.name
                )));
            }
        }
        if self.log.partitions == 0 || self.log.partitions > 1024 {
            return Err(Error::ConfigInvalid(
                "log.partitions must be between 1 and 1024".into(),
            ));
        }
        if self.collector.max_message_bytes > self.collector.max_request_bytes {
            return Err(Error::ConfigInvalid(
                "collector.max_message_bytes must not exceed collector.max_request_bytes".into(),
            ));
        }
        let c = &self.collector;
        if c.header_read_timeout.is_zero()
            || c.body_read_timeout.is_zero()
            || c.max_event_age.is_zero()
        {
            return Err(Error::ConfigInvalid(
                "collector.header_read_timeout, body_read_timeout and max_event_age must be greater than zero".into(),
            ));
        }
        if c.max_event_name_bytes == 0 || c.max_batch_items == 0 {
            return Err(Error::ConfigInvalid(
                "collector.max_event_name_bytes and max_batch_items must be at least 1".into(),
            ));
        }
        let q = &self.sql;
        if q.statement_timeout.is_zero()
            || q.max_concurrent_queries == 0
            || q.max_query_memory < 1 << 20
        {
            return Err(Error::ConfigInvalid(
                "sql.statement_timeout and max_concurrent_queries must be above zero and sql.max_query_memory at least 1MiB".into(),
            ));
        }
        if self.stream.dedup_ttl < self.stream.allowed_lateness {
            return Err(Error::ConfigInvalid(
                "stream.dedup_ttl must be at least stream.allowed_lateness".into(),
            ));
        }
        let o = &self.orchestrator;
        if o.max_attempts == 0 || o.parallel == 0 {
            return Err(Error::ConfigInvalid(
                "orchestrator.max_attempts and orchestrator.parallel must be at least 1".into(),
            ));
        }
        if o.lease < Duration::from_secs(1) || o.dirty_check_interval.is_zero() {
            return Err(Error::ConfigInvalid(
                "orchestrator.lease must be at least 1s and dirty_check_interval above zero".into(),
            ));
        }
        if self.stream.checkpoint_interval.is_zero() {
            return Err(Error::ConfigInvalid(
                "stream.checkpoint_interval must be greater than zero".into(),
            ));
        }
        Ok(())
    }

    /// The funnels to compute: the configured ones, else the SPEC's default.
    pub fn effective_funnels(&self) -> Vec<FunnelConfig> {
        if !self.funnels.is_empty() {
            return self.funnels.clone();
        }
        vec![FunnelConfig {
            name: "checkout".into(),
            steps: [
                "Product Viewed",
                "Product Added",
                "Checkout Started",
                "Order Completed",
            ]
            .map(String::from)
            .to_vec(),
            window: default_funnel_window(),
        }]
    }

    pub fn lake_dir(&self) -> PathBuf {
        self.data_dir.join("lake")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("log")
    }

    pub fn stream_dir(&self) -> PathBuf {
        self.data_dir.join("stream")
    }
}
