use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use strata_lake::arrow::record_batch::RecordBatch;
use strata_lake::query::{format_batches, json_rows};
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
    // Every format is printed as the answer comes, so an answer larger than
    // memory prints whole.
    let printed = match args.format {
        Format::Table => {
            let pages = Arc::new(Mutex::new(Pages::default()));
            let filling = pages.clone();
            let answer = engine
                .query_each(&args.query, move |batch| lock(&filling).add(batch))
                .await;
            answer.and_then(|()| lock(&pages).finish())
        }
        Format::Csv => {
            let mut csv = strata_lake::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(std::io::stdout());
            engine
                .query_each(&args.query, move |batch| Ok(csv.write(&batch)?))
                .await
        }
        Format::Json => {
            let started = Arc::new(AtomicBool::new(false));
            let opened = started.clone();
            let answer = engine
                .query_each(&args.query, move |batch| json_objects(&batch, &opened))
                .await;
            answer.and_then(|()| {
                let end = if started.load(Ordering::Relaxed) {
                    "\n]\n"
                } else {
                    "[]\n"
                };
                std::io::stdout()
                    .write_all(end.as_bytes())
                    .map_err(stdout_error)
            })
        }
    };
    match printed {
        Err(strata_lake::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            // The reader had enough (`| head`).
            Ok(())
        }
        Err(e @ strata_lake::Error::NotReadOnly(_)) => Err(CliError::Usage(e.to_string())),
        Err(strata_lake::Error::Query(message)) => {
            Err(CliError::Usage(format!("query failed: {message}")))
        }
        other => Ok(other?),
    }
}

/// Rows of one printed table: a table's column widths need all its rows
/// first, so a longer answer prints as several tables (as psql does with
/// `FETCH_COUNT`), each of this many rows but the last.
const TABLE_ROWS: usize = 10_000;

#[derive(Default)]
struct Pages {
    held: Vec<RecordBatch>,
    rows: usize,
    printed: bool,
}

impl Pages {
    fn add(&mut self, mut batch: RecordBatch) -> strata_lake::Result<()> {
        while self.rows + batch.num_rows() >= TABLE_ROWS {
            let room = TABLE_ROWS - self.rows;
            self.held.push(batch.slice(0, room));
            self.rows = TABLE_ROWS;
            self.print()?;
            batch = batch.slice(room, batch.num_rows() - room);
        }
        self.rows += batch.num_rows();
        self.held.push(batch);
        Ok(())
    }

    /// The last table; an answer without rows prints its empty table.
    fn finish(&mut self) -> strata_lake::Result<()> {
        if self.rows > 0 || !self.printed {
            self.print()?;
        }
        Ok(())
    }

    fn print(&mut self) -> strata_lake::Result<()> {
        let text = format_batches(&self.held, OutputFormat::Table)?;
        let newline = if text.ends_with('\n') { "" } else { "\n" };
        write!(std::io::stdout(), "{text}{newline}").map_err(stdout_error)?;
        self.held.clear();
        self.rows = 0;
        self.printed = true;
        Ok(())
    }
}

fn lock(pages: &Mutex<Pages>) -> std::sync::MutexGuard<'_, Pages> {
    pages
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn stdout_error(source: std::io::Error) -> strata_lake::Error {
    strata_lake::Error::Io {
        path: "stdout".into(),
        source,
    }
}

/// One batch of the JSON array `strata sql --format json` prints, laid out
/// as `serde_json::to_string_pretty` lays out the whole array.
fn json_objects(batch: &RecordBatch, started: &AtomicBool) -> strata_lake::Result<()> {
    let (columns, rows) = json_rows(std::slice::from_ref(batch), usize::MAX)?;
    // Stdout flushes at every newline unless written a buffer at a time.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    for row in rows {
        let object = serde_json::Value::Object(columns.iter().cloned().zip(row).collect());
        let text = serde_json::to_string_pretty(&object).unwrap_or_default();
        let lead = if started.swap(true, Ordering::Relaxed) {
            ",\n"
        } else {
            "[\n"
        };
        out.write_all(lead.as_bytes()).map_err(stdout_error)?;
        for (i, line) in text.lines().enumerate() {
            let sep = if i == 0 { "  " } else { "\n  " };
            write!(out, "{sep}{line}").map_err(stdout_error)?;
        }
    }
    out.flush().map_err(stdout_error)
}
