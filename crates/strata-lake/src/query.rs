//! Read-only SQL (DataFusion dialect) over every table, named `layer.table`.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::datafusion::catalog::MemorySchemaProvider;
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::execution::SessionStateBuilder;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use strata_core::config::SqlConfig;

use crate::error::{Error, Result};
use crate::table::Lake;
use crate::yielding::YieldEverywhere;

pub const LAYERS: [&str; 4] = ["bronze", "silver", "gold", "realtime"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

pub struct SqlEngine {
    ctx: SessionContext,
    tables: Vec<String>,
    limits: SqlConfig,
}

/// A query's answer: its batches, and whether rows beyond the asked-for
/// number were left unread.
pub struct Answer {
    pub batches: Vec<RecordBatch>,
    pub truncated: bool,
}

impl SqlEngine {
    /// Registers every Delta table found under the lake root, with the
    /// default limits of `[sql]`.
    pub async fn open(lake: &Lake) -> Result<Self> {
        Self::open_with(lake, &SqlConfig::default()).await
    }

    /// Registers every Delta table found under the lake root. Each engine
    /// has its own memory pool of `limits.max_query_memory`, so one engine
    /// per query bounds each query; nothing spills to disk, where a
    /// runaway query would fill the disk the log lives on.
    pub async fn open_with(lake: &Lake, limits: &SqlConfig) -> Result<Self> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.max_query_memory, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()?;
        let state = SessionStateBuilder::new()
            .with_config(SessionConfig::new())
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(YieldEverywhere))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| Error::Query("default catalog missing".into()))?;
        let mut tables = Vec::new();
        for layer in LAYERS {
            catalog
                .register_schema(layer, Arc::new(MemorySchemaProvider::new()))
                .map_err(Error::from)?;
            for name in lake.tables_in(layer) {
                let table = lake.open(layer, &name).await?;
                table
                    .update_datafusion_session(&ctx.state())
                    .map_err(Error::delta(format!("{layer}.{name}")))?;
                let provider = table.table_provider().await.map_err(Error::from)?;
                // The provider lists partition columns last; `select *` shows
                // the columns in the order the table declares them.
                let declared: Vec<String> = table
                    .snapshot()
                    .map_err(Error::delta(format!("{layer}.{name}")))?
                    .schema()
                    .fields()
                    .map(|f| f.name().to_string())
                    .collect();
                let declared: Vec<&str> = declared.iter().map(String::as_str).collect();
                let view = ctx
                    .read_table(provider)
                    .and_then(|frame| frame.select_columns(&declared))
                    .map_err(Error::from)?
                    .into_view();
                ctx.register_table(TableReference::partial(layer, name.as_str()), view)
                    .map_err(Error::from)?;
                tables.push(format!("{layer}.{name}"));
            }
        }
        Ok(Self {
            ctx,
            tables,
            limits: limits.clone(),
        })
    }

    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// Runs one read-only statement and returns every row; DDL, DML and
    /// `SET` are refused.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.query_rows(sql, usize::MAX).await?.batches)
    }

    /// Runs one read-only statement and reads at most `max_rows` rows of
    /// its answer. The statement timeout and the memory limit hold for the
    /// whole of it, the rows held as the answer included.
    pub async fn query_rows(&self, sql: &str, max_rows: usize) -> Result<Answer> {
        let timeout = self.limits.statement_timeout;
        let run = Run {
            ctx: self.ctx.clone(),
            limits: self.limits.clone(),
        };
        let sql = sql.to_string();
        // A plan can compute for seconds without yielding; on its own
        // runtime it cannot hold up the threads that answer HTTP, and the
        // timeout below fires on time.
        let task = sql_runtime().spawn(async move { run.answer(&sql, max_rows).await });
        let abort = task.abort_handle();
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => Err(Error::Query(format!("the query stopped: {e}"))),
            Err(_) => {
                // Dropping the plan at its next yield stops all its tasks.
                abort.abort();
                Err(timed_out(timeout))
            }
        }
    }

    /// Runs one read-only statement and hands its answer to `each` a batch
    /// at a time, holding none of it: `strata sql` prints answers larger
    /// than memory. The statement timeout bounds the time spent computing
    /// the answer, not the time `each` spends on it (a slow pipe).
    pub async fn query_each<F>(&self, sql: &str, each: F) -> Result<()>
    where
        F: FnMut(RecordBatch) -> Result<()> + Send + 'static,
    {
        let run = Run {
            ctx: self.ctx.clone(),
            limits: self.limits.clone(),
        };
        let sql = sql.to_string();
        sql_runtime()
            .spawn(async move { run.each(&sql, each).await })
            .await
            .map_err(|e| Error::Query(format!("the query stopped: {e}")))?
    }
}

fn timed_out(timeout: std::time::Duration) -> Error {
    Error::QueryTimeout(format!(
        "the query was cancelled after {} (sql.statement_timeout)",
        humantime::format_duration(timeout)
    ))
}

/// Stack of each SQL thread: planning recurses once per level of an
/// expression, and a tree at `max_expression_depth` (or a rejected deeper
/// one being dropped) must fit. Untouched stack pages cost no memory.
const SQL_THREAD_STACK_BYTES: usize = 64 * 1024 * 1024;

/// The runtime every query runs on, one worker per core.
fn sql_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("strata-sql")
            .thread_stack_size(SQL_THREAD_STACK_BYTES)
            .enable_all()
            .build()
            .expect("the SQL runtime starts")
    })
}

