//! SPEC §2 normalisation: one Segment message in, one `BronzeEvent` (or the
//! reason it was rejected) out.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::{BronzeEvent, EventType, RejectReason};

/// How far in the future a corrected event time may lie before it is clamped.
pub const MAX_FUTURE_MICROS: i64 = 23 * 3600 * 1_000_000;

/// The default of `collector.max_event_name_bytes`.
pub const DEFAULT_MAX_EVENT_NAME_BYTES: usize = 256;

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
    pub batch_sent_at: Option<&'a RawValue>,
    /// Longer track `event`s are rejected as `event_name_too_long`: every
    /// distinct name is a row of the hourly tables and a key of the
    /// dashboard, so one client must not make them megabytes wide.
    pub max_event_name_bytes: usize,
}

/// The fields of a Segment message Strata reads, borrowed from the request
/// body: blobs stay raw JSON text, so they are stored without being parsed
/// into a tree and serialised again.
#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a RawValue>,
    #[serde(rename = "userId", default, borrow)]
    user_id: Option<&'a RawValue>,
    #[serde(rename = "anonymousId", default, borrow)]
    anonymous_id: Option<&'a RawValue>,
    #[serde(rename = "previousId", default, borrow)]
    previous_id: Option<&'a RawValue>,
    #[serde(rename = "messageId", default, borrow)]
    message_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    event: Option<&'a RawValue>,
    #[serde(default, borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(rename = "originalTimestamp", default, borrow)]
    original_timestamp: Option<&'a RawValue>,
    #[serde(rename = "sentAt", default, borrow)]
    sent_at: Option<&'a RawValue>,
    #[serde(default, borrow)]
    properties: Option<&'a RawValue>,
    #[serde(default, borrow)]
    traits: Option<&'a RawValue>,
    #[serde(default, borrow)]
    context: Option<&'a RawValue>,
}

/// Normalises one message given as its JSON text.
pub fn normalize(message: &str, envelope: &Envelope<'_>) -> Result<BronzeEvent, Rejection> {
    if !message.trim_start().starts_with('{') {
        return Err(Rejection::new(
            RejectReason::NotSegmentPayload,
            "message is not a JSON object",
        ));
    }
    let message: RawMessage<'_> = serde_json::from_str(message).map_err(|e| {
        let reason = if e.is_data() {
            RejectReason::InvalidField
        } else {
            RejectReason::InvalidJson
        };
        Rejection::new(reason, e.to_string())
    })?;
    let event_type = match envelope.implied_type {
        Some(t) => t,
        None => match present(message.kind) {
            None => return Err(Rejection::new(RejectReason::UnknownType, "type is missing")),
            Some(raw) => {
                let text = string_value(raw).ok_or_else(|| {
                    Rejection::new(RejectReason::UnknownType, "type is not a string")
                })?;
                EventType::parse(&text).ok_or_else(|| {
                    Rejection::new(
                        RejectReason::UnknownType,
                        format!("unknown type {:?}", truncate(&text, 64)),
                    )
                })?
            }
        },
    };

    let user_id = id_field(message.user_id, "userId")?;
    let anonymous_id = match event_type {
        // An alias names its anonymous side in previousId (SPEC §2).
        EventType::Alias => match id_field(message.previous_id, "previousId")? {
            Some(previous) => Some(previous),
            None => id_field(message.anonymous_id, "anonymousId")?,
        },
        _ => id_field(message.anonymous_id, "anonymousId")?,
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
        EventType::Track => match present(message.event) {
            None => {
                return Err(Rejection::new(
                    RejectReason::MissingEvent,
                    "track call without event",
                ));
            }
            Some(raw) => match string_value(raw) {
                Some(name) if !name.trim().is_empty() => name.into_owned(),
                Some(_) => {
                    return Err(Rejection::new(
                        RejectReason::MissingEvent,
                        "track call with an empty event",
                    ));
                }
                None => {
                    return Err(Rejection::new(
                        RejectReason::InvalidField,
                        "event is not a string",
                    ));
                }
            },
        },
        other => other.synthetic_name().unwrap_or_default().to_string(),
    };
    // Only a track's name comes from the client; the others are fixed.
    if event_type == EventType::Track && event_name.len() > envelope.max_event_name_bytes {
        return Err(Rejection::new(
            RejectReason::EventNameTooLong,
            format!(
                "event is {} bytes, more than the limit of {}: {:?}…",
                event_name.len(),
                envelope.max_event_name_bytes,
                truncate(&event_name, 64)
            ),
        ));
    }

    let (event_id, id_generated) = match id_field(message.message_id, "messageId")? {
        Some(id) => (id, false),
        None => (Uuid::now_v7().to_string(), true),
    };

    let received_at = envelope.received_at.timestamp_micros();
    let timestamp = match present(message.timestamp) {
        Some(raw) => parse_time("timestamp", raw)?,
        None => match present(message.original_timestamp) {
            Some(raw) => parse_time("originalTimestamp", raw)?,
            None => None,
        },
    };
    let sent_at =
        match present(message.sent_at).or(envelope.batch_sent_at.and_then(|v| present(Some(v)))) {
            Some(raw) => parse_time("sentAt", raw)?,
            None => None,
        };
    let (event_ts, ts_clamped) = event_time(received_at, timestamp, sent_at);

    let properties = object_text(message.properties, "properties")?;
    let traits = object_text(message.traits, "traits")?;
    let context = merged_context(message.context, envelope.batch_context)?;

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

