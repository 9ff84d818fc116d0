//! PostgreSQL change data capture (SPEC §7, `kind = "postgres_cdc"`):
//! logical replication with `pgoutput` into the log, exactly once into
//! bronze.
//!
//! On first start a replication slot is created with an exported snapshot
//! and every listed table is copied through it ([`snapshot`]); then
//! transactions stream in commit order ([`replication`]). Every change
//! carries a position (commit LSN, order inside the transaction; snapshot
//! rows the slot's consistent point and their order in the snapshot) that
//! bronze stores with the data, so whatever PostgreSQL sends again after a
//! restart or a reconnect lands once. The slot is acknowledged only as far
//! as bronze holds the changes, and a restart resumes from there.
//!
//! Values: each column in its PostgreSQL text form, numbers as JSON numbers,
//! NULL as null ([`values`]). An unchanged TOASTed column is absent from an
//! update's `after` (absent = unchanged).
//!
//! Restarts: a slot with a completed snapshot of exactly the listed tables
//! (the marker in the state directory) resumes from the position bronze
//! holds. A slot without one (a snapshot cut short, or a table added to
//! `tables`) is dropped and everything snapshotted again; a slot dropped
//! behind Strata's back is recreated and snapshotted, with a warning. Either
//! way the new snapshot's rows come after everything landed before.
//!
//! Positions belong to the source's name: pointing a source at another
//! database keeps the old positions and would drop the new database's
//! changes below them, so give it a new name. `tables` entries are matched
//! as written (no case folding, no dots inside a name).

mod checks;
mod pipeline;
mod replication;
mod snapshot;
mod status;
mod values;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use pg_walstream::{
    LogicalReplicationStream, ReplicationError, ReplicationStreamConfig, RetryConfig, StreamingMode,
};
use serde::Deserialize;
use strata_core::config::SourceConfig;
use strata_core::event::{ChangePosition, format_lsn};
use strata_lake::bronze::ChangePositions;
use tokio::sync::watch;

use crate::{Error, Result, Source, SourceContext};
use checks::Catalog;
use pipeline::Pipeline;
use replication::{ACK_INTERVAL, Streaming};
use snapshot::{SnapshotJob, Snapshotted};
use status::{Pollers, poll_bronze, poll_slot};

pub use status::{SlotStatus, slot_status};

/// The keys of an `[[sources]]` entry of kind `postgres_cdc`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresCdcConfig {
    /// `postgres://user@host:port/database`.
    pub url: String,
    pub publication: String,
    /// Default `strata_<source name>`; created when missing.
    #[serde(default)]
    pub slot: Option<String>,
    /// `schema.table`; a bare name is in `public`.
    pub tables: Vec<String>,
}

pub const KIND: crate::Kind = crate::Kind {
    name: "postgres_cdc",
    check: |source| CdcConfig::from_source(source).map(|_| ()),
    build: Some(|source, context| {
        Ok(Box::new(PostgresCdc::new(source, context)?) as Box<dyn Source>)
    }),
};

/// A listed table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// The entry's keys, checked and with their defaults filled in.
#[derive(Debug, Clone)]
pub struct CdcConfig {
    pub url: String,
    pub publication: String,
    pub slot: String,
    pub tables: Vec<TableName>,
}

