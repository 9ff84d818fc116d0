//! What `strata bench chaos` checks after its restarts, each against an
//! independent rebuild: bronze against the acknowledgements and the log,
//! silver and gold against a clean backfill of a copy of bronze, the
//! realtime table against a fresh stream run over a copy of the log.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_core::Config;
use strata_lake::query::format_batches;
use strata_lake::{Lake, OutputFormat, SqlEngine};
use strata_log::{EmbeddedLog, EmbeddedLogConfig, Log};
use strata_orchestrator::{RunState, RunStore};
use strata_stream::StreamProcessor;

use super::bench_chaos::{copy_dir, sub};
use crate::error::{CliError, Result};

/// A check's outcome: what it found, or what is wrong.
pub type Outcome = std::result::Result<String, String>;

#[derive(Default)]
pub struct Report {
    pub restarts: Vec<Duration>,
    pub shutdowns: Vec<Duration>,
    pub kills: Vec<(&'static str, bool)>,
    checks: Vec<(String, Outcome)>,
}

impl Report {
    pub fn check(&mut self, name: impl Into<String>, outcome: Outcome) {
        let name = name.into();
        if let Err(wrong) = &outcome {
            println!("FAILED {name}: {wrong}");
        }
        self.checks.push((name, outcome));
    }

    pub fn failed(&self) -> bool {
        self.checks.iter().any(|(_, o)| o.is_err())
    }

    pub fn print(&self, acked: usize, took: Duration) {
        let mean = |d: &[Duration]| {
            d.iter().map(Duration::as_secs_f64).sum::<f64>() / d.len().max(1) as f64
        };
        let max = |d: &[Duration]| d.iter().map(Duration::as_secs_f64).fold(0.0, f64::max);
        println!("\n| figure | value |\n|---|---|");
        println!(
            "| wall time (cycles and checks) | {:.0} s |",
            took.as_secs_f64()
        );
        println!("| events acknowledged | {acked} |");
        println!(
            "| clean stops (SIGTERM → exit 0) | {} (mean {:.1} s, max {:.1} s) |",
            self.shutdowns.len(),
            mean(&self.shutdowns),
            max(&self.shutdowns)
        );
        let mut labels: Vec<&str> = self.kills.iter().map(|(l, _)| *l).collect();
        labels.dedup();
        labels.sort();
        labels.dedup();
        for label in labels {
            let of: Vec<bool> = self
                .kills
                .iter()
                .filter(|(l, _)| *l == label)
                .map(|(_, h)| *h)
                .collect();
            let hit = of.iter().filter(|h| **h).count();
            println!(
                "| kill -9 {label} | {} ({hit} at the phase line) |",
                of.len()
            );
        }
        println!(
            "| restart to ready | mean {:.1} s, max {:.1} s |",
            mean(&self.restarts),
            max(&self.restarts)
        );
        for (name, outcome) in &self.checks {
            match outcome {
                Ok(found) => println!("| {name} | ok: {found} |"),
                Err(wrong) => println!("| {name} | **FAILED**: {wrong} |"),
            }
        }
    }
}

async fn engine(data: &Path) -> Result<SqlEngine> {
    Ok(SqlEngine::open(&Lake::new(data.join("lake"))).await?)
}

async fn strings(engine: &SqlEngine, sql: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for batch in engine.query(sql).await? {
        let column = strata_lake::columns::strings_at(&batch, 0)?;
        out.extend((0..batch.num_rows()).map(|i| column.value(i).to_string()));
    }
    Ok(out)
}

async fn number(engine: &SqlEngine, sql: &str) -> Result<i64> {
    let batches = engine.query(sql).await?;
    let batch = batches
        .first()
        .ok_or_else(|| CliError::Runtime(format!("no answer to {sql}")))?;
    Ok(strata_lake::columns::longs_at(batch, 0)?.value(0))
}

/// Every acknowledged event is in bronze, and no log record is there twice.
pub async fn bronze_holds(data: &Path, acked: &HashSet<String>) -> Result<Outcome> {
    let engine = engine(data).await?;
    if !engine.tables().iter().any(|t| t == "bronze.events") {
        return Ok(if acked.is_empty() {
            Ok("nothing yet".into())
        } else {
            Err("bronze.events does not exist".into())
        });
    }
    let ids: HashSet<String> = strings(&engine, "select event_id from bronze.events")
        .await?
        .into_iter()
        .collect();
    let missing = acked.iter().filter(|id| !ids.contains(*id)).count();
    let rows = number(&engine, "select count(*) from bronze.events").await?;
    let positions = number(
        &engine,
        "select count(*) from (select distinct log_partition, log_offset from bronze.events)",
    )
    .await?;
    Ok(if missing > 0 {
        Err(format!(
            "{missing} acknowledged events are not in bronze.events"
        ))
    } else if positions != rows {
        Err(format!(
            "{} log records are in bronze.events more than once",
            rows - positions
        ))
    } else {
        Ok(format!(
            "{} acknowledged events present, {rows} rows, each log position once",
            acked.len()
        ))
    })
}

/// Waits until bronze holds every acknowledgement and the scheduler has had
/// two dirty checks with nothing left to run.
pub async fn wait_until_idle(data: &Path, acked: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let store = RunStore::for_data_dir(data, None).await?;
    let mut idle_since: Option<Instant> = None;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let loaded = match engine(data).await {
            Ok(engine) if engine.tables().iter().any(|t| t == "bronze.events") => number(
                &engine,
                "select count(distinct event_id) from bronze.events",
            )
            .await
            .unwrap_or(0),
            _ => 0,
        };
        let busy = !store.pending().await?.is_empty() || (loaded as usize) < acked;
        if busy {
            idle_since = None;
        } else if idle_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(6) {
            store.close().await;
            return Ok(());
        }
    }
    store.close().await;
    Err(CliError::Runtime(
        "the scheduler did not finish its runs within 10 minutes".into(),
    ))
}

