//! The columns of a file feed's table (SPEC §7): declared in the config
//! or inferred from the first file, carried in each chunk of rows so that
//! bronze types the rows the way the source checked them.

use serde::{Deserialize, Serialize};

/// A feed column's type. Values travel as JSON: `long` and `double` as
/// numbers, `boolean` as true/false, `date` as days since 1970-01-01,
/// `timestamp` as microseconds since the epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Long,
    Double,
    Boolean,
    Date,
    Timestamp,
}

impl ColumnType {
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Long => "long",
            ColumnType::Double => "double",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
        }
    }

    /// A type as a config spells it; the common SQL names are understood.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "string" | "text" | "varchar" | "utf8" => ColumnType::String,
            "long" | "bigint" | "int" | "integer" | "int64" | "int32" => ColumnType::Long,
            "double" | "float" | "real" | "float64" | "decimal" | "numeric" => ColumnType::Double,
            "boolean" | "bool" => ColumnType::Boolean,
            "date" => ColumnType::Date,
            "timestamp" | "timestamptz" | "datetime" => ColumnType::Timestamp,
            _ => return None,
        })
    }

    /// The type both `self` and `other` values fit (inference across rows).
    pub fn widen(self, other: ColumnType) -> ColumnType {
        use ColumnType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Long, Double) | (Double, Long) => Double,
            (Date, Timestamp) | (Timestamp, Date) => Timestamp,
            _ => String,
        }
    }
}

/// Column names bronze adds to every feed row; a file's own columns may
/// not use them.
pub const RESERVED_COLUMNS: [&str; 7] = [
    "_file",
    "_row",
    "_file_sha256",
    "received_at",
    "ingest_date",
    "_log_partition",
    "_log_offset",
];

/// A feed table's own columns, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedSchema {
    pub columns: Vec<(String, ColumnType)>,
}

impl FeedSchema {
    pub fn get(&self, name: &str) -> Option<ColumnType> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| *t)
    }

    /// The JSON form a chunk carries: `[["name", "type"], ...]`.
    pub fn to_json(&self) -> String {
        let pairs: Vec<(&str, &str)> = self
            .columns
            .iter()
            .map(|(n, t)| (n.as_str(), t.name()))
            .collect();
        serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
    }

    pub fn from_json(text: &str) -> Option<Self> {
        let pairs: Vec<(String, String)> = serde_json::from_str(text).ok()?;
        let columns = pairs
            .into_iter()
            .map(|(n, t)| Some((n, ColumnType::parse(&t)?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Self { columns })
    }
}
