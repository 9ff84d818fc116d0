//! `silver.events` for one event date: the first-received copy of every
//! event id, its person (through `silver.identity`, retroactively), its
//! session and its platform.
//!
//! Sessions need the previous date's tail: a person whose last event before
//! midnight is at most 30 minutes before their first event of the day goes
//! on in the same session (SPEC §4, Sessions).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, Date32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::interleave_record_batch;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::{Expr, col};
use strata_lake::schema::BRONZE_EVENTS;

use super::platform::platform;
use crate::bronze_index::{BronzeIndex, Link};
use crate::dates::{Day, MICROS_PER_DAY, day_start};
use crate::error::Result;
use crate::io::{LakeIo, column, date_lit, on_date, timestamp_lit};
use crate::tables::SILVER_EVENTS;

/// The order rows are written in within a date (docs/tables.md): funnels
/// and experiments select event names, sessions and dim_users read one
/// person's rows together.
pub const CLUSTER_BY: &[&str] = &["event_name", "person_id", "event_ts"];

pub const SESSION_GAP_MICROS: i64 = 30 * 60 * 1_000_000;

/// Names sessions: `session_id` is a UUIDv5 of `person_id` and the session's
/// first `event_id`, so a rebuild gives the same ids.
const SESSION_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5f1c_0c0e_8a4b_4d2e_9b7e_57a7a5e55e55);

pub fn session_id(person_id: &str, first_event_id: &str) -> String {
    let mut name = Vec::with_capacity(person_id.len() + first_event_id.len() + 1);
    name.extend_from_slice(person_id.as_bytes());
    name.push(0);
    name.extend_from_slice(first_event_id.as_bytes());
    uuid::Uuid::new_v5(&SESSION_NAMESPACE, &name)
        .hyphenated()
        .to_string()
}

/// The `person_id` of a user: the user id itself (SPEC §4), unless it
/// starts with `anon:` or `user:`. Anonymous persons are `anon:` + their
/// anonymous id, so a user id `anon:X` would otherwise be the same person as
/// the anonymous visitor `X`; those ids become `user:` + the id, and so do
/// ids already starting with `user:`, so that no two users share a person
/// either. Every other user id, ordinary data, is its own person id.
pub fn user_person_id(user_id: &str) -> Cow<'_, str> {
    if user_id.starts_with("anon:") || user_id.starts_with("user:") {
        Cow::Owned(format!("user:{user_id}"))
    } else {
        Cow::Borrowed(user_id)
    }
}

/// The last event of each person late on a date, for the next date's sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tail {
    pub last: HashMap<String, (i64, String)>,
}

impl Tail {
    /// Reads the tail of an already built date from `silver.events`.
    pub async fn read(io: &LakeIo, day: Day) -> Result<Self> {
        let since = day_start(day + 1) - SESSION_GAP_MICROS;
        let filter = on_date("event_date", day).and(col("event_ts").gt_eq(timestamp_lit(since)));
        let batches = io
            .scan(
                &SILVER_EVENTS,
                &["person_id", "event_ts", "event_id", "session_id"],
                Some(filter),
            )
            .await?;
        let mut latest: HashMap<String, (i64, String, String)> = HashMap::new();
        for batch in &batches {
            let person = column::strings(batch, "person_id")?;
            let ts = column::micros(batch, "event_ts")?;
            let ids = column::strings(batch, "event_id")?;
            let sessions = column::strings(batch, "session_id")?;
            for i in 0..batch.num_rows() {
                let candidate = (ts.value(i), ids.value(i));
                let newer = latest
                    .get(person.value(i))
                    .is_none_or(|(t, id, _)| candidate > (*t, id.as_str()));
                if newer {
                    latest.insert(
                        person.value(i).to_owned(),
                        (
                            candidate.0,
                            candidate.1.to_owned(),
                            sessions.value(i).to_owned(),
                        ),
                    );
                }
            }
        }
        let last = latest
            .into_iter()
            .map(|(person, (ts, _, session))| (person, (ts, session)))
            .collect();
        let tail = Tail { last };
        Ok(tail)
    }
}

fn bronze_filter(day: Day, ingest_days: &[Day]) -> Expr {
    let ingest = ingest_days.iter().map(|d| date_lit(*d)).collect();
    col("ingest_date")
        .in_list(ingest, false)
        .and(col("event_ts").gt_eq(timestamp_lit(day_start(day))))
        .and(col("event_ts").lt(timestamp_lit(day_start(day) + MICROS_PER_DAY)))
}