pub async fn verify(
    root: &Path,
    data: &Path,
    config_path: &Path,
    acked: &HashSet<String>,
    report: &mut Report,
) -> Result<()> {
    let config = Config::load(Some(config_path))?;
    report.check(
        "bronze after the last restart",
        bronze_holds(data, acked).await?,
    );
    report.check(
        "log records in bronze exactly once",
        log_in_bronze(data).await?,
    );
    report.check("event ids in silver", silver_unique(data).await?);
    report.check("runs left running", runs_left(data).await?);

    let clean = root.join("clean");
    std::fs::create_dir_all(clean.join("lake")).map_err(CliError::runtime)?;
    copy_dir(
        &sub(data, &["lake", "bronze"]),
        &sub(&clean, &["lake", "bronze"]),
    )?;
    let dates = engine(data).await?;
    let first = strings(
        &dates,
        "select cast(min(event_date) as varchar) from silver.events",
    )
    .await?;
    let last = strings(
        &dates,
        "select cast(max(event_date) as varchar) from silver.events",
    )
    .await?;
    let (Some(first), Some(last)) = (first.first(), last.first()) else {
        report.check(
            "silver and gold against a clean backfill",
            Err("silver.events is empty".into()),
        );
        return Ok(());
    };
    let exe = std::env::current_exe().map_err(CliError::runtime)?;
    let out = std::process::Command::new(exe)
        .arg("--config")
        .arg(config_path)
        .args([
            "backfill",
            "all",
            "--from",
            first,
            "--to",
            last,
            "--data-dir",
        ])
        .arg(&clean)
        .env("STRATA_LOG", "error")
        .output()
        .map_err(CliError::runtime)?;
    if !out.status.success() {
        return Err(CliError::Runtime(format!(
            "the clean backfill failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    for layer in ["silver", "gold"] {
        let outcome = same_tables(
            &Lake::new(data.join("lake")),
            &Lake::new(clean.join("lake")),
            layer,
        )
        .await?;
        report.check(
            format!("{layer} tables equal a clean backfill of the same bronze"),
            outcome,
        );
    }
    report.check(
        "realtime.events_minute equals an uninterrupted stream run",
        realtime_equal(root, data, &config).await?,
    );
    Ok(())
}

async fn log_in_bronze(data: &Path) -> Result<Outcome> {
    let log = EmbeddedLog::open(
        data.join("log"),
        EmbeddedLogConfig {
            partitions: Config::default().log.partitions,
            consumers: vec![
                strata_lake::bronze::CONSUMER.into(),
                strata_stream::CONSUMER.into(),
            ],
            ..EmbeddedLogConfig::default()
        },
    )?;
    let mut records = 0;
    for p in 0..log.partition_count() {
        // Every record ever appended, retained or not.
        records += log.end_offset(p)?;
    }
    log.close();
    let engine = engine(data).await?;
    let mut rows = number(&engine, "select count(*) from bronze.events").await?;
    if engine.tables().iter().any(|t| t == "bronze.quarantine") {
        rows += number(&engine, "select count(*) from bronze.quarantine").await?;
    }
    Ok(if rows as u64 == records {
        Ok(format!("{records} log records, {rows} bronze rows"))
    } else {
        Err(format!(
            "the log holds {records} records but bronze {rows} rows"
        ))
    })
}

async fn silver_unique(data: &Path) -> Result<Outcome> {
    let engine = engine(data).await?;
    let rows = number(&engine, "select count(*) from silver.events").await?;
    let ids = number(
        &engine,
        "select count(distinct event_id) from silver.events",
    )
    .await?;
    let bronze = number(
        &engine,
        "select count(distinct event_id) from bronze.events",
    )
    .await?;
    Ok(if rows == ids && ids == bronze {
        Ok(format!("{rows} rows, one per event id of bronze"))
    } else {
        Err(format!(
            "silver.events has {rows} rows for {ids} ids; bronze has {bronze} ids"
        ))
    })
}

async fn runs_left(data: &Path) -> Result<Outcome> {
    let store = RunStore::for_data_dir(data, None).await?;
    let pending = store.pending().await?;
    store.close().await;
    let running = pending
        .iter()
        .filter(|r| r.state == RunState::Running)
        .count();
    Ok(if running == 0 {
        Ok(format!("none ({} queued)", pending.len()))
    } else {
        Err(format!(
            "{running} runs are still `running` after a clean stop"
        ))
    })
}

/// Rows of a table as sorted CSV lines (header left out).
async fn rows_of(engine: &SqlEngine, table: &str, filter: &str) -> Result<Vec<String>> {
    let batches = engine
        .query(&format!("select * from {table} {filter}"))
        .await?;
    let text = format_batches(&batches, OutputFormat::Csv)?;
    let mut lines: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    lines.sort();
    Ok(lines)
}

/// Lines equal field by field, floats within a relative 1e-9 (sums may add
/// in another order when files are laid out differently).
fn same_rows(a: &[String], b: &[String]) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} rows against {}", a.len(), b.len()));
    }
    for (x, y) in a.iter().zip(b) {
        if x == y {
            continue;
        }
        let fields_match = x.split(',').count() == y.split(',').count()
            && x.split(',').zip(y.split(',')).all(|(f, g)| {
                f == g
                    || matches!((f.parse::<f64>(), g.parse::<f64>()), (Ok(f), Ok(g)) if (f - g).abs() <= 1e-9 * f.abs().max(1.0))
            });
        if !fields_match {
            return Some(format!("first difference: {x:?} against {y:?}"));
        }
    }
    None
}

