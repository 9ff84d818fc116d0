//! The sources part of `GET /api/pipeline`: each configured source, its
//! kind, the bronze table it lands in, and what it landed there in the
//! last day (rows and the newest `received_at`), read from bronze itself so
//! the answer holds whichever process runs the source.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::array::{Array, Int64Array, RecordBatch};
use deltalake::datafusion::prelude::SessionContext;
use serde::Serialize;
use strata_core::Config;
use strata_lake::Lake;
use strata_lake::columns::{micros, strings};
use tokio::sync::Mutex;

use crate::error::Result;

/// Bronze is read at most this often for the panel.
const FRESH_FOR: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Serialize)]
pub struct SourceActivity {
    pub name: String,
    pub kind: String,
    pub lands_in: String,
    /// Rows landed since yesterday 00:00 UTC (`ingest_date` today or
    /// yesterday); `None` when the table does not exist yet.
    pub rows_since_yesterday: Option<u64>,
    pub last_received_at: Option<String>,
}

#[derive(Default)]
pub struct Sources {
    cached: Mutex<Option<(Instant, Arc<Vec<SourceActivity>>)>>,
}

impl Sources {
    pub async fn list(&self, config: &Config, lake: &Lake) -> Arc<Vec<SourceActivity>> {
        let mut cached = self.cached.lock().await;
        if let Some((at, list)) = cached.as_ref()
            && at.elapsed() < FRESH_FOR
        {
            return list.clone();
        }
        let list = Arc::new(activity(config, lake).await);
        *cached = Some((Instant::now(), list.clone()));
        list
    }
}

/// Per source: rows and newest `received_at` in its bronze table.
type Landed = HashMap<String, (u64, Option<i64>)>;

async fn activity(config: &Config, lake: &Lake) -> Vec<SourceActivity> {
    let mut by_table: HashMap<String, Option<Landed>> = HashMap::new();
    let mut out = Vec::new();
    for source in &config.sources {
        let (table, per_source) = match source.kind.as_str() {
            "postgres_cdc" => ("cdc_changes".to_string(), true),
            "file" => {
                let table = source
                    .options
                    .get("table")
                    .and_then(toml::Value::as_str)
                    .unwrap_or_default();
                (format!("feed_{table}"), false)
            }
            _ => ("events".to_string(), true),
        };
        if !by_table.contains_key(&table) {
            let landed = match landed(lake, &table, per_source).await {
                Ok(landed) => landed,
                Err(e) => {
                    tracing::debug!(table = %table, error = %e, "source activity not readable");
                    None
                }
            };
            by_table.insert(table.clone(), landed);
        }
        let landed = by_table.get(&table).and_then(Option::as_ref);
        let key = if per_source { source.name.as_str() } else { "" };
        let (rows, last) = match landed {
            Some(landed) => {
                let (rows, last) = landed.get(key).copied().unwrap_or((0, None));
                (Some(rows), last)
            }
            None => (None, None),
        };
        out.push(SourceActivity {
            name: source.name.clone(),
            kind: source.kind.clone(),
            lands_in: format!("bronze.{table}"),
            rows_since_yesterday: rows,
            last_received_at: last.map(strata_batch::dates::format_micros),
        });
    }
    out
}

/// Rows and newest `received_at` of the last two ingest dates, per
/// `source` when the table has one (else under ""); `None` without a table.
async fn landed(lake: &Lake, table: &str, per_source: bool) -> Result<Option<Landed>> {
    if !lake.exists("bronze", table) {
        return Ok(None);
    }
    let delta = lake.open("bronze", table).await?;
    let ctx = SessionContext::new();
    delta
        .update_datafusion_session(&ctx.state())
        .map_err(|e| crate::error::Error::Unavailable(e.to_string()))?;
    let provider = delta
        .table_provider()
        .await
        .map_err(|e| crate::error::Error::Unavailable(e.to_string()))?;
    ctx.register_table("t", provider)
        .map_err(|e| crate::error::Error::Unavailable(e.to_string()))?;
    let group = if per_source { "source" } else { "''" };
    let sql = format!(
        "select {group} as source, count(*) as rows, max(received_at) as last \
         from t where ingest_date >= current_date - interval '1 day' group by 1"
    );
    let batches: Vec<RecordBatch> = ctx
        .sql(&sql)
        .await
        .map_err(|e| crate::error::Error::Unavailable(e.to_string()))?
        .collect()
        .await
        .map_err(|e| crate::error::Error::Unavailable(e.to_string()))?;
    let mut out = Landed::new();
    for batch in &batches {
        let source = strings(batch, "source")?;
        let last = micros(batch, "last")?;
        let Some(rows) = batch
            .column_by_name("rows")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        else {
            continue;
        };
        for i in 0..batch.num_rows() {
            let name = if source.is_null(i) {
                ""
            } else {
                source.value(i)
            };
            let newest = (!last.is_null(i)).then(|| last.value(i));
            out.insert(name.to_string(), (rows.value(i) as u64, newest));
        }
    }
    Ok(Some(out))
}
