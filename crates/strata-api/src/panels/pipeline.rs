//! `GET /api/pipeline`: model runs by state, each table's freshness,
//! quarantine counts by reason, too-late counts, and the sources
//! ([`super::sources`]).

use std::collections::BTreeMap;
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, RecordBatch};
use serde::Serialize;
use strata_lake::Lake;
use strata_lake::columns::{micros, strings};
use strata_lake::query::LAYERS;
use strata_lake::schema::{BRONZE_QUARANTINE, TableDef};
use strata_orchestrator::RunState;
use strata_orchestrator::status::Report;
use strata_orchestrator::store::{Counts, Listing};
use tokio::sync::Mutex;

use crate::error::Result;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub partition: String,
    pub state: RunState,
    pub attempts: i64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelRuns {
    pub model: String,
    pub last_success_at: Option<String>,
    pub freshness_seconds: Option<i64>,
    pub partitions_by_state: Counts,
    pub next_scheduled_at: Option<String>,
    pub problems: Vec<Problem>,
}

/// Failed or blocked partitions shown per model: the counts say how many
/// there are, and a backfill gone wrong must not make the panel list them all.
pub const PROBLEMS_PER_MODEL: u64 = 20;

/// The partitions the panel lists: each model's failed and blocked ones.
pub fn problems() -> Listing {
    Listing {
        states: vec![RunState::Failed, RunState::Blocked],
        per_model: Some(PROBLEMS_PER_MODEL),
        ..Listing::default()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Runs {
    pub store: String,
    pub live_workers: usize,
    pub by_state: Counts,
    pub models: Vec<ModelRuns>,
}

impl Runs {
    pub fn of(report: Report) -> Runs {
        let mut by_state = Counts::default();
        let models = report
            .models
            .into_iter()
            .map(|m| {
                let c = m.partitions_by_state;
                by_state.add_all(&c);
                ModelRuns {
                    problems: m
                        .partitions
                        .into_iter()
                        .filter(|p| matches!(p.state, RunState::Failed | RunState::Blocked))
                        .map(|p| Problem {
                            partition: p.partition,
                            state: p.state,
                            attempts: p.attempts,
                            error: p.error,
                        })
                        .collect(),
                    model: m.model,
                    last_success_at: m.last_success_at,
                    freshness_seconds: m.freshness_seconds,
                    partitions_by_state: c,
                    next_scheduled_at: m.next_scheduled_at,
                }
            })
            .collect();
        Runs {
            store: report.store,
            live_workers: report.live_workers.len(),
            by_state,
            models,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    pub table: String,
    pub version: Option<u64>,
    pub last_commit_at: Option<String>,
    pub freshness_seconds: Option<i64>,
    pub files: usize,
    pub rows: Option<u64>,
}

/// Open handles of every table in the lake, brought up to date on each
/// call; file and row counts are recomputed only when a version changes.
#[derive(Default)]
pub struct Tables {
    open: Mutex<BTreeMap<String, (DeltaTable, Option<TableInfo>)>>,
}

impl Tables {
    pub async fn list(&self, lake: &Lake, now: SystemTime) -> Vec<TableInfo> {
        let mut open = self.open.lock().await;
        let mut out = Vec::new();
        for (layer, name) in tables_in(lake) {
            let qualified = format!("{layer}.{name}");
            if !open.contains_key(&qualified) {
                match lake.open(&layer, &name).await {
                    Ok(table) => {
                        open.insert(qualified.clone(), (table, None));
                    }
                    Err(e) => {
                        tracing::debug!(table = %qualified, error = %e, "table not readable yet");
                        continue;
                    }
                }
            }
            let Some((table, info)) = open.get_mut(&qualified) else {
                continue;
            };
            if let Err(e) = table.update_incremental(None).await {
                tracing::debug!(table = %qualified, error = %e, "table update failed; older version shown");
            }
            let version = table.version();
            if info.as_ref().is_none_or(|i| i.version != version) {
                *info = Some(describe(lake, &layer, &name, table));
            }
            if let Some(info) = info {
                let mut info = info.clone();
                info.freshness_seconds = info.last_commit_at.as_deref().and_then(|t| {
                    let at: DateTime<Utc> = t.parse().ok()?;
                    Some((DateTime::<Utc>::from(now) - at).num_seconds().max(0))
                });
                out.push(info);
            }
        }
        out
    }
}

fn tables_in(lake: &Lake) -> Vec<(String, String)> {
    LAYERS
        .iter()
        .flat_map(|layer| {
            lake.tables_in(layer)
                .into_iter()
                .map(|name| (layer.to_string(), name))
        })
        .collect()
}

fn describe(lake: &Lake, layer: &str, name: &str, table: &DeltaTable) -> TableInfo {
    let version = table.version();
    // The commit file's modification time is when the version was written.
    let last_commit_at = version.and_then(|v| {
        let path = lake
            .table_path(layer, name)
            .join("_delta_log")
            .join(format!("{v:020}.json"));
        let modified = std::fs::metadata(path).ok()?.modified().ok()?;
        Some(DateTime::<Utc>::from(modified).to_rfc3339_opts(SecondsFormat::Secs, true))
    });
    let (files, rows) = match table.snapshot() {
        Ok(snapshot) => {
            let data = snapshot.log_data();
            let rows = data
                .iter()
                .map(|f| f.num_records().map(|n| n as u64))
                .sum::<Option<u64>>();
            (data.num_files(), rows)
        }
        Err(_) => (0, None),
    };
    TableInfo {
        table: format!("{layer}.{name}"),
        version,
        last_commit_at,
        freshness_seconds: None,
        files,
        rows,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    pub reason: String,
    pub rows: u64,
    pub last_seen: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Quarantine {
    pub total: u64,
    pub by_reason: Vec<Reason>,
}

impl Snapshot for Quarantine {
    const TABLE: TableDef = BRONZE_QUARANTINE;
    const COLUMNS: &'static [&'static str] = &["reason", "received_at"];

    fn from_batches(batches: &[RecordBatch]) -> Result<Self> {
        let mut by_reason: BTreeMap<String, (u64, i64)> = BTreeMap::new();
        for batch in batches {
            let reason = strings(batch, "reason")?;
            let received = micros(batch, "received_at")?;
            for i in 0..batch.num_rows() {
                let key = if reason.is_null(i) {
                    ""
                } else {
                    reason.value(i)
                };
                let entry = by_reason.entry(key.to_owned()).or_insert((0, i64::MIN));
                entry.0 += 1;
                entry.1 = entry.1.max(received.value(i));
            }
        }
        let mut by_reason: Vec<Reason> = by_reason
            .into_iter()
            .map(|(reason, (rows, last))| Reason {
                reason,
                rows,
                last_seen: strata_batch::dates::format_micros(last),
            })
            .collect();
        by_reason.sort_by(|a, b| b.rows.cmp(&a.rows).then(a.reason.cmp(&b.reason)));
        Ok(Quarantine {
            total: by_reason.iter().map(|r| r.rows).sum(),
            by_reason,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TooLate {
    pub realtime: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    pub generated_at: String,
    pub runs: Option<Runs>,
    pub tables: Vec<TableInfo>,
    pub quarantine: Quarantine,
    pub too_late: TooLate,
    /// Each configured source and what it landed in the last day.
    pub sources: Vec<super::sources::SourceActivity>,
}