async fn same_tables(ours: &Lake, clean: &Lake, layer: &str) -> Result<Outcome> {
    let (a, b) = (SqlEngine::open(ours).await?, SqlEngine::open(clean).await?);
    let mut compared = Vec::new();
    for table in clean.tables_in(layer) {
        let name = format!("{layer}.{table}");
        if !a.tables().contains(&name) {
            return Ok(Err(format!("{name} was never built")));
        }
        let (x, y) = (rows_of(&a, &name, "").await?, rows_of(&b, &name, "").await?);
        if let Some(difference) = same_rows(&x, &y) {
            return Ok(Err(format!("{name}: {difference}")));
        }
        compared.push(format!("{table} ({} rows)", x.len()));
    }
    Ok(Ok(compared.join(", ")))
}

/// The stream run again from nothing over a copy of the log, without a
/// stop; minutes that both runs have closed must match.
async fn realtime_equal(root: &Path, data: &Path, config: &Config) -> Result<Outcome> {
    let replay = root.join("replay");
    std::fs::create_dir_all(&replay).map_err(CliError::runtime)?;
    copy_dir(&data.join("log"), &replay.join("log"))?;
    let log = EmbeddedLog::open(
        replay.join("log"),
        EmbeddedLogConfig {
            partitions: config.log.partitions,
            consumers: vec![
                strata_lake::bronze::CONSUMER.into(),
                strata_stream::CONSUMER.into(),
            ],
            ..EmbeddedLogConfig::default()
        },
    )?;
    let dyn_log: Arc<dyn Log> = log.clone();
    let lake = Lake::new(replay.join("lake"));
    let mut processor =
        StreamProcessor::open(&config.stream, &lake, dyn_log, replay.join("stream")).await?;
    while processor.step().await?.records > 0 {}
    processor.checkpoint().await?;
    drop(processor);
    log.close();

    let (a, b) = (engine(data).await?, SqlEngine::open(&lake).await?);
    let table = "realtime.events_minute";
    let newest = strings(
        &b,
        &format!("select cast(max(minute) as varchar) from {table}"),
    )
    .await?;
    let Some(newest) = newest.first() else {
        return Ok(Err("the uninterrupted run wrote no minutes".into()));
    };
    // Closed in both: older than the newest minute by more than the
    // lateness and out-of-orderness allow.
    let open_for =
        config.stream.allowed_lateness + config.stream.out_of_orderness + Duration::from_secs(120);
    let filter = format!(
        "where minute < timestamp '{newest}' - interval '{} seconds'",
        open_for.as_secs()
    );
    let (x, y) = (
        rows_of(&a, table, &filter).await?,
        rows_of(&b, table, &filter).await?,
    );
    Ok(match same_rows(&x, &y) {
        None => Ok(format!("{} closed (minute, event) rows equal", x.len())),
        Some(difference) => Err(difference),
    })
}