impl CdcConfig {
    pub fn from_source(source: &SourceConfig) -> Result<Self> {
        let raw: PostgresCdcConfig = crate::parse_options(source)?;
        let bad = |what: String| {
            Error::Config(format!(
                "source {:?} (kind {:?}): {what}",
                source.name, source.kind
            ))
        };
        if !(raw.url.starts_with("postgres://") || raw.url.starts_with("postgresql://")) {
            return Err(bad(format!(
                "`url` must be a postgres:// URL, not {:?}",
                raw.url
            )));
        }
        if raw.publication.trim().is_empty() {
            return Err(bad("`publication` is empty".into()));
        }
        let slot = match raw.slot {
            Some(slot) => {
                let valid = !slot.is_empty()
                    && slot.len() <= 63
                    && slot
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !valid {
                    return Err(bad(format!(
                        "`slot` {slot:?} is not a replication slot name (1 to 63 of a-z, 0-9 and _)"
                    )));
                }
                slot
            }
            None => default_slot(&source.name),
        };
        if raw.tables.is_empty() {
            return Err(bad(
                "`tables` is empty; list the tables to capture, e.g. [\"public.accounts\"]".into(),
            ));
        }
        let mut tables: Vec<TableName> = Vec::new();
        for entry in &raw.tables {
            let (schema, name) = entry.split_once('.').unwrap_or(("public", entry.as_str()));
            if schema.is_empty() || name.is_empty() || name.contains('.') {
                return Err(bad(format!(
                    "`tables` entry {entry:?} is not a table name (schema.table, or table in public)"
                )));
            }
            let table = TableName {
                schema: schema.to_string(),
                name: name.to_string(),
            };
            if tables.contains(&table) {
                return Err(bad(format!("`tables` lists {table} twice")));
            }
            tables.push(table);
        }
        Ok(Self {
            url: raw.url,
            publication: raw.publication,
            slot,
            tables,
        })
    }

    /// The same database over a replication connection.
    fn replication_url(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}replication=database", self.url)
    }

    fn stream_config(&self) -> ReplicationStreamConfig {
        ReplicationStreamConfig::builder(self.slot.clone(), self.publication.clone())
            .with_protocol_version(2)
            // Whole transactions at commit: their changes get the commit LSN.
            .with_streaming_mode(StreamingMode::Off)
            .with_feedback_interval(ACK_INTERVAL)
            .with_connection_timeout(Duration::from_secs(10))
            // Reconnecting is ours (with our backoff), not the library's.
            .with_retry_config(RetryConfig {
                max_attempts: 1,
                initial_delay: Duration::from_millis(100),
                max_delay: Duration::from_millis(100),
                multiplier: 2.0,
                max_duration: Duration::from_secs(10),
                jitter: false,
            })
    }
}

/// `strata_<source name>`, lower-cased, every other character `_`.
fn default_slot(source: &str) -> String {
    let mut slot: String = format!("strata_{}", source.to_lowercase())
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    slot.truncate(63);
    slot
}

/// Where the source stands, shared with whoever asks for its positions.
#[derive(Debug, Default)]
pub(crate) struct Status {
    snapshot: Mutex<String>,
    received: AtomicU64,
    acknowledged: AtomicU64,
}

impl Status {
    fn set_snapshot(&self, text: String) {
        if let Ok(mut snapshot) = self.snapshot.lock() {
            *snapshot = text;
        }
    }
}

pub(crate) fn stop_requested(shutdown: &watch::Receiver<bool>) -> bool {
    // A dropped sender can never say stop, and waiting on it would spin.
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

pub(crate) fn upstream<'a>(
    source: &'a str,
    what: &'a str,
) -> impl FnOnce(ReplicationError) -> Error + 'a {
    move |e| Error::Upstream(format!("source {source:?} {what}: {e}"))
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The runtime of one `postgres_cdc` source.
pub struct PostgresCdc {
    name: String,
    config: CdcConfig,
    context: SourceContext,
    catalog: Option<Catalog>,
    status: Arc<Status>,
}

impl PostgresCdc {
    pub fn new(source: &SourceConfig, context: &SourceContext) -> Result<Self> {
        Ok(Self {
            name: source.name.clone(),
            config: CdcConfig::from_source(source)?,
            context: context.clone(),
            catalog: None,
            status: Arc::new(Status {
                snapshot: Mutex::new("not taken yet".into()),
                ..Status::default()
            }),
        })
    }

