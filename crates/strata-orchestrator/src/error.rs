use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("run store {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("run store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("run store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Boxed: the batch path's errors carry DataFusion's, which are large.
    #[error(transparent)]
    Batch(Box<strata_batch::Error>),
    #[error("schedule {name:?}: {message}")]
    Schedule { name: String, message: String },
    /// A setting of `[orchestrator]` that cannot work.
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Invalid(String),
    /// Written by a later Strata (`strata_core::format`).
    #[error("{0}")]
    NewerFormat(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<strata_batch::Error> for Error {
    fn from(e: strata_batch::Error) -> Self {
        Error::Batch(Box::new(e))
    }
}
