//! `silver.events` for one event date: the first-received copy of every
//! event id, its person (through `silver.identity`, retroactively), its
//! session and its platform.
//!
//! Sessions need the previous date's tail: a person whose last event before
//! midnight is at most 30 minutes before their first event of the day goes
//! on in the same session (SPEC §4, Sessions).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, Date32Array, RecordBatch, StringArray, UInt32Array,
};
use deltalake::arrow::compute::take_record_batch;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::{Expr, col};
use strata_lake::schema::BRONZE_EVENTS;

use super::platform::platform;
use crate::bronze_index::{BronzeIndex, Link};
use crate::dates::{Day, MICROS_PER_DAY, day_start};
use crate::error::Result;
use crate::io::{LakeIo, column, concat, date_lit, on_date, timestamp_lit};
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
    let batches = if ingest_days.is_empty() {
        Vec::new()
    } else {
        io.scan(&BRONZE_EVENTS, &[], Some(bronze_filter(day, &ingest_days)))
            .await?
    };
    let bronze = concat(&BRONZE_EVENTS.arrow_schema(), &batches)?;
    drop(batches);
    let losers: Vec<bool> = {
        let partitions = column::ints(&bronze, "log_partition")?;
        let offsets = column::longs(&bronze, "log_offset")?;
        (0..bronze.num_rows())
            .map(|i| {
                index
                    .losers
                    .contains(&(partitions.value(i), offsets.value(i)))
            })
            .collect()
    };
    tokio::task::spawn_blocking(move || assemble(bronze, &losers, &links, day, &tail))
        .await
        .map_err(|e| crate::Error::Task(e.to_string()))?
}

fn assemble(
    bronze: RecordBatch,
    losers: &[bool],
    links: &BTreeMap<String, Link>,
    day: Day,
    tail: &Tail,
) -> Result<(RecordBatch, Tail)> {
    let user = column::strings(&bronze, "user_id")?;
    let anon = column::strings(&bronze, "anonymous_id")?;
    let ids = column::strings(&bronze, "event_id")?;
    let ts = column::micros(&bronze, "event_ts")?;
    let context = column::strings(&bronze, "context")?;

    let person: Vec<String> = (0..bronze.num_rows())
        .map(|i| {
            if user.is_valid(i) {
                user.value(i).to_owned()
            } else if anon.is_valid(i) {
                let anon = anon.value(i);
                match links.get(anon) {
                    Some(link) => link.user_id.clone(),
                    None => format!("anon:{anon}"),
                }
            } else {
                // Bronze never holds an event without either id; keep the
                // row attributable anyway.
                format!("event:{}", ids.value(i))
            }
        })
        .collect();

    let mut order: Vec<u32> = (0..bronze.num_rows() as u32)
        .filter(|&i| !losers[i as usize])
        .collect();
    order.sort_unstable_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        (&person[a], ts.value(a), ids.value(a)).cmp(&(&person[b], ts.value(b), ids.value(b)))
    });

    let mut sessions: Vec<String> = Vec::with_capacity(order.len());
    let mut next_tail = Tail::default();
    let tail_from = day_start(day + 1) - SESSION_GAP_MICROS;
    let mut previous: Option<(usize, i64, usize)> = None; // (row, ts, index in sessions)
    for (k, &row) in order.iter().enumerate() {
        let row = row as usize;
        let t = ts.value(row);
        let session = match previous {
            Some((prev, prev_ts, prev_k))
                if person[prev] == person[row] && t - prev_ts <= SESSION_GAP_MICROS =>
            {
                sessions[prev_k].clone()
            }
            Some((prev, _, _)) if person[prev] == person[row] => {
                session_id(&person[row], ids.value(row))
            }
            _ => match tail.last.get(&person[row]) {
                Some((last_ts, session)) if t - last_ts <= SESSION_GAP_MICROS => session.clone(),
                _ => session_id(&person[row], ids.value(row)),
            },
        };
        sessions.push(session);
        previous = Some((row, t, k));
        let last_of_person = order
            .get(k + 1)
            .is_none_or(|&next| person[next as usize] != person[row]);
        if last_of_person && t >= tail_from {
            next_tail
                .last
                .insert(person[row].clone(), (t, sessions[k].clone()));
        }
    }

    // Written clustered by CLUSTER_BY: a stable sort by name keeps the
    // person and time order within each name.
    let names = column::strings(&bronze, "event_name")?;
    let mut by_name: Vec<usize> = (0..order.len()).collect();
    by_name.sort_by(|&a, &b| {
        names
            .value(order[a] as usize)
            .cmp(names.value(order[b] as usize))
    });
    let order: Vec<u32> = by_name.iter().map(|&k| order[k]).collect();
    let sessions: Vec<String> = by_name
        .iter()
        .map(|&k| std::mem::take(&mut sessions[k]))
        .collect();

    let take = UInt32Array::from(order.clone());
    let taken = take_record_batch(&bronze, &take)?;
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (i, field) in taken.schema().fields().iter().enumerate() {
        if field.name() == "ingest_date" {
            continue;
        }
        fields.push(field.as_ref().clone());
        columns.push(taken.column(i).clone());
    }
    let persons: StringArray = order
        .iter()
        .map(|&r| Some(person[r as usize].as_str()))
        .collect();
    let platforms: StringArray = order
        .iter()
        .map(|&r| {
            let r = r as usize;
            Some(platform(context.is_valid(r).then(|| context.value(r))))
        })
        .collect();
    let session_ids: StringArray = sessions.iter().map(|s| Some(s.as_str())).collect();
    let dates = Date32Array::from(vec![day; order.len()]);
    for (name, array) in [
        ("person_id", Arc::new(persons) as ArrayRef),
        ("session_id", Arc::new(session_ids)),
        ("platform", Arc::new(platforms)),
    ] {
        fields.push(Field::new(name, DataType::Utf8, false));
        columns.push(array);
    }
    fields.push(Field::new("event_date", DataType::Date32, false));
    columns.push(Arc::new(dates));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    Ok((batch, next_tail))
}
