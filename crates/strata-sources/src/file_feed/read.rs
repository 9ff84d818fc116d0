//! One feed file into chunks of rows, on a blocking thread: the columns
//! first (inferred or checked), then rows fitted to them, bad rows beside
//! the good ones, a chunk at a time so memory stays bounded whatever the
//! file's size.

use std::path::PathBuf;

use serde_json::{Map, Value};
use strata_core::event::{BadRow, FeedChunk};
use strata_core::feed::{ColumnType, FeedSchema, RESERVED_COLUMNS};
use tokio::sync::mpsc;

use super::Format;
use super::readers::{self, Row};
use super::values::{fit, infer_json, infer_text};

/// Rows read before the columns are settled.
const SAMPLE_ROWS: usize = 1_000;
const CHUNK_ROWS: usize = 5_000;
const CHUNK_BYTES: usize = 4 << 20;

pub enum Piece {
    /// The table's columns with this file's new ones, and the file's
    /// columns a declared schema does not have (not loaded).
    Columns(FeedSchema, Vec<String>),
    Chunk(FeedChunk),
}

pub struct FileJob {
    pub source: String,
    pub table: String,
    pub path: PathBuf,
    pub name: String,
    pub sha256: String,
    pub format: Format,
    pub schema: FeedSchema,
    /// The columns are the config's: a file cannot add any.
    pub declared: bool,
    /// Rows below this record number landed before a restart.
    pub resume_from: u64,
}

/// Reads the file and sends its pieces; stops early when the receiver is
/// gone (the source is stopping).
pub fn read_file(job: FileJob, out: mpsc::Sender<Piece>) {
    let mut chunks = Chunker::new(&job);
    let mut rows = match readers::open(&job.path, job.format) {
        Ok(rows) => rows,
        Err(e) => {
            // The whole file is unreadable: one bad row says why.
            let _ = out.blocking_send(Piece::Columns(job.schema.clone(), Vec::new()));
            chunks.bad(
                0,
                format!("the file cannot be read as {}: {e}", job.format.name()),
                "",
            );
            let _ = out.blocking_send(Piece::Chunk(chunks.take(true)));
            return;
        }
    };
    let sample: Vec<Row> = rows.by_ref().take(SAMPLE_ROWS).collect();
    let (schema, ignored, refused) = settle_columns(&job, &rows, &sample);
    if out
        .blocking_send(Piece::Columns(schema.clone(), ignored))
        .is_err()
    {
        return;
    }
    chunks.schema = schema;
    if let Some(why) = refused {
        chunks.bad(0, why, "");
        let _ = out.blocking_send(Piece::Chunk(chunks.take(true)));
        return;
    }
    for row in sample.into_iter().chain(rows) {
        if row.number < job.resume_from {
            continue;
        }
        chunks.push(row);
        if chunks.full() && out.blocking_send(Piece::Chunk(chunks.take(false))).is_err() {
            return;
        }
    }
    let _ = out.blocking_send(Piece::Chunk(chunks.take(true)));
}

/// The table's columns after this file, the file's columns that are not
/// loaded, and why the file is refused, if it is.
fn settle_columns(
    job: &FileJob,
    rows: &readers::FileRows,
    sample: &[Row],
) -> (FeedSchema, Vec<String>, Option<String>) {
    let mut seen: Vec<String> = Vec::new();
    match &rows.declared {
        Some(declared) => seen.extend(declared.iter().map(|(n, _)| n.clone())),
        None => {
            for row in sample {
                if let Ok(values) = &row.values {
                    for (name, _) in values {
                        if !seen.contains(name) {
                            seen.push(name.clone());
                        }
                    }
                }
            }
        }
    }
    let mut schema = job.schema.clone();
    let new: Vec<String> = seen
        .into_iter()
        .filter(|name| schema.get(name).is_none())
        .collect();
    if job.declared {
        return (schema, new, None);
    }
    if let Some(name) = new.iter().find(|n| RESERVED_COLUMNS.contains(&n.as_str())) {
        return (
            schema,
            Vec::new(),
            Some(format!(
                "column {name:?} is one bronze adds to every row; rename it in the file"
            )),
        );
    }
    for name in new {
        let declared = rows
            .declared
            .as_ref()
            .and_then(|d| d.iter().find(|(n, _)| *n == name).map(|(_, t)| *t));
        let inferred = declared.unwrap_or_else(|| infer_column(&name, sample, rows.textual));
        schema.columns.push((name, inferred));
    }
    (schema, Vec::new(), None)
}

