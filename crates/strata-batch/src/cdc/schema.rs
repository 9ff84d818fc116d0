//! A captured table's columns, from the latest definition its source sent
//! (`bronze.cdc_schemas`), and the Arrow schemas of its two silver tables.

use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::prelude::{col, lit};
use strata_core::event::RelationColumn;
use strata_lake::schema::BRONZE_CDC_SCHEMAS;

use super::CdcTable;
use super::cell::Kind;
use crate::error::{Error, Result};
use crate::io::{LakeIo, column};

/// Columns silver adds to the current state.
pub const STATE_EXTRA: [&str; 2] = ["_lsn", "_updated_at"];
/// Columns silver adds to the history.
pub const HISTORY_EXTRA: [&str; 4] = ["valid_from", "valid_to", "is_current", "is_deleted"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    pub key: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub columns: Vec<Column>,
    /// Positions of the primary key's columns in `columns`.
    pub key: Vec<usize>,
}

impl TableSchema {
    pub fn new(table: &CdcTable, declared: &[RelationColumn]) -> Result<Self> {
        let columns: Vec<Column> = declared
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                kind: Kind::of(&c.type_name, c.type_modifier),
                key: c.key,
            })
            .collect();
        let key: Vec<usize> = (0..columns.len()).filter(|&i| columns[i].key).collect();
        if key.is_empty() {
            return Err(Error::Invalid(format!(
                "captured table {} has no primary key columns in bronze.cdc_schemas; \
                 silver keeps one row per primary key",
                table.qualified()
            )));
        }
        let reserved = STATE_EXTRA.iter().chain(&HISTORY_EXTRA);
        for name in reserved {
            if columns.iter().any(|c| c.name == *name) {
                return Err(Error::Invalid(format!(
                    "captured table {} has a column named {name}, which silver adds itself",
                    table.qualified()
                )));
            }
        }
        Ok(Self { columns, key })
    }

    fn fields(&self) -> Vec<Field> {
        self.columns
            .iter()
            .map(|c| Field::new(&c.name, c.kind.arrow(), true))
            .collect()
    }

    pub fn state(&self) -> SchemaRef {
        let mut fields = self.fields();
        fields.push(Field::new("_lsn", DataType::Utf8, false));
        fields.push(Field::new("_updated_at", timestamp(), false));
        Arc::new(Schema::new(fields))
    }

    pub fn history(&self) -> SchemaRef {
        let mut fields = self.fields();
        fields.push(Field::new("valid_from", timestamp(), false));
        fields.push(Field::new("valid_to", timestamp(), true));
        fields.push(Field::new("is_current", DataType::Boolean, false));
        fields.push(Field::new("is_deleted", DataType::Boolean, false));
        Arc::new(Schema::new(fields))
    }
}

pub fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Whether a stored table has the columns and types of `schema` (nullability
/// aside: Delta may report it differently than it was written).
pub fn same_columns(stored: &Schema, schema: &Schema) -> bool {
    stored.fields().len() == schema.fields().len()
        && stored
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
}

/// The table's latest column list (highest LSN, then latest log position);
/// `None` before its source sent one.
pub async fn latest(io: &LakeIo, table: &CdcTable) -> Result<Option<TableSchema>> {
    let filter = col("source")
        .eq(lit(table.source.as_str()))
        .and(col("table_schema").eq(lit(table.schema.as_str())))
        .and(col("table_name").eq(lit(table.name.as_str())));
    let batches = io
        .scan(
            &BRONZE_CDC_SCHEMAS,
            &["lsn_value", "log_partition", "log_offset", "columns"],
            Some(filter),
        )
        .await?;
    let mut best: Option<((i64, i32, i64), String)> = None;
    for batch in &batches {
        let lsn = column::longs(batch, "lsn_value")?;
        let partition = column::ints(batch, "log_partition")?;
        let offset = column::longs(batch, "log_offset")?;
        let columns = column::strings(batch, "columns")?;
        for i in 0..batch.num_rows() {
            let at = (lsn.value(i), partition.value(i), offset.value(i));
            if best.as_ref().is_none_or(|(b, _)| at > *b) {
                best = Some((at, columns.value(i).to_owned()));
            }
        }
    }
    let Some((_, text)) = best else {
        return Ok(None);
    };
    let declared: Vec<RelationColumn> = serde_json::from_str(&text).map_err(|e| {
        Error::Invalid(format!(
            "bronze.cdc_schemas: the column list of {} is not valid: {e}",
            table.qualified()
        ))
    })?;
    TableSchema::new(table, &declared).map(Some)
}
