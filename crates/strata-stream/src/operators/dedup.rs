//! Drops retried copies of an `event_id` seen within the TTL (received
//! time). State is one hash map of 128-bit ids to the second they were
//! first received; checkpoints add only the ids new since the previous one
//! as an immutable file, and fold the files into one when they outgrow the
//! live set, so a checkpoint costs in proportion to new ids, not all ids.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use foldhash::fast::FixedState;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::CheckpointDir;
use crate::error::{Error, Result};
use crate::operator::{Barrier, Batch, Context, Operator};

const FILE_MAGIC: &[u8; 4] = b"SDD1";
const RECORD_BYTES: usize = 20;
/// Files beyond which the next checkpoint folds them into one.
const MAX_FILES: usize = 16;

/// The batch path's bronze index keys event ids with the same function, so
/// both paths agree on which copies are one event.
pub use strata_core::event::id_key;

type Key = (u64, u64);

/// An id first received at `first_seen` is forgotten once the clock is more
/// than `ttl` seconds past it.
fn expired(clock: u32, ttl: u32, first_seen: u32) -> bool {
    clock.saturating_sub(first_seen) > ttl
}

fn split(id: u128) -> Key {
    ((id >> 64) as u64, id as u64)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct StateFile {
    name: String,
    entries: u64,
    /// Newest first-received second in the file: once it expires, so has
    /// every entry, and the file is dropped.
    newest: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DedupState {
    /// Newest received second seen: the clock the TTL runs on, so a replay
    /// after a restart makes the same decisions.
    clock: u32,
    files: Vec<StateFile>,
    duplicates: u64,
}

pub struct Dedup {
    ttl: u32,
    seen: HashMap<Key, u32, FixedState>,
    /// Ids first seen since the last checkpoint.
    fresh: Vec<(u128, u32)>,
    next_sweep: u32,
    state: DedupState,
}

impl Dedup {
    pub fn new(ttl_secs: u64) -> Self {
        Self {
            ttl: ttl_secs.min(u64::from(u32::MAX)) as u32,
            seen: HashMap::with_hasher(FixedState::default()),
            fresh: Vec::new(),
            next_sweep: 0,
            state: DedupState::default(),
        }
    }

    pub fn duplicates(&self) -> u64 {
        self.state.duplicates
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Keeps the first copy of an id; `false` for a retry within the TTL.
    pub fn admit(&mut self, id: u128, received_secs: u32) -> bool {
        self.state.clock = self.state.clock.max(received_secs);
        let clock = self.state.clock;
        let ttl = self.ttl;
        match self.seen.entry(split(id)) {
            Entry::Occupied(mut e) => {
                if expired(clock, ttl, *e.get()) {
                    // Outside the TTL it counts again (the batch path's
                    // dedup is exact; this one is bounded).
                    e.insert(received_secs);
                    self.fresh.push((id, received_secs));
                    true
                } else {
                    self.state.duplicates += 1;
                    false
                }
            }
            Entry::Vacant(e) => {
                e.insert(received_secs);
                self.fresh.push((id, received_secs));
                true
            }
        }
    }

    fn sweep(&mut self) {
        if self.state.clock < self.next_sweep {
            return;
        }
        let (clock, ttl) = (self.state.clock, self.ttl);
        self.seen.retain(|_, first| !expired(clock, ttl, *first));
        self.next_sweep = clock.saturating_add((ttl / 60).max(10));
    }

    fn write_file(
        &self,
        dir: &CheckpointDir,
        name: &str,
        entries: &[(u128, u32)],
    ) -> Result<StateFile> {
        let mut bytes = Vec::with_capacity(16 + entries.len() * RECORD_BYTES);
        bytes.extend_from_slice(FILE_MAGIC);
        bytes.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        let mut newest = 0;
        for (id, secs) in entries {
            bytes.extend_from_slice(&id.to_le_bytes());
            bytes.extend_from_slice(&secs.to_le_bytes());
            newest = newest.max(*secs);
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        dir.write_file(name, &bytes)?;
        Ok(StateFile {
            name: name.to_string(),
            entries: entries.len() as u64,
            newest,
        })
    }

    fn read_file(&mut self, dir: &CheckpointDir, file: &StateFile) -> Result<()> {
        let bytes = dir.read_file(&file.name)?;
        let bad = |reason: &str| Error::checkpoint(dir.root().join(&file.name), reason);
        if bytes.len() < 16 || &bytes[..4] != FILE_MAGIC {
            return Err(bad("not a dedup state file"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(bad("checksum mismatch"));
        }
        let count = u64::from_le_bytes(body[4..12].try_into().expect("8 bytes")) as usize;
        let records = &body[12..];
        if records.len() != count.saturating_mul(RECORD_BYTES) {
            return Err(bad("length does not match its count"));
        }
        self.seen.reserve(count);
        for r in records.chunks_exact(RECORD_BYTES) {
            let id = u128::from_le_bytes(r[..16].try_into().expect("16 bytes"));
            let secs = u32::from_le_bytes(r[16..].try_into().expect("4 bytes"));
            if expired(self.state.clock, self.ttl, secs) {
                continue;
            }
            let slot = self.seen.entry(split(id)).or_insert(secs);
            *slot = (*slot).max(secs);
        }
        Ok(())
    }
}

impl Operator for Dedup {
    fn name(&self) -> &'static str {
        "dedup"
    }

    fn process(&mut self, batch: &mut Batch<'_>, _ctx: &mut Context) -> Result<()> {
        let before = self.state.duplicates;
        batch.events.retain(|e| {
            let secs = e
                .received_at
                .div_euclid(1_000_000)
                .clamp(0, i64::from(u32::MAX)) as u32;
            self.admit(e.id, secs)
        });
        let dropped = self.state.duplicates - before;
        if dropped > 0 {
            metrics::counter!("strata_stream_duplicates_total").increment(dropped);
        }
        self.sweep();
        Ok(())
    }

    fn snapshot<'a>(
        &'a mut self,
        _ctx: &'a mut Context,
        barrier: &'a Barrier,
        dir: &'a CheckpointDir,
    ) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move {
            self.sweep();
            let listed: u64 = self.state.files.iter().map(|f| f.entries).sum();
            let (clock, ttl) = (self.state.clock, self.ttl);
            self.state.files.retain(|f| !expired(clock, ttl, f.newest));
            if self.state.files.len() >= MAX_FILES
                || listed > 2 * self.seen.len() as u64 + 1_000_000
            {
                let all: Vec<(u128, u32)> = self
                    .seen
                    .iter()
                    .map(|((hi, lo), secs)| ((u128::from(*hi) << 64) | u128::from(*lo), *secs))
                    .collect();
                let file =
                    self.write_file(dir, &format!("dedup-{:012}-all.bin", barrier.epoch), &all)?;
                self.state.files = vec![file];
            } else if !self.fresh.is_empty() {
                let file = self.write_file(
                    dir,
                    &format!("dedup-{:012}.bin", barrier.epoch),
                    &self.fresh,
                )?;
                // A failed checkpoint is retried under the same epoch: the
                // file was rewritten with a superset, listed once.
                self.state.files.retain(|f| f.name != file.name);
                self.state.files.push(file);
            }
            metrics::gauge!("strata_stream_dedup_ids").set(self.seen.len() as f64);
            metrics::gauge!("strata_stream_dedup_state_bytes").set(self.state_bytes() as f64);
            serde_json::to_value(&self.state).map_err(|e| Error::checkpoint(dir.root(), e))
        })
    }

    fn committed(&mut self, _barrier: &Barrier) {
        self.fresh.clear();
        // Hold on to a burst's capacity only while it is small.
        if self.fresh.capacity() > 1 << 20 {
            self.fresh.shrink_to(1 << 20);
        }
    }

    fn restore(&mut self, state: &Value, dir: &CheckpointDir) -> Result<()> {
        self.state = serde_json::from_value(state.clone())
            .map_err(|e| Error::checkpoint(dir.root(), format!("dedup state: {e}")))?;
        self.seen.clear();
        self.fresh.clear();
        for file in self.state.files.clone() {
            self.read_file(dir, &file)?;
        }
        Ok(())
    }

    fn files(&self) -> Vec<String> {
        self.state.files.iter().map(|f| f.name.clone()).collect()
    }

    fn state_bytes(&self) -> usize {
        // hashbrown: one control byte per bucket beside each entry.
        let buckets = if self.seen.capacity() == 0 {
            0
        } else {
            (self.seen.capacity() * 8 / 7).next_power_of_two()
        };
        buckets * (std::mem::size_of::<(Key, u32)>() + 1)
            + self.fresh.capacity() * std::mem::size_of::<(u128, u32)>()
    }
}
