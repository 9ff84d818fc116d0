pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("delta table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },
    #[error("arrow: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    #[error("{0}")]
    Query(String),
    #[error("column {column}: {detail}")]
    Column { column: String, detail: String },
    #[error("only read-only queries are allowed: {0}")]
    NotReadOnly(String),
    /// Over `sql.max_query_memory`.
    #[error("{0}")]
    QueryTooLarge(String),
    /// Over `sql.statement_timeout`.
    #[error("{0}")]
    QueryTimeout(String),
    #[error("log: {0}")]
    Log(#[from] strata_log::LogError),
    #[error("io error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl Error {
    pub fn delta(table: impl Into<String>) -> impl FnOnce(deltalake::DeltaTableError) -> Error {
        let table = table.into();
        move |source| Error::Delta { table, source }
    }
}

impl From<deltalake::datafusion::error::DataFusionError> for Error {
    fn from(e: deltalake::datafusion::error::DataFusionError) -> Self {
        Error::Query(e.to_string())
    }
}
