//! The rows of a feed file, one at a time, in bounded memory: CSV with a
//! header row, NDJSON, Parquet and Avro container files.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::json::LineDelimitedWriter;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::parquet::arrow::arrow_reader::{
    ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use serde_json::{Map, Value};
use strata_core::feed::ColumnType;

use super::Format;

/// Longest NDJSON line, and the most of a bad row kept in quarantine.
pub const MAX_ROW_BYTES: usize = 1 << 20;

/// One row: its 1-based record number, its values by column, or why it
/// cannot be read; and its text for the quarantine.
pub struct Row {
    pub number: u64,
    pub values: Result<Vec<(String, Value)>, String>,
    pub raw: String,
}

/// A file's rows, and what the file says of its columns' types.
pub struct FileRows {
    rows: Box<dyn Iterator<Item = Row> + Send>,
    /// Types the file declares (Parquet); `None` when they are to be
    /// inferred from values.
    pub declared: Option<Vec<(String, ColumnType)>>,
    /// Cells are text, so numbers and booleans are inferred from it (CSV).
    pub textual: bool,
}

impl Iterator for FileRows {
    type Item = Row;
    fn next(&mut self) -> Option<Row> {
        self.rows.next()
    }
}

pub fn open(path: &Path, format: Format) -> std::io::Result<FileRows> {
    let file = File::open(path)?;
    Ok(match format {
        Format::Csv => FileRows {
            rows: Box::new(csv_rows(file)?),
            declared: None,
            textual: true,
        },
        Format::Ndjson => FileRows {
            rows: Box::new(ndjson_rows(file)),
            declared: None,
            textual: false,
        },
        Format::Parquet => parquet_rows(file)?,
        Format::Avro => FileRows {
            rows: avro_rows(file),
            declared: None,
            textual: false,
        },
    })
}

fn csv_rows(file: File) -> std::io::Result<impl Iterator<Item = Row> + Send> {
    let mut input = BufReader::new(file);
    // A UTF-8 byte order mark is not part of the first column's name.
    if input.fill_buf()?.starts_with(&[0xEF, 0xBB, 0xBF]) {
        input.consume(3);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|s| s.trim().to_string()).collect(),
        Err(e) => return Err(std::io::Error::other(format!("the header row: {e}"))),
    };
    let mut records = reader.into_byte_records();
    let mut number = 0u64;
    Ok(std::iter::from_fn(move || {
        let record = records.next()?;
        number += 1;
        Some(match record {
            Ok(record) => {
                let raw = record
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect::<Vec<_>>()
                    .join(",");
                let values = if record.len() != headers.len() {
                    Err(format!(
                        "has {} fields, the header has {}",
                        record.len(),
                        headers.len()
                    ))
                } else {
                    record
                        .iter()
                        .zip(&headers)
                        .map(|(field, name)| match std::str::from_utf8(field) {
                            Ok(text) => Ok((name.clone(), Value::String(text.to_string()))),
                            Err(_) => Err(format!("column {name:?} is not UTF-8")),
                        })
                        .collect()
                };
                Row {
                    number,
                    values,
                    raw: cut(raw),
                }
            }
            Err(e) => Row {
                number,
                values: Err(format!("not CSV: {e}")),
                raw: String::new(),
            },
        })
    }))
}

fn ndjson_rows(file: File) -> impl Iterator<Item = Row> + Send {
    let mut input = BufReader::new(file);
    let mut number = 0u64;
    let mut line = Vec::new();
    std::iter::from_fn(move || {
        loop {
            line.clear();
            let mut limited = (&mut input).take(MAX_ROW_BYTES as u64 + 1);
            match limited.read_until(b'\n', &mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    number += 1;
                    return Some(Row {
                        number,
                        values: Err(format!("cannot be read: {e}")),
                        raw: String::new(),
                    });
                }
            }
            let complete = line.ends_with(b"\n");
            if !complete && line.len() > MAX_ROW_BYTES {
                // Skip the rest of the overlong line.
                let mut rest = Vec::new();
                let _ = input.read_until(b'\n', &mut rest);
                number += 1;
                return Some(Row {
                    number,
                    values: Err(format!("line is longer than {MAX_ROW_BYTES} bytes")),
                    raw: cut(String::from_utf8_lossy(&line).into_owned()),
                });
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            number += 1;
            let raw = String::from_utf8_lossy(&line).trim_end().to_string();
            let values = match serde_json::from_slice::<Value>(&line) {
                Ok(Value::Object(object)) => Ok(object.into_iter().collect()),
                Ok(_) => Err("line is not a JSON object".to_string()),
                Err(e) => Err(format!("line is not JSON: {e}")),
            };
            return Some(Row {
                number,
                values,
                raw: cut(raw),
            });
        }
    })
}

fn parquet_rows(file: File) -> std::io::Result<FileRows> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| std::io::Error::other(format!("not a Parquet file: {e}")))?;
    let declared = builder
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), column_type(f.data_type())))
        .collect();
    let reader = builder
        .with_batch_size(4096)
        .build()
        .map_err(|e| std::io::Error::other(format!("not a Parquet file: {e}")))?;
    Ok(FileRows {
        rows: Box::new(ParquetRows {
            reader,
            pending: std::collections::VecDeque::new(),
            number: 0,
            failed: false,
        }),
        declared: Some(declared),
        textual: false,
    })
}

