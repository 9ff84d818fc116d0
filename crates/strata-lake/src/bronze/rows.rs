//! Log records → Arrow batches in the bronze column order.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::record_batch::RecordBatch;
use strata_core::event::{
    BronzeEvent, ChangeRecord, FeedChunk, LogRecord, QuarantineRecord, RejectReason,
    RelationRecord, format_lsn,
};
use strata_log::LogEntry;

use crate::error::Result;
use crate::schema::{BRONZE_CDC_CHANGES, BRONZE_CDC_SCHEMAS, BRONZE_EVENTS, BRONZE_QUARANTINE};

const MICROS_PER_DAY: i64 = 86_400_000_000;

fn date_of(micros: i64) -> i32 {
    micros.div_euclid(MICROS_PER_DAY) as i32
}

/// Records of one micro-batch, split by destination table.
#[derive(Default)]
pub struct Rows {
    events: Vec<(u32, u64, BronzeEvent)>,
    quarantine: Vec<(u32, u64, QuarantineRecord)>,
    changes: Vec<(u32, u64, ChangeRecord)>,
    relations: Vec<(u32, u64, RelationRecord)>,
}

/// A log record decoded for bronze.
pub enum Decoded {
    Event(BronzeEvent),
    Quarantine(QuarantineRecord),
    Change(ChangeRecord),
    Relation(RelationRecord),
    /// Its good rows go to their feed table (`bronze::feeds`), its bad rows
    /// to the quarantine.
    Feed(FeedChunk),
}

/// The bronze tables, one per kind of log record: the loader's table map.
/// Commit order is this order: the tables created on their first row come
/// before the two that always exist, so a table that does not exist yet
/// can hold nothing the others have moved past (see `BronzeLoader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    CdcChanges,
    CdcSchemas,
    Quarantine,
    Events,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::CdcChanges,
        Table::CdcSchemas,
        Table::Quarantine,
        Table::Events,
    ];

    pub fn def(self) -> &'static crate::schema::TableDef {
        match self {
            Table::Events => &BRONZE_EVENTS,
            Table::Quarantine => &BRONZE_QUARANTINE,
            Table::CdcChanges => &BRONZE_CDC_CHANGES,
            Table::CdcSchemas => &BRONZE_CDC_SCHEMAS,
        }
    }

    /// Tables of sources that not every installation has are created when
    /// their first row arrives.
    pub fn created_on_first_row(self) -> bool {
        matches!(self, Table::CdcChanges | Table::CdcSchemas)
    }
}

impl Decoded {
    pub fn table(&self) -> Table {
        match self {
            Decoded::Event(_) => Table::Events,
            Decoded::Quarantine(_) => Table::Quarantine,
            Decoded::Change(_) => Table::CdcChanges,
            Decoded::Relation(_) => Table::CdcSchemas,
            Decoded::Feed(_) => Table::Quarantine,
        }
    }
}

pub fn decode(entry: &LogEntry) -> Decoded {
    match LogRecord::decode(&entry.payload) {
        Ok(LogRecord::Event(event)) => Decoded::Event(event),
        Ok(LogRecord::Quarantine(record)) => Decoded::Quarantine(record),
        Ok(LogRecord::Change(change)) => Decoded::Change(change),
        Ok(LogRecord::Relation(relation)) => Decoded::Relation(relation),
        Ok(LogRecord::Feed(chunk)) => Decoded::Feed(chunk),
        // A record that passed the log's checksum but does not decode was
        // written by an incompatible version; keep its bytes, never drop them.
        Err(e) => Decoded::Quarantine(QuarantineRecord {
            received_at: chrono::Utc::now().timestamp_micros(),
            source: "strata".into(),
            reason: RejectReason::InvalidJson,
            detail: format!("undecodable log record: {e}"),
            raw: String::from_utf8_lossy(&entry.payload).into_owned(),
        }),
    }
}

/// A feed row that did not parse or fit, as its quarantine row.
pub fn bad_row_record(chunk: &FeedChunk, bad: &strata_core::event::BadRow) -> QuarantineRecord {
    QuarantineRecord {
        received_at: chunk.received_at,
        source: chunk.source.clone(),
        reason: RejectReason::FeedBadRow,
        detail: format!("{}:{}: {}", chunk.file, bad.row, bad.why),
        raw: bad.raw.clone(),
    }
}

/// The columns every bronze table ends with: the ingest date and the log
/// position the row came from.
struct Tail {
    ingest_date: Date32Builder,
    log_partition: Int32Builder,
    log_offset: Int64Builder,
}

impl Tail {
    fn with_capacity(n: usize) -> Self {
        Self {
            ingest_date: Date32Builder::with_capacity(n),
            log_partition: Int32Builder::with_capacity(n),
            log_offset: Int64Builder::with_capacity(n),
        }
    }