    async fn start_checks(&mut self) -> Result<()> {
        let catalog = checks::check(&self.name, &self.config).await?;
        let mut conn = checks::connect(&self.name, &self.config.url).await?;
        let slot = checks::slot_row(&mut conn, &self.config.slot).await?;
        self.check_slot(&slot)?;
        // pg_hba.conf can allow the role and still refuse it replication.
        let stream = LogicalReplicationStream::new(
            &self.config.replication_url(),
            self.config.stream_config(),
        )
        .await
        .map_err(|e| {
            Error::Upstream(format!(
                "source {:?} cannot open a replication connection to {}: {e}",
                self.name,
                checks::address(&self.config.url)
            ))
        })?;
        drop(stream);
        self.catalog = Some(catalog);
        Ok(())
    }

    fn check_slot(&self, slot: &checks::SlotRow) -> Result<()> {
        if !slot.exists {
            return Ok(());
        }
        if !slot.logical_pgoutput || slot.database != slot.current_database {
            return Err(Error::Config(format!(
                "source {:?}: replication slot {:?} exists but is not a pgoutput slot of database {:?}; set `slot` to another name",
                self.name,
                self.config.slot,
                slot.current_database.as_deref().unwrap_or("?")
            )));
        }
        Ok(())
    }

    async fn run_until(&mut self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        if self.catalog.is_none() {
            self.start_checks().await?;
        }
        let mut catalog = self.catalog.clone().unwrap_or_default();
        let dir = &self.context.state_dir;
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let (bronze_tx, bronze) = watch::channel(None);
        let _pollers = Pollers(vec![
            tokio::spawn(poll_bronze(
                self.context.lake.clone(),
                self.name.clone(),
                bronze_tx,
            )),
            tokio::spawn(poll_slot(self.name.clone(), self.config.clone())),
        ]);
        let mut pipeline = Pipeline::new(&self.name, self.context.producer.clone());
        let mut delay = MIN_BACKOFF;
        loop {
            if stop_requested(&shutdown) {
                return pipeline.flush().await;
            }
            let mut streamed = false;
            let result = self
                .session(
                    &mut catalog,
                    &mut pipeline,
                    bronze.clone(),
                    &mut shutdown,
                    &mut streamed,
                )
                .await;
            let error = match result {
                Ok(()) => return Ok(()),
                Err(e @ Error::Config(_)) => {
                    let _ = pipeline.flush().await;
                    return Err(e);
                }
                Err(e) => e,
            };
            // What was read is valid whatever broke: land it, so less comes
            // again. If the log fails too, PostgreSQL sends it again.
            if let Err(e) = pipeline.flush().await {
                tracing::warn!(source = %self.name, error = %e, "could not land the changes read before the failure; they will be read again");
            }
            if streamed {
                delay = MIN_BACKOFF;
            }
            tracing::warn!(
                source = %self.name,
                error = %error,
                retry_in_ms = delay.as_millis() as u64,
                "CDC source lost PostgreSQL; reconnecting"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wait_for_stop(&mut shutdown) => {}
            }
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection's life: resume or snapshot, then stream until
    /// shutdown (`Ok`) or a failure.
    async fn session(
        &self,
        catalog: &mut Catalog,
        pipeline: &mut Pipeline,
        bronze: watch::Receiver<Option<ChangePosition>>,
        shutdown: &mut watch::Receiver<bool>,
        streamed: &mut bool,
    ) -> Result<()> {
        let config = &self.config;
        let mut conn = checks::connect(&self.name, &config.url).await?;
        let slot = checks::slot_row(&mut conn, &config.slot).await?;
        self.check_slot(&slot)?;
        let state_dir = self.context.state_dir.as_path();
        let marker = snapshot::read_marker(state_dir)?;
        let replication_url = config.replication_url();

        let stream = match &marker {
            Some(marker) if slot.exists && marker.matches(config) => {
                self.status
                    .set_snapshot(format!("complete at {}", marker.consistent_point));
                // Resume from the LSN stored with the data, or further if
                // the slot was confirmed further (an idle stretch).
                let held = ChangePositions::new(self.context.lake.clone())
                    .get(&self.name)
                    .await?;
                let start = held
                    .map_or(0, |p| p.lsn)
                    .max(slot.confirmed_flush_lsn.unwrap_or(0));
                let mut stream = LogicalReplicationStream::new(
                    &replication_url,
                    config.stream_config().with_existing_slot_required(true),
                )
                .await
                .map_err(upstream(&self.name, "cannot open a replication connection"))?;
                stream
                    .start((start > 0).then_some(start))
                    .await
                    .map_err(upstream(&self.name, "cannot start replication"))?;
                tracing::info!(source = %self.name, slot = %config.slot, from = %format_lsn(start), "streaming changes");
                stream
            }
            _ => {
                if slot.exists {
                    tracing::warn!(
                        source = %self.name,
                        slot = %config.slot,
                        "replication slot has no completed snapshot of these tables (a snapshot cut short, or the table list changed); dropping it and taking the snapshot again"
                    );
                    checks::drop_slot(&mut conn, &config.slot).await?;
                } else if marker.is_some() {
                    tracing::warn!(
                        source = %self.name,
                        slot = %config.slot,
                        "replication slot is gone (dropped outside Strata?); creating it and taking a new snapshot"
                    );
                }
                snapshot::remove_marker(state_dir)?;
                let job = SnapshotJob {
                    config,
                    replication_url: &replication_url,
                    stream_config: config.stream_config(),
                    catalog: &mut *catalog,
                    conn: &mut conn,
                    state_dir,
                    status: &self.status,
                };
                match job.run(pipeline, shutdown).await? {
                    Snapshotted::Stopped => return Ok(()),
                    Snapshotted::Done(mut stream) => {
                        stream
                            .start(None)
                            .await
                            .map_err(upstream(&self.name, "cannot start replication"))?;
                        *stream
                    }
                }
            }
        };
        *streamed = true;
        Streaming {
            config,
            stream,
            catalog,
            conn: &mut conn,
            status: &self.status,
            bronze,
        }
        .run(pipeline, shutdown)
        .await
    }
}

impl Source for PostgresCdc {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self) -> BoxFuture<'_, Result<()>> {
        self.start_checks().boxed()
    }

