//! `strata bench cdc`: PostgreSQL change data capture measured from outside.
//! A `strata serve` child replicates a table of `--rows` rows from a real
//! PostgreSQL: the initial snapshot's rate, the rate at which it drains a
//! backlog of updates committed while it was stopped (its capacity, free of
//! the database's own write rate), then commit-to-visible lag in bronze and
//! in `silver.accounts` under a steady rate of pgbench-style updates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::Rng;
use sqlx::postgres::{PgPool, PgPoolOptions};
use strata_lake::bronze::ChangePositions;
use strata_lake::{Lake, SqlEngine};

use super::bench::{ChildServer, free_port, wait_ready};
use crate::cli::{BenchCdcArgs, Role};
use crate::error::{CliError, Result};

const DATABASE: &str = "strata_bench_cdc";
const SOURCE: &str = "shop";
const SLOT: &str = "strata_bench_cdc";
/// Rows per update transaction: pgbench's transactions touch a handful.
const ROWS_PER_TX: usize = 10;
const WRITERS: usize = 4;

pub async fn run(args: BenchCdcArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("strata-bench-cdc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(CliError::runtime)?;
    let db_url = prepare_database(&args).await?;
    let pool = connect(&db_url, WRITERS as u32 + 1).await?;

    let config = dir.join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\nname = \"{SOURCE}\"\nkind = \"postgres_cdc\"\nurl = \"{db_url}\"\n\
             publication = \"strata_bench\"\nslot = \"{SLOT}\"\ntables = [\"public.accounts\"]\n\n\
             [cdc]\n"
        ),
    )
    .map_err(CliError::runtime)?;
    let data = dir.join("data");
    let lake = Lake::new(data.join("lake"));
    println!(
        "table public.accounts: {} rows; backlog {} updates; steady {} changes/s for {} s",
        args.rows, args.backlog, args.rate, args.seconds
    );

    let with_silver = args.roles.is_empty() || args.roles.contains(&Role::Scheduler);

    // 1. The snapshot.
    let started = Instant::now();
    let (mut child, port) = spawn(&data, &config, &args.roles).await?;
    wait_for_changes(&lake, args.rows).await?;
    let snapshot_s = started.elapsed().as_secs_f64();
    let snapshot_rss = child.peak_rss_mib();
    child.terminate()?;

    // The history as an installation that has run for a while has it: the
    // full build after the snapshot is behind it, so the backlog's builds
    // continue it (without this the full build lands in the drain).
    let history_s = if with_silver {
        Some(build_history(&config, &lake).await?)
    } else {
        None
    };

    // 2. A backlog committed while Strata is stopped, then drained.
    let (marker, marker_ts) = commit_backlog(&pool, args.rows, args.backlog).await?;
    let started = Instant::now();
    let (mut child, _) = spawn_on(&data, &config, port, &args.roles).await?;
    let mut positions = ChangePositions::new(lake.clone());
    loop {
        if positions.get(SOURCE).await?.is_some_and(|p| p.lsn > marker) {
            break;
        }
        if !child.running() {
            return Err(CliError::Runtime("the server under test exited".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_s = started.elapsed().as_secs_f64();
    // The steady phase measures lag once silver has taken in the backlog:
    // how long that takes is a figure of its own.
    let newest_sql = "select max(updated_at) from silver.accounts";
    while with_silver {
        let engine = SqlEngine::open(&lake).await?;
        if newest_micros(&engine, newest_sql)
            .await
            .is_some_and(|t| t >= marker_ts)
        {
            break;
        }
        if !child.running() {
            return Err(CliError::Runtime("the server under test exited".into()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let silver_drain_s = started.elapsed().as_secs_f64();
    let drain_rss = child.peak_rss_mib();

    // 3. Steady updates, lag sampled from outside.
    let steady = steady_lag(&pool, &lake, &args, with_silver).await?;
    let steady_rss = child.peak_rss_mib();
    child.terminate()?;

    println!("\n| measure | value |\n|---|---|");
    println!(
        "| snapshot of {} rows into bronze (process start included) | {snapshot_s:.1} s = {:.0} rows/s, peak RSS {snapshot_rss:.0} MiB |",
        args.rows,
        args.rows as f64 / snapshot_s
    );
    println!(
        "| backlog of {} changes into bronze (process start included) | {drain_s:.1} s = {:.0} changes/s, peak RSS {drain_rss:.0} MiB |",
        args.backlog,
        args.backlog as f64 / drain_s
    );
    if let Some(history_s) = history_s {
        println!(
            "| silver.accounts_history built in full after the snapshot (between the runs) | {history_s:.1} s |"
        );
    }
    if with_silver {
        println!(
            "| the same backlog visible in silver.accounts (process start included) | {silver_drain_s:.1} s |"
        );
    }
    println!(
        "| steady rate reached | {:.0} changes/s ({} s) |",
        steady.changes as f64 / args.seconds as f64,
        args.seconds
    );
    println!(
        "| first commit of the steady phase visible in {} | {:.1} s |",
        if with_silver {
            "silver.accounts"
        } else {
            "bronze.cdc_changes"
        },
        steady.filled_s
    );
    let mut figures = vec![("commit → visible in bronze.cdc_changes", &steady.bronze)];
    if with_silver {
        figures.push(("commit → visible in silver.accounts", &steady.silver));
        figures.push(("silver.accounts behind bronze.cdc_changes", &steady.behind));
    }
    for (what, h) in figures {
        println!(
            "| {what}: p50 / p99 / max | {:.2} / {:.2} / {:.2} s |",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }
    println!("| peak RSS, whole run | {steady_rss:.0} MiB |");
    pool.close().await;
    drop_database(&args.database_url).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Builds `silver.accounts_history` from bronze; returns the seconds it took.
async fn build_history(config: &std::path::Path, lake: &Lake) -> Result<f64> {
    let text = std::fs::read_to_string(config).map_err(CliError::runtime)?;
    let config = strata_core::Config::from_toml(&text).map_err(CliError::runtime)?;
    strata_batch::configure(&config).map_err(CliError::runtime)?;
    let model = strata_batch::Model::parse("silver.accounts_history").map_err(CliError::runtime)?;
    let started = Instant::now();
    strata_batch::cdc::build(&strata_batch::LakeIo::new(lake.clone()), model)
        .await
        .map_err(CliError::runtime)?;
    Ok(started.elapsed().as_secs_f64())
}

async fn connect(url: &str, connections: u32) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(connections)
        .connect(url)
        .await
        .map_err(|e| CliError::Runtime(format!("cannot connect to {url}: {e}")))
}

async fn exec(pool: &PgPool, sql: &str) -> Result<()> {
    sqlx::query(sql)
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| CliError::Runtime(format!("{sql}: {e}")))
}

/// A fresh database with the table, its rows and a publication; returns
/// its URL.
async fn prepare_database(args: &BenchCdcArgs) -> Result<String> {
    drop_database(&args.database_url).await?;
    let admin = connect(&args.database_url, 1).await?;
    exec(&admin, &format!("create database {DATABASE}")).await?;
    admin.close().await;
    let mut url = url::Url::parse(&args.database_url).map_err(CliError::runtime)?;
    url.set_path(&format!("/{DATABASE}"));
    let db_url = url.to_string();
    let pool = connect(&db_url, 1).await?;
    exec(
        &pool,
        "create table accounts (id bigint primary key, balance bigint not null, \
         plan text not null, updated_at timestamptz not null)",
    )
    .await?;
    exec(
        &pool,
        &format!(
            "insert into accounts select g, 0, case when g % 10 = 0 then 'pro' else 'free' end, \
             clock_timestamp() from generate_series(1, {}) g",
            args.rows
        ),
    )
    .await?;
    exec(&pool, "create publication strata_bench for table accounts").await?;
    pool.close().await;
    Ok(db_url)
}

async fn drop_database(admin_url: &str) -> Result<()> {
    let admin = connect(admin_url, 1).await?;
    exec(
        &admin,
        &format!(
            "select pg_drop_replication_slot(slot_name) from pg_replication_slots \
             where slot_name = '{SLOT}' and not active"
        ),
    )
    .await?;
    exec(
        &admin,
        &format!("drop database if exists {DATABASE} with (force)"),
    )
    .await?;
    admin.close().await;
    Ok(())
}

async fn spawn(
    data: &std::path::Path,
    config: &std::path::Path,
    roles: &[Role],
) -> Result<(ChildServer, u16)> {
    spawn_on(data, config, free_port()?, roles).await
}

async fn spawn_on(
    data: &std::path::Path,
    config: &std::path::Path,
    port: u16,
    roles: &[Role],
) -> Result<(ChildServer, u16)> {
    let child = ChildServer::spawn_roles(data, port, Some(config), roles)?;
    wait_ready(&format!("http://127.0.0.1:{port}")).await?;
    Ok((child, port))
}

async fn count_changes(lake: &Lake) -> Result<u64> {
    if !lake.exists("bronze", "cdc_changes") {
        return Ok(0);
    }
    let engine = SqlEngine::open(lake).await?;
    let batches = engine
        .query("select count(*) from bronze.cdc_changes")
        .await?;
    Ok(strata_lake::columns::longs_at(&batches[0], 0)?.value(0) as u64)
}

async fn wait_for_changes(lake: &Lake, at_least: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    while Instant::now() < deadline {
        if count_changes(lake).await? >= at_least {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(CliError::Runtime(
        "the snapshot did not reach bronze within 30 minutes".into(),
    ))
}

/// Commits `backlog` updates of random rows, then one marker transaction;
/// returns a WAL position below the marker's commit and above every other,
/// and the `updated_at` the marker wrote (microseconds).
async fn commit_backlog(pool: &PgPool, rows: u64, backlog: u64) -> Result<(u64, i64)> {
    let per_writer = backlog / WRITERS as u64;
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            let mut done = 0;
            while done < per_writer {
                let n = (per_writer - done).min(ROWS_PER_TX as u64);
                update_random(&pool, rows, n as usize).await?;
                done += n;
            }
            Ok::<_, CliError>(())
        }));
    }
    for writer in writers {
        writer.await.map_err(CliError::runtime)??;
    }
    let mut tx = pool.begin().await.map_err(CliError::runtime)?;
    let (below,): (String,) = sqlx::query_as("select pg_current_wal_insert_lsn()::text")
        .fetch_one(&mut *tx)
        .await
        .map_err(CliError::runtime)?;
    let (marker_ts,): (i64,) = sqlx::query_as(
        "update accounts set balance = balance + 1, updated_at = clock_timestamp() where id = 1 \
         returning (extract(epoch from updated_at) * 1000000)::bigint",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(CliError::runtime)?;
    tx.commit().await.map_err(CliError::runtime)?;
    let below = strata_core::event::parse_lsn(&below)
        .ok_or_else(|| CliError::Runtime(format!("PostgreSQL answered an odd LSN {below:?}")))?;
    Ok((below, marker_ts))
}

async fn update_random(pool: &PgPool, rows: u64, n: usize) -> Result<()> {
    let ids: Vec<i64> = {
        let mut rng = rand::rng();
        (0..n).map(|_| rng.random_range(1..=rows) as i64).collect()
    };
    sqlx::query(
        "update accounts set balance = balance + 1, updated_at = clock_timestamp() \
         where id = any($1)",
    )
    .bind(&ids)
    .execute(pool)
    .await
    .map_err(CliError::runtime)?;
    Ok(())
}

struct Steady {
    changes: u64,
    /// Milliseconds from the newest commit to now, sampled.
    bronze: Histogram<u64>,
    silver: Histogram<u64>,
    /// Milliseconds between the newest commit in bronze and in silver.
    behind: Histogram<u64>,
    /// Seconds until the first commit of the phase was visible.
    filled_s: f64,
}

/// `--rate` changes/s for `--seconds`; every 250 ms, how old the newest
/// commit visible in bronze and in silver is.
async fn steady_lag(
    pool: &PgPool,
    lake: &Lake,
    args: &BenchCdcArgs,
    with_silver: bool,
) -> Result<Steady> {
    let running = Arc::new(AtomicBool::new(true));
    let changes = Arc::new(AtomicU64::new(0));
    let tx_per_s = (args.rate as f64 / ROWS_PER_TX as f64).max(1.0);
    let interval = Duration::from_secs_f64(WRITERS as f64 / tx_per_s);
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let (pool, running, changes, rows) =
            (pool.clone(), running.clone(), changes.clone(), args.rows);
        writers.push(tokio::spawn(async move {
            let mut next = Instant::now();
            while running.load(Ordering::Relaxed) {
                tokio::time::sleep_until(next.into()).await;
                next += interval;
                update_random(&pool, rows, ROWS_PER_TX).await?;
                changes.fetch_add(ROWS_PER_TX as u64, Ordering::Relaxed);
            }
            Ok::<_, CliError>(())
        }));
    }
    let mut bronze = Histogram::<u64>::new(3).map_err(CliError::runtime)?;
    let mut silver = Histogram::<u64>::new(3).map_err(CliError::runtime)?;
    let mut behind = Histogram::<u64>::new(3).map_err(CliError::runtime)?;
    let started = Instant::now();
    let steady_from = chrono::Utc::now().timestamp_micros();
    // Lag is read once the pipeline is full: from the first sample that
    // shows a commit of this phase (before it, the newest visible commit
    // is the backlog's, and its age says nothing of the lag).
    let mut filled_s = None;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        // What the engine shows was visible when it opened the tables.
        let at = chrono::Utc::now().timestamp_micros();
        let engine = SqlEngine::open(lake).await?;
        let newest_bronze = newest_micros(
            &engine,
            "select max(commit_ts) from bronze.cdc_changes where op = 'update'",
        )
        .await;
        let newest_silver =
            newest_micros(&engine, "select max(updated_at) from silver.accounts").await;
        let last = if with_silver {
            newest_silver
        } else {
            newest_bronze
        };
        if filled_s.is_none() {
            if !last.is_some_and(|t| t >= steady_from) {
                continue;
            }
            filled_s = Some(started.elapsed().as_secs_f64());
        }
        let millis = |from: i64, to: i64| ((to - from).max(0) / 1000) as u64;
        if let Some(newest) = newest_bronze {
            bronze
                .record(millis(newest, at))
                .map_err(CliError::runtime)?;
        }
        if let Some(newest) = newest_silver.filter(|_| with_silver) {
            let lag = millis(newest, at);
            silver.record(lag).map_err(CliError::runtime)?;
            if lag > 5_000 {
                eprintln!(
                    "{:.1} s into the steady phase: silver.accounts {:.1} s behind",
                    started.elapsed().as_secs_f64(),
                    lag as f64 / 1000.0
                );
            }
        }
        if let (Some(b), Some(s)) = (newest_bronze, newest_silver) {
            behind.record(millis(s, b)).map_err(CliError::runtime)?;
        }
    }
    running.store(false, Ordering::Relaxed);
    for writer in writers {
        writer.await.map_err(CliError::runtime)??;
    }
    Ok(Steady {
        changes: changes.load(Ordering::Relaxed),
        bronze,
        silver,
        behind,
        filled_s: filled_s.unwrap_or(f64::NAN),
    })
}

async fn newest_micros(engine: &SqlEngine, sql: &str) -> Option<i64> {
    use strata_lake::arrow::array::Array;
    let batches = engine.query(sql).await.ok()?;
    let batch = batches.first()?;
    let column = batch.column(0);
    let column =
        strata_lake::arrow::compute::cast(column, &strata_lake::arrow::datatypes::DataType::Int64)
            .ok()?;
    let values = column
        .as_any()
        .downcast_ref::<strata_lake::arrow::array::Int64Array>()?;
    (values.len() == 1 && values.is_valid(0)).then(|| values.value(0))
}
