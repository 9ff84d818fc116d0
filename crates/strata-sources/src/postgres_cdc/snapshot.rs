//! The initial snapshot: a new slot exports a snapshot, every listed table
//! is copied through it, and streaming starts at the slot's consistent
//! point, so no change is missed and none is seen twice.
//!
//! A marker file in the source's state directory records a snapshot whose
//! every row is durable in the log. A slot without a matching marker is one
//! whose snapshot did not complete (a crash mid-copy) or was taken of other
//! tables: it is dropped and the snapshot taken again. The rows of the
//! incomplete attempt stay in bronze at the old consistent point; the new
//! snapshot's rows come after them (a later point), so readers keyed by
//! position see the new copy win.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pg_walstream::{LogicalReplicationStream, ReplicationStreamConfig, SnapshotOutcome};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnection;
use strata_core::event::{ChangeOp, ChangeRecord, RelationColumn, format_lsn};
use tokio::sync::watch;

use super::checks::Catalog;
use super::pipeline::{Pipeline, now_micros};
use super::values::{Shape, ShapeColumn, is_number_type};
use super::{CdcConfig, Status, stop_requested, upstream};
use crate::{Error, Result};

const MARKER: &str = "snapshot.json";

/// A snapshot whose rows are all durable in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Marker {
    pub slot: String,
    pub consistent_point: String,
    pub tables: Vec<String>,
    pub completed_at: String,
}

impl Marker {
    /// Whether the marker is of this slot and exactly these tables: a table
    /// added to the list has no snapshot yet, so everything is taken again.
    pub fn matches(&self, config: &CdcConfig) -> bool {
        let mut ours: Vec<String> = config.tables.iter().map(|t| t.to_string()).collect();
        let mut theirs = self.tables.clone();
        ours.sort();
        theirs.sort();
        self.slot == config.slot && ours == theirs
    }
}

fn marker_path(dir: &Path) -> PathBuf {
    dir.join(MARKER)
}

pub(super) fn read_marker(dir: &Path) -> Result<Option<Marker>> {
    let path = marker_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path)(e)),
    };
    match serde_json::from_slice(&bytes) {
        Ok(marker) => Ok(Some(marker)),
        Err(e) => {
            // Written atomically, so only a hand edit breaks it; treat it as
            // absent, which costs a new snapshot and loses nothing.
            tracing::warn!(path = %path.display(), error = %e, "unreadable snapshot marker; taking a new snapshot");
            Ok(None)
        }
    }
}

/// Replaced atomically: a crash leaves the old marker or the new, never half.
pub(super) fn write_marker(dir: &Path, marker: &Marker) -> Result<()> {
    crate::state_file::store(&marker_path(dir), marker)
}

pub(super) fn remove_marker(dir: &Path) -> Result<()> {
    let path = marker_path(dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&path)(e)),
    }
}

/// The shape of a table as the catalog and the copy describe it.
pub(super) async fn shape_of(
    catalog: &mut Catalog,
    conn: &mut PgConnection,
    schema: &str,
    name: &str,
    columns: Vec<(Arc<str>, u32, i32)>,
) -> Result<Shape> {
    let mut shape = Shape {
        schema: schema.to_string(),
        name: name.to_string(),
        columns: Vec::new(),
    };
    for (column, type_id, type_modifier) in columns {
        let key = catalog
            .table(schema, name)
            .is_some_and(|t| t.is_key(&column));
        let type_name = catalog.type_name(conn, type_id).await?;
        shape.columns.push(ShapeColumn {
            relation: RelationColumn {
                name: column.to_string(),
                type_name,
                type_modifier,
                key,
            },
            name: column,
            number: is_number_type(type_id),
            key,
        });
    }
    Ok(shape)
}

pub(super) enum Snapshotted {
    /// Every row is durable and the marker written: stream from here.
    Done(Box<LogicalReplicationStream>),
    /// Shutdown came first. The slot is dropped with the copy; the next
    /// start takes the snapshot again.
    Stopped,
}

pub(super) struct SnapshotJob<'a> {
    pub config: &'a CdcConfig,
    pub replication_url: &'a str,
    pub stream_config: ReplicationStreamConfig,
    pub catalog: &'a mut Catalog,
    pub conn: &'a mut PgConnection,
    pub state_dir: &'a Path,
    pub status: &'a Status,
}

