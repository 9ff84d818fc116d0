//! What the batch path remembers between runs, in `<data-dir>/batch/state.json`:
//! the bronze positions already taken into silver and the partitions that
//! are dirty (their inputs changed since they were built). Written by
//! replace-and-rename, so a crash leaves the old or the new file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::dates::{Day, date_of, day_of};
use crate::error::{Error, Result};
use crate::model::{Affected, Model};

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Dirty {
    #[serde(default)]
    pub dates: BTreeSet<NaiveDate>,
    /// The whole table (or every partition whose rows would change).
    #[serde(default)]
    pub everything: bool,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.dates.is_empty() && !self.everything
    }
}

/// The version of `state.json`'s layout. Files from before the field was
/// written are version 1.
const STATE_FORMAT: u32 = 1;

fn first_format() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    #[serde(default = "first_format")]
    pub format: u32,
    /// Per log partition, one past the last bronze offset taken into silver.
    #[serde(default)]
    pub bronze_seen: BTreeMap<i32, i64>,
    /// Per model (`layer.table`), what must be rebuilt.
    #[serde(default)]
    pub dirty: BTreeMap<String, Dirty>,
    /// Per model, the configuration its partitions were built with (for the
    /// models whose rows depend on it).
    #[serde(default)]
    pub built_with: BTreeMap<String, String>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            format: STATE_FORMAT,
            bronze_seen: BTreeMap::new(),
            dirty: BTreeMap::new(),
            built_with: BTreeMap::new(),
        }
    }
}

pub struct StateFile {
    path: PathBuf,
    pub state: State,
    /// Held while a runner owns the state: one batch run per data dir.
    _lock: Option<std::fs::File>,
}

impl StateFile {
    /// Opens the state for a run, holding the data dir's batch lock until
    /// dropped; another run in progress is an error, not a wait.
    pub fn open(dir: &Path) -> Result<Self> {
        let (lock, err) = Self::lock_file(dir)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Busy(dir.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
        Self::read_locked(dir, lock)
    }

    /// Opens the state for a run, waiting while another run holds the lock
    /// (the scheduler's workers take turns on one data dir).
    pub async fn open_waiting(dir: &Path) -> Result<Self> {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let (lock, err) = Self::lock_file(&dir)?;
            lock.lock().map_err(err)?;
            Self::read_locked(&dir, lock)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// The data dir's lock file, and how to report an error of it.
    fn lock_file(dir: &Path) -> Result<(std::fs::File, impl Fn(std::io::Error) -> Error)> {
        let lock_path = dir.join("lock").display().to_string();
        let err = move |source| Error::State {
            path: lock_path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(&err)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(&err)?;
        Ok((lock, err))
    }

    fn read_locked(dir: &Path, lock: std::fs::File) -> Result<Self> {
        let mut state = Self::read(dir)?;
        state._lock = Some(lock);
        Ok(state)
    }

    /// Reads the state without taking the lock (for reporting).
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("state.json");
        let state: State = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::State {
                path: path.display().to_string(),
                source: std::io::Error::other(e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(source) => {
                return Err(Error::State {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        if state.format > STATE_FORMAT {
            return Err(Error::NewerFormat(strata_core::format::newer_format(
                "the batch state",
                path.display(),
                state.format,
                STATE_FORMAT,
            )));
        }
        Ok(Self {
            path,
            state: State {
                format: STATE_FORMAT,
                ..state
            },
            _lock: None,
        })
    }

    /// The directory holding the state (and the bronze index).
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    pub fn save(&self) -> Result<()> {
        let err = |source| Error::State {
            path: self.path.display().to_string(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let bytes =
            serde_json::to_vec_pretty(&self.state).map_err(|e| err(std::io::Error::other(e)))?;
        let mut file = std::fs::File::create(&tmp).map_err(err)?;
        file.write_all(&bytes).map_err(err)?;
        file.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        Ok(())
    }

    pub fn dirty(&self, model: Model) -> Dirty {
        self.state
            .dirty
            .get(&model.name())
            .cloned()
            .unwrap_or_default()
    }

    pub fn dirty_days(&self, model: Model) -> BTreeSet<Day> {
        self.dirty(model).dates.iter().map(|d| day_of(*d)).collect()
    }

    pub fn mark(&mut self, model: Model, affected: &Affected) {
        let entry = self.state.dirty.entry(model.name()).or_default();
        match affected {
            Affected::Everything => entry.everything = true,
            Affected::Dates(days) => entry.dates.extend(days.iter().map(|d| date_of(*d))),
        }
    }

    pub fn mark_days(&mut self, model: Model, days: impl IntoIterator<Item = Day>) {
        let days: BTreeSet<Day> = days.into_iter().collect();
        if !days.is_empty() {
            self.mark(model, &Affected::Dates(days));
        }
    }

    pub fn clear_day(&mut self, model: Model, day: Day) {
        if let Some(entry) = self.state.dirty.get_mut(&model.name()) {
            entry.dates.remove(&date_of(day));
        }
        self.state.dirty.retain(|_, d| !d.is_empty());
    }

    pub fn clear_everything(&mut self, model: Model) {
        if let Some(entry) = self.state.dirty.get_mut(&model.name()) {
            entry.everything = false;
        }
        self.state.dirty.retain(|_, d| !d.is_empty());
    }

    /// Every dirty partition, as `(model, date or None for the whole table)`.
    pub fn all_dirty(&self) -> Vec<(String, Option<NaiveDate>)> {
        let mut out = Vec::new();
        for (model, dirty) in &self.state.dirty {
            if dirty.everything {
                out.push((model.clone(), None));
            }
            out.extend(dirty.dates.iter().map(|d| (model.clone(), Some(*d))));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_run_at_a_time_and_marks_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = StateFile::open(dir.path()).unwrap();
        assert!(matches!(StateFile::open(dir.path()), Err(Error::Busy(_))));
        first.mark_days(Model::HourlyEvents, [20_000]);
        first.save().unwrap();
        // Reporting reads without waiting for the lock.
        assert_eq!(StateFile::read(dir.path()).unwrap().all_dirty().len(), 1);
        drop(first);
        let again = StateFile::open(dir.path()).unwrap();
        assert_eq!(
            again.dirty_days(Model::HourlyEvents),
            BTreeSet::from([20_000])
        );
    }
}
