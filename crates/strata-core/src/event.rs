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
    /// A `/v1/batch` body sent as Protobuf that is not a `strata.v1.Batch`.
    InvalidProtobuf,
    /// A `/v1/batch` body sent as Avro that is not an object container file.
    InvalidAvro,
    /// A file feed's row that does not parse or fit the feed's schema
    /// (SPEC §7; reserved for the file feed source).
    FeedBadRow,
    /// A backend log file's line that is not JSON (or not valid UTF-8).
    InvalidLine,
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
            RejectReason::InvalidProtobuf => "invalid_protobuf",
            RejectReason::InvalidAvro => "invalid_avro",
            RejectReason::FeedBadRow => "feed_bad_row",
            RejectReason::InvalidLine => "invalid_line",
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

/// What a change-data-capture row did (SPEC §7 `bronze.cdc_changes.op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    Snapshot,
    Insert,
    Update,
    Delete,
    Truncate,
}

impl ChangeOp {
    // Append only: a variant's position is its byte in the log.
    pub const ALL: [ChangeOp; 5] = [
        ChangeOp::Snapshot,
        ChangeOp::Insert,
        ChangeOp::Update,
        ChangeOp::Delete,
        ChangeOp::Truncate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Snapshot => "snapshot",
            ChangeOp::Insert => "insert",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
            ChangeOp::Truncate => "truncate",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == text)
    }
}

/// One row change of a database table, as a CDC source read it. JSON blobs
/// are objects of the row's columns in their PostgreSQL text form (numbers as
/// JSON numbers, NULL as null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub source: String,
    pub table_schema: String,
    pub table_name: String,
    pub op: ChangeOp,
    /// The commit LSN of the transaction; a snapshot's rows carry the
    /// replication slot's consistent point.
    pub lsn: u64,
    /// Commit time of the transaction (snapshot rows: when the snapshot
    /// was taken), microseconds UTC.
    pub commit_ts: i64,
    pub tx_id: Option<u32>,
    /// Order inside the transaction (inside the snapshot for its rows).
    pub seq: u64,
    pub key: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub received_at: i64,
    /// The last change of its transaction (of its snapshot for snapshot
    /// rows): every change before it in the source's stream is complete.
    /// Not a column of bronze; the loader keeps the position of the last
    /// such change per source, so readers take whole transactions only.
    pub tx_end: bool,
}

impl ChangeRecord {
    /// Where this change lies in its source's stream: changes arrive in
    /// strictly increasing positions, so a source's position is all a sink
    /// needs to write each change exactly once. A snapshot's rows come
    /// before any transaction that commits at the consistent point itself.
    pub fn position(&self) -> ChangePosition {
        let streamed = if self.op == ChangeOp::Snapshot {
            0
        } else {
            STREAMED_RANK
        };
        ChangePosition {
            lsn: self.lsn,
            rank: streamed | self.seq,
        }
    }
}

/// Ranks of streamed changes start here, above every snapshot row's; it
/// keeps ranks positive as 64-bit signed numbers (Delta's transaction
/// versions).
pub const STREAMED_RANK: u64 = 1 << 62;

/// A point in one CDC source's stream of changes, ordered as the changes
/// arrive: by commit LSN, then snapshot rows before streamed ones, then the
/// order inside the transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangePosition {
    pub lsn: u64,
    pub rank: u64,
}

/// One column of a captured table as its source declared it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationColumn {
    pub name: String,
    /// The PostgreSQL type name as `pg_type.typname` spells it (`int4`,
    /// `numeric`, `timestamptz`, `_text` for an array of text, ...).
    pub type_name: String,
    /// `pg_attribute.atttypmod`: -1 when none, else e.g. a numeric's
    /// precision and scale (`((p << 16) | s) + 4`).
    pub type_modifier: i32,
    /// Part of the primary key.
    pub key: bool,
}

/// The column list of a captured table from a given LSN on; silver types
/// the table's columns by the latest one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelationRecord {
    pub source: String,
    pub table_schema: String,
    pub table_name: String,
    pub lsn: u64,
    pub columns: Vec<RelationColumn>,
    pub received_at: i64,
}

/// Formats an LSN as PostgreSQL prints it, e.g. `0/16B3748`.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parses an LSN in PostgreSQL's text form.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let high = u32::from_str_radix(high, 16).ok()?;
    let low = u32::from_str_radix(low, 16).ok()?;
    Some(u64::from(high) << 32 | u64::from(low))
}

/// A piece of a file a file feed read (SPEC §7): its rows that fit the
/// feed's schema, and those that did not with their reasons. One record
/// holds both, so a chunk lands whole or not at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedChunk {
    pub source: String,
    /// The feed's table: rows land in `bronze.feed_<table>`.
    pub table: String,
    /// The file's name in the feed directory.
    pub file: String,
    /// SHA-256 of the file's content, lower-case hex.
    pub sha256: String,
    /// The chunk covers rows `first_row..end_row` of the file (1-based
    /// record numbers), good and bad.
    pub first_row: u64,
    pub end_row: u64,
    /// The feed table's columns when the chunk was read: a JSON array of
    /// `[name, type]` pairs (`string`, `long`, `double`, `boolean`, `date`,
    /// `timestamp`).
    pub schema: String,
    /// The good rows as JSON lines, each object with its `_row`; values fit
    /// `schema`.
    pub rows: String,
    pub bad_rows: Vec<BadRow>,
    pub received_at: i64,
    /// The file's last chunk: the file is whole once it lands.
    pub last: bool,
}

/// A row of a feed file that does not parse or fit the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRow {
    pub row: u64,
    pub why: String,
    /// The row as read (lossy UTF-8), cut to a bounded size.
    pub raw: String,
}

/// One log record; its bytes in the log are `crate::codec`'s binary form.
#[derive(Debug, Clone, PartialEq)]
pub enum LogRecord {
    Event(BronzeEvent),
    Quarantine(QuarantineRecord),
    Change(ChangeRecord),
    Relation(RelationRecord),
    Feed(FeedChunk),
}

impl LogRecord {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        crate::codec::decode(bytes)
    }
}
