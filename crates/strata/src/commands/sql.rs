use strata_lake::query::format_batches;
use strata_lake::{Lake, OutputFormat, SqlEngine};

use crate::cli::{Format, GlobalArgs, SqlArgs};
use crate::error::{CliError, Result};
use crate::server::load_config;

pub async fn run(global: &GlobalArgs, args: SqlArgs) -> Result<()> {
    let config = load_config(global, None)?;
    let lake = Lake::new(config.lake_dir());
    // One query per process: the concurrency limit is the server's; the
    // time and memory limits hold here too.
    let engine = SqlEngine::open_with(&lake, &config.sql).await?;
    let batches = engine.query(&args.query).await.map_err(|e| match e {
        strata_lake::Error::NotReadOnly(_) => CliError::Usage(e.to_string()),
        strata_lake::Error::Query(message) => CliError::Usage(format!("query failed: {message}")),
        other => CliError::from(other),
    })?;
    let format = match args.format {
        Format::Table => OutputFormat::Table,
        Format::Csv => OutputFormat::Csv,
        Format::Json => OutputFormat::Json,
    };
    let text = format_batches(&batches, format)?;
    if text.ends_with('\n') {
        print!("{text}");
    } else {
        println!("{text}");
    }
    Ok(())
}
