//! Checkpoints: operator state and log positions in one manifest that is
//! replaced atomically (write, fsync, rename, fsync the directory). Large
//! state goes into immutable side files the manifest names, so a crash at
//! any point leaves either the old checkpoint or the new one.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

const MANIFEST: &str = "checkpoint.json";
const FILES: &str = "files";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub version: u32,
    pub epoch: u64,
    /// Next log offset to read, per partition.
    pub positions: Vec<u64>,
    /// Wall clock when written, microseconds.
    pub written_at: i64,
    pub operators: BTreeMap<String, Value>,
    pub files: Vec<String>,
}

/// The directory that holds the manifest and the side files.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    root: PathBuf,
}

impl CheckpointDir {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let files = root.join(FILES);
        fs::create_dir_all(&files).map_err(Error::io(&files))?;
        Ok(Self { root })
    }

    /// A view for reading only (e.g. `strata status`); creates nothing.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn manifest_path(&self) -> PathBuf {
        self.root.join(MANIFEST)
    }

    pub fn load(&self) -> Result<Option<Manifest>> {
        let path = self.manifest_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path)(e)),
        };
        // The version first: a later layout may not parse as this one.
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        if let Ok(Versioned { version }) = serde_json::from_str(&text)
            && version > VERSION
        {
            return Err(Error::NewerFormat(strata_core::format::newer_format(
                "the stream checkpoint",
                path.display(),
                version,
                VERSION,
            )));
        }
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| Error::checkpoint(&path, e))?;
        if manifest.version != VERSION {
            return Err(Error::checkpoint(
                &path,
                format!("version {} is not {VERSION}", manifest.version),
            ));
        }
        Ok(Some(manifest))
    }

    /// Makes `manifest` the checkpoint, then deletes side files it does not
    /// name.
    pub fn commit(&self, manifest: &Manifest) -> Result<()> {
        let bytes =
            serde_json::to_vec(manifest).map_err(|e| Error::checkpoint(self.manifest_path(), e))?;
        write_durably(&self.root, MANIFEST, &bytes)?;
        let keep: std::collections::HashSet<&str> =
            manifest.files.iter().map(String::as_str).collect();
        let dir = self.root.join(FILES);
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !keep.contains(name.as_ref()) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Writes a new side file; it is complete under its name or absent.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_durably(&self.root.join(FILES), name, bytes)
    }

    pub fn read_file(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.root.join(FILES).join(name);
        fs::read(&path).map_err(Error::io(&path))
    }
}

fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut file = fs::File::create(&tmp).map_err(Error::io(&tmp))?;
    file.write_all(bytes).map_err(Error::io(&tmp))?;
    file.sync_all().map_err(Error::io(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(Error::io(&path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))?;
    Ok(())
}
