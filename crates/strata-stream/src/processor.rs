//! Drives the pipeline: poll the log, pass each batch through the operators,
//! advance the watermark, and on an interval take a checkpoint in which the
//! sink commits and the manifest records operator state with the same log
//! positions. A restart restores the manifest and replays the log from its
//! positions; the sink writes whole rows, so replayed minutes are rewritten
//! with the same values and nothing is counted twice.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use strata_core::config::StreamConfig;
use strata_lake::Lake;
use strata_log::Log;
use tokio::sync::watch;

use crate::checkpoint::{CheckpointDir, Manifest};
use crate::error::{Error, Result};
use crate::operator::{Barrier, Batch, Context, Operator};
use crate::operators::dedup::Dedup;
use crate::operators::parse::Parse;
use crate::operators::sink::DeltaSink;
use crate::operators::source::LogSource;
use crate::operators::window::{DAY_MICROS, WindowLimits, Windows};
use crate::view::{RealtimeHandle, Stats};

/// The name under which the processor reports its progress to the log.
pub const CONSUMER: &str = "stream";

fn micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub struct StreamProcessor {
    interval: Duration,
    log: Arc<dyn Log>,
    source: LogSource,
    parse: Parse,
    dedup: Dedup,
    windows: Windows,
    sink: DeltaSink,
    dir: CheckpointDir,
    epoch: u64,
    checkpointed: Vec<u64>,
    last_checkpoint: Instant,
    stats: Arc<Stats>,
}

/// What one `step` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    pub records: usize,
    pub events: usize,
}

impl StreamProcessor {
    /// Opens the realtime table and restores the last checkpoint in `dir`.
    pub async fn open(
        config: &StreamConfig,
        lake: &Lake,
        log: Arc<dyn Log>,
        dir: impl Into<PathBuf>,
    ) -> Result<Self> {
        let dir = CheckpointDir::open(dir)?;
        let partitions = log.partition_count();
        let mut processor = Self {
            interval: config.checkpoint_interval,
            source: LogSource::new(log.clone(), Vec::new()),
            log,
            parse: Parse::new(
                partitions,
                micros(config.out_of_orderness),
                micros(config.idle_timeout),
            ),
            dedup: Dedup::new(config.dedup_ttl.as_secs()),
            windows: Windows::new(
                micros(config.allowed_lateness),
                WindowLimits {
                    max_open: config.max_open_windows,
                    max_bytes: config.max_window_state_bytes,
                },
            ),
            sink: DeltaSink::open(lake).await?,
            dir,
            epoch: 0,
            checkpointed: Vec::new(),
            last_checkpoint: Instant::now(),
            stats: Arc::new(Stats::default()),
        };
        if let Some(manifest) = processor.dir.load()? {
            processor.restore(&manifest)?;
        }
        let since = now_micros() - DAY_MICROS;
        let closed = processor.sink.rows_since(since).await?;
        crate::operators::window::lock(&processor.windows.shared()).preload_closed(closed);
        let committed = processor
            .sink
            .committed_positions(partitions as usize)
            .await?;
        if committed
            .iter()
            .zip(processor.source.positions())
            .any(|(table, ckpt)| table.is_some_and(|t| t < *ckpt))
        {
            tracing::warn!(
                "realtime.events_minute is behind the stream checkpoint; minutes before the \
                 open windows keep the values the table has"
            );
        }
        Ok(processor)
    }

    /// The pipeline's operators in the order events pass them.
    fn operators(&mut self) -> [&mut dyn Operator; 4] {
        [
            &mut self.parse,
            &mut self.dedup,
            &mut self.windows,
            &mut self.sink,
        ]
    }

    fn restore(&mut self, manifest: &Manifest) -> Result<()> {
        let dir = self.dir.clone();
        for op in self.operators() {
            let state = manifest.operators.get(op.name()).ok_or_else(|| {
                Error::checkpoint(dir.root(), format!("no state for operator {}", op.name()))
            })?;
            op.restore(state, &dir)?;
        }
        self.epoch = manifest.epoch;
        self.source = LogSource::new(self.log.clone(), manifest.positions.clone());
        self.checkpointed = self.source.positions().to_vec();
        tracing::info!(epoch = manifest.epoch, positions = ?manifest.positions, "stream processor restored its checkpoint");
        Ok(())
    }

    pub fn handle(&self) -> RealtimeHandle {
        RealtimeHandle {
            windows: self.windows.shared(),
            stats: self.stats.clone(),
        }
    }

    pub fn positions(&self) -> &[u64] {
        self.source.positions()
    }

