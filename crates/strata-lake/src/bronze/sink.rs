//! One bronze table and the positions it has committed: the log offset per
//! partition, and for `bronze.cdc_changes` the stream position per source.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU64;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::delta_datafusion::DeltaSessionContext;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use deltalake::{FilterOp, FilterValue};
use strata_core::event::ChangePosition;

use super::rows::Table;
use crate::error::{Error, Result};
use crate::schema::{BRONZE_CDC_CHANGES, TableDef};
use crate::table::Lake;

/// Compaction holds the file it writes in memory until the file is
/// complete, so its size bounds what compaction adds to the loader's peak.
const OPTIMIZE_TARGET_BYTES: u64 = 64 * 1024 * 1024;
const COMPACTED_ROW_GROUP_ROWS: usize = 32 * 1024;

pub(super) fn app_id(partition: u32) -> String {
    format!("strata-bronze-p{partition}")
}

/// The application transactions that hold a CDC source's marks in
/// `bronze.cdc_changes`: its last change's commit LSN and rank there, and
/// the same of its last change that ended a transaction.
struct SourceApps {
    lsn: String,
    rank: String,
    through_lsn: String,
    through_rank: String,
}

impl SourceApps {
    fn of(source: &str) -> Self {
        Self {
            lsn: format!("strata-cdc-{source}-lsn"),
            rank: format!("strata-cdc-{source}-rank"),
            through_lsn: format!("strata-cdc-{source}-through-lsn"),
            through_rank: format!("strata-cdc-{source}-through-rank"),
        }
    }
}

/// Where a CDC source stands in `bronze.cdc_changes` (zero: nothing yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceMarks {
    /// Its last change.
    pub last: ChangePosition,
    /// Its last change that ended a transaction: every transaction up to
    /// it is whole in the table.
    pub through: ChangePosition,
}

pub(super) struct Sink {
    pub(super) def: &'static TableDef,
    lazy: bool,
    /// `None` while a table created on its first row has none.
    table: Option<DeltaTable>,
    pub(super) committed: Vec<u64>,
    /// Per CDC source seen, where it stands in the table.
    sources: HashMap<String, SourceMarks>,
}

impl Sink {
    pub(super) async fn open(lake: &Lake, kind: Table, partitions: u32) -> Result<Self> {
        let def = kind.def();
        let lazy = kind.created_on_first_row();
        let table = if lazy && !lake.exists(def.layer, def.name) {
            None
        } else {
            Some(lake.open_or_create(def).await?)
        };
        let mut sink = Self {
            def,
            lazy,
            table,
            committed: vec![0; partitions as usize],
            sources: HashMap::new(),
        };
        sink.read_positions().await?;
        Ok(sink)
    }

    /// Whether the table exists: only then do its positions say anything.
    pub(super) fn exists(&self) -> bool {
        self.table.is_some()
    }

    /// The check before each write: another writer (or our own previous
    /// life) may have committed since we last looked.
    pub(super) async fn refresh(&mut self, lake: &Lake) -> Result<()> {
        match &mut self.table {
            Some(table) => table
                .update_state()
                .await
                .map_err(Error::delta(self.def.qualified_name()))?,
            None if self.lazy && lake.exists(self.def.layer, self.def.name) => {
                self.table = Some(lake.open(self.def.layer, self.def.name).await?);
            }
            None => return Ok(()),
        }
        self.read_positions().await?;
        let sources: Vec<String> = self.sources.keys().cloned().collect();
        for source in sources {
            let position = self.read_source_position(&source).await?;
            self.sources.insert(source, position);
        }
        Ok(())
    }

    async fn read_positions(&mut self) -> Result<()> {
        for partition in 0..self.committed.len() {
            let version = self.transaction_version(&app_id(partition as u32)).await?;
            self.committed[partition] = version.map_or(0, |v| v.max(0) as u64);
        }
        Ok(())
    }

    async fn transaction_version(&self, app: &str) -> Result<Option<i64>> {
        let Some(table) = &self.table else {
            return Ok(None);
        };
        let state = table
            .snapshot()
            .map_err(Error::delta(self.def.qualified_name()))?;
        state
            .transaction_version(table.log_store().as_ref(), app)
            .await
            .map_err(Error::delta(self.def.qualified_name()))
    }

    async fn read_source_position(&self, source: &str) -> Result<SourceMarks> {
        let apps = SourceApps::of(source);
        let mut values = [0u64; 4];
        for (value, app) in
            values
                .iter_mut()
                .zip([&apps.lsn, &apps.rank, &apps.through_lsn, &apps.through_rank])
        {
            *value = self
                .transaction_version(app)
                .await?
                .map_or(0, |v| v.max(0) as u64);
        }
        let [lsn, rank, through_lsn, through_rank] = values;
        Ok(SourceMarks {
            last: ChangePosition { lsn, rank },
            through: ChangePosition {
                lsn: through_lsn,
                rank: through_rank,
            },
        })
    }

