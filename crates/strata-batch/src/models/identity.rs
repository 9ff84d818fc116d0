//! `silver.identity`: the link table, and which silver dates a change of
//! links reaches (links apply retroactively to anonymous events).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::datafusion::prelude::col;

use crate::bronze_index::Link;
use crate::dates::Day;
use crate::error::Result;
use crate::io::{LakeIo, column};
use crate::tables::{SILVER_EVENTS, SILVER_IDENTITY};

pub async fn read(io: &LakeIo) -> Result<BTreeMap<String, Link>> {
    let batches = io.scan(&SILVER_IDENTITY, &[], None).await?;
    let mut links = BTreeMap::new();
    for batch in &batches {
        let anon = column::strings(batch, "anonymous_id")?;
        let user = column::strings(batch, "user_id")?;
        let at = column::micros(batch, "linked_at")?;
        let event = column::strings(batch, "link_event_id")?;
        let ignored = column::longs(batch, "ignored_links")?;
        for i in 0..batch.num_rows() {
            links.insert(
                anon.value(i).to_owned(),
                Link {
                    user_id: user.value(i).to_owned(),
                    linked_at: at.value(i),
                    link_event_id: event.value(i).to_owned(),
                    ignored_links: ignored.value(i),
                },
            );
        }
    }
    Ok(links)
}

/// Anonymous ids whose person differs between two link tables.
pub fn persons_changed(
    before: &BTreeMap<String, Link>,
    after: &BTreeMap<String, Link>,
) -> BTreeSet<String> {
    let mut changed = BTreeSet::new();
    for (anon, link) in after {
        if before.get(anon).map(|l| &l.user_id) != Some(&link.user_id) {
            changed.insert(anon.clone());
        }
    }
    for anon in before.keys() {
        if !after.contains_key(anon) {
            changed.insert(anon.clone());
        }
    }
    changed
}

pub fn batch(links: &BTreeMap<String, Link>) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            links
                .keys()
                .map(|a| Some(a.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            links
                .values()
                .map(|l| Some(l.user_id.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            TimestampMicrosecondArray::from(
                links.values().map(|l| l.linked_at).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(
            links
                .values()
                .map(|l| Some(l.link_event_id.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(Int64Array::from(
            links.values().map(|l| l.ignored_links).collect::<Vec<_>>(),
        )),
    ];
    Ok(RecordBatch::try_new(
        SILVER_IDENTITY.arrow_schema(),
        columns,
    )?)
}

/// Silver dates holding events of these anonymous ids without a user id.
pub async fn dates_of_anonymous(io: &LakeIo, anons: &BTreeSet<String>) -> Result<BTreeSet<Day>> {
    let mut days = BTreeSet::new();
    if anons.is_empty() {
        return Ok(days);
    }
    let wanted: HashSet<&str> = anons.iter().map(String::as_str).collect();
    let batches = io
        .scan(
            &SILVER_EVENTS,
            &["anonymous_id", "event_date"],
            Some(
                col("user_id")
                    .is_null()
                    .and(col("anonymous_id").is_not_null()),
            ),
        )
        .await?;
    for batch in &batches {
        let anon = column::strings(batch, "anonymous_id")?;
        let day = column::days(batch, "event_date")?;
        for i in 0..batch.num_rows() {
            if wanted.contains(anon.value(i)) {
                days.insert(day.value(i));
            }
        }
    }
    Ok(days)
}
