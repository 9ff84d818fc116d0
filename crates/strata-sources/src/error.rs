pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `[[sources]]` entry that cannot work as written.
    #[error("{0}")]
    Config(String),
    /// The upstream system refused or failed, in one sentence.
    #[error("{0}")]
    Upstream(String),
    #[error("log: {0}")]
    Log(#[from] strata_log::LogError),
    #[error("lake: {0}")]
    Lake(#[from] strata_lake::Error),
    #[error("io error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl Error {
    /// The error of an I/O call on `path`, for `map_err`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
