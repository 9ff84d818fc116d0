//! A feed's values: inferring a column's type from what a file holds, and
//! fitting each value to its column's type as JSON (the form
//! [`strata_core::feed::ColumnType`] documents).

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::Value;
use strata_core::feed::ColumnType;

const UNIX_EPOCH_DAY: i32 = 719_163;

/// The narrowest type a text value fits (CSV cells; JSON strings that
/// spell a date or a time).
pub fn infer_text(text: &str, numbers: bool) -> Option<ColumnType> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if numbers {
        if text.parse::<i64>().is_ok() {
            return Some(ColumnType::Long);
        }
        if text.parse::<f64>().is_ok_and(f64::is_finite) {
            return Some(ColumnType::Double);
        }
        if parse_bool(text).is_some() {
            return Some(ColumnType::Boolean);
        }
    }
    if parse_date(text).is_some() {
        return Some(ColumnType::Date);
    }
    if parse_timestamp(text).is_some() {
        return Some(ColumnType::Timestamp);
    }
    Some(ColumnType::String)
}

/// The type of a JSON value; `None` for null.
pub fn infer_json(value: &Value) -> Option<ColumnType> {
    match value {
        Value::Null => None,
        Value::Bool(_) => Some(ColumnType::Boolean),
        Value::Number(n) if n.is_i64() || n.is_u64() && n.as_i64().is_some() => {
            Some(ColumnType::Long)
        }
        Value::Number(_) => Some(ColumnType::Double),
        Value::String(s) => infer_text(s, false),
        Value::Array(_) | Value::Object(_) => Some(ColumnType::String),
    }
}

/// `value` as its column's JSON form, or why it does not fit.
pub fn fit(value: &Value, column: ColumnType) -> Result<Value, String> {
    match (value, column) {
        (Value::Null, _) => Ok(Value::Null),
        (Value::String(s), _) => fit_text(s, column),
        (Value::Bool(b), ColumnType::Boolean) => Ok(Value::Bool(*b)),
        (Value::Number(n), ColumnType::Long) => n
            .as_i64()
            .map(Value::from)
            .ok_or_else(|| format!("{n} is not a whole number")),
        (Value::Number(n), ColumnType::Double) => Ok(Value::from(n.as_f64().unwrap_or(f64::NAN))),
        (Value::Number(n), ColumnType::Timestamp) => n
            .as_i64()
            .map(Value::from)
            .ok_or_else(|| format!("{n} is not microseconds since the epoch")),
        (Value::Number(n), ColumnType::Date) => n
            .as_i64()
            .map(Value::from)
            .ok_or_else(|| format!("{n} is not days since the epoch")),
        (other, ColumnType::String) => Ok(Value::String(other.to_string())),
        (other, column) => Err(format!("{other} is not a {}", column.name())),
    }
}

/// A text cell as its column's JSON form; blank is null.
pub fn fit_text(text: &str, column: ColumnType) -> Result<Value, String> {
    if column == ColumnType::String {
        return Ok(Value::String(text.to_string()));
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(Value::Null);
    }
    let bad = || {
        let shown: String = trimmed.chars().take(80).collect();
        format!("{shown:?} is not a {}", column.name())
    };
    match column {
        ColumnType::String => Ok(Value::String(text.to_string())),
        ColumnType::Long => trimmed.parse::<i64>().map(Value::from).map_err(|_| bad()),
        ColumnType::Double => match trimmed.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Value::from(x)),
            _ => Err(bad()),
        },
        ColumnType::Boolean => parse_bool(trimmed).map(Value::Bool).ok_or_else(bad),
        ColumnType::Date => parse_date(trimmed)
            .map(|d| Value::from(days(d)))
            .ok_or_else(bad),
        ColumnType::Timestamp => parse_timestamp(trimmed).map(Value::from).ok_or_else(bad),
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" => Some(true),
        "false" | "f" | "no" => Some(false),
        _ => None,
    }
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

fn days(date: NaiveDate) -> i32 {
    date.num_days_from_ce() - UNIX_EPOCH_DAY
}

use chrono::Datelike;

/// RFC 3339, or a date and time without zone (read as UTC), or a date
/// (its midnight UTC): microseconds since the epoch.
fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Some(t.timestamp_micros());
    }
    parse_date(text).map(|d| {
        d.and_hms_opt(0, 0, 0)
            .map_or(0, |t| t.and_utc().timestamp_micros())
    })
}
