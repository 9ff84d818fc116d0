//! The CDC users table's part of `gold.dim_users`: each version of a row in
//! `silver.<users>_history` is a change, at its `valid_from`, of the
//! `email`, `plan` and `country` values that differ from the row's previous
//! version (a value the database set to NULL keeps the previous one, as an
//! absent trait does); a version closed by a delete deletes the row at its
//! `valid_to`. A row whose `user_id` changes leaves the old user then.

use std::collections::BTreeMap;

use deltalake::arrow::array::{Array, ArrayRef, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::DataType;

use super::dim_users::{CDC_DELETE, CDC_SET, Change, Event};
use crate::cdc::{self, CdcId};
use crate::error::{Error, Result};
use crate::io::{LakeIo, column};
use crate::model::Model;

const ATTRIBUTES: [&str; 3] = ["email", "plan", "country"];

struct RowVersion {
    user: Option<String>,
    values: [Option<String>; 3],
    valid_from: i64,
    valid_to: Option<i64>,
    is_deleted: bool,
}

/// A column as text, or all nulls when the table has no such column.
fn text(batch: &deltalake::arrow::array::RecordBatch, name: &str) -> Result<StringArray> {
    match batch.column_by_name(name) {
        Some(array) => {
            let array: ArrayRef = cast(array, &DataType::Utf8)?;
            Ok(array
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to Utf8")
                .clone())
        }
        None => Ok(StringArray::new_null(batch.num_rows())),
    }
}

/// Adds the users table's changes to `events`, per user.
pub async fn events(
    io: &LakeIo,
    users: CdcId,
    events: &mut BTreeMap<String, Vec<Event>>,
) -> Result<()> {
    let def = Model::CdcHistory(users).table();
    let Some(key_columns) = cdc::key_columns(io, users).await? else {
        return Ok(());
    };
    let batches = io.scan(def, &[], None).await?;
    let mut rows: BTreeMap<String, Vec<RowVersion>> = BTreeMap::new();
    for batch in &batches {
        if batch.column_by_name("user_id").is_none() {
            return Err(Error::Invalid(format!(
                "[cdc] users_table {}: the table has no user_id column",
                cdc::table(users).qualified()
            )));
        }
        let keys = key_columns
            .iter()
            .map(|k| text(batch, k))
            .collect::<Result<Vec<_>>>()?;
        let user = text(batch, "user_id")?;
        let values = ATTRIBUTES
            .iter()
            .map(|a| text(batch, a))
            .collect::<Result<Vec<_>>>()?;
        let from = column::micros(batch, "valid_from")?;
        let to = column::micros(batch, "valid_to")?;
        let deleted = column::bools(batch, "is_deleted")?;
        let get = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_owned());
        for i in 0..batch.num_rows() {
            let key: Vec<String> = keys.iter().map(|k| get(k, i).unwrap_or_default()).collect();
            rows.entry(key.join("\u{1f}"))
                .or_default()
                .push(RowVersion {
                    user: get(&user, i),
                    values: [get(&values[0], i), get(&values[1], i), get(&values[2], i)],
                    valid_from: from.value(i),
                    valid_to: (!to.is_null(i)).then(|| to.value(i)),
                    is_deleted: deleted.value(i),
                });
        }
    }
    for (row, mut versions) in rows {
        versions.sort_by_key(|v| v.valid_from);
        // The previous version of this row, while it is the same user's.
        let mut previous: Option<RowVersion> = None;
        for version in versions {
            if let Some(p) = &previous
                && p.user != version.user
            {
                if let Some(user) = &p.user {
                    push(events, user, version.valid_from, CDC_DELETE, &row, None);
                }
                previous = None;
            }
            let Some(user) = version.user.clone() else {
                continue;
            };
            let changed = |i: usize| {
                let new = version.values[i].clone()?;
                let before = previous.as_ref().and_then(|p| p.values[i].as_deref());
                (before != Some(new.as_str())).then_some(new)
            };
            let set = Change::Set {
                email: changed(0),
                plan: changed(1),
                country: changed(2),
                row: Some(row.clone()),
            };
            push(events, &user, version.valid_from, CDC_SET, &row, Some(set));
            if version.is_deleted {
                let at = version.valid_to.unwrap_or(version.valid_from);
                push(events, &user, at, CDC_DELETE, &row, None);
                previous = None;
            } else {
                previous = Some(version);
            }
        }
    }
    Ok(())
}

fn push(
    events: &mut BTreeMap<String, Vec<Event>>,
    user: &str,
    ts: i64,
    order: u8,
    row: &str,
    set: Option<Change>,
) {
    let change = set.unwrap_or_else(|| Change::Delete {
        row: row.to_owned(),
    });
    events.entry(user.to_owned()).or_default().push(Event {
        ts,
        order,
        tie: row.to_owned(),
        change,
    });
}
