//! Reads every partition of the log from the checkpointed positions, a
//! bounded slice of each per poll so partitions advance together and the
//! watermark is not dragged by one partition racing ahead.

use std::sync::Arc;

use strata_log::{Log, LogEntry, LogError};

use crate::error::Result;

/// Payload bytes read from one partition per poll.
const SLICE_BYTES: usize = 1024 * 1024;

pub struct LogSource {
    log: Arc<dyn Log>,
    positions: Vec<u64>,
}

impl LogSource {
    pub fn new(log: Arc<dyn Log>, mut positions: Vec<u64>) -> Self {
        positions.resize(log.partition_count() as usize, 0);
        Self { log, positions }
    }

    pub fn positions(&self) -> &[u64] {
        &self.positions
    }

    /// Records after the current positions, partition by partition; empty
    /// when the log has nothing new.
    pub async fn poll(&mut self) -> Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        for partition in 0..self.positions.len() {
            let from = self.positions[partition];
            let read = match self.log.read(partition as u32, from, SLICE_BYTES).await {
                Err(LogError::OffsetOutOfRange { earliest, .. }) => {
                    // Only possible when the stream consumer was not
                    // registered while retention ran.
                    tracing::warn!(
                        partition,
                        from,
                        earliest,
                        "log records were removed before the stream processor read them; skipping ahead"
                    );
                    metrics::counter!("strata_stream_records_skipped_total")
                        .increment(earliest - from);
                    self.positions[partition] = earliest;
                    self.log
                        .read(partition as u32, earliest, SLICE_BYTES)
                        .await?
                }
                other => other?,
            };
            if let Some(last) = read.last() {
                self.positions[partition] = last.offset + 1;
            }
            out.extend(read);
        }
        Ok(out)
    }

    /// Records in the log not yet read.
    pub fn lag(&self) -> u64 {
        self.positions
            .iter()
            .enumerate()
            .map(|(p, at)| {
                self.log
                    .end_offset(p as u32)
                    .map_or(0, |end| end.saturating_sub(*at))
            })
            .sum()
    }
}
