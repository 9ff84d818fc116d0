//! The binary form of a `LogRecord` in the log: a version byte, then fields
//! in declaration order; strings as u32 length + UTF-8, optional fields
//! behind a presence bitmap. Compact and cheap both ways (no escaping of the
//! JSON blobs the records carry), and every read is bounds-checked so a
//! damaged record is an error, never a panic.

use crate::error::{Error, Result};
use crate::event::{
    BronzeEvent, ChangeOp, ChangeRecord, EventType, FeedChunk, LogRecord, QuarantineRecord,
    RejectReason, RelationRecord,
};

const EVENT_V1: u8 = 1;
const QUARANTINE_V1: u8 = 2;
const CHANGE_V1: u8 = 3;
const RELATION_V1: u8 = 4;
const FEED_V1: u8 = 5;

// Append only: a reason's position is its byte in the log.
const REASONS: [RejectReason; 15] = [
    RejectReason::InvalidJson,
    RejectReason::NotSegmentPayload,
    RejectReason::RequestTooLarge,
    RejectReason::MessageTooLarge,
    RejectReason::MissingIdentity,
    RejectReason::UnknownType,
    RejectReason::MissingEvent,
    RejectReason::InvalidField,
    RejectReason::EventTsTooOld,
    RejectReason::EventNameTooLong,
    RejectReason::TooManyItems,
    RejectReason::InvalidProtobuf,
    RejectReason::InvalidAvro,
    RejectReason::FeedBadRow,
    RejectReason::InvalidLine,
];

pub fn encode(record: &LogRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    match record {
        LogRecord::Event(e) => {
            out.push(EVENT_V1);
            let flags = (e.id_generated as u8)
                | (e.ts_clamped as u8) << 1
                | (e.user_id.is_some() as u8) << 2
                | (e.anonymous_id.is_some() as u8) << 3
                | (e.sent_at.is_some() as u8) << 4
                | (e.properties.is_some() as u8) << 5
                | (e.context.is_some() as u8) << 6
                | (e.traits.is_some() as u8) << 7;
            out.push(flags);
            out.push(
                EventType::ALL
                    .iter()
                    .position(|t| *t == e.event_type)
                    .unwrap_or(0) as u8,
            );
            put_str(&mut out, &e.event_id);
            put_str(&mut out, &e.event_name);
            put_opt_str(&mut out, e.user_id.as_deref());
            put_opt_str(&mut out, e.anonymous_id.as_deref());
            out.extend_from_slice(&e.event_ts.to_le_bytes());
            if let Some(sent) = e.sent_at {
                out.extend_from_slice(&sent.to_le_bytes());
            }
            out.extend_from_slice(&e.received_at.to_le_bytes());
            put_str(&mut out, &e.source);
            put_opt_str(&mut out, e.properties.as_deref());
            put_opt_str(&mut out, e.context.as_deref());
            put_opt_str(&mut out, e.traits.as_deref());
        }
        LogRecord::Quarantine(q) => {
            out.push(QUARANTINE_V1);
            out.push(REASONS.iter().position(|r| *r == q.reason).unwrap_or(0) as u8);
            out.extend_from_slice(&q.received_at.to_le_bytes());
            put_str(&mut out, &q.source);
            put_str(&mut out, &q.detail);
            put_str(&mut out, &q.raw);
        }
        LogRecord::Change(c) => {
            out.push(CHANGE_V1);
            let flags = (c.tx_id.is_some() as u8)
                | (c.before.is_some() as u8) << 1
                | (c.after.is_some() as u8) << 2
                | (c.tx_end as u8) << 3;
            out.push(flags);
            out.push(ChangeOp::ALL.iter().position(|op| *op == c.op).unwrap_or(0) as u8);
            put_str(&mut out, &c.source);
            put_str(&mut out, &c.table_schema);
            put_str(&mut out, &c.table_name);
            out.extend_from_slice(&c.lsn.to_le_bytes());
            out.extend_from_slice(&c.commit_ts.to_le_bytes());
            if let Some(tx) = c.tx_id {
                out.extend_from_slice(&tx.to_le_bytes());
            }
            out.extend_from_slice(&c.seq.to_le_bytes());
            put_str(&mut out, &c.key);
            put_opt_str(&mut out, c.before.as_deref());
            put_opt_str(&mut out, c.after.as_deref());
            out.extend_from_slice(&c.received_at.to_le_bytes());
        }
        LogRecord::Relation(r) => {
            out.push(RELATION_V1);
            put_str(&mut out, &r.source);
            put_str(&mut out, &r.table_schema);
            put_str(&mut out, &r.table_name);
            out.extend_from_slice(&r.lsn.to_le_bytes());
            // Rare and small: JSON keeps the column list's form open.
            let columns = serde_json::to_string(&r.columns).unwrap_or_else(|_| "[]".into());
            put_str(&mut out, &columns);
            out.extend_from_slice(&r.received_at.to_le_bytes());
        }
        LogRecord::Feed(f) => {
            out.push(FEED_V1);
            out.push(f.last as u8);
            put_str(&mut out, &f.source);
            put_str(&mut out, &f.table);
            put_str(&mut out, &f.file);
            put_str(&mut out, &f.sha256);
            out.extend_from_slice(&f.first_row.to_le_bytes());
            out.extend_from_slice(&f.end_row.to_le_bytes());
            put_str(&mut out, &f.schema);
            put_str(&mut out, &f.rows);
            // Rare: JSON keeps their form open.
            let bad = serde_json::to_string(&f.bad_rows).unwrap_or_else(|_| "[]".into());
            put_str(&mut out, &bad);
            out.extend_from_slice(&f.received_at.to_le_bytes());
        }
    }
    out
}