    fn run(&mut self, shutdown: watch::Receiver<bool>) -> BoxFuture<'_, Result<()>> {
        self.run_until(shutdown).boxed()
    }

    fn positions(&self) -> Vec<(String, String)> {
        let snapshot = self
            .status
            .snapshot
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let lsn = |v: &AtomicU64| match v.load(Ordering::Relaxed) {
            0 => "none yet".to_string(),
            lsn => format_lsn(lsn),
        };
        vec![
            ("slot".into(), self.config.slot.clone()),
            ("snapshot".into(), snapshot),
            ("received".into(), lsn(&self.status.received)),
            ("acknowledged".into(), lsn(&self.status.acknowledged)),
        ]
    }
}

async fn wait_for_stop(shutdown: &mut watch::Receiver<bool>) {
    while !stop_requested(shutdown) {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_slot_names_are_valid() {
        assert_eq!(default_slot("shop"), "strata_shop");
        assert_eq!(default_slot("Shop-DB.eu"), "strata_shop_db_eu");
        assert_eq!(default_slot(&"x".repeat(100)).len(), 63);
    }

    #[test]
    fn slot_status_reads_as_one_line() {
        let status = SlotStatus {
            slot: "strata_shop".into(),
            exists: true,
            active: true,
            confirmed_flush_lsn: Some(0x16B_3748),
            restart_lsn: Some(0x16B_0000),
            current_wal_lsn: Some(0x16B_3F48),
            lag_bytes: Some(2048),
            wal_retained_bytes: Some(16 << 20),
        };
        assert_eq!(
            status.to_string(),
            "slot strata_shop active, confirmed at 0/16B3748, 2.0 KiB behind, 16.0 MiB of WAL retained"
        );
    }
}
