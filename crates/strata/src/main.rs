//! The `strata` binary: a thin shell over the crates under `crates/`.

mod cli;
mod commands;
mod error;
mod server;

use clap::Parser;

use crate::cli::{BenchCommand, Cli, Command};

/// The batch models allocate and free large Arrow buffers from many
/// threads; with glibc's per-thread arenas the month backfill peaked about
/// 1 GiB higher than with mimalloc (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (its position in `mi_option_t`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// File IO (the log's group commits and reads, every object-store call on
/// local disk) runs on Tokio's blocking threads. With the defaults (512,
/// idle for 10 s before exit) ingest at full speed grew the pool to 60
/// threads, each new thread a new allocator heap, and resident memory grew
/// with them. A small pool that lives long is reused instead.
const BLOCKING_THREADS: usize = 16;
const BLOCKING_THREAD_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(300);

fn main() {
    // Memory freed by one thread and allocated by another (request bodies,
    // log reads, Arrow batches) was handed back to the OS only after a delay
    // that under steady ingest never came: peak RSS of `strata bench ingest`
    // grew with the data ingested (1.5 GiB in 20 s at 100k events/s) and
    // stayed at 574 MiB once freed pages were purged at once. An explicit
    // MIMALLOC_PURGE_DELAY still wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting an option is a plain store, valid at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => commands::serve::run(&cli.global, args).await,
            Command::Demo(args) => commands::demo::run(&cli.global, args).await,
            Command::Generate(args) => commands::generate::run(args).await,
            Command::Sql(args) => commands::sql::run(&cli.global, args).await,
            Command::Run(args) => commands::batch::run(&cli.global, args).await,
            Command::Backfill(args) => commands::batch::backfill(&cli.global, args).await,
            Command::Status(args) => commands::status::run(&cli.global, args).await,
            Command::Bench(BenchCommand::Ingest(args)) => {
                commands::bench::ingest(&cli.global, args).await
            }
            Command::Bench(BenchCommand::Batch(args)) => commands::bench_batch::run(args).await,
            Command::Bench(BenchCommand::Api(args)) => {
                commands::bench_api::run(&cli.global, args).await
            }
            Command::Bench(BenchCommand::Scheduler(args)) => {
                commands::bench_scheduler::run(args).await
            }
            Command::Bench(BenchCommand::Stream(args)) => {
                commands::bench_stream::run(&cli.global, args).await
            }
            Command::Bench(BenchCommand::Chaos(args)) => commands::bench_chaos::run(args).await,
            Command::Bench(BenchCommand::Cdc(args)) => commands::bench_cdc::run(args).await,
            Command::Bench(BenchCommand::Feeds(args)) => commands::bench_feeds::run(args).await,
            Command::Bench(BenchCommand::Attacks(args)) => {
                commands::bench_attacks::run(&cli.global, args).await
            }
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}

fn init_tracing() {
    // The Delta kernel narrates every snapshot at info; keep it to warnings.
    // Concurrent partition commits that Delta reconciles are routine here
    // (a conflict that is not is returned as an error and reported).
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,buoyant_kernel=warn,deltalake_core=warn,deltalake_core::kernel::transaction=error,datafusion=warn,sqlx::postgres::notice=warn,pg_walstream=warn",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
