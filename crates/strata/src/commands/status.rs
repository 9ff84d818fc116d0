//! `strata status`: how fresh each table is and what was quarantined.

use strata_lake::query::format_batches;
use strata_lake::{Lake, OutputFormat, SqlEngine};

use crate::cli::GlobalArgs;
use crate::error::Result;
use crate::server::load_config;

pub async fn run(global: &GlobalArgs) -> Result<()> {
    let config = load_config(global, None)?;
    let lake = Lake::new(config.lake_dir());
    let engine = SqlEngine::open(&lake).await?;
    if engine.tables().is_empty() {
        println!(
            "no tables yet under {}: start `strata serve` (or `strata demo`) and send events",
            lake.root().display()
        );
        return Ok(());
    }
    println!("tables: {}", engine.tables().join(", "));
    if engine.tables().iter().any(|t| t == "bronze.events") {
        let freshness = engine
            .query(
                "select count(*) as events, max(received_at) as newest_received_at, \
                 now() - max(received_at) as behind from bronze.events",
            )
            .await?;
        println!(
            "\nbronze.events\n{}",
            format_batches(&freshness, OutputFormat::Table)?
        );
    }
    if engine.tables().iter().any(|t| t == "bronze.quarantine") {
        let reasons = engine
            .query(
                "select reason, count(*) as rows, max(received_at) as last_seen \
                 from bronze.quarantine group by reason order by rows desc",
            )
            .await?;
        println!(
            "\nbronze.quarantine by reason\n{}",
            format_batches(&reasons, OutputFormat::Table)?
        );
    }
    if engine
        .tables()
        .iter()
        .any(|t| t == "realtime.events_minute")
    {
        let realtime = engine
            .query(
                "select max(minute) as newest_minute, sum(events) as events \
                 from realtime.events_minute",
            )
            .await?;
        println!(
            "\nrealtime.events_minute\n{}",
            format_batches(&realtime, OutputFormat::Table)?
        );
    }
    let checkpoints = strata_stream::checkpoint::CheckpointDir::at(config.stream_dir()).load();
    match checkpoints {
        Ok(Some(manifest)) => println!(
            "stream processor: checkpoint {} at {}, log positions {:?}",
            manifest.epoch,
            strata_stream::view::format_micros(manifest.written_at, chrono::SecondsFormat::Secs),
            manifest.positions
        ),
        Ok(None) => println!("stream processor: no checkpoint yet"),
        Err(e) => println!("stream processor: {e}"),
    }
    let state = strata_batch::StateFile::read(&strata_batch::state_dir(&config.data_dir))?;
    let dirty = state.all_dirty();
    if dirty.is_empty() {
        println!("\nbatch models: nothing marked dirty");
    } else {
        println!(
            "\nbatch models: {} partitions marked dirty (`strata run --dirty` rebuilds them)",
            dirty.len()
        );
        for (model, date) in dirty.iter().take(20) {
            match date {
                Some(d) => println!("  {model} {d}"),
                None => println!("  {model} (whole table)"),
            }
        }
        if dirty.len() > 20 {
            println!("  … and {} more", dirty.len() - 20);
        }
    }
    Ok(())
}
