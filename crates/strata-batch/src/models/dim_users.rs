//! `gold.dim_users`: SCD2 on `plan` and `country`, SCD1 on `email`, from
//! identify traits in `(event_ts, event_id)` order (SPEC §3), read from
//! `silver.identifies` rather than from every event of all time, merged in
//! time with the CDC users table when `[cdc] users_table` names one
//! (`dim_users_cdc`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use serde_json::Value;

use super::dim_users_cdc;
use crate::cdc;
use crate::error::Result;
use crate::io::{LakeIo, column};
use crate::tables::{GOLD_DIM_USERS, SILVER_IDENTIFIES};

/// A trait's new value: absent or JSON null keeps the previous one; strings
/// as they are, other values as their JSON text.
fn trait_value(traits: &Value, key: &str) -> Option<String> {
    match traits.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Something that happened to a user's attributes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// New values; `None` keeps the previous one. `row` is the CDC row that
    /// carries them (None for an identify).
    Set {
        email: Option<String>,
        plan: Option<String>,
        country: Option<String>,
        row: Option<String>,
    },
    /// A CDC row of the user was deleted (or stopped being the user's).
    Delete { row: String },
}

/// A change at a time. At equal times CDC rows come first, their deletes
/// after them (a key moving to another row is no deletion of the user),
/// then identifies by event id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Event {
    pub ts: i64,
    pub order: u8,
    pub tie: String,
    pub change: Change,
}

pub const CDC_SET: u8 = 0;
pub const CDC_DELETE: u8 = 1;
const IDENTIFY: u8 = 2;

struct Version {
    plan: Option<String>,
    country: Option<String>,
    valid_from: i64,
}

pub async fn build(io: &LakeIo) -> Result<RecordBatch> {
    let batches = io
        .scan(
            &SILVER_IDENTIFIES,
            &["user_id", "event_ts", "event_id", "traits"],
            None,
        )
        .await?;
    let mut events: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for batch in &batches {
        let user = column::strings(batch, "user_id")?;
        let ts = column::micros(batch, "event_ts")?;
        let ids = column::strings(batch, "event_id")?;
        let traits = column::strings(batch, "traits")?;
        for i in 0..batch.num_rows() {
            let value = if traits.is_null(i) {
                Value::Null
            } else {
                serde_json::from_str(traits.value(i)).unwrap_or(Value::Null)
            };
            events
                .entry(user.value(i).to_owned())
                .or_default()
                .push(Event {
                    ts: ts.value(i),
                    order: IDENTIFY,
                    tie: ids.value(i).to_owned(),
                    change: Change::Set {
                        email: trait_value(&value, "email"),
                        plan: trait_value(&value, "plan"),
                        country: trait_value(&value, "country"),
                        row: None,
                    },
                });
        }
    }
    if let Some(users) = cdc::users_table()? {
        dim_users_cdc::events(io, users, &mut events).await?;
    }

    let mut out = Columns::default();
    for (user, mut list) in events {
        list.sort_unstable();
        let mut email: Option<String> = None;
        let mut versions: Vec<(Version, Option<i64>)> = Vec::new();
        let mut current: Option<Version> = None;
        // The user's live CDC rows: the user is deleted when the last goes.
        let mut rows: BTreeSet<String> = BTreeSet::new();
        for event in list {
            match event.change {
                Change::Set {
                    email: new_email,
                    plan,
                    country,
                    row,
                } => {
                    rows.extend(row);
                    if new_email.is_some() {
                        email = new_email;
                    }
                    let (plan, country) = match &current {
                        Some(v) => (
                            plan.or_else(|| v.plan.clone()),
                            country.or_else(|| v.country.clone()),
                        ),
                        None => (plan, country),
                    };
                    let changed = current
                        .as_ref()
                        .is_none_or(|v| v.plan != plan || v.country != country);
                    if changed {
                        if let Some(v) = current.take() {
                            versions.push((v, Some(event.ts)));
                        }
                        current = Some(Version {
                            plan,
                            country,
                            valid_from: event.ts,
                        });
                    }
                }
                Change::Delete { row } => {
                    rows.remove(&row);
                    if rows.is_empty()
                        && let Some(v) = current.take()
                    {
                        versions.push((v, Some(event.ts)));
                    }
                }
            }
        }
        versions.extend(current.map(|v| (v, None)));
        for (version, valid_to) in versions {
            out.user_id.push(user.clone());
            out.email.push(email.clone());
            out.plan.push(version.plan);
            out.country.push(version.country);
            out.valid_from.push(version.valid_from);
            out.valid_to.push(valid_to);
            out.is_current.push(valid_to.is_none());
        }
    }
    out.finish()
}

#[derive(Default)]
struct Columns {
    user_id: Vec<String>,
    email: Vec<Option<String>>,
    plan: Vec<Option<String>>,
    country: Vec<Option<String>>,
    valid_from: Vec<i64>,
    valid_to: Vec<Option<i64>>,
    is_current: Vec<bool>,
}

impl Columns {
    fn finish(self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.user_id)),
            Arc::new(StringArray::from(self.email)),
            Arc::new(StringArray::from(self.plan)),
            Arc::new(StringArray::from(self.country)),
            Arc::new(TimestampMicrosecondArray::from(self.valid_from).with_timezone("UTC")),
            Arc::new(TimestampMicrosecondArray::from(self.valid_to).with_timezone("UTC")),
            Arc::new(BooleanArray::from(self.is_current)),
        ];
        Ok(RecordBatch::try_new(
            GOLD_DIM_USERS.arrow_schema(),
            columns,
        )?)
    }
}
