//! Column definitions of the tables Strata owns (SPEC §3), in one place so the
//! Delta schema and the Arrow batches written into it cannot drift apart.

use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::{DataType, StructField};

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub data_type: ColumnType,
    pub nullable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Boolean,
    Int,
    Long,
    Double,
    /// Microseconds, UTC.
    Timestamp,
    Date,
}

impl ColumnType {
    fn delta(self) -> DataType {
        match self {
            ColumnType::String => DataType::STRING,
            ColumnType::Boolean => DataType::BOOLEAN,
            ColumnType::Int => DataType::INTEGER,
            ColumnType::Long => DataType::LONG,
            ColumnType::Double => DataType::DOUBLE,
            ColumnType::Timestamp => DataType::TIMESTAMP,
            ColumnType::Date => DataType::DATE,
        }
    }

    fn arrow(self) -> ArrowType {
        match self {
            ColumnType::String => ArrowType::Utf8,
            ColumnType::Boolean => ArrowType::Boolean,
            ColumnType::Int => ArrowType::Int32,
            ColumnType::Long => ArrowType::Int64,
            ColumnType::Double => ArrowType::Float64,
            ColumnType::Timestamp => {
                ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            ColumnType::Date => ArrowType::Date32,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct TableDef {
    pub layer: &'static str,
    pub name: &'static str,
    pub columns: &'static [Column],
    pub partition_by: &'static [&'static str],
    pub description: &'static str,
}

impl TableDef {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.layer, self.name)
    }

    pub fn delta_fields(&self) -> Vec<StructField> {
        self.columns
            .iter()
            .map(|c| StructField::new(c.name, c.data_type.delta(), c.nullable))
            .collect()
    }

    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.data_type.arrow(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }
}

pub const fn col(name: &'static str, data_type: ColumnType, nullable: bool) -> Column {
    Column {
        name,
        data_type,
        nullable,
    }
}

use ColumnType as T;

/// Append-only; partitioned by `ingest_date` because the loader only ever
/// appends to today's partition and incremental jobs read by ingest time.
pub const BRONZE_EVENTS: TableDef = TableDef {
    layer: "bronze",
    name: "events",
    columns: &[
        col("event_id", T::String, false),
        col("id_generated", T::Boolean, false),
        col("event_type", T::String, false),
        col("event_name", T::String, false),
        col("user_id", T::String, true),
        col("anonymous_id", T::String, true),
        col("event_ts", T::Timestamp, false),
        col("event_ts_clamped", T::Boolean, false),
        col("sent_at", T::Timestamp, true),
        col("received_at", T::Timestamp, false),
        col("source", T::String, false),
        col("properties", T::String, true),
        col("context", T::String, true),
        col("traits", T::String, true),
        col("ingest_date", T::Date, false),
        col("log_partition", T::Int, false),
        col("log_offset", T::Long, false),
    ],
    partition_by: &["ingest_date"],
    description: "Every accepted message, normalised, exactly once per log record.",
};

pub const BRONZE_QUARANTINE: TableDef = TableDef {
    layer: "bronze",
    name: "quarantine",
    columns: &[
        col("received_at", T::Timestamp, false),
        col("source", T::String, false),
        col("reason", T::String, false),
        col("detail", T::String, false),
        col("raw", T::String, false),
        col("ingest_date", T::Date, false),
        col("log_partition", T::Int, false),
        col("log_offset", T::Long, false),
    ],
    partition_by: &["ingest_date"],
    description: "Every rejected input with the reason; nothing is dropped silently.",
};

/// Every row change of every captured database table (SPEC §7), append-only
/// and partitioned by `ingest_date` like the rest of bronze; silver replays
/// it per table in `(lsn, seq)` order.
pub const BRONZE_CDC_CHANGES: TableDef = TableDef {
    layer: "bronze",
    name: "cdc_changes",
    columns: &[
        col("source", T::String, false),
        col("table_schema", T::String, false),
        col("table_name", T::String, false),
        col("op", T::String, false),
        col("lsn", T::String, false),
        // The LSN as a number, so the silver models sort and filter on it
        // without parsing text; `lsn` keeps PostgreSQL's spelling.
        col("lsn_value", T::Long, false),
        col("commit_ts", T::Timestamp, false),
        col("tx_id", T::Long, true),
        col("seq", T::Long, false),
        col("key", T::String, false),
        col("before", T::String, true),
        col("after", T::String, true),
        col("received_at", T::Timestamp, false),
        col("ingest_date", T::Date, false),
        col("log_partition", T::Int, false),
        col("log_offset", T::Long, false),
    ],
    partition_by: &["ingest_date"],
    description: "Every change of every captured database table, exactly once, in commit order.",
};

/// The column lists of captured tables, one row each time a source sees a
/// table's definition change; silver types a table's columns by its latest.
pub const BRONZE_CDC_SCHEMAS: TableDef = TableDef {
    layer: "bronze",
    name: "cdc_schemas",
    columns: &[
        col("source", T::String, false),
        col("table_schema", T::String, false),
        col("table_name", T::String, false),
        col("lsn", T::String, false),
        col("lsn_value", T::Long, false),
        col("columns", T::String, false),
        col("received_at", T::Timestamp, false),
        col("ingest_date", T::Date, false),
        col("log_partition", T::Int, false),
        col("log_offset", T::Long, false),
    ],
    partition_by: &["ingest_date"],
    description: "The column list of each captured table as its source declared it, by LSN.",
};