    /// Reads what the log has (a bounded slice per partition) and passes it
    /// through the operators.
    pub async fn step(&mut self) -> Result<Step> {
        let records = self.source.poll().await?;
        let now = now_micros();
        let mut ctx = Context {
            now,
            watermark: self.parse.watermark(),
            emitted: None,
        };
        let mut events = 0;
        if !records.is_empty() {
            let mut batch = Batch {
                records: &records,
                events: Vec::new(),
            };
            for op in self.operators() {
                op.process(&mut batch, &mut ctx)?;
            }
            events = batch.events.len();
            metrics::counter!("strata_stream_events_total").increment(events as u64);
        }
        let before = ctx.watermark;
        ctx.watermark = self.parse.advance(now);
        if ctx.watermark != before {
            self.on_watermark(&mut ctx)?;
        }
        self.stats
            .duplicates
            .store(self.dedup.duplicates(), Ordering::Relaxed);
        self.stats
            .dedup_ids
            .store(self.dedup.len() as u64, Ordering::Relaxed);
        self.stats
            .lag_records
            .store(self.source.lag(), Ordering::Relaxed);
        Ok(Step {
            records: records.len(),
            events,
        })
    }

    fn on_watermark(&mut self, ctx: &mut Context) -> Result<()> {
        for op in self.operators() {
            op.on_watermark(ctx)?;
        }
        if let Some(wm) = ctx.watermark {
            metrics::gauge!("strata_stream_watermark_seconds").set(wm as f64 / 1e6);
        }
        Ok(())
    }

    /// Commits the sink and the manifest for the current positions. A
    /// failure leaves the previous checkpoint in force.
    pub async fn checkpoint(&mut self) -> Result<()> {
        tracing::debug!(target: strata_core::PHASE, "stream_checkpoint");
        let now = now_micros();
        let mut ctx = Context {
            now,
            watermark: self.parse.watermark(),
            emitted: None,
        };
        // Evicts by wall clock even when the watermark stands still.
        self.on_watermark(&mut ctx)?;
        let barrier = Barrier {
            epoch: self.epoch + 1,
            positions: self.source.positions().to_vec(),
        };
        let mut operators = BTreeMap::new();
        let mut files = Vec::new();
        let dir = self.dir.clone();
        for op in self.operators() {
            let state = op.snapshot(&mut ctx, &barrier, &dir).await?;
            operators.insert(op.name().to_string(), state);
            files.extend(op.files());
        }
        let manifest = Manifest {
            version: 1,
            epoch: barrier.epoch,
            positions: barrier.positions.clone(),
            written_at: now,
            operators,
            files,
        };
        tokio::task::spawn_blocking(move || dir.commit(&manifest))
            .await
            .map_err(|e| {
                Error::checkpoint(self.dir.root(), format!("commit task failed: {e}"))
            })??;
        self.epoch = barrier.epoch;
        for op in self.operators() {
            op.committed(&barrier);
        }
        for (partition, position) in barrier.positions.iter().enumerate() {
            if let Err(e) = self
                .log
                .consumer_passed(CONSUMER, partition as u32, *position)
            {
                tracing::warn!(error = %e, "could not report stream progress to the log");
            }
        }
        self.checkpointed = barrier.positions;
        self.last_checkpoint = Instant::now();
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.stats.last_checkpoint_at.store(now, Ordering::Relaxed);
        self.stats
            .dedup_bytes
            .store(self.dedup.state_bytes() as u64, Ordering::Relaxed);
        metrics::counter!("strata_stream_checkpoints_total").increment(1);
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        self.last_checkpoint.elapsed() >= self.interval
            && self.checkpointed.as_slice() != self.source.positions()
    }

    /// Processes until `stop` turns true, then drains what the log holds,
    /// checkpoints and returns.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<()> {
        let mut changes = self.log.subscribe();
        loop {
            let step = self.step().await?;
            if self.checkpoint_due()
                && let Err(e) = self.checkpoint().await
            {
                // The previous checkpoint stays in force and the changes
                // stay pending; the next interval tries again.
                tracing::warn!(error = %e, "stream checkpoint failed; retrying at the next interval");
                metrics::counter!("strata_stream_checkpoint_failures_total").increment(1);
                self.last_checkpoint = Instant::now();
            }
            if *stop.borrow() {
                break;
            }
            if step.records == 0 {
                // Wake for new records, for stop, and now and then so an
                // idle stream still checkpoints and its watermark moves on.
                tokio::select! {
                    _ = changes.changed() => {}
                    r = stop.changed() => if r.is_err() { break },
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
        while self.step().await?.records > 0 {}
        if self.checkpointed.as_slice() != self.source.positions() || self.epoch == 0 {
            self.checkpoint().await?;
        }
        Ok(())
    }
}