fn column_type(t: &DataType) -> ColumnType {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => ColumnType::Long,
        DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => ColumnType::Double,
        DataType::Boolean => ColumnType::Boolean,
        DataType::Date32 | DataType::Date64 => ColumnType::Date,
        DataType::Timestamp(..) => ColumnType::Timestamp,
        _ => ColumnType::String,
    }
}

struct ParquetRows {
    reader: ParquetRecordBatchReader,
    pending: std::collections::VecDeque<Row>,
    number: u64,
    failed: bool,
}

impl Iterator for ParquetRows {
    type Item = Row;
    fn next(&mut self) -> Option<Row> {
        while self.pending.is_empty() && !self.failed {
            match self.reader.next()? {
                Ok(batch) => self.pending = self.rows_of(&batch),
                Err(e) => {
                    // A damaged row group ends what can be read of the file.
                    self.failed = true;
                    self.number += 1;
                    return Some(Row {
                        number: self.number,
                        values: Err(format!("cannot be read: {e}")),
                        raw: String::new(),
                    });
                }
            }
        }
        self.pending.pop_front()
    }
}

impl ParquetRows {
    fn rows_of(&mut self, batch: &RecordBatch) -> std::collections::VecDeque<Row> {
        let mut text = Vec::new();
        let mut writer = LineDelimitedWriter::new(&mut text);
        let written = writer.write(batch).and_then(|_| writer.finish());
        let mut rows = std::collections::VecDeque::with_capacity(batch.num_rows());
        if let Err(e) = written {
            for _ in 0..batch.num_rows() {
                self.number += 1;
                rows.push_back(Row {
                    number: self.number,
                    values: Err(format!("cannot be read: {e}")),
                    raw: String::new(),
                });
            }
            return rows;
        }
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            self.number += 1;
            let values = match serde_json::from_slice::<Map<String, Value>>(line) {
                Ok(object) => Ok(object.into_iter().collect()),
                Err(e) => Err(format!("cannot be read: {e}")),
            };
            rows.push_back(Row {
                number: self.number,
                values,
                raw: cut(String::from_utf8_lossy(line).into_owned()),
            });
        }
        rows
    }
}

fn avro_rows(file: File) -> Box<dyn Iterator<Item = Row> + Send> {
    use apache_avro::types::Value as Avro;
    let reader = match apache_avro::Reader::new(BufReader::new(file)) {
        Ok(reader) => reader,
        Err(e) => {
            let row = Row {
                number: 1,
                values: Err(format!("not an Avro container file: {e}")),
                raw: String::new(),
            };
            return Box::new(std::iter::once(row));
        }
    };
    let mut number = 0u64;
    let mut failed = false;
    Box::new(reader.map_while(move |record| {
        if failed {
            return None;
        }
        number += 1;
        let values = match record {
            Ok(Avro::Record(fields)) => Ok(fields
                .into_iter()
                .map(|(name, value)| (name, avro_json(value)))
                .collect::<Vec<_>>()),
            Ok(Avro::Union(_, inner)) if matches!(*inner, Avro::Record(_)) => {
                let Avro::Record(fields) = *inner else {
                    unreachable!("matched above")
                };
                Ok(fields
                    .into_iter()
                    .map(|(name, value)| (name, avro_json(value)))
                    .collect())
            }
            Ok(_) => Err("record is not an Avro record".to_string()),
            Err(e) => {
                failed = true;
                Err(format!("cannot be read: {e}"))
            }
        };
        let raw = match &values {
            Ok(fields) => cut(Value::Object(fields.iter().cloned().collect()).to_string()),
            Err(_) => String::new(),
        };
        Some(Row {
            number,
            values,
            raw,
        })
    }))
}

/// An Avro value as JSON; logical dates and times as the text the feed's
/// inference reads as dates and times.
fn avro_json(value: apache_avro::types::Value) -> Value {
    use apache_avro::types::Value as Avro;
    let micros = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .map_or(Value::from(us), |t| Value::String(t.to_rfc3339()))
    };
    match value {
        Avro::Union(_, inner) => avro_json(*inner),
        Avro::Date(days) => chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163)
            .map_or(Value::from(days), |d| Value::String(d.to_string())),
        Avro::TimestampMillis(ms) | Avro::LocalTimestampMillis(ms) => {
            micros(ms.saturating_mul(1_000))
        }
        Avro::TimestampMicros(us) | Avro::LocalTimestampMicros(us) => micros(us),
        Avro::TimestampNanos(ns) | Avro::LocalTimestampNanos(ns) => micros(ns / 1_000),
        Avro::Uuid(id) => Value::String(id.to_string()),
        Avro::Enum(_, symbol) => Value::String(symbol),
        Avro::Bytes(bytes) | Avro::Fixed(_, bytes) => {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        }
        other => Value::try_from(other).unwrap_or(Value::Null),
    }
}

/// A bad row's text, cut to a bounded size for the quarantine.
fn cut(mut text: String) -> String {
    if text.len() > MAX_ROW_BYTES {
        let mut end = MAX_ROW_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
