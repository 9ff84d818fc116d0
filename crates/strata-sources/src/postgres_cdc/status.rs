//! Where a CDC source stands: what bronze holds (polled for the
//! acknowledgement), the WAL its slot keeps (polled for the gauge), and the
//! slot as `strata status` shows it without a running source.

use std::fmt;
use std::time::Duration;

use strata_core::config::SourceConfig;
use strata_core::event::{ChangePosition, format_lsn};
use strata_lake::Lake;
use strata_lake::bronze::ChangePositions;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::replication::ACK_INTERVAL;
use super::{CdcConfig, checks};
use crate::Result;

const SLOT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// Background tasks that end with the run, also when it is dropped.
pub(super) struct Pollers(pub Vec<JoinHandle<()>>);

impl Drop for Pollers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Reads what bronze holds of the source about every second: what the slot
/// may be acknowledged up to.
pub(super) async fn poll_bronze(
    lake: Lake,
    source: String,
    tx: watch::Sender<Option<ChangePosition>>,
) {
    let mut positions = ChangePositions::new(lake.clone());
    let mut failing = false;
    loop {
        match positions.get(&source).await {
            Ok(position) => {
                tx.send_if_modified(|held| {
                    let changed = *held != position;
                    *held = position;
                    changed
                });
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(source = %source, error = %e, "cannot read the CDC position bronze holds; the slot is not acknowledged meanwhile");
                }
                failing = true;
                positions = ChangePositions::new(lake.clone());
            }
        }
        tokio::time::sleep(ACK_INTERVAL).await;
    }
}

/// The WAL the slot keeps on the server, every ten seconds.
pub(super) async fn poll_slot(source: String, config: CdcConfig) {
    let mut conn = None;
    loop {
        if conn.is_none() {
            conn = checks::connect(&source, &config.url).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            match checks::slot_row(c, &config.slot).await {
                Ok(slot) => {
                    if let (Some(current), Some(restart)) = (slot.current_wal_lsn, slot.restart_lsn)
                    {
                        metrics::gauge!("strata_cdc_wal_retained_bytes", "source" => source.clone())
                            .set(current.saturating_sub(restart) as f64);
                    }
                }
                Err(e) => {
                    tracing::debug!(source = %source, error = %e, "cannot read the replication slot");
                    conn = None;
                }
            }
        }
        tokio::time::sleep(SLOT_POLL_INTERVAL).await;
    }
}

/// A replication slot as `strata status` shows it, read without a running
/// source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStatus {
    pub slot: String,
    pub exists: bool,
    /// A walsender is streaming from it.
    pub active: bool,
    /// What the source acknowledged (format with [`format_lsn`]).
    pub confirmed_flush_lsn: Option<u64>,
    /// The oldest WAL the slot keeps.
    pub restart_lsn: Option<u64>,
    pub current_wal_lsn: Option<u64>,
    /// `pg_current_wal_lsn()` minus the confirmed position.
    pub lag_bytes: Option<u64>,
    /// `pg_current_wal_lsn()` minus `restart_lsn`: WAL kept for the slot.
    pub wal_retained_bytes: Option<u64>,
}

/// One line for `strata status`, e.g. `slot strata_shop active, confirmed
/// at 0/16B3748, 2.0 KiB behind, 16.0 MiB of WAL retained`.
impl fmt::Display for SlotStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.exists {
            return write!(
                f,
                "slot {} does not exist yet (the source creates it at its first start)",
                self.slot
            );
        }
        let active = if self.active { "active" } else { "inactive" };
        write!(f, "slot {} {active}", self.slot)?;
        if let Some(lsn) = self.confirmed_flush_lsn {
            write!(f, ", confirmed at {}", format_lsn(lsn))?;
        }
        if let Some(lag) = self.lag_bytes {
            write!(f, ", {} behind", human_bytes(lag))?;
        }
        if let Some(retained) = self.wal_retained_bytes {
            write!(f, ", {} of WAL retained", human_bytes(retained))?;
        }
        Ok(())
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The slot of a `postgres_cdc` source, over an ordinary connection.
pub async fn slot_status(config: &SourceConfig) -> Result<SlotStatus> {
    let cdc = CdcConfig::from_source(config)?;
    let mut conn = checks::connect(&config.name, &cdc.url).await?;
    let row = checks::slot_row(&mut conn, &cdc.slot).await?;
    let behind = |lsn: Option<u64>| Some(row.current_wal_lsn?.saturating_sub(lsn?));
    Ok(SlotStatus {
        slot: cdc.slot.clone(),
        exists: row.exists,
        active: row.active_pid.is_some(),
        confirmed_flush_lsn: row.confirmed_flush_lsn,
        restart_lsn: row.restart_lsn,
        current_wal_lsn: row.current_wal_lsn,
        lag_bytes: behind(row.confirmed_flush_lsn),
        wal_retained_bytes: behind(row.restart_lsn),
    })
}
