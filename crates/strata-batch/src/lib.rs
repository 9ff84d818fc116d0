//! The batch path: silver and gold models over the Delta tables (SPEC §3,
//! §4), built partition by partition in dependency order, with dirty
//! tracking so late data rebuilds exactly what it changes.

mod bronze_index;
pub mod cdc;
mod compare;
pub mod dates;
mod error;
pub mod io;
pub mod model;
pub mod models;
pub mod plan;
pub mod runner;
pub mod state;
pub mod stats;
pub mod tables;

pub use error::{Error, Result};
pub use io::LakeIo;
pub use model::Model;
pub use runner::{BatchConfig, Plan, Progress, Runner, Summary};
pub use state::StateFile;

/// Registers what of the configuration shapes the set of models: the
/// captured tables of `postgres_cdc` sources become models
/// (`silver.<table>`, `silver.<table>_history`). Call it once the
/// configuration is loaded, before naming a model; calling it again is
/// harmless.
pub fn configure(config: &strata_core::Config) -> Result<()> {
    cdc::configure(config)
}

/// Where the batch path keeps its state inside the data dir.
pub fn state_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("batch")
}
