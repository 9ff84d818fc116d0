pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Lake(#[from] strata_lake::Error),
    #[error("delta table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },
    #[error("query: {0}")]
    Query(String),
    #[error("arrow: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    #[error("unknown model `{0}`; known models: {1}")]
    UnknownModel(String, String),
    #[error("{0}")]
    Invalid(String),
    #[error("batch state file {path}: {source}")]
    State {
        path: String,
        source: std::io::Error,
    },
    #[error("table {table} has an unexpected column {column}: {detail}")]
    Column {
        table: String,
        column: String,
        detail: String,
    },
    #[error("another batch run holds the lock in {0}; wait for it to finish")]
    Busy(String),
    #[error("a build task failed: {0}")]
    Task(String),
    /// Written by a later Strata (`strata_core::format`).
    #[error("{0}")]
    NewerFormat(String),
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