/// One query's execution, owned so it can move to the SQL runtime.
struct Run {
    ctx: SessionContext,
    limits: SqlConfig,
}

impl Run {
    /// The statement planned and started: its answer, batch by batch, as
    /// the plan computes it.
    async fn stream(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        crate::sql_guard::check(
            sql,
            self.limits.max_query_bytes,
            self.limits.max_expression_depth,
        )?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = self.ctx.sql_with_options(sql, options).await.map_err(|e| {
            let text = e.to_string();
            if text.contains("not supported")
                && (text.contains("DDL") || text.contains("DML") || text.contains("Statement"))
            {
                Error::NotReadOnly(text)
            } else {
                Error::Query(text)
            }
        })?;
        frame
            .execute_stream()
            .await
            .map_err(|e| self.query_error(e))
    }

    /// At most `max_rows` rows: the stream is dropped, and its plan
    /// stopped, as soon as they are read.
    async fn answer(&self, sql: &str, max_rows: usize) -> Result<Answer> {
        let mut stream = self.stream(sql).await?;
        let (mut batches, mut rows, mut bytes) = (Vec::new(), 0usize, 0usize);
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| self.query_error(e))?;
            if rows >= max_rows {
                return Ok(Answer {
                    batches,
                    truncated: true,
                });
            }
            let room = max_rows - rows;
            let cut = batch.num_rows() > room;
            let batch = batch.slice(0, batch.num_rows().min(room));
            rows += batch.num_rows();
            // The answer is held in memory too, outside DataFusion's pool.
            bytes += batch.get_array_memory_size();
            if bytes > self.limits.max_query_memory {
                return Err(self.too_large("its answer"));
            }
            batches.push(batch);
            if cut {
                return Ok(Answer {
                    batches,
                    truncated: true,
                });
            }
        }
        Ok(Answer {
            batches,
            truncated: false,
        })
    }

    /// Only the time spent waiting on the plan counts against the timeout:
    /// `each` writing to a slow reader does not cancel the statement.
    async fn each(&self, sql: &str, mut each: impl FnMut(RecordBatch) -> Result<()>) -> Result<()> {
        let timeout = self.limits.statement_timeout;
        let mut left = timeout;
        let started = Instant::now();
        let mut stream = tokio::time::timeout(left, self.stream(sql))
            .await
            .map_err(|_| timed_out(timeout))??;
        left = left.saturating_sub(started.elapsed());
        loop {
            let started = Instant::now();
            let next = tokio::time::timeout(left, stream.next())
                .await
                .map_err(|_| timed_out(timeout))?;
            left = left.saturating_sub(started.elapsed());
            match next {
                None => return Ok(()),
                Some(batch) => each(batch.map_err(|e| self.query_error(e))?)?,
            }
        }
    }

    fn query_error(&self, e: DataFusionError) -> Error {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(_) => self.too_large("its work"),
            _ => Error::Query(e.to_string()),
        }
    }

    fn too_large(&self, what: &str) -> Error {
        Error::QueryTooLarge(format!(
            "the query needs more memory for {what} than sql.max_query_memory ({} MiB); add a LIMIT, filter or aggregate",
            self.limits.max_query_memory >> 20
        ))
    }
}

pub fn format_batches(batches: &[RecordBatch], format: OutputFormat) -> Result<String> {
    match format {
        OutputFormat::Table => Ok(pretty_format_batches(batches)?.to_string()),
        OutputFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = deltalake::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for batch in batches {
                    writer.write(batch)?;
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        OutputFormat::Json => {
            let (columns, rows) = json_rows(batches, usize::MAX)?;
            let objects: Vec<serde_json::Value> = rows
                .into_iter()
                .map(|row| serde_json::Value::Object(columns.iter().cloned().zip(row).collect()))
                .collect();
            Ok(serde_json::to_string_pretty(&objects).unwrap_or_default())
        }
    }
}

/// The column names and up to `limit` rows, typed as displayed: numbers
/// stay numbers, timestamps are RFC 3339 strings, nulls are null.
pub fn json_rows(
    batches: &[RecordBatch],
    limit: usize,
) -> Result<(Vec<String>, Vec<Vec<serde_json::Value>>)> {
    let columns: Vec<String> = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    let mut rows = Vec::new();
    let options = FormatOptions::default().with_null("");
    for batch in batches {
        let schema = batch.schema();
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            if rows.len() >= limit {
                return Ok((columns, rows));
            }
            let values = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, field)| {
                    if batch.column(i).is_null(row) {
                        serde_json::Value::Null
                    } else {
                        json_value(field.data_type(), formatters[i].value(row).to_string())
                    }
                })
                .collect();
            rows.push(values);
        }
    }
    Ok((columns, rows))
}

fn json_value(
    data_type: &deltalake::arrow::datatypes::DataType,
    text: String,
) -> serde_json::Value {
    use deltalake::arrow::datatypes::DataType::*;
    match data_type {
        Int8
        | Int16
        | Int32
        | Int64
        | UInt8
        | UInt16
        | UInt32
        | UInt64
        | Float32
        | Float64
        | Decimal128(_, _) => {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        }
        Boolean => serde_json::Value::Bool(text == "true"),
        _ => serde_json::Value::String(text),
    }
}
