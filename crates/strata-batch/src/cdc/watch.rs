//! A cheap look at whether `bronze.cdc_changes` has new commits: the
//! scheduler asks every fraction of a second, far more often than it looks
//! for dirty partitions, so this reads no table state, only whether the
//! next commit file of the Delta log exists.

use std::path::PathBuf;

use strata_lake::Lake;
use strata_lake::schema::BRONZE_CDC_CHANGES;

pub struct ChangesWatch {
    log: PathBuf,
    version: Option<u64>,
}

impl ChangesWatch {
    pub fn new(lake: &Lake) -> Self {
        Self {
            log: lake
                .table_path(BRONZE_CDC_CHANGES.layer, BRONZE_CDC_CHANGES.name)
                .join("_delta_log"),
            version: None,
        }
    }

    fn commit(&self, version: u64) -> PathBuf {
        self.log.join(format!("{version:020}.json"))
    }

    /// The table's latest version; `None` while it has no commit.
    pub fn latest(&mut self) -> Option<u64> {
        let mut version = match self.version {
            Some(v) => v,
            // Once, a listing: commits older than the last checkpoint may
            // have been cleaned up, so the log need not start at 0.
            None => std::fs::read_dir(&self.log)
                .ok()?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".json")?.parse::<u64>().ok())
                .max()?,
        };
        while self.commit(version + 1).exists() {
            version += 1;
        }
        self.version = Some(version);
        self.version
    }
}
