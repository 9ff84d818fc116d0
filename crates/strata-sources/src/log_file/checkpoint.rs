//! Where a log file source stands: which file (device, inode and the first
//! bytes of its content), how far into it, and from which log offset on the
//! source's records are not yet accounted for.
//!
//! The checkpoint is written only after the records it covers are durable,
//! so the records in the source's log partition past `log_offset` are lines
//! right after `position`, one record per non-blank line, in order: a
//! restart skips as many lines as it finds records, and nothing is read
//! twice or lost.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How many of a file's first bytes tell it apart from another file that
/// got the same inode (a copy-truncate rewrite, an inode reused).
pub const FINGERPRINT_BYTES: u64 = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub device: u64,
    pub inode: u64,
    /// Hex of the file's first bytes up to the read position, at most
    /// [`FINGERPRINT_BYTES`].
    pub fingerprint: String,
}

impl FileIdentity {
    /// The identity of `file` with the first `upto` bytes as fingerprint.
    pub fn of(file: &File, upto: u64) -> io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            device: meta.dev(),
            inode: meta.ino(),
            fingerprint: fingerprint(file, upto)?,
        })
    }

    /// Same device and inode, and the same first bytes as far as this
    /// identity knows them.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        let meta = file.metadata()?;
        if (meta.dev(), meta.ino()) != (self.device, self.inode) {
            return Ok(false);
        }
        let len = (self.fingerprint.len() / 2) as u64;
        Ok(fingerprint(file, len)? == self.fingerprint)
    }
}

fn fingerprint(file: &File, upto: u64) -> io::Result<String> {
    let mut head = vec![0u8; upto.min(FINGERPRINT_BYTES) as usize];
    let mut read = 0;
    while read < head.len() {
        let n = file.read_at(&mut head[read..], read as u64)?;
        if n == 0 {
            break;
        }
        read += n;
    }
    head.truncate(read);
    Ok(head.iter().map(|b| format!("{b:02x}")).collect())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub file: FileIdentity,
    /// Start of the first line not yet landed.
    pub position: u64,
    pub log_partition: u32,
    /// The source's records at or past this offset of `log_partition` are
    /// lines from `position` on.
    pub log_offset: u64,
}

pub const VERSION: u32 = 1;

pub fn load(path: &Path) -> crate::Result<Option<Checkpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(crate::Error::io(path)(e)),
    };
    let checkpoint: Checkpoint = serde_json::from_str(&text).map_err(|e| {
        crate::Error::Config(format!(
            "the log file checkpoint {} is damaged ({e}); delete it to read the file from its start",
            path.display()
        ))
    })?;
    if checkpoint.version > VERSION {
        return Err(crate::Error::Config(format!(
            "the log file checkpoint {} has version {}, newer than {VERSION}: it was written by a later Strata release",
            path.display(),
            checkpoint.version
        )));
    }
    Ok(Some(checkpoint))
}

/// Replaces the checkpoint atomically and durably.
pub fn store(path: &Path, checkpoint: &Checkpoint) -> crate::Result<()> {
    crate::state_file::store(path, checkpoint)
}

/// The file in `path`'s directory with this identity: `path` itself, or
/// the name it was rotated to.
pub fn find(path: &Path, identity: &FileIdentity) -> Option<(PathBuf, File)> {
    let candidates = std::iter::once(path.to_path_buf()).chain(
        std::fs::read_dir(path.parent()?)
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path())),
    );
    for candidate in candidates {
        let Ok(file) = File::open(&candidate) else {
            continue;
        };
        if identity.matches(&file).unwrap_or(false) {
            return Some((candidate, file));
        }
    }
    None
}