pub fn decode(bytes: &[u8]) -> Result<LogRecord> {
    let mut r = Reader { bytes, at: 0 };
    match r.u8()? {
        EVENT_V1 => {
            let flags = r.u8()?;
            let event_type = *EventType::ALL
                .get(r.u8()? as usize)
                .ok_or_else(|| Error::RecordDecode("unknown event type".into()))?;
            let event_id = r.string()?;
            let event_name = r.string()?;
            let user_id = r.opt_string(flags & 1 << 2 != 0)?;
            let anonymous_id = r.opt_string(flags & 1 << 3 != 0)?;
            let event_ts = r.i64()?;
            let sent_at = if flags & 1 << 4 != 0 {
                Some(r.i64()?)
            } else {
                None
            };
            let received_at = r.i64()?;
            let source = r.string()?;
            let properties = r.opt_string(flags & 1 << 5 != 0)?;
            let context = r.opt_string(flags & 1 << 6 != 0)?;
            let traits = r.opt_string(flags & 1 << 7 != 0)?;
            r.finish()?;
            Ok(LogRecord::Event(BronzeEvent {
                event_id,
                id_generated: flags & 1 != 0,
                event_type,
                event_name,
                user_id,
                anonymous_id,
                event_ts,
                ts_clamped: flags & 1 << 1 != 0,
                sent_at,
                received_at,
                source,
                properties,
                context,
                traits,
            }))
        }
        QUARANTINE_V1 => {
            let reason = *REASONS
                .get(r.u8()? as usize)
                .ok_or_else(|| Error::RecordDecode("unknown reject reason".into()))?;
            let received_at = r.i64()?;
            let source = r.string()?;
            let detail = r.string()?;
            let raw = r.string()?;
            r.finish()?;
            Ok(LogRecord::Quarantine(QuarantineRecord {
                received_at,
                source,
                reason,
                detail,
                raw,
            }))
        }
        CHANGE_V1 => {
            let flags = r.u8()?;
            let op = *ChangeOp::ALL
                .get(r.u8()? as usize)
                .ok_or_else(|| Error::RecordDecode("unknown change op".into()))?;
            let source = r.string()?;
            let table_schema = r.string()?;
            let table_name = r.string()?;
            let lsn = r.i64()? as u64;
            let commit_ts = r.i64()?;
            let tx_id = if flags & 1 != 0 { Some(r.u32()?) } else { None };
            let seq = r.i64()? as u64;
            let key = r.string()?;
            let before = r.opt_string(flags & 1 << 1 != 0)?;
            let after = r.opt_string(flags & 1 << 2 != 0)?;
            let received_at = r.i64()?;
            r.finish()?;
            Ok(LogRecord::Change(ChangeRecord {
                tx_end: flags & 1 << 3 != 0,
                source,
                table_schema,
                table_name,
                op,
                lsn,
                commit_ts,
                tx_id,
                seq,
                key,
                before,
                after,
                received_at,
            }))
        }
        RELATION_V1 => {
            let source = r.string()?;
            let table_schema = r.string()?;
            let table_name = r.string()?;
            let lsn = r.i64()? as u64;
            let columns = serde_json::from_str(r.str()?)
                .map_err(|e| Error::RecordDecode(format!("relation columns: {e}")))?;
            let received_at = r.i64()?;
            r.finish()?;
            Ok(LogRecord::Relation(RelationRecord {
                source,
                table_schema,
                table_name,
                lsn,
                columns,
                received_at,
            }))
        }
        FEED_V1 => {
            let last = r.u8()? & 1 != 0;
            let source = r.string()?;
            let table = r.string()?;
            let file = r.string()?;
            let sha256 = r.string()?;
            let first_row = r.i64()? as u64;
            let end_row = r.i64()? as u64;
            let schema = r.string()?;
            let rows = r.string()?;
            let bad_rows = serde_json::from_str(r.str()?)
                .map_err(|e| Error::RecordDecode(format!("feed bad rows: {e}")))?;
            let received_at = r.i64()?;
            r.finish()?;
            Ok(LogRecord::Feed(FeedChunk {
                source,
                table,
                file,
                sha256,
                first_row,
                end_row,
                schema,
                rows,
                bad_rows,
                received_at,
                last,
            }))
        }
        other => Err(Error::RecordDecode(format!(
            "unknown record version {other}"
        ))),
    }
}

