//! `gold.dim_users`: SCD2 on `plan` and `country`, SCD1 on `email`, from
//! identify traits in `(event_ts, event_id)` order (SPEC §3), read from
//! `silver.identifies` rather than from every event of all time.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use serde_json::Value;

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
    let mut identifies: BTreeMap<String, Vec<(i64, String, Value)>> = BTreeMap::new();
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
            identifies
                .entry(user.value(i).to_owned())
                .or_default()
                .push((ts.value(i), ids.value(i).to_owned(), value));
        }
    }

    let mut out = Columns::default();
    for (user, mut list) in identifies {
        list.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut email: Option<String> = None;
        let mut versions: Vec<Version> = Vec::new();
        for (ts, _, traits) in &list {
            if let Some(e) = trait_value(traits, "email") {
                email = Some(e);
            }
            let current = versions.last();
            let plan = trait_value(traits, "plan").or_else(|| current.and_then(|v| v.plan.clone()));
            let country =
                trait_value(traits, "country").or_else(|| current.and_then(|v| v.country.clone()));
            let changed = current.is_none_or(|v| v.plan != plan || v.country != country);
            if changed {
                versions.push(Version {
                    plan,
                    country,
                    valid_from: *ts,
                });
            }
        }
        for (i, version) in versions.iter().enumerate() {
            let valid_to = versions.get(i + 1).map(|next| next.valid_from);
            out.user_id.push(user.clone());
            out.email.push(email.clone());
            out.plan.push(version.plan.clone());
            out.country.push(version.country.clone());
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
