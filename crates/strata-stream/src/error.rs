use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("log: {0}")]
    Log(#[from] strata_log::LogError),
    #[error("lake: {0}")]
    Lake(#[from] strata_lake::Error),
    #[error("delta table realtime.events_minute: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    #[error("query: {0}")]
    DataFusion(#[from] deltalake::datafusion::error::DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path} is unusable: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    /// Written by a later Strata (`strata_core::format`).
    #[error("{0}")]
    NewerFormat(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Error {
        Error::Checkpoint {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