impl SnapshotJob<'_> {
    pub async fn run(
        self,
        pipeline: &mut Pipeline,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Snapshotted> {
        let source = pipeline.source().to_string();
        let stream = LogicalReplicationStream::new(self.replication_url, self.stream_config)
            .await
            .map_err(upstream(&source, "cannot open a replication connection"))?;
        let outcome = stream.snapshot().await.map_err(upstream(
            &source,
            "cannot create the replication slot and its snapshot",
        ))?;
        let mut snapshot = match outcome {
            SnapshotOutcome::Available(snapshot) => snapshot,
            SnapshotOutcome::Unavailable(_) => {
                // Someone created the slot between our look and our create;
                // the next attempt finds it without a marker and drops it.
                return Err(Error::Upstream(format!(
                    "source {source:?}: replication slot {:?} appeared while the snapshot was being set up",
                    self.config.slot
                )));
            }
        };
        let listed = |schema: &str, name: &str| {
            self.config
                .tables
                .iter()
                .any(|t| t.schema == schema && t.name == name)
        };
        snapshot.retain_tables(|t| listed(&t.relation().namespace, &t.relation().relation_name));
        for table in &self.config.tables {
            let copied = snapshot.tables().iter().any(|t| {
                *t.relation().namespace == *table.schema
                    && *t.relation().relation_name == *table.name
            });
            if !copied {
                return Err(Error::Config(format!(
                    "source {source:?}: table {table} is not in publication {:?} as the snapshot sees it",
                    self.config.publication
                )));
            }
        }
        let consistent_point = snapshot.consistent_point().value();
        let taken_at = now_micros();
        self.status
            .set_snapshot(format!("in progress at {}", format_lsn(consistent_point)));
        tracing::info!(
            source = %source,
            slot = %self.config.slot,
            consistent_point = %format_lsn(consistent_point),
            tables = snapshot.tables().len(),
            "taking the initial snapshot"
        );

        // Every definition first, so an empty table has one too.
        pipeline.forget_relations();
        pipeline.abandon_transaction();
        let mut shapes: HashMap<u32, Arc<Shape>> = HashMap::new();
        for table in snapshot.tables() {
            let relation = table.relation();
            let columns: Vec<_> = relation
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.type_id, c.type_modifier))
                .collect();
            let shape = shape_of(
                self.catalog,
                self.conn,
                &relation.namespace,
                &relation.relation_name,
                columns,
            )
            .await?;
            pipeline.push_relation(&shape, consistent_point);
            shapes.insert(relation.relation_id, Arc::new(shape));
        }

        let mut rows = snapshot.rows();
        let mut seq = 0u64;
        loop {
            let row = tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    if stop_requested(shutdown) {
                        // A snapshot cut short is taken again in full.
                        pipeline.abandon_transaction();
                        pipeline.flush().await?;
                        return Ok(Snapshotted::Stopped);
                    }
                    continue;
                }
                row = rows.next_row() => row,
            };
            let row = row.map_err(upstream(&source, "the snapshot copy failed"))?;
            let Some(row) = row else { break };
            let Some(shape) = shapes.get(&row.relation.relation_id) else {
                continue;
            };
            pipeline.push_change(ChangeRecord {
                source: source.clone(),
                table_schema: shape.schema.clone(),
                table_name: shape.name.clone(),
                op: ChangeOp::Snapshot,
                lsn: consistent_point,
                commit_ts: taken_at,
                tx_id: None,
                seq,
                key: shape.key_object(&row.data, None),
                before: None,
                after: Some(shape.row_object(&row.data)),
                received_at: now_micros(),
                tx_end: false,
            });
            seq += 1;
            if pipeline.is_full() {
                pipeline.flush().await?;
            }
        }
        let stream = rows
            .finish()
            .await
            .map_err(upstream(&source, "the snapshot did not complete"))?;
        pipeline.end_transaction();
        pipeline.flush().await?;
        let marker = Marker {
            slot: self.config.slot.clone(),
            consistent_point: format_lsn(consistent_point),
            tables: self.config.tables.iter().map(|t| t.to_string()).collect(),
            completed_at: chrono::Utc::now().to_rfc3339(),
        };
        let dir = self.state_dir.to_path_buf();
        tokio::task::spawn_blocking(move || write_marker(&dir, &marker))
            .await
            .map_err(|e| Error::Upstream(format!("writing the snapshot marker failed: {e}")))??;
        self.status
            .set_snapshot(format!("complete at {}", format_lsn(consistent_point)));
        tracing::info!(source = %source, rows = seq, "initial snapshot durable in the log");
        Ok(Snapshotted::Done(Box::new(stream)))
    }
}