    fn append(&mut self, received_at: i64, partition: u32, offset: u64) {
        self.ingest_date.append_value(date_of(received_at));
        self.log_partition.append_value(partition as i32);
        self.log_offset.append_value(offset as i64);
    }

    fn finish(mut self) -> [ArrayRef; 3] {
        [
            Arc::new(self.ingest_date.finish()),
            Arc::new(self.log_partition.finish()),
            Arc::new(self.log_offset.finish()),
        ]
    }
}

impl Rows {
    pub fn push_event(&mut self, partition: u32, offset: u64, event: BronzeEvent) {
        self.events.push((partition, offset, event));
    }

    pub fn push_quarantine(&mut self, partition: u32, offset: u64, record: QuarantineRecord) {
        self.quarantine.push((partition, offset, record));
    }

    pub fn push(&mut self, partition: u32, offset: u64, record: Decoded) {
        match record {
            Decoded::Event(e) => self.events.push((partition, offset, e)),
            Decoded::Quarantine(q) => self.quarantine.push((partition, offset, q)),
            Decoded::Change(c) => self.changes.push((partition, offset, c)),
            Decoded::Relation(r) => self.relations.push((partition, offset, r)),
            Decoded::Feed(chunk) => {
                for bad in &chunk.bad_rows {
                    self.quarantine
                        .push((partition, offset, bad_row_record(&chunk, bad)));
                }
            }
        }
    }

    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    pub fn quarantine_count(&self) -> usize {
        self.quarantine.len()
    }

    /// Rows bound for `table`.
    pub fn count(&self, table: Table) -> usize {
        match table {
            Table::Events => self.events.len(),
            Table::Quarantine => self.quarantine.len(),
            Table::CdcChanges => self.changes.len(),
            Table::CdcSchemas => self.relations.len(),
        }
    }

    /// The Arrow batch of the rows bound for `table`.
    pub fn batch(&self, table: Table) -> Result<RecordBatch> {
        match table {
            Table::Events => self.events_batch(),
            Table::Quarantine => self.quarantine_batch(),
            Table::CdcChanges => self.changes_batch(),
            Table::CdcSchemas => self.relations_batch(),
        }
    }

    pub fn events_batch(&self) -> Result<RecordBatch> {
        let n = self.events.len();
        let mut event_id = StringBuilder::with_capacity(n, n * 36);
        let mut id_generated = BooleanBuilder::with_capacity(n);
        let mut event_type = StringBuilder::with_capacity(n, n * 5);
        let mut event_name = StringBuilder::with_capacity(n, n * 12);
        let mut user_id = StringBuilder::with_capacity(n, n * 16);
        let mut anonymous_id = StringBuilder::with_capacity(n, n * 36);
        let mut event_ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut clamped = BooleanBuilder::with_capacity(n);
        let mut sent_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut received_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut source = StringBuilder::with_capacity(n, n * 8);
        let mut properties = StringBuilder::with_capacity(n, n * 128);
        let mut context = StringBuilder::with_capacity(n, n * 256);
        let mut traits = StringBuilder::with_capacity(n, n * 16);
        let mut tail = Tail::with_capacity(n);
        for (partition, offset, e) in &self.events {
            event_id.append_value(&e.event_id);
            id_generated.append_value(e.id_generated);
            event_type.append_value(e.event_type.as_str());
            event_name.append_value(&e.event_name);
            user_id.append_option(e.user_id.as_deref());
            anonymous_id.append_option(e.anonymous_id.as_deref());
            event_ts.append_value(e.event_ts);
            clamped.append_value(e.ts_clamped);
            sent_at.append_option(e.sent_at);
            received_at.append_value(e.received_at);
            source.append_value(&e.source);
            properties.append_option(e.properties.as_deref());
            context.append_option(e.context.as_deref());
            traits.append_option(e.traits.as_deref());
            tail.append(e.received_at, *partition, *offset);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(event_id.finish()),
            Arc::new(id_generated.finish()),
            Arc::new(event_type.finish()),
            Arc::new(event_name.finish()),
            Arc::new(user_id.finish()),
            Arc::new(anonymous_id.finish()),
            Arc::new(event_ts.finish()),
            Arc::new(clamped.finish()),
            Arc::new(sent_at.finish()),
            Arc::new(received_at.finish()),
            Arc::new(source.finish()),
            Arc::new(properties.finish()),
            Arc::new(context.finish()),
            Arc::new(traits.finish()),
        ];
        columns.extend(tail.finish());
        Ok(RecordBatch::try_new(BRONZE_EVENTS.arrow_schema(), columns)?)
    }

