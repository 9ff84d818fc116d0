//! `strata status`: how fresh each table is, what the model runs did (last
//! success, running, failed with its error, blocked, next scheduled) and
//! what was quarantined.

use strata_lake::query::format_batches;
use strata_lake::{Lake, OutputFormat, SqlEngine};

use strata_orchestrator::status::{Report, report_for};

use crate::cli::{GlobalArgs, StatusArgs};
use crate::error::Result;
use crate::server::load_config;

fn print_runs(report: &Report) {
    println!(
        "\nmodel runs ({} store; workers heard from in the last minute: {})",
        report.store,
        if report.live_workers.is_empty() {
            "none".to_string()
        } else {
            report.live_workers.len().to_string()
        }
    );
    println!(
        "{:<28} {:<20} {:>9} {:>4} {:>4} {:>4} {:>4} {:>4}  {:<20}",
        "model", "last success", "behind s", "ok", "run", "que", "fail", "blk", "next scheduled"
    );
    for m in &report.models {
        let c = &m.partitions_by_state;
        println!(
            "{:<28} {:<20} {:>9} {:>4} {:>4} {:>4} {:>4} {:>4}  {:<20}",
            m.model,
            m.last_success_at
                .as_deref()
                .map(|t| &t[..19.min(t.len())])
                .unwrap_or("never"),
            m.freshness_seconds
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            c.succeeded,
            c.running,
            c.queued,
            c.failed,
            c.blocked,
            m.next_scheduled_at
                .as_deref()
                .map(|t| &t[..19.min(t.len())])
                .unwrap_or("-"),
        );
    }
    for m in &report.models {
        for p in &m.partitions {
            use strata_orchestrator::RunState as S;
            match p.state {
                S::Failed | S::Blocked => println!(
                    "  {} {} {} after {} attempts: {}",
                    m.model,
                    p.partition,
                    p.state.as_str(),
                    p.attempts,
                    p.error.as_deref().unwrap_or("")
                ),
                S::Running => println!(
                    "  {} {} running on {} since {}",
                    m.model,
                    p.partition,
                    p.worker.as_deref().unwrap_or("?"),
                    p.started_at.as_deref().unwrap_or("?")
                ),
                _ => {}
            }
        }
    }
}

pub async fn run(global: &GlobalArgs, args: StatusArgs) -> Result<()> {
    let config = load_config(global, None)?;
    if args.json {
        let store = crate::commands::batch::open_store(&config).await?;
        let report = report_for(&config, &store).await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(crate::error::CliError::runtime)?
        );
        return Ok(());
    }
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
    if engine.tables().iter().any(|t| t == "bronze.cdc_changes") {
        let changes = engine
            .query(
                "select source, table_schema || '.' || table_name as source_table, \
                 count(*) as changes, max(lsn_value) as lsn_value, max(commit_ts) as last_commit, \
                 now() - max(received_at) as behind \
                 from bronze.cdc_changes group by source, table_schema, table_name \
                 order by source, source_table",
            )
            .await?;
        println!(
            "\nbronze.cdc_changes by table\n{}",
            format_batches(&changes, OutputFormat::Table)?
        );
    }
    crate::commands::status_sources::print(&config).await;
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
    let store = crate::commands::batch::open_store(&config).await?;
    print_runs(&report_for(&config, &store).await?);
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
