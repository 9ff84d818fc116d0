//! What a file feed keeps between runs: the table's columns, the files it
//! has landed whole (by content SHA-256), and the file it is landing.
//!
//! The file in progress names the log offset from which its chunks are not
//! yet accounted for. Every chunk carries the file's SHA-256 and the rows it
//! covers, and all of a source's chunks go to one log partition, one chunk
//! per append: a restart reads that partition from the offset, learns how
//! far the file got (and whether its last chunk landed), and goes on from
//! the next row. No row lands twice, none is skipped.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use strata_core::feed::{ColumnType, FeedSchema};

pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FeedState {
    pub version: u32,
    /// The table's columns once known: declared, or inferred from the
    /// first file and widened by later files' new columns.
    #[serde(default)]
    pub columns: Vec<(String, ColumnType)>,
    /// Files landed whole, by SHA-256.
    #[serde(default)]
    pub completed: BTreeMap<String, Completed>,
    #[serde(default)]
    pub in_progress: Option<InProgress>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completed {
    pub file: String,
    pub rows: u64,
    pub bad_rows: u64,
    /// Size and modification time when it was landed: the same file still
    /// lying in the directory is not counted as dropped again.
    pub len: u64,
    pub modified: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InProgress {
    pub sha256: String,
    pub file: String,
    pub log_partition: u32,
    /// The source's chunks at or past this offset of `log_partition` are
    /// this file's.
    pub log_offset: u64,
}

impl FeedState {
    pub fn schema(&self) -> FeedSchema {
        FeedSchema {
            columns: self.columns.clone(),
        }
    }
}

pub fn load(path: &Path) -> crate::Result<FeedState> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(FeedState {
                version: VERSION,
                ..FeedState::default()
            });
        }
        Err(e) => return Err(crate::Error::io(path)(e)),
    };
    let state: FeedState = serde_json::from_str(&text).map_err(|e| {
        crate::Error::Config(format!(
            "the file feed state {} is damaged ({e}); with it deleted every file in the directory is landed again",
            path.display()
        ))
    })?;
    if state.version > VERSION {
        return Err(crate::Error::Config(format!(
            "the file feed state {} has version {}, newer than {VERSION}: it was written by a later Strata release",
            path.display(),
            state.version
        )));
    }
    Ok(state)
}

/// Replaces the state atomically and durably.
pub fn store(path: &Path, state: &FeedState) -> crate::Result<()> {
    crate::state_file::store(path, state)
}