/// Reads the bronze rows of one event date and builds its silver partition.
pub async fn build(
    io: &LakeIo,
    index: &BronzeIndex,
    links: Arc<BTreeMap<String, Link>>,
    day: Day,
    tail: Tail,
) -> Result<(RecordBatch, Tail)> {
    let ingest_days: Vec<Day> = index
        .ingest_days
        .get(&day)
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    let reading = std::time::Instant::now();
    let batches = if ingest_days.is_empty() {
        Vec::new()
    } else {
        io.scan(&BRONZE_EVENTS, &[], Some(bronze_filter(day, &ingest_days)))
            .await?
    };
    let mut rows = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        let partitions = column::ints(batch, "log_partition")?;
        let offsets = column::longs(batch, "log_offset")?;
        rows.extend(
            (0..batch.num_rows())
                .filter(|&i| {
                    !index
                        .losers
                        .contains(&(partitions.value(i), offsets.value(i)))
                })
                .map(|i| (b, i)),
        );
    }
    tracing::debug!(day = %crate::dates::format_day(day), ingest_days = ingest_days.len(), rows = rows.len(), elapsed = ?reading.elapsed(), "bronze rows of the date read");
    tokio::task::spawn_blocking(move || {
        let assembling = std::time::Instant::now();
        let out = assemble(&batches, rows, &links, day, &tail);
        tracing::debug!(elapsed = ?assembling.elapsed(), "silver.events assembled");
        out
    })
    .await
    .map_err(|e| crate::Error::Task(e.to_string()))?
}

/// Each value's place among the distinct values in sorted order, so that
/// sorts compare integers instead of strings.
fn ranks<'a>(values: impl Iterator<Item = &'a str> + Clone) -> Vec<u32> {
    let mut distinct: Vec<&str> = values
        .clone()
        .collect::<foldhash::HashSet<&str>>()
        .into_iter()
        .collect();
    distinct.sort_unstable();
    let rank: foldhash::HashMap<&str, u32> = distinct
        .iter()
        .enumerate()
        .map(|(n, v)| (*v, n as u32))
        .collect();
    values.map(|v| rank[v]).collect()
}

/// The columns of one bronze batch that silver derives its own from.
struct Columns {
    user: StringArray,
    anon: StringArray,
    ids: StringArray,
    ts: TimestampMicrosecondArray,
    context: StringArray,
    names: StringArray,
}

impl Columns {
    fn of(batch: &RecordBatch) -> Result<Self> {
        Ok(Self {
            user: column::strings(batch, "user_id")?,
            anon: column::strings(batch, "anonymous_id")?,
            ids: column::strings(batch, "event_id")?,
            ts: column::micros(batch, "event_ts")?,
            context: column::strings(batch, "context")?,
            names: column::strings(batch, "event_name")?,
        })
    }
}

