//! The small JSON files sources keep in their state directory (snapshot
//! markers, log file checkpoints, feed state), replaced atomically and
//! durably: written to a temporary file, synced, renamed over the old one
//! and the directory synced, so a crash leaves the old file or the new,
//! never half of one.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::{Error, Result};

pub fn store<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut file = std::fs::File::create(&tmp).map_err(Error::io(&tmp))?;
    file.write_all(&bytes).map_err(Error::io(&tmp))?;
    file.sync_all().map_err(Error::io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(Error::io(path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))
}
