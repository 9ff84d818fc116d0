//! Where a CDC silver table keeps how far it was built: application
//! transactions (`txn` actions) in its own Delta log, committed with its
//! rows, so the position and the rows are always of the same build.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use strata_core::event::ChangePosition;
use strata_lake::schema::TableDef;

use super::changes::Position;
use crate::error::{Error, Result};
use crate::io::{LakeIo, writer_properties};

/// How the current state's rows are derived from the changes. A table
/// built by another version of these rules is rebuilt from bronze rather
/// than continued (the history has its own, `history::FORMAT`).
pub const FORMAT: i64 = 1;

const LSN: &str = "strata-cdc-lsn";
const RANK: &str = "strata-cdc-rank";
const EPOCH: &str = "strata-cdc-epoch";
const FORMAT_APP: &str = "strata-cdc-format";

/// The last change a table holds, and the snapshot its rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: Position,
    pub epoch: Option<i64>,
    pub format: i64,
}

impl Cursor {
    pub fn new(at: Position, epoch: Option<i64>) -> Self {
        Self::with_format(at, epoch, FORMAT)
    }

    pub fn with_format(at: Position, epoch: Option<i64>, format: i64) -> Self {
        Self { at, epoch, format }
    }

    /// A cursor no build continues from: the table is built again.
    pub fn unfinished() -> Self {
        Self::with_format(Position::default(), None, 0)
    }

    pub fn transactions(&self) -> Vec<Transaction> {
        vec![
            Transaction::new(LSN, self.at.lsn),
            Transaction::new(RANK, self.at.rank()),
            Transaction::new(EPOCH, self.epoch.unwrap_or(-1)),
            Transaction::new(FORMAT_APP, self.format),
        ]
    }
}

/// The cursor stored with the table at the version it was opened at.
pub async fn read_cursor(table: &DeltaTable, name: &str) -> Result<Option<Cursor>> {
    let snapshot = table.snapshot().map_err(Error::delta(name))?;
    let store = table.log_store();
    let mut values = [0i64; 4];
    for (value, app) in values.iter_mut().zip([LSN, RANK, EPOCH, FORMAT_APP]) {
        match snapshot
            .transaction_version(store.as_ref(), app)
            .await
            .map_err(Error::delta(name))?
        {
            Some(v) => *value = v,
            None => return Ok(None),
        }
    }
    let [lsn, rank, epoch, format] = values;
    Ok(Some(Cursor {
        at: Position::of(ChangePosition {
            lsn: lsn as u64,
            rank: rank as u64,
        }),
        epoch: (epoch >= 0).then_some(epoch),
        format,
    }))
}

/// The table if it has a commit.
pub async fn open(io: &LakeIo, def: &TableDef) -> Result<Option<DeltaTable>> {
    if !io.exists(def) {
        return Ok(None);
    }
    Ok(Some(io.lake().open(def.layer, def.name).await?))
}

/// Replaces the table's rows and cursor in one commit; creates the table,
/// or replaces its schema, when `schema` is new.
pub async fn overwrite(
    io: &LakeIo,
    def: &TableDef,
    opened: Option<DeltaTable>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    cursor: Cursor,
    new_schema: bool,
) -> Result<usize> {
    let name = def.qualified_name();
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let table = match opened {
        Some(table) => table,
        None => {
            let path = io.lake().table_path(def.layer, def.name);
            let url =
                deltalake::ensure_table_uri(path.to_string_lossy()).map_err(Error::delta(&name))?;
            DeltaTableBuilder::from_url(url)
                .and_then(|b| b.build())
                .map_err(Error::delta(&name))?
        }
    };
    let mut batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
    if batches.is_empty() {
        // A write needs a batch, even to leave the table empty.
        batches.push(RecordBatch::new_empty(schema));
    }
    let mut write = table
        .write(batches)
        .with_save_mode(SaveMode::Overwrite)
        .with_table_name(def.name)
        .with_description(def.description)
        .with_writer_properties(cdc_writer_properties())
        .with_commit_properties(
            CommitProperties::default().with_application_transactions(cursor.transactions()),
        );
    if new_schema {
        write = write.with_schema_mode(SchemaMode::Overwrite);
    }
    let table = write.await.map_err(Error::delta(&name))?;
    vacuum_if_due(&table, &name).await;
    Ok(rows)
}

/// Files a build replaced stay on disk this long, for queries that opened
/// the table before the build: a current-state table is rewritten at every
/// loader commit, and Delta's default of a week would keep a week of
/// copies.
pub const KEEP_REPLACED: Duration = Duration::from_secs(120);

/// How often a table's replaced files are looked for.
const VACUUM_EVERY: Duration = Duration::from_secs(30);

/// Deletes the files builds replaced more than `keep` ago.
pub async fn vacuum(table: &DeltaTable, name: &str, keep: Duration) -> Result<usize> {
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::zero());
    let (_, metrics) = table
        .clone()
        .vacuum()
        .with_retention_period(keep)
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Lite)
        .await
        .map_err(Error::delta(name))?;
    Ok(metrics.files_deleted.len())
}

/// [`vacuum`] with [`KEEP_REPLACED`], at most every [`VACUUM_EVERY`] per
/// table; a failure is only reported, the build stands.
pub async fn vacuum_if_due(table: &DeltaTable, name: &str) {
    static LAST: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);
    {
        let Ok(mut last) = LAST.lock() else { return };
        let last = last.get_or_insert_with(HashMap::new);
        if last.get(name).is_some_and(|t| t.elapsed() < VACUUM_EVERY) {
            return;
        }
        last.insert(name.to_string(), Instant::now());
    }
    match vacuum(table, name, KEEP_REPLACED).await {
        Ok(0) => {}
        Ok(deleted) => tracing::debug!(table = %name, deleted, "replaced CDC silver files deleted"),
        Err(e) => {
            tracing::warn!(table = %name, error = %e, "deleting replaced CDC silver files failed")
        }
    }
}

/// The batch path's file settings without dictionaries. The whole table is
/// written at every micro-batch, and building each column's dictionary was
/// two thirds of that write (0.7 s of a 1M-row table, 0.2 s without);
/// zstd still packs a column's repeated values.
pub fn cdc_writer_properties() -> WriterProperties {
    writer_properties()
        .into_builder()
        .set_dictionary_enabled(false)
        .build()
}

/// Runs a build again when its commit lost a race with another commit to
/// the table: each attempt starts from the table's latest cursor.
pub async fn retrying<T, F, Fut>(mut build: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    const ATTEMPTS: u32 = 4;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match build().await {
            Err(Error::Delta {
                source:
                    DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_),
                table,
            }) if attempt < ATTEMPTS => {
                tracing::debug!(%table, attempt, "CDC silver commit conflict; building again");
            }
            other => return other,
        }
    }
}
