//! Read-only SQL (DataFusion dialect) over every table, named `layer.table`.

use std::sync::Arc;

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::datafusion::catalog::MemorySchemaProvider;
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::prelude::SessionContext;

use crate::error::{Error, Result};
use crate::table::Lake;

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
}

impl SqlEngine {
    /// Registers every Delta table found under the lake root.
    pub async fn open(lake: &Lake) -> Result<Self> {
        let ctx = SessionContext::new();
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
        Ok(Self { ctx, tables })
    }

    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// Runs one read-only statement; DDL, DML and `SET` are refused.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
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
        Ok(frame.collect().await?)
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
