//! What the collector writes to the log and the bronze loader reads back: one
//! normalised event, or one rejected input kept with its reason.

use serde::{Deserialize, Serialize};

use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::Track,
        EventType::Identify,
        EventType::Page,
        EventType::Screen,
        EventType::Group,
        EventType::Alias,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Track => "track",
            EventType::Identify => "identify",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Group => "group",
            EventType::Alias => "alias",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The `event_name` of non-track calls (SPEC §2).
    pub fn synthetic_name(self) -> Option<&'static str> {
        match self {
            EventType::Track => None,
            EventType::Identify => Some("$identify"),
            EventType::Page => Some("$page"),
            EventType::Screen => Some("$screen"),
            EventType::Group => Some("$group"),
            EventType::Alias => Some("$alias"),
        }
    }
}

/// One accepted message after normalisation; times are microseconds since the
/// Unix epoch, UTC. JSON blobs stay strings so bronze keeps them verbatim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BronzeEvent {
    pub event_id: String,
    pub id_generated: bool,
    pub event_type: EventType,
    pub event_name: String,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub event_ts: i64,
    /// Set when the corrected event time lay more than 23 h after
    /// `received_at` and was clamped to it.
    pub ts_clamped: bool,
    pub sent_at: Option<i64>,
    pub received_at: i64,
    pub source: String,
    pub properties: Option<String>,
    pub context: Option<String>,
    pub traits: Option<String>,
}

/// Why an input was rejected; the snake_case names are stored in
/// `bronze.quarantine.reason` and are part of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    InvalidJson,
    NotSegmentPayload,
    RequestTooLarge,
    MessageTooLarge,
    MissingIdentity,
    UnknownType,
    MissingEvent,
    InvalidField,
    EventTsTooOld,
    EventNameTooLong,
    TooManyItems,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NotSegmentPayload => "not_segment_payload",
            RejectReason::RequestTooLarge => "request_too_large",
            RejectReason::MessageTooLarge => "message_too_large",
            RejectReason::MissingIdentity => "missing_identity",
            RejectReason::UnknownType => "unknown_type",
            RejectReason::MissingEvent => "missing_event",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::EventTsTooOld => "event_ts_too_old",
            RejectReason::EventNameTooLong => "event_name_too_long",
            RejectReason::TooManyItems => "too_many_items",
        }
    }
}

/// The 128-bit key an `event_id` is deduplicated by, the same in the
/// realtime and the batch path. Ids are UUIDs almost always: their 128 bits
/// are the key. Anything else (any string is a valid messageId: upper-case
/// iOS ids, `ajs-…` ids) is hashed to a UUIDv5, so no path has to keep ids
/// as text. Only the canonical lower-case spelling takes the fast path, so
/// ids that differ only in case stay distinct, as the ids themselves do.
pub fn id_key(id: &str) -> u128 {
    let b = id.as_bytes();
    if b.len() == 36
        && !b.iter().any(u8::is_ascii_uppercase)
        && let Ok(uuid) = uuid::Uuid::try_parse_ascii(b)
    {
        return uuid.as_u128();
    }
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, b).as_u128()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    pub received_at: i64,
    pub source: String,
    pub reason: RejectReason,
    pub detail: String,
    /// The rejected bytes as received (lossy UTF-8 when they were not text).
    pub raw: String,
}

/// One log record; its bytes in the log are `crate::codec`'s binary form.
#[derive(Debug, Clone, PartialEq)]
pub enum LogRecord {
    Event(BronzeEvent),
    Quarantine(QuarantineRecord),
}

impl LogRecord {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        crate::codec::decode(bytes)
    }
}