fn infer_column(name: &str, sample: &[Row], textual: bool) -> ColumnType {
    let mut found: Option<ColumnType> = None;
    for row in sample {
        let Ok(values) = &row.values else { continue };
        let Some((_, value)) = values.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let t = match value {
            Value::String(text) if textual => infer_text(text, true),
            other => infer_json(other),
        };
        if let Some(t) = t {
            found = Some(found.map_or(t, |f| f.widen(t)));
        }
    }
    found.unwrap_or(ColumnType::String)
}

struct Chunker {
    source: String,
    table: String,
    file: String,
    sha256: String,
    schema: FeedSchema,
    first_row: u64,
    end_row: u64,
    rows: String,
    row_count: usize,
    bad_rows: Vec<BadRow>,
    bad_bytes: usize,
}

impl Chunker {
    fn new(job: &FileJob) -> Self {
        Self {
            source: job.source.clone(),
            table: job.table.clone(),
            file: job.name.clone(),
            sha256: job.sha256.clone(),
            schema: job.schema.clone(),
            first_row: job.resume_from.max(1),
            end_row: job.resume_from.max(1),
            rows: String::new(),
            row_count: 0,
            bad_rows: Vec::new(),
            bad_bytes: 0,
        }
    }

    fn push(&mut self, row: Row) {
        self.end_row = row.number + 1;
        let fitted = row.values.and_then(|values| self.fit(values, row.number));
        match fitted {
            Ok(line) => {
                self.rows.push_str(&line);
                self.rows.push('\n');
                self.row_count += 1;
            }
            Err(why) => self.bad(row.number, why, &row.raw),
        }
    }

    /// A row as a JSON line of its columns' values and its `_row`.
    fn fit(&self, values: Vec<(String, Value)>, number: u64) -> Result<String, String> {
        let mut object = Map::new();
        for (name, value) in values {
            let Some(column) = self.schema.get(&name) else {
                continue;
            };
            let fitted = fit(&value, column).map_err(|why| format!("column {name:?}: {why}"))?;
            object.insert(name, fitted);
        }
        object.insert("_row".into(), Value::from(number));
        serde_json::to_string(&object).map_err(|e| e.to_string())
    }

    fn bad(&mut self, row: u64, why: String, raw: &str) {
        self.bad_bytes += raw.len() + why.len();
        self.bad_rows.push(BadRow {
            row,
            why,
            raw: raw.to_string(),
        });
    }

    fn full(&self) -> bool {
        self.row_count + self.bad_rows.len() >= CHUNK_ROWS
            || self.rows.len() + self.bad_bytes >= CHUNK_BYTES
    }

    fn take(&mut self, last: bool) -> FeedChunk {
        let chunk = FeedChunk {
            source: self.source.clone(),
            table: self.table.clone(),
            file: self.file.clone(),
            sha256: self.sha256.clone(),
            first_row: self.first_row,
            end_row: self.end_row,
            schema: self.schema.to_json(),
            rows: std::mem::take(&mut self.rows),
            bad_rows: std::mem::take(&mut self.bad_rows),
            received_at: chrono::Utc::now().timestamp_micros(),
            last,
        };
        self.first_row = self.end_row;
        self.row_count = 0;
        self.bad_bytes = 0;
        chunk
    }
}