/// The fields of an event record the realtime path needs, borrowed from the
/// record: decoding them costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventView<'a> {
    pub event_id: &'a str,
    pub event_name: &'a str,
    pub user_id: Option<&'a str>,
    pub anonymous_id: Option<&'a str>,
    pub event_ts: i64,
    pub received_at: i64,
}

/// Reads an event record without copying; `Ok(None)` for a quarantine
/// record of another kind. Rejects exactly what [`decode`] rejects, except that the JSON
/// blobs it skips are not checked to be UTF-8.
pub fn decode_view(bytes: &[u8]) -> Result<Option<EventView<'_>>> {
    let mut r = Reader { bytes, at: 0 };
    match r.u8()? {
        EVENT_V1 => {
            let flags = r.u8()?;
            if r.u8()? as usize >= EventType::ALL.len() {
                return Err(Error::RecordDecode("unknown event type".into()));
            }
            let event_id = r.str()?;
            let event_name = r.str()?;
            let user_id = r.opt_str(flags & 1 << 2 != 0)?;
            let anonymous_id = r.opt_str(flags & 1 << 3 != 0)?;
            let event_ts = r.i64()?;
            if flags & 1 << 4 != 0 {
                r.i64()?;
            }
            let received_at = r.i64()?;
            r.skip_str()?;
            for bit in 5..8 {
                if flags & 1 << bit != 0 {
                    r.skip_str()?;
                }
            }
            r.finish()?;
            Ok(Some(EventView {
                event_id,
                event_name,
                user_id,
                anonymous_id,
                event_ts,
                received_at,
            }))
        }
        QUARANTINE_V1 | CHANGE_V1 | RELATION_V1 | FEED_V1 => Ok(None),
        other => Err(Error::RecordDecode(format!(
            "unknown record version {other}"
        ))),
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    if let Some(s) = s {
        put_str(out, s);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| Error::RecordDecode("record is truncated".into()))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(buf))
    }

    fn u32(&mut self) -> Result<u32> {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(buf))
    }

    fn len(&mut self) -> Result<usize> {
        let mut len = [0u8; 4];
        len.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(len) as usize)
    }

    fn str(&mut self) -> Result<&'a str> {
        let len = self.len()?;
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| Error::RecordDecode("string is not UTF-8".into()))
    }

    fn skip_str(&mut self) -> Result<()> {
        let len = self.len()?;
        self.take(len).map(|_| ())
    }

    fn opt_str(&mut self, present: bool) -> Result<Option<&'a str>> {
        if present {
            self.str().map(Some)
        } else {
            Ok(None)
        }
    }

    fn string(&mut self) -> Result<String> {
        self.str().map(str::to_owned)
    }

    fn opt_string(&mut self, present: bool) -> Result<Option<String>> {
        Ok(self.opt_str(present)?.map(str::to_owned))
    }

    fn finish(&self) -> Result<()> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(Error::RecordDecode("trailing bytes after record".into()))
        }
    }
}
