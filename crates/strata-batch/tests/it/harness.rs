//! Fixtures as bronze rows, a real lake in a temporary data dir, the real
//! runner, and comparison against expected CSV files written by hand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::DateTime;
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use serde_json::Value;
use strata_batch::dates::{Day, day_of_micros, format_day};
use strata_batch::{BatchConfig, LakeIo, Model, Plan, Runner, StateFile, Summary};
use strata_core::config::Config;
use strata_core::event::{BronzeEvent, EventType};
use strata_lake::Lake;
use strata_lake::schema::{ColumnType, TableDef};

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn micros(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("bad time {text:?}: {e}"))
        .timestamp_micros()
}

/// One fixture line → a bronze row with its log position.
pub fn fixture_events(path: &Path) -> Vec<(u32, u64, BronzeEvent)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut offsets: BTreeMap<u32, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let blob = |k: &str| v.get(k).filter(|x| !x.is_null()).map(Value::to_string);
        let kind = EventType::parse(&s("type").expect("type")).expect("known type");
        let ts = micros(&s("ts").expect("ts"));
        let received = s("received").map(|r| micros(&r)).unwrap_or(ts);
        let partition = v.get("partition").and_then(Value::as_u64).unwrap_or(0) as u32;
        let offset = offsets.entry(partition).or_insert(0);
        out.push((
            partition,
            *offset,
            BronzeEvent {
                event_id: s("id").expect("id"),
                id_generated: false,
                event_type: kind,
                event_name: match kind.synthetic_name() {
                    Some(name) => name.to_owned(),
                    None => s("event").expect("track needs event"),
                },
                user_id: s("user"),
                anonymous_id: s("anon"),
                event_ts: ts,
                ts_clamped: false,
                sent_at: s("sent").map(|t| micros(&t)),
                received_at: received,
                source: "fixture".into(),
                properties: blob("properties"),
                context: blob("context"),
                traits: blob("traits"),
            },
        ));
        *offset += 1;
    }
    out
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: Config,
}

impl Env {
    pub fn new(config: Config) -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            config,
        }
    }

    pub fn lake(&self) -> Lake {
        Lake::new(self.dir.path().join("lake"))
    }

    pub fn io(&self) -> LakeIo {
        LakeIo::new(self.lake())
    }

    pub async fn land(&self, events: Vec<(u32, u64, BronzeEvent)>) {
        strata_lake::bronze::append_events(&self.lake(), events)
            .await
            .expect("append bronze");
    }

    pub fn runner(&self) -> Runner {
        let state = StateFile::open(&strata_batch::state_dir(self.dir.path())).expect("state");
        Runner::new(
            self.io(),
            BatchConfig {
                funnels: self.config.effective_funnels(),
                experiments: self.config.experiments.clone(),
            },
            state,
        )
    }

    pub async fn backfill(&self, from: Day, to: Day) -> Summary {
        self.runner()
            .execute(Plan::range(&Model::ALL, from, to))
            .await
            .expect("backfill")
    }

    pub async fn run_dirty(&self) -> Summary {
        self.runner()
            .execute(Plan::dirty())
            .await
            .expect("dirty run")
    }

    /// Every row of a table, its cells formatted as the expected files write them.
    pub async fn rows(&self, def: &TableDef, columns: &[&str]) -> Vec<Vec<Cell>> {
        let batches = self.io().scan(def, columns, None).await.expect("scan");
        format_rows(def, columns, &batches)
    }
}

/// A track event of a known user, received at `received`.
pub fn track(id: &str, person: &str, name: &str, ts: i64, received: i64) -> BronzeEvent {
    BronzeEvent {
        event_id: id.into(),
        id_generated: false,
        event_type: EventType::Track,
        event_name: name.into(),
        user_id: Some(person.into()),
        anonymous_id: None,
        event_ts: ts,
        ts_clamped: false,
        sent_at: None,
        received_at: received,
        source: "test".into(),
        properties: Some("{}".into()),
        context: Some(r#"{"library":{"name":"analytics.js"}}"#.into()),
        traits: None,
    }
}

pub fn fixture_range(events: &[(u32, u64, BronzeEvent)]) -> (Day, Day) {
    let days: Vec<Day> = events
        .iter()
        .map(|(_, _, e)| day_of_micros(e.event_ts))
        .collect();
    (
        *days.iter().min().expect("events"),
        *days.iter().max().expect("events"),
    )
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Float(f64),
    Null,
}

impl Cell {
    fn matches(&self, expected: &str) -> bool {
        match self {
            Cell::Null => expected.is_empty(),
            Cell::Text(t) => t == expected,
            Cell::Float(f) => expected.parse::<f64>().is_ok_and(|e| (e - f).abs() <= 1e-6),
        }
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => Ok(()),
            Cell::Text(t) => write!(f, "{t}"),
            Cell::Float(x) => write!(f, "{x:.9}"),
        }
    }
}

