//! The command line of SPEC §1.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Self-hosted product-analytics data platform"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// TOML configuration file.
    #[arg(long, global = true, env = "STRATA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the log, the lake and local state live (default ./strata-data).
    #[arg(long, global = true, env = "STRATA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run all roles in one process: collector, log, bronze loader, stream
    /// processor and scheduler.
    Serve(ServeArgs),
    /// `serve` plus a built-in synthetic shop app: history, then live traffic.
    Demo(DemoArgs),
    /// Synthetic traffic for a fictional shop app.
    Generate(GenerateArgs),
    /// Read-only SQL over every table, named `layer.table`.
    Sql(SqlArgs),
    /// Build one partition of one batch model (or every dirty partition).
    Run(RunArgs),
    /// Rebuild a date range of one model or all, in dependency order.
    Backfill(BackfillArgs),
    /// Freshness of the tables, model runs, quarantine counts.
    Status(StatusArgs),
    /// Measure Strata on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The HTTP tracking API.
    Collector,
    /// The loader from the log into bronze Delta tables.
    Loader,
    /// The stream processor: realtime.events_minute and /api/realtime.
    Stream,
    /// The orchestrator: schedules, the late-data sensor and model runs
    /// from the run store (several may share a PostgreSQL store).
    Scheduler,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Serve the dashboard and /api/* on this address only, not on
    /// `--listen` (config key `dashboard_listen`).
    #[arg(long, value_name = "ADDR")]
    pub dashboard_listen: Option<String>,
    /// Run only these roles (repeatable); default all.
    #[arg(long = "role", value_enum, value_name = "R")]
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Days of history to backfill before live traffic starts.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Users in the simulated shop.
    #[arg(long, default_value_t = 20000)]
    pub users: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// A PostgreSQL with wal_level = logical: the demo creates the shop's
    /// own database there (schema `strata_demo`: accounts, products,
    /// orders), replicates it and changes it while the events flow.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Days of traffic, ending today (UTC).
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Size of the user population.
    #[arg(long, default_value_t = 1000)]
    pub users: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First simulated day (YYYY-MM-DD); default `--days` before today.
    #[arg(long, value_name = "DATE")]
    pub start: Option<chrono::NaiveDate>,
    /// Messages per second when posting (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Write NDJSON of Segment messages to this file (`-` for stdout).
    #[arg(long, value_name = "FILE", conflicts_with = "target")]
    pub out: Option<PathBuf>,
    /// Collector base URL to POST `/v1/batch` requests to.
    #[arg(long, value_name = "URL", requires = "write_key")]
    pub target: Option<String>,
    /// Write key of the target source.
    #[arg(long, value_name = "K", env = "STRATA_WRITE_KEY")]
    pub write_key: Option<String>,
    /// Messages per request when posting (per Protobuf batch with --out).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Wire format: `json` (NDJSON with --out), `protobuf` (`strata.v1.Batch`
    /// bodies; length-delimited batches with --out) or `avro` (object
    /// container files).
    #[arg(long, value_parser = parse_wire_format, default_value = "json")]
    pub format: strata_wire::WireFormat,
}

fn parse_wire_format(text: &str) -> Result<strata_wire::WireFormat, String> {
    strata_wire::WireFormat::parse(text)
        .ok_or_else(|| format!("{text:?} is not one of json, protobuf, avro"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct SqlArgs {
    /// One read-only statement.
    pub query: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print the model runs as JSON (what `GET /api/runs` answers).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Model to build, e.g. `silver.events` or `gold.daily_active_users`.
    #[arg(required_unless_present = "dirty")]
    pub model: Option<String>,
    /// The partition's date (UTC), YYYY-MM-DD; unpartitioned models ignore it.
    #[arg(long, value_name = "D", value_parser = crate::commands::batch::parse_date)]
    pub date: Option<chrono::NaiveDate>,
    /// Rebuild every partition whose inputs changed (late data, new links).
    #[arg(long, conflicts_with_all = ["model", "date"])]
    pub dirty: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// A model name, or `all` (whole-table models then only when what they
    /// read changed, or they were never built).
    pub model: String,
    /// First date (UTC), YYYY-MM-DD.
    #[arg(long, value_name = "D", value_parser = crate::commands::batch::parse_date)]
    pub from: chrono::NaiveDate,
    /// Last date (UTC), YYYY-MM-DD, inclusive.
    #[arg(long, value_name = "D", value_parser = crate::commands::batch::parse_date)]
    pub to: chrono::NaiveDate,
    /// Partitions built at the same time.
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = parse_parallel)]
    pub parallel: usize,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Sustained durable ingest through POST /v1/batch on loopback.
    Ingest(BenchIngestArgs),
    /// A month of generated traffic through the full silver and gold backfill.
    Batch(BenchBatchArgs),
    /// The stream processor: throughput per core, dedup state memory, and
    /// end-to-end freshness through a `strata serve` child.
    Stream(BenchStreamArgs),
    /// The scheduler's own cost: queueing, claiming and completing runs
    /// that build nothing, on SQLite and (with --database-url) PostgreSQL.
    Scheduler(BenchSchedulerArgs),
    /// Latency of every dashboard endpoint against a `strata serve` child on
    /// a data dir with gold tables (`--data-dir`).
    Api(BenchApiArgs),
    /// Restarts and crashes with every role running and traffic flowing:
    /// SIGTERM and kill -9 at chosen moments, then checks that nothing was
    /// lost or doubled and that every table equals a clean rebuild.
    Chaos(BenchChaosArgs),
    /// Hostile inputs (issue 23), one after another against a `strata serve`
    /// child: the peak RSS under each, and `/health` checked throughout.
    Attacks(BenchAttacksArgs),
    /// PostgreSQL CDC into bronze and silver: snapshot and backlog rates,
    /// and commit-to-silver lag under a steady update rate, against a
    /// `strata serve` child and a real PostgreSQL.
    Cdc(BenchCdcArgs),
    /// File feeds: a CSV and a Parquet file of the same rows into
    /// `bronze.feed_<table>` through a `strata serve` child; rows/s and
    /// the server's peak RSS.
    Feeds(BenchFeedsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BenchFeedsArgs {
    /// Size of the CSV file in MiB (the Parquet file holds the same rows).
    #[arg(long, default_value_t = 1024)]
    pub mib: u64,
    /// Give up after this many seconds per file.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct BenchCdcArgs {
    /// A PostgreSQL with wal_level = logical; the benchmark creates (and
    /// drops) a database `strata_bench_cdc` on it.
    #[arg(
        long,
        value_name = "URL",
        default_value = "postgres://postgres@127.0.0.1:5433/postgres"
    )]
    pub database_url: String,
    /// Rows of the captured table.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Single-row updates committed while Strata is stopped, then drained.
    #[arg(long, default_value_t = 500_000)]
    pub backlog: u64,
    /// Changes per second of the steady phase.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Seconds of the steady phase.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Run the server under test with only these roles (repeatable; all by
    /// default), e.g. `--role collector --role loader` for the way into
    /// bronze alone: silver's figures are then left out.
    #[arg(long = "role", value_enum)]
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchAttacksArgs {
    /// Every attack scaled down about a hundredfold: a check that runs in
    /// seconds, not a measurement.
    #[arg(long)]
    pub quick: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BenchChaosArgs {
    /// Clean stops (SIGTERM, then a restart).
    #[arg(long, default_value_t = 10)]
    pub sigterms: usize,
    /// Crashes (kill -9, then a restart), spread over ingest, bronze commits,
    /// stream checkpoints, partition commits of scheduled runs and compactions.
    #[arg(long, default_value_t = 20)]
    pub kills: usize,
    /// Simulated shoppers whose history is replayed during the cycles.
    #[arg(long, default_value_t = 1000)]
    pub users: u32,
    #[arg(long, default_value_t = 3)]
    pub days: u32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Keep the data dirs here (default: a temporary directory, removed
    /// when every check passed).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchApiArgs {
    /// Calls per endpoint after its first.
    #[arg(long, default_value_t = 300)]
    pub requests: usize,
}

#[derive(Debug, Clone, Args)]
pub struct BenchSchedulerArgs {
    /// Runs queued at once (one model's dates, all ready).
    #[arg(long, default_value_t = 1000)]
    pub runs: usize,
    /// Also measure this PostgreSQL (a scratch database: its runs are left).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchStreamArgs {
    /// Generated events the processor drains from a pre-filled log.
    #[arg(long, default_value_t = 2_000_000)]
    pub events: usize,
    /// Distinct event ids held by the dedup state.
    #[arg(long, default_value_t = 10_000_000)]
    pub ids: usize,
    /// Rates for the freshness runs, events/s (0 = as fast as possible); repeatable.
    #[arg(long = "rate", default_values_t = [10_000u64, 0])]
    pub rates: Vec<u64>,
    /// Seconds of traffic per freshness run.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
}

#[derive(Debug, Clone, Args)]
pub struct BenchBatchArgs {
    /// Simulated users (100000 over 30 days is about ten million events).
    #[arg(long, default_value_t = 100_000)]
    pub users: u32,
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Keep the generated data here (default: a temporary directory).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<std::path::PathBuf>,
    /// Reuse bronze already in `--keep` instead of generating it again.
    #[arg(long, requires = "keep")]
    pub reuse: bool,
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub parallel: usize,
}

#[derive(Debug, Clone, Args)]
pub struct BenchIngestArgs {
    /// How long to drive load.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Messages per request.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Target events per second across all connections (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Run only these roles in the server under test (repeatable; default all).
    #[arg(long = "role", value_enum, value_name = "R")]
    pub roles: Vec<Role>,
    /// Also measure these wire formats (repeatable: protobuf, avro), each
    /// against a fresh server after JSON, in one table.
    #[arg(long = "format", value_name = "F")]
    pub formats: Vec<String>,
}

fn parse_parallel(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?} is not a whole number of at least 1")),
    }
}
