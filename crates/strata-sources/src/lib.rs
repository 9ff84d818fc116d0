//! Every source of data Strata lands, one module per kind (SPEC §7), and the
//! one producer path they all append to the log through.
//!
//! A kind is a module with its config struct beside its runtime, and one
//! line in [`KINDS`]. Kinds that are sent to (`http`) are served by the HTTP
//! router; kinds that read from somewhere (`postgres_cdc`) implement
//! [`Source`] and run as tasks of the collector role.

mod error;
pub mod file_feed;
pub mod http;
pub mod log_file;
mod messages;
pub mod postgres_cdc;
pub mod producer;
pub mod prometheus;
mod state_file;

use std::path::PathBuf;

use futures::future::BoxFuture;
use strata_core::Config;
use strata_core::config::SourceConfig;
use strata_lake::Lake;
use tokio::sync::watch;

pub use error::{Error, Result};
pub use http::Collector;
pub use producer::{Outbox, Producer};

/// The source kinds Strata knows: adding one is a module and a line here.
pub const KINDS: &[Kind] = &[
    http::KIND,
    postgres_cdc::KIND,
    log_file::KIND,
    file_feed::KIND,
];

/// One kind of source: how its `[[sources]]` entry is checked, and how its
/// runtime is built.
pub struct Kind {
    /// The `kind` value of its `[[sources]]` entries.
    pub name: &'static str,
    /// Reads the entry's keys into the kind's config struct; an unknown or
    /// missing key is an error that names it.
    pub check: fn(&SourceConfig) -> Result<()>,
    /// The runtime of a source that reads from elsewhere; `None` for kinds
    /// that are sent to, which the HTTP router serves.
    pub build: Option<fn(&SourceConfig, &SourceContext) -> Result<Box<dyn Source>>>,
}

/// What a source's runtime gets from the process.
#[derive(Clone)]
pub struct SourceContext {
    pub producer: Producer,
    /// Where bronze is: a source acknowledges upstream only what bronze holds.
    pub lake: Lake,
    /// A directory of the source's own for state it keeps between runs.
    pub state_dir: PathBuf,
    /// The limits every Segment message is held to, whichever way it came.
    pub limits: strata_core::config::CollectorConfig,
}

/// A source that reads records from somewhere and lands them in the log.
pub trait Source: Send {
    fn name(&self) -> &str;

    /// Connects and checks everything the source needs, so a bad setup
    /// fails at start with one sentence naming what is wrong.
    fn start(&mut self) -> BoxFuture<'_, Result<()>>;

    /// Reads and lands records until `shutdown` turns true, then lands what
    /// it has read, records its positions and returns. Connection losses
    /// are retried inside; an error means the source cannot go on.
    fn run(&mut self, shutdown: watch::Receiver<bool>) -> BoxFuture<'_, Result<()>>;

    /// Where the source stands, as `(what, position)` pairs for `strata
    /// status` (e.g. `("confirmed", "0/16B3748")`).
    fn positions(&self) -> Vec<(String, String)>;
}

fn kind_of(source: &SourceConfig) -> Result<&'static Kind> {
    KINDS
        .iter()
        .find(|kind| kind.name == source.kind)
        .ok_or_else(|| {
            let known: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
            Error::Config(format!(
                "source {:?} has unknown kind {:?}; the kinds are {}",
                source.name,
                source.kind,
                known.join(", ")
            ))
        })
}

/// Checks every `[[sources]]` entry against its kind's config struct.
pub fn check_config(config: &Config) -> Result<()> {
    for source in &config.sources {
        (kind_of(source)?.check)(source)?;
    }
    Ok(())
}

/// Reads an entry's keys into the kind's config struct `T`, with errors that
/// name the source and the key.
pub fn parse_options<T: serde::de::DeserializeOwned>(source: &SourceConfig) -> Result<T> {
    T::deserialize(toml::Value::Table(source.options.clone())).map_err(|e| {
        Error::Config(format!(
            "source {:?} (kind {:?}): {}",
            source.name,
            source.kind,
            e.message()
        ))
    })
}

/// The runtimes of every configured source that reads from elsewhere.
pub fn build_sources(config: &Config, producer: &Producer) -> Result<Vec<Box<dyn Source>>> {
    let mut sources = Vec::new();
    for source in &config.sources {
        let Some(build) = kind_of(source)?.build else {
            continue;
        };
        let context = SourceContext {
            producer: producer.clone(),
            lake: Lake::new(config.lake_dir()),
            state_dir: config.data_dir.join("sources").join(&source.name),
            limits: config.collector.clone(),
        };
        sources.push(build(source, &context)?);
    }
    Ok(sources)
}