/// A field that is absent or `null` counts as absent.
fn present(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "null")
}

fn string_value(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Cow<'_, str>>(raw.get()).ok()
}

/// Identifiers may arrive as strings or numbers; empty strings count as absent.
/// Numbers are spelled as the Segment libraries spell them (see
/// [`number_id`]), so one id sent as `1` and as `1.0` is one id.
fn id_field(raw: Option<&RawValue>, key: &str) -> Result<Option<String>, Rejection> {
    let Some(raw) = present(raw) else {
        return Ok(None);
    };
    let text = raw.get();
    if text.starts_with('"') {
        let value = string_value(raw).ok_or_else(|| {
            Rejection::new(
                RejectReason::InvalidField,
                format!("{key} is not a valid string"),
            )
        })?;
        return Ok((!value.is_empty()).then(|| value.into_owned()));
    }
    if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return number_id(text, key).map(Some);
    }
    Err(Rejection::new(
        RejectReason::InvalidField,
        format!("{key} must be a string or a number"),
    ))
}

/// A JSON number as JavaScript's `String(n)` spells it, which is what the
/// Segment libraries send when an id is a number: otherwise `1`, `1.0` and
/// `1e0` would be three people. Integer literals are kept as written (apart
/// from `-0`): JavaScript would round those beyond 2^53, but the digits are
/// what the client meant, and rounding would merge distinct ids.
fn number_id(literal: &str, key: &str) -> Result<String, Rejection> {
    let digits = literal.strip_prefix('-').unwrap_or(literal);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(if literal == "-0" { "0" } else { literal }.to_string());
    }
    // The body is valid JSON, and JSON's number grammar is a subset of
    // Rust's float syntax.
    let value: f64 = literal.parse().map_err(|_| {
        Rejection::new(
            RejectReason::InvalidField,
            format!("{key} is not a valid number: {}", truncate(literal, 64)),
        )
    })?;
    if !value.is_finite() {
        return Err(Rejection::new(
            RejectReason::InvalidField,
            format!(
                "{key} {} is out of range for a number id (not a finite double)",
                truncate(literal, 64)
            ),
        ));
    }
    Ok(js_number_string(value))
}

/// ECMAScript's Number::toString(10) for a finite `value`. Rust's `{:e}`
/// gives the shortest digits that round-trip, the digits the ECMAScript
/// algorithm starts from; only their layout differs.
fn js_number_string(value: f64) -> String {
    if value == 0.0 {
        // -0 included: String(-0) is "0".
        return "0".into();
    }
    let sci = format!("{:e}", value.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    // value = 0.<digits> × 10^n, the n of the ECMAScript algorithm.
    let n = exponent.parse::<i32>().unwrap_or(0) + 1;
    let mut out = String::with_capacity(k as usize + 8);
    if value < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if n > 0 { '+' } else { '-' });
        out.push_str(&(n - 1).abs().to_string());
    }
    out
}

fn parse_time(key: &str, raw: &RawValue) -> Result<Option<i64>, Rejection> {
    let Some(text) = string_value(raw) else {
        return Err(Rejection::new(
            RejectReason::InvalidField,
            format!("{key} must be an ISO-8601 string"),
        ));
    };
    parse_timestamp(&text).map(Some).ok_or_else(|| {
        Rejection::new(
            RejectReason::InvalidField,
            format!(
                "{key} is not an ISO-8601 timestamp: {}",
                truncate(&text, 64)
            ),
        )
    })
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

/// Blobs are kept as the client sent them, once checked to be objects.
fn object_text(raw: Option<&RawValue>, key: &str) -> Result<Option<String>, Rejection> {
    match present(raw) {
        None => Ok(None),
        Some(raw) if raw.get().starts_with('{') => Ok(Some(raw.get().to_string())),
        Some(_) => Err(Rejection::new(
            RejectReason::InvalidField,
            format!("{key} must be an object"),
        )),
    }
}

fn merged_context(
    own: Option<&RawValue>,
    batch_context: Option<&Map<String, Value>>,
) -> Result<Option<String>, Rejection> {
    let Some(base) = batch_context else {
        return object_text(own, "context");
    };
    let mut merged = base.clone();
    if let Some(own) = object_text(own, "context")? {
        let own: Map<String, Value> = serde_json::from_str(&own)
            .map_err(|e| Rejection::new(RejectReason::InvalidField, format!("context: {e}")))?;
        deep_merge(&mut merged, own);
    }
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
