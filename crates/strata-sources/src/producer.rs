//! The one path by which every source lands records: partition, encode,
//! append to the log, and wait until every record is durable.

use std::sync::Arc;

use bytes::Bytes;
use strata_core::event::LogRecord;
use strata_log::{Log, LogError, partition_for_key};

/// Appends sources' records to the log; cheap to clone.
#[derive(Clone)]
pub struct Producer {
    log: Arc<dyn Log>,
}

/// Records on their way to the log, grouped by partition.
pub struct Outbox {
    per_partition: Vec<Vec<Bytes>>,
    records: usize,
    bytes: usize,
}

impl Outbox {
    /// The partition of `key`: records with one key keep their order (a
    /// person's events, a CDC source's changes).
    pub fn partition_of(&self, key: &str) -> u32 {
        partition_for_key(key, self.per_partition.len() as u32)
    }

    /// Adds a record to the partition of `key`.
    pub fn push(&mut self, key: &str, record: &LogRecord) {
        self.push_to(self.partition_of(key), record);
    }

    /// Adds a record to a partition chosen by the caller, e.g. by
    /// [`Self::partition_of`] a key the record is about to own.
    pub fn push_to(&mut self, partition: u32, record: &LogRecord) {
        let partition = partition as usize % self.per_partition.len();
        let encoded = record.encode();
        self.bytes += encoded.len();
        self.records += 1;
        self.per_partition[partition].push(Bytes::from(encoded));
    }

    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Encoded bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Producer {
    pub fn new(log: Arc<dyn Log>) -> Self {
        Self { log }
    }

    pub fn log(&self) -> &Arc<dyn Log> {
        &self.log
    }

    /// Calls `each` with every record of `partition` from `from` (or the
    /// earliest retained offset) to the end of the log, as a source that
    /// resumes reads back what it landed before a restart. Records that do
    /// not decode are not its own and are passed over.
    pub async fn scan(
        &self,
        partition: u32,
        from: u64,
        mut each: impl FnMut(LogRecord),
    ) -> Result<(), LogError> {
        let mut from = from.max(self.log.start_offset(partition)?);
        loop {
            let entries = self.log.read(partition, from, 4 << 20).await?;
            let Some(last) = entries.last() else {
                return Ok(());
            };
            from = last.offset + 1;
            for entry in &entries {
                if let Ok(record) = LogRecord::decode(&entry.payload) {
                    each(record);
                }
            }
        }
    }

    pub fn outbox(&self) -> Outbox {
        Outbox {
            per_partition: vec![Vec::new(); self.log.partition_count() as usize],
            records: 0,
            bytes: 0,
        }
    }

    /// Appends every record of `outbox` and returns once all are durable.
    /// On an error some partitions may hold their records and others not:
    /// a source must send them again, and its positions tell the copies
    /// apart downstream.
    pub async fn send(&self, outbox: Outbox) -> Result<(), LogError> {
        let appends = outbox
            .per_partition
            .into_iter()
            .enumerate()
            .filter(|(_, records)| !records.is_empty())
            .map(|(partition, records)| self.log.append(partition as u32, records));
        let mut first_error = None;
        for result in futures::future::join_all(appends).await {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}
