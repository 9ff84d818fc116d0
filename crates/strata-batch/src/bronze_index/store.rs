//! The bronze index on disk, in `<data-dir>/batch/index/`: Arrow IPC files
//! named by generation and a `meta.json` naming the live ones. A save writes
//! new files, then replaces `meta.json` by rename, then removes files no
//! longer named; a crash leaves the old or the new index, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::ipc::reader::FileReader;
use deltalake::arrow::ipc::writer::FileWriter;
use serde::{Deserialize, Serialize};

use crate::dates::Day;
use crate::error::{Error, Result};

/// Bumped when the layout of the files changes; an index of an older
/// version is rebuilt from bronze, one of a newer version refused.
/// 2: deltas keyed by `strata_core::event::id_key` (128 bits) like the
/// base, instead of event ids as text.
const VERSION: u32 = 2;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub version: u32,
    pub generation: u64,
    /// One past the last bronze offset indexed, per log partition.
    pub ends: BTreeMap<i32, i64>,
    pub ingest_days: BTreeMap<Day, BTreeSet<Day>>,
    pub base: Option<String>,
    pub deltas: Vec<String>,
    pub losers: Option<String>,
    pub links: Option<String>,
}

pub struct Store {
    dir: PathBuf,
}

fn err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::State {
        path: path.display().to_string(),
        source,
    }
}

impl Store {
    pub fn new(dir: PathBuf) -> Self {
        Store { dir }
    }

    /// The saved meta, or None when there is no usable index.
    pub fn meta(&self) -> Result<Option<Meta>> {
        let path = self.dir.join("meta.json");
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Meta>(&bytes) {
                Ok(meta) if meta.version == VERSION => Ok(Some(meta)),
                Ok(meta) if meta.version > VERSION => {
                    Err(Error::NewerFormat(strata_core::format::newer_format(
                        "the bronze index",
                        path.display(),
                        meta.version,
                        VERSION,
                    )))
                }
                // An unreadable or older index is rebuilt, not trusted.
                _ => Ok(None),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(&path)(e)),
        }
    }

    pub fn read(&self, name: &str) -> Result<Vec<RecordBatch>> {
        let path = self.dir.join(name);
        let file = std::fs::File::open(&path).map_err(err(&path))?;
        let reader = FileReader::try_new(std::io::BufReader::new(file), None)?;
        Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// Writes `batch` durably under a new name of this generation.
    pub fn write(&self, kind: &str, generation: u64, batch: &RecordBatch) -> Result<String> {
        std::fs::create_dir_all(&self.dir).map_err(err(&self.dir))?;
        let name = format!("{kind}-{generation}.arrow");
        let path = self.dir.join(&name);
        let file = std::fs::File::create(&path).map_err(err(&path))?;
        let mut writer = FileWriter::try_new(std::io::BufWriter::new(file), &batch.schema())?;
        writer.write(batch)?;
        writer.finish()?;
        let file = writer
            .into_inner()?
            .into_inner()
            .map_err(|e| err(&path)(e.into_error()))?;
        file.sync_all().map_err(err(&path))?;
        Ok(name)
    }

    /// Makes `meta` the live index and removes the files it no longer names.
    pub fn commit(&self, mut meta: Meta) -> Result<()> {
        meta.version = VERSION;
        let path = self.dir.join("meta.json");
        let tmp = self.dir.join("meta.json.tmp");
        let bytes = serde_json::to_vec(&meta).map_err(|e| err(&path)(std::io::Error::other(e)))?;
        let mut file = std::fs::File::create(&tmp).map_err(err(&tmp))?;
        file.write_all(&bytes).map_err(err(&tmp))?;
        file.sync_all().map_err(err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(err(&path))?;
        let live: BTreeSet<&String> = meta
            .base
            .iter()
            .chain(&meta.deltas)
            .chain(&meta.losers)
            .chain(&meta.links)
            .collect();
        for entry in std::fs::read_dir(&self.dir).map_err(err(&self.dir))? {
            let entry = entry.map_err(err(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".arrow") && !live.contains(&name) {
                // A leftover file only costs disk; failing to remove it is
                // not worth failing the run.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}