/// Builds the date's silver rows from the winning bronze rows `(batch,
/// row)`. Values are borrowed from the bronze arrays wherever they can be:
/// a date has hundreds of thousands of rows, and an allocation per row and
/// column was most of the time this took.
fn assemble(
    batches: &[RecordBatch],
    rows: Vec<(usize, usize)>,
    links: &BTreeMap<String, Link>,
    day: Day,
    tail: &Tail,
) -> Result<(RecordBatch, Tail)> {
    let columns = batches
        .iter()
        .map(Columns::of)
        .collect::<Result<Vec<_>>>()?;
    let id = |k: usize| -> &str {
        let (b, i) = rows[k];
        columns[b].ids.value(i)
    };
    let times: Vec<i64> = rows.iter().map(|&(b, i)| columns[b].ts.value(i)).collect();
    let ts = |k: usize| times[k];
    let person: Vec<Cow<'_, str>> = rows
        .iter()
        .map(|&(b, i)| {
            let c = &columns[b];
            if c.user.is_valid(i) {
                user_person_id(c.user.value(i))
            } else if c.anon.is_valid(i) {
                let anon = c.anon.value(i);
                match links.get(anon) {
                    Some(link) => user_person_id(&link.user_id),
                    None => Cow::Owned(format!("anon:{anon}")),
                }
            } else {
                // Bronze never holds an event without either id; keep the
                // row attributable anyway.
                Cow::Owned(format!("event:{}", c.ids.value(i)))
            }
        })
        .collect();

    let person_rank = ranks(person.iter().map(|p| p.as_ref()));
    let mut order: Vec<u32> = (0..rows.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        (person_rank[a], ts(a))
            .cmp(&(person_rank[b], ts(b)))
            .then_with(|| id(a).cmp(id(b)))
    });

    // Per row (in `order`), an index into `names_of_sessions`: one string
    // per session, not per row.
    let mut session_of: Vec<u32> = Vec::with_capacity(order.len());
    let mut names_of_sessions: Vec<String> = Vec::new();
    let mut next_tail = Tail::default();
    let tail_from = day_start(day + 1) - SESSION_GAP_MICROS;
    let mut previous: Option<(usize, i64)> = None; // (row, ts)
    for (k, &row) in order.iter().enumerate() {
        let row = row as usize;
        let t = ts(row);
        let same_person = previous.is_some_and(|(prev, _)| person_rank[prev] == person_rank[row]);
        let goes_on = match previous {
            Some((_, prev_ts)) if same_person => t - prev_ts <= SESSION_GAP_MICROS,
            _ => false,
        };
        if !goes_on {
            let name = match tail.last.get(person[row].as_ref()) {
                Some((last_ts, session)) if !same_person && t - last_ts <= SESSION_GAP_MICROS => {
                    session.clone()
                }
                _ => session_id(&person[row], id(row)),
            };
            names_of_sessions.push(name);
        }
        session_of.push((names_of_sessions.len() - 1) as u32);
        previous = Some((row, t));
        let last_of_person = order
            .get(k + 1)
            .is_none_or(|&next| person_rank[next as usize] != person_rank[row]);
        if last_of_person && t >= tail_from {
            next_tail.last.insert(
                person[row].clone().into_owned(),
                (t, names_of_sessions[session_of[k] as usize].clone()),
            );
        }
    }

    // Written clustered by CLUSTER_BY: a stable sort by name keeps the
    // person and time order within each name.
    let name_rank = ranks(rows.iter().map(|&(b, i)| columns[b].names.value(i)));
    let mut by_name: Vec<usize> = (0..order.len()).collect();
    by_name.sort_by_key(|&k| name_rank[order[k] as usize]);

    let rows_out: Vec<(usize, usize)> = by_name.iter().map(|&k| rows[order[k] as usize]).collect();
    // Bronze's columns, without its ingest date, in final order.
    let keep: Vec<usize> = batches
        .first()
        .map(|b| {
            let schema = b.schema();
            (0..schema.fields().len())
                .filter(|&i| schema.field(i).name() != "ingest_date")
                .collect()
        })
        .unwrap_or_default();
    let projected = batches
        .iter()
        .map(|b| b.project(&keep))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut fields: Vec<Field> = Vec::new();
    let mut out_columns: Vec<ArrayRef> = Vec::new();
    match projected.first() {
        Some(first) => {
            let refs: Vec<&RecordBatch> = projected.iter().collect();
            let taken = interleave_record_batch(&refs, &rows_out)?;
            for (i, field) in first.schema().fields().iter().enumerate() {
                fields.push(field.as_ref().clone());
                out_columns.push(taken.column(i).clone());
            }
        }
        None => {
            let schema = BRONZE_EVENTS.arrow_schema();
            for field in schema.fields().iter().filter(|f| f.name() != "ingest_date") {
                fields.push(field.as_ref().clone());
                out_columns.push(deltalake::arrow::array::new_empty_array(field.data_type()));
            }
        }
    }
    let persons =
        StringArray::from_iter_values(by_name.iter().map(|&k| person[order[k] as usize].as_ref()));
    // A device sends the same context again and again: parse each once.
    let mut platform_of: foldhash::HashMap<&str, &'static str> = Default::default();
    let platforms = StringArray::from_iter_values(rows_out.iter().map(|&(b, i)| {
        let context = &columns[b].context;
        if context.is_null(i) {
            return platform(None);
        }
        let text = context.value(i);
        *platform_of
            .entry(text)
            .or_insert_with(|| platform(Some(text)))
    }));
    let session_ids = StringArray::from_iter_values(
        by_name
            .iter()
            .map(|&k| names_of_sessions[session_of[k] as usize].as_str()),
    );
    let dates = Date32Array::from(vec![day; rows_out.len()]);
    for (name, array) in [
        ("person_id", Arc::new(persons) as ArrayRef),
        ("session_id", Arc::new(session_ids)),
        ("platform", Arc::new(platforms)),
    ] {
        fields.push(Field::new(name, DataType::Utf8, false));
        out_columns.push(array);
    }
    fields.push(Field::new("event_date", DataType::Date32, false));
    out_columns.push(Arc::new(dates));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), out_columns)?;
    Ok((batch, next_tail))
}