    /// Where `source` stands in the table (zero before its first change).
    pub(super) async fn source_position(&mut self, source: &str) -> Result<SourceMarks> {
        if let Some(marks) = self.sources.get(source) {
            return Ok(*marks);
        }
        let marks = self.read_source_position(source).await?;
        self.sources.insert(source.to_string(), marks);
        Ok(marks)
    }

    /// Appends in one commit, with the log positions and the sources'
    /// positions the rows take the table to.
    pub(super) async fn append(
        &mut self,
        lake: &Lake,
        batches: Vec<RecordBatch>,
        ends: &BTreeMap<u32, u64>,
        sources: &HashMap<String, SourceMarks>,
    ) -> Result<()> {
        let mut txns: Vec<Transaction> = ends
            .iter()
            .map(|(p, end)| Transaction::new(app_id(*p), *end as i64))
            .collect();
        for (source, marks) in sources {
            let apps = SourceApps::of(source);
            txns.push(Transaction::new(apps.lsn, marks.last.lsn as i64));
            txns.push(Transaction::new(apps.rank, marks.last.rank as i64));
            if marks.through != ChangePosition::default() {
                txns.push(Transaction::new(apps.through_lsn, marks.through.lsn as i64));
                txns.push(Transaction::new(
                    apps.through_rank,
                    marks.through.rank as i64,
                ));
            }
        }
        let table = match self.table.take() {
            Some(table) => table,
            None => lake.open_or_create(self.def).await?,
        };
        let written = table
            .clone()
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(CommitProperties::default().with_application_transactions(txns))
            .await;
        match written {
            Ok(table) => self.table = Some(table),
            Err(e) => {
                self.table = Some(table);
                return Err(Error::delta(self.def.qualified_name())(e));
            }
        }
        for (p, end) in ends {
            self.committed[*p as usize] = *end;
        }
        for (source, marks) in sources {
            self.sources.insert(source.clone(), *marks);
        }
        Ok(())
    }

    pub(super) async fn optimize(&mut self, since: &str) -> Result<()> {
        let Some(table) = self.table.clone() else {
            return Ok(());
        };
        let filters = [("ingest_date", FilterOp::Ge, FilterValue::Scalar(since))];
        let (table, metrics) = table
            .optimize()
            .with_filters(&filters)
            .with_target_size(NonZeroU64::new(OPTIMIZE_TARGET_BYTES).expect("non-zero"))
            // One file at a time: compaction runs beside ingest, and each
            // file in progress is held in memory whole.
            .with_max_concurrent_tasks(1)
            .with_session_state(compaction_session()?)
            .with_writer_properties(compaction_writer())
            .await
            .map_err(Error::delta(self.def.qualified_name()))?;
        self.table = Some(table);
        tracing::info!(
            table = %self.def.qualified_name(),
            files_added = metrics.num_files_added,
            files_removed = metrics.num_files_removed,
            "compacted small files"
        );
        Ok(())
    }
}

/// Compaction reads its input files one after another (the default scan
/// reads a partition per core side by side, each with its row groups in
/// memory), beside ingest at its busiest.
fn compaction_session() -> Result<Arc<dyn deltalake::datafusion::catalog::Session>> {
    let overrides = [(
        "datafusion.execution.target_partitions".to_string(),
        "1".to_string(),
    )]
    .into_iter()
    .collect();
    let context = DeltaSessionContext::new_with_session_overrides(&overrides)
        .map_err(Error::delta("bronze compaction"))?;
    Ok(Arc::new(context.state()))
}

/// The writer's defaults, zstd level 4 as delta-rs compacts, but row groups
/// cut at [`COMPACTED_ROW_GROUP_ROWS`]: a row group is encoded in memory
/// whole, and bronze rows are large.
fn compaction_writer() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(4).expect("a zstd level"),
        ))
        .set_max_row_group_row_count(Some(COMPACTED_ROW_GROUP_ROWS))
        .build()
}

/// Where each CDC source stands in `bronze.cdc_changes`, for the sources
/// themselves: a source acknowledges to its database only what bronze holds,
/// and resumes from there after a restart.
pub struct ChangePositions {
    lake: Lake,
    sink: Option<Sink>,
}

impl ChangePositions {
    pub fn new(lake: Lake) -> Self {
        Self { lake, sink: None }
    }

    /// The position of `source`'s last change in bronze; `None` before its
    /// first.
    pub async fn get(&mut self, source: &str) -> Result<Option<ChangePosition>> {
        Ok(self.marks(source).await?.map(|m| m.last))
    }

    /// Where `source` stands in bronze; `None` before its first change.
    /// `through` is zero until a change that ends a transaction has landed
    /// (changes written by versions before the mark have none).
    pub async fn marks(&mut self, source: &str) -> Result<Option<SourceMarks>> {
        let def = &BRONZE_CDC_CHANGES;
        if self.sink.is_none() {
            if !self.lake.exists(def.layer, def.name) {
                return Ok(None);
            }
            self.sink = Some(Sink::open(&self.lake, Table::CdcChanges, 0).await?);
        }
        let sink = self.sink.as_mut().expect("opened above");
        sink.refresh(&self.lake).await?;
        let marks = sink.source_position(source).await?;
        Ok((marks.last != ChangePosition::default()).then_some(marks))
    }
}
