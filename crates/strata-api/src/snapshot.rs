//! Tables the panels read, held in memory at their newest Delta version.
//!
//! Gold tables are small (rows per date, not per event) and read far more
//! often than written, so a panel answers from memory in microseconds; each
//! call only asks the Delta log whether a newer version exists, and the first
//! call after a commit loads the table again.

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use strata_lake::Lake;
use strata_lake::schema::TableDef;
use tokio::sync::Mutex;

use crate::error::{Error, Result};

/// Rows of one table in the shape a panel needs.
pub trait Snapshot: Sized + Send + Sync + 'static {
    const TABLE: TableDef;
    /// The columns loaded: only what the panel reads.
    const COLUMNS: &'static [&'static str];
    fn from_batches(batches: &[RecordBatch]) -> Result<Self>;
}

pub struct Cached<T> {
    slot: Mutex<Slot<T>>,
}

struct Slot<T> {
    table: Option<DeltaTable>,
    version: Option<u64>,
    data: Option<Arc<T>>,
}

impl<T: Snapshot> Default for Cached<T> {
    fn default() -> Self {
        Self {
            slot: Mutex::new(Slot {
                table: None,
                version: None,
                data: None,
            }),
        }
    }
}

impl<T: Snapshot> Cached<T> {
    /// The table at its newest version; `None` until the table exists.
    pub async fn get(&self, lake: &Lake) -> Result<Option<Arc<T>>> {
        let def = T::TABLE;
        let name = def.qualified_name();
        let unavailable = |e: &dyn std::fmt::Display| Error::Unavailable(format!("{name}: {e}"));
        let mut slot = self.slot.lock().await;
        match slot.table.as_mut() {
            Some(table) => {
                if let Err(e) = table.update_incremental(None).await {
                    // A log that cannot be listed just now: the version
                    // already held is still a consistent answer.
                    if slot.data.is_some() {
                        tracing::warn!(table = %name, error = %e, "serving the version held in memory");
                        return Ok(slot.data.clone());
                    }
                    return Err(unavailable(&e));
                }
            }
            None => {
                if !lake.exists(def.layer, def.name) {
                    return Ok(None);
                }
                slot.table = Some(lake.open(def.layer, def.name).await?);
            }
        }
        let Some(table) = slot.table.as_ref() else {
            return Ok(None);
        };
        let version = table.version();
        if slot.data.is_some() && slot.version == version {
            return Ok(slot.data.clone());
        }
        let batches = read(table, T::COLUMNS).await.map_err(|e| unavailable(&e))?;
        let data = Arc::new(T::from_batches(&batches)?);
        slot.version = version;
        slot.data = Some(data.clone());
        Ok(Some(data))
    }
}

/// Reads the loaded version of the table (not whatever is newest by now),
/// so the data always matches the version it is cached under.
async fn read(
    table: &DeltaTable,
    columns: &[&str],
) -> std::result::Result<Vec<RecordBatch>, Box<dyn std::error::Error + Send + Sync>> {
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    let provider = table.table_provider().await?;
    Ok(ctx
        .read_table(provider)?
        .select_columns(columns)?
        .collect()
        .await?)
}