fn format_time(micros: i64) -> String {
    let t = DateTime::from_timestamp_micros(micros).expect("time");
    if micros % 1_000_000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

pub fn format_rows(def: &TableDef, columns: &[&str], batches: &[RecordBatch]) -> Vec<Vec<Cell>> {
    let mut rows = Vec::new();
    for batch in batches {
        for r in 0..batch.num_rows() {
            let row = columns
                .iter()
                .map(|name| {
                    let kind = def
                        .columns
                        .iter()
                        .find(|c| c.name == *name)
                        .unwrap_or_else(|| panic!("{} has no column {name}", def.qualified_name()))
                        .data_type;
                    let array = batch.column_by_name(name).expect("column");
                    if array.is_null(r) {
                        return Cell::Null;
                    }
                    match kind {
                        ColumnType::Double => {
                            Cell::Float(array.as_primitive::<Float64Type>().value(r))
                        }
                        ColumnType::Timestamp => Cell::Text(format_time(
                            array.as_primitive::<TimestampMicrosecondType>().value(r),
                        )),
                        ColumnType::Date => {
                            Cell::Text(format_day(array.as_primitive::<Date32Type>().value(r)))
                        }
                        ColumnType::Long => {
                            Cell::Text(array.as_primitive::<Int64Type>().value(r).to_string())
                        }
                        ColumnType::Int => {
                            Cell::Text(array.as_primitive::<Int32Type>().value(r).to_string())
                        }
                        ColumnType::Boolean => Cell::Text(array.as_boolean().value(r).to_string()),
                        ColumnType::String => {
                            let array = deltalake::arrow::compute::cast(array, &DataType::Utf8)
                                .expect("utf8");
                            Cell::Text(array.as_string::<i32>().value(r).to_owned())
                        }
                    }
                })
                .collect();
            rows.push(row);
        }
    }
    rows
}

/// Compares a table with an expected CSV (header = the columns compared);
/// rows match as a multiset, floats within 1e-6.
pub async fn check_expected(env: &Env, file: &Path) -> Result<(), String> {
    let name = file.file_stem().and_then(|s| s.to_str()).expect("name");
    let model = Model::parse(name).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or("empty file")?
        .split(',')
        .map(str::trim)
        .collect();
    let expected: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(|c| c.trim().to_owned()).collect())
        .collect();
    let actual = env.rows(model.table(), &header).await;
    let mut unmatched: Vec<Vec<Cell>> = actual.clone();
    let mut missing = Vec::new();
    for row in &expected {
        match unmatched
            .iter()
            .position(|a| a.len() == row.len() && a.iter().zip(row).all(|(c, e)| c.matches(e)))
        {
            Some(i) => {
                unmatched.remove(i);
            }
            None => missing.push(row.join(",")),
        }
    }
    if missing.is_empty() && unmatched.is_empty() {
        return Ok(());
    }
    let show = |rows: &[Vec<Cell>]| {
        rows.iter()
            .map(|r| {
                r.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join("\n  ")
    };
    Err(format!(
        "{name}: expected rows not found:\n  {}\nunexpected rows:\n  {}\nall actual rows ({}):\n  {}",
        missing.join("\n  "),
        show(&unmatched),
        header.join(","),
        show(&actual)
    ))
}

/// Loads a golden case, backfills every model over its dates, and checks
/// every expected file.
pub async fn run_case(name: &str) {
    let dir = golden_dir().join(name);
    let config = match std::fs::read_to_string(dir.join("config.toml")) {
        Ok(text) => Config::from_toml(&text).expect("config"),
        Err(_) => Config::default(),
    };
    let events = fixture_events(&dir.join("events.ndjson"));
    let (from, to) = fixture_range(&events);
    let env = Env::new(config);
    env.land(events).await;
    env.backfill(from, to).await;
    let mut failures = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("expected"))
        .expect("expected dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{name} has no expected files");
    for file in files {
        if let Err(e) = check_expected(&env, &file).await {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "golden case {name}:\n{}",
        failures.join("\n\n")
    );
}
