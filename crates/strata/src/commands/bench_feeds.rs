//! `strata bench feeds`: partner files into `bronze.feed_<table>` through a
//! `strata serve` child: rows/s from the drop until bronze holds every row,
//! and the server's peak RSS, for a CSV file and a Parquet file of about
//! the same rows.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_lake::arrow::array::{Float64Array, Int64Array, StringArray};
use strata_lake::arrow::record_batch::RecordBatch;
use strata_lake::parquet::arrow::ArrowWriter;
use strata_lake::{Lake, SqlEngine};

use crate::cli::BenchFeedsArgs;
use crate::commands::bench::{ChildServer, free_port, wait_ready};
use crate::error::{CliError, Result};

const CAMPAIGNS: [&str; 6] = ["spring", "summer", "autumn", "winter", "brand", "retarget"];

pub async fn run(args: BenchFeedsArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("strata-bench-feeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rows = (args.mib * 1024 * 1024 / 64).max(1);
    println!(
        "feeds of {rows} rows (~{} MiB as CSV) into a strata serve child",
        args.mib
    );
    println!(
        "| file | bytes | rows | rows/s into bronze | seconds | server peak RSS |\n|---|---|---|---|---|---|"
    );
    for format in ["csv", "parquet"] {
        let run_dir = dir.join(format);
        let drops = run_dir.join("drops");
        std::fs::create_dir_all(&drops).map_err(CliError::runtime)?;
        let config = run_dir.join("strata.toml");
        std::fs::write(
            &config,
            format!(
                "[[sources]]\nname = \"partner\"\nkind = \"file\"\npath = \"{}\"\nformat = \"{format}\"\ntable = \"ad_spend\"\n",
                drops.display()
            ),
        )
        .map_err(CliError::runtime)?;
        // Written before the server starts, so the clock times ingest only.
        let staged = run_dir.join(format!("spend.{format}.staged"));
        let bytes = match format {
            "csv" => write_csv(&staged, rows)?,
            _ => write_parquet(&staged, rows)?,
        };
        let port = free_port()?;
        let mut child = ChildServer::spawn(&run_dir.join("data"), port, Some(&config))?;
        wait_ready(&format!("http://127.0.0.1:{port}")).await?;
        let started = Instant::now();
        std::fs::rename(&staged, drops.join(format!("spend.{format}")))
            .map_err(CliError::runtime)?;
        let lake = Lake::new(run_dir.join("data").join("lake"));
        let deadline = started + Duration::from_secs(args.timeout);
        loop {
            if count(&lake).await >= rows {
                break;
            }
            if Instant::now() > deadline || !child.running() {
                return Err(CliError::Runtime(format!(
                    "{format}: bronze.feed_ad_spend did not reach {rows} rows"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        let peak = child.peak_rss_mib();
        child.terminate()?;
        println!(
            "| {format} | {:.0} MiB | {rows} | {:.0} | {seconds:.1} | {peak:.0} MiB |",
            bytes as f64 / (1024.0 * 1024.0),
            rows as f64 / seconds
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn count(lake: &Lake) -> u64 {
    let Ok(engine) = SqlEngine::open(lake).await else {
        return 0;
    };
    let Ok(batches) = engine
        .query("select count(*) from bronze.feed_ad_spend")
        .await
    else {
        return 0;
    };
    batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0) as u64
}

/// `day,campaign,country,spend,clicks` rows of about 64 bytes.
fn row(i: u64) -> (String, &'static str, &'static str, f64, i64) {
    let day = format!("2026-{:02}-{:02}", 1 + (i / 28) % 12, 1 + i % 28);
    let campaign = CAMPAIGNS[(i % CAMPAIGNS.len() as u64) as usize];
    let country = ["DE", "US", "FR", "BR", "JP"][(i % 5) as usize];
    (
        day,
        campaign,
        country,
        (i % 10_000) as f64 / 100.0,
        (i % 997) as i64,
    )
}

fn write_csv(path: &std::path::Path, rows: u64) -> Result<u64> {
    let file = std::fs::File::create(path).map_err(CliError::runtime)?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "day,campaign,country,spend,clicks,note").map_err(CliError::runtime)?;
    for i in 0..rows {
        let (day, campaign, country, spend, clicks) = row(i);
        writeln!(
            out,
            "{day},{campaign},{country},{spend},{clicks},partner export row {i:08}"
        )
        .map_err(CliError::runtime)?;
    }
    out.flush().map_err(CliError::runtime)?;
    Ok(std::fs::metadata(path).map_err(CliError::runtime)?.len())
}

fn write_parquet(path: &std::path::Path, rows: u64) -> Result<u64> {
    let file = std::fs::File::create(path).map_err(CliError::runtime)?;
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    let mut file = Some(file);
    let step = 65_536u64;
    let mut at = 0;
    while at < rows {
        let n = step.min(rows - at);
        let items: Vec<_> = (at..at + n).map(row).collect();
        let notes: Vec<String> = (at..at + n)
            .map(|i| format!("partner export row {i:08}"))
            .collect();
        let batch = RecordBatch::try_from_iter([
            (
                "day",
                Arc::new(StringArray::from_iter_values(
                    items.iter().map(|r| r.0.as_str()),
                )) as _,
            ),
            (
                "campaign",
                Arc::new(StringArray::from_iter_values(items.iter().map(|r| r.1))) as _,
            ),
            (
                "country",
                Arc::new(StringArray::from_iter_values(items.iter().map(|r| r.2))) as _,
            ),
            (
                "spend",
                Arc::new(Float64Array::from_iter_values(items.iter().map(|r| r.3))) as _,
            ),
            (
                "clicks",
                Arc::new(Int64Array::from_iter_values(items.iter().map(|r| r.4))) as _,
            ),
            (
                "note",
                Arc::new(StringArray::from_iter_values(
                    notes.iter().map(String::as_str),
                )) as _,
            ),
        ])
        .map_err(CliError::runtime)?;
        if writer.is_none() {
            let file = file
                .take()
                .ok_or_else(|| CliError::Runtime("writer".into()))?;
            writer =
                Some(ArrowWriter::try_new(file, batch.schema(), None).map_err(CliError::runtime)?);
        }
        if let Some(writer) = &mut writer {
            writer.write(&batch).map_err(CliError::runtime)?;
        }
        at += n;
    }
    if let Some(writer) = writer {
        writer.close().map_err(CliError::runtime)?;
    }
    Ok(std::fs::metadata(path).map_err(CliError::runtime)?.len())
}