    pub fn quarantine_batch(&self) -> Result<RecordBatch> {
        let n = self.quarantine.len();
        let mut received_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut source = StringBuilder::with_capacity(n, n * 8);
        let mut reason = StringBuilder::with_capacity(n, n * 16);
        let mut detail = StringBuilder::with_capacity(n, n * 32);
        let mut raw = StringBuilder::with_capacity(n, n * 256);
        let mut tail = Tail::with_capacity(n);
        for (partition, offset, q) in &self.quarantine {
            received_at.append_value(q.received_at);
            source.append_value(&q.source);
            reason.append_value(q.reason.as_str());
            detail.append_value(&q.detail);
            raw.append_value(&q.raw);
            tail.append(q.received_at, *partition, *offset);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(received_at.finish()),
            Arc::new(source.finish()),
            Arc::new(reason.finish()),
            Arc::new(detail.finish()),
            Arc::new(raw.finish()),
        ];
        columns.extend(tail.finish());
        Ok(RecordBatch::try_new(
            BRONZE_QUARANTINE.arrow_schema(),
            columns,
        )?)
    }
}

impl Rows {
    fn changes_batch(&self) -> Result<RecordBatch> {
        let n = self.changes.len();
        let mut source = StringBuilder::with_capacity(n, n * 8);
        let mut table_schema = StringBuilder::with_capacity(n, n * 6);
        let mut table_name = StringBuilder::with_capacity(n, n * 8);
        let mut op = StringBuilder::with_capacity(n, n * 6);
        let mut lsn = StringBuilder::with_capacity(n, n * 10);
        let mut commit_ts = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut tx_id = Int64Builder::with_capacity(n);
        let mut seq = Int64Builder::with_capacity(n);
        let mut key = StringBuilder::with_capacity(n, n * 12);
        let mut before = StringBuilder::with_capacity(n, n * 64);
        let mut after = StringBuilder::with_capacity(n, n * 64);
        let mut received_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut lsn_value = Int64Builder::with_capacity(n);
        let mut tail = Tail::with_capacity(n);
        for (partition, offset, c) in &self.changes {
            source.append_value(&c.source);
            table_schema.append_value(&c.table_schema);
            table_name.append_value(&c.table_name);
            op.append_value(c.op.as_str());
            lsn.append_value(format_lsn(c.lsn));
            lsn_value.append_value(c.lsn as i64);
            commit_ts.append_value(c.commit_ts);
            tx_id.append_option(c.tx_id.map(i64::from));
            seq.append_value(c.seq as i64);
            key.append_value(&c.key);
            before.append_option(c.before.as_deref());
            after.append_option(c.after.as_deref());
            received_at.append_value(c.received_at);
            tail.append(c.received_at, *partition, *offset);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(source.finish()),
            Arc::new(table_schema.finish()),
            Arc::new(table_name.finish()),
            Arc::new(op.finish()),
            Arc::new(lsn.finish()),
            Arc::new(lsn_value.finish()),
            Arc::new(commit_ts.finish()),
            Arc::new(tx_id.finish()),
            Arc::new(seq.finish()),
            Arc::new(key.finish()),
            Arc::new(before.finish()),
            Arc::new(after.finish()),
            Arc::new(received_at.finish()),
        ];
        columns.extend(tail.finish());
        Ok(RecordBatch::try_new(
            BRONZE_CDC_CHANGES.arrow_schema(),
            columns,
        )?)
    }

    fn relations_batch(&self) -> Result<RecordBatch> {
        let n = self.relations.len();
        let mut source = StringBuilder::with_capacity(n, n * 8);
        let mut table_schema = StringBuilder::with_capacity(n, n * 6);
        let mut table_name = StringBuilder::with_capacity(n, n * 8);
        let mut lsn = StringBuilder::with_capacity(n, n * 10);
        let mut lsn_value = Int64Builder::with_capacity(n);
        let mut columns_json = StringBuilder::with_capacity(n, n * 128);
        let mut received_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut tail = Tail::with_capacity(n);
        for (partition, offset, r) in &self.relations {
            source.append_value(&r.source);
            table_schema.append_value(&r.table_schema);
            table_name.append_value(&r.table_name);
            lsn.append_value(format_lsn(r.lsn));
            lsn_value.append_value(r.lsn as i64);
            columns_json
                .append_value(serde_json::to_string(&r.columns).unwrap_or_else(|_| "[]".into()));
            received_at.append_value(r.received_at);
            tail.append(r.received_at, *partition, *offset);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(source.finish()),
            Arc::new(table_schema.finish()),
            Arc::new(table_name.finish()),
            Arc::new(lsn.finish()),
            Arc::new(lsn_value.finish()),
            Arc::new(columns_json.finish()),
            Arc::new(received_at.finish()),
        ];
        columns.extend(tail.finish());
        Ok(RecordBatch::try_new(
            BRONZE_CDC_SCHEMAS.arrow_schema(),
            columns,
        )?)
    }
}
