//! Exit codes of SPEC §1: 0 success, 1 runtime failure, 2 usage or configuration.

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Runtime(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Runtime(_) => 1,
        }
    }

    pub fn runtime(e: impl std::fmt::Display) -> Self {
        CliError::Runtime(e.to_string())
    }
}

impl From<strata_core::Error> for CliError {
    fn from(e: strata_core::Error) -> Self {
        CliError::Usage(e.to_string())
    }
}

impl From<strata_sources::Error> for CliError {
    fn from(e: strata_sources::Error) -> Self {
        match e {
            strata_sources::Error::Config(_) => CliError::Usage(e.to_string()),
            other => CliError::Runtime(other.to_string()),
        }
    }
}

impl From<strata_lake::Error> for CliError {
    fn from(e: strata_lake::Error) -> Self {
        CliError::Runtime(e.to_string())
    }
}

impl From<strata_log::LogError> for CliError {
    fn from(e: strata_log::LogError) -> Self {
        CliError::Runtime(e.to_string())
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

impl From<strata_batch::Error> for CliError {
    fn from(e: strata_batch::Error) -> Self {
        match e {
            strata_batch::Error::UnknownModel(..) => CliError::Usage(e.to_string()),
            other => CliError::Runtime(other.to_string()),
        }
    }
}

impl From<strata_stream::Error> for CliError {
    fn from(e: strata_stream::Error) -> Self {
        CliError::Runtime(e.to_string())
    }
}

impl From<strata_orchestrator::Error> for CliError {
    fn from(e: strata_orchestrator::Error) -> Self {
        use strata_orchestrator::Error as E;
        match e {
            E::Schedule { .. } | E::Config(_) => CliError::Usage(format!("orchestrator: {e}")),
            E::Batch(batch) => (*batch).into(),
            other => CliError::Runtime(other.to_string()),
        }
    }
}
