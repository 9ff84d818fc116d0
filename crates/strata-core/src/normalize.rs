//! SPEC §2 normalisation: one Segment message in, one `BronzeEvent` (or the
//! reason it was rejected) out.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::{BronzeEvent, EventType, RejectReason};

/// How far in the future a corrected event time may lie before it is clamped.
pub const MAX_FUTURE_MICROS: i64 = 23 * 3600 * 1_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// What a request contributes to each of its messages.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub received_at: DateTime<Utc>,
    pub source: &'a str,
    /// The type implied by the endpoint (`/v1/track` → track); `None` for batch.
    pub implied_type: Option<EventType>,
    /// `context` of a `/v1/batch` body, merged under each message's own.
    pub batch_context: Option<&'a Map<String, Value>>,
    /// `sentAt` of a `/v1/batch` body, used by messages that carry none.
    pub batch_sent_at: Option<&'a Value>,
}

pub fn normalize(
    message: Map<String, Value>,
    envelope: &Envelope<'_>,
) -> Result<BronzeEvent, Rejection> {
    let mut message = message;
    let event_type = match envelope.implied_type {
        Some(t) => t,
        None => match message.get("type") {
            Some(Value::String(t)) => EventType::parse(t).ok_or_else(|| {
                Rejection::new(RejectReason::UnknownType, format!("unknown type {t:?}"))
            })?,
            Some(_) => {
                return Err(Rejection::new(
                    RejectReason::UnknownType,
                    "type is not a string",
                ));
            }
            None => return Err(Rejection::new(RejectReason::UnknownType, "type is missing")),
        },
    };

    let user_id = id_field(&message, "userId")?;
    let anonymous_id = match event_type {
        // An alias names its anonymous side in previousId (SPEC §2).
        EventType::Alias => match id_field(&message, "previousId")? {
            Some(previous) => Some(previous),
            None => id_field(&message, "anonymousId")?,
        },
        _ => id_field(&message, "anonymousId")?,
    };
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(Rejection::new(
            RejectReason::MissingIdentity,
            "message has neither userId nor anonymousId",
        ));
    }
    if event_type == EventType::Alias && (user_id.is_none() || anonymous_id.is_none()) {
        return Err(Rejection::new(
            RejectReason::MissingIdentity,
            "alias needs both userId and previousId",
        ));
    }

    let event_name = match event_type {
        EventType::Track => match message.get("event") {
            Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(Rejection::new(
                    RejectReason::MissingEvent,
                    "track call without event",
                ));
            }
            Some(_) => {
                return Err(Rejection::new(
                    RejectReason::InvalidField,
                    "event is not a string",
                ));
            }
        },
        other => other.synthetic_name().unwrap_or_default().to_string(),
    };

    let (event_id, id_generated) = match id_field(&message, "messageId")? {
        Some(id) => (id, false),
        None => (Uuid::now_v7().to_string(), true),
    };

    let received_at = envelope.received_at.timestamp_micros();
    let timestamp = match message.get("timestamp") {
        None | Some(Value::Null) => time_field(&message, "originalTimestamp")?,
        Some(_) => time_field(&message, "timestamp")?,
    };
    let sent_at = match message.get("sentAt") {
        None | Some(Value::Null) => match envelope.batch_sent_at {
            Some(v) => parse_time("sentAt", v)?,
            None => None,
        },
        Some(_) => time_field(&message, "sentAt")?,
    };
    let (event_ts, ts_clamped) = event_time(received_at, timestamp, sent_at);

    let properties = blob(&mut message, "properties")?;
    let traits = blob(&mut message, "traits")?;
    let context = merged_context(&mut message, envelope.batch_context)?;

    Ok(BronzeEvent {
        event_id,
        id_generated,
        event_type,
        event_name,
        user_id,
        anonymous_id,
        event_ts,
        ts_clamped,
        sent_at,
        received_at,
        source: envelope.source.to_string(),
        properties,
        context,
        traits,
    })
}

/// SPEC §2: correct client clock skew with `sentAt`, then clamp the future.
pub fn event_time(received_at: i64, timestamp: Option<i64>, sent_at: Option<i64>) -> (i64, bool) {
    let ts = match (timestamp, sent_at) {
        (Some(ts), Some(sent)) => received_at.saturating_sub(sent.saturating_sub(ts)),
        (Some(ts), None) => ts,
        (None, _) => received_at,
    };
    if ts > received_at.saturating_add(MAX_FUTURE_MICROS) {
        (received_at, true)
    } else {
        (ts, false)
    }
}

/// Identifiers may arrive as strings or numbers; empty strings count as absent.
fn id_field(message: &Map<String, Value>, key: &str) -> Result<Option<String>, Rejection> {
    match message.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(Rejection::new(
            RejectReason::InvalidField,
            format!("{key} must be a string or a number"),
        )),
    }
}

fn time_field(message: &Map<String, Value>, key: &str) -> Result<Option<i64>, Rejection> {
    match message.get(key) {
        None => Ok(None),
        Some(v) => parse_time(key, v),
    }
}

fn parse_time(key: &str, value: &Value) -> Result<Option<i64>, Rejection> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => parse_timestamp(s).map(Some).ok_or_else(|| {
            Rejection::new(
                RejectReason::InvalidField,
                format!("{key} is not an ISO-8601 timestamp: {}", truncate(s, 64)),
            )
        }),
        _ => Err(Rejection::new(
            RejectReason::InvalidField,
            format!("{key} must be an ISO-8601 string"),
        )),
    }
}

/// RFC 3339, plus the offset-less form some SDKs send (taken as UTC).
pub fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc).timestamp_micros());
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

fn blob(message: &mut Map<String, Value>, key: &str) -> Result<Option<String>, Rejection> {
    match message.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v.to_string())),
        Some(_) => Err(Rejection::new(
            RejectReason::InvalidField,
            format!("{key} must be an object"),
        )),
    }
}

fn merged_context(
    message: &mut Map<String, Value>,
    batch_context: Option<&Map<String, Value>>,
) -> Result<Option<String>, Rejection> {
    let own = match message.remove("context") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => {
            return Err(Rejection::new(
                RejectReason::InvalidField,
                "context must be an object",
            ));
        }
    };
    let merged = match (batch_context, own) {
        (None, None) => return Ok(None),
        (None, Some(own)) => own,
        (Some(base), None) => base.clone(),
        (Some(base), Some(own)) => {
            let mut merged = base.clone();
            deep_merge(&mut merged, own);
            merged
        }
    };
    Ok(Some(Value::Object(merged).to_string()))
}

/// The message's own values win; nested objects merge key by key.
fn deep_merge(base: &mut Map<String, Value>, own: Map<String, Value>) {
    for (key, value) in own {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(b)), Value::Object(o)) => deep_merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The key that keeps one person's events in one log partition.
pub fn person_key(event: &BronzeEvent) -> &str {
    event
        .user_id
        .as_deref()
        .or(event.anonymous_id.as_deref())
        .unwrap_or("")
}
