//! Where tables live and how they are opened or created.

use std::path::{Path, PathBuf};

use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};

use crate::error::{Error, Result};
use crate::schema::TableDef;

/// The root of all Delta tables: `<data-dir>/lake/<layer>/<table>`.
#[derive(Debug, Clone)]
pub struct Lake {
    root: PathBuf,
}

impl Lake {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn table_path(&self, layer: &str, name: &str) -> PathBuf {
        self.root.join(layer).join(name)
    }

    fn table_url(&self, layer: &str, name: &str) -> Result<url::Url> {
        let path = self.table_path(layer, name);
        std::fs::create_dir_all(&path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let absolute = std::path::absolute(&path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        url::Url::from_directory_path(&absolute).map_err(|_| Error::Io {
            path: absolute.display().to_string(),
            source: std::io::Error::other("not an absolute path"),
        })
    }

    /// The table has at least one commit. (`_delta_log` alone may be a
    /// creation still in progress.)
    pub fn exists(&self, layer: &str, name: &str) -> bool {
        has_commits(&self.table_path(layer, name).join("_delta_log"))
    }

    /// The names of the tables of one layer that have a commit, sorted.
    pub fn tables_in(&self, layer: &str) -> Vec<String> {
        let Ok(listing) = std::fs::read_dir(self.root.join(layer)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = listing
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| self.exists(layer, name))
            .collect();
        names.sort();
        names
    }

    /// Opens an existing table.
    pub async fn open(&self, layer: &str, name: &str) -> Result<DeltaTable> {
        let url = self.table_url(layer, name)?;
        deltalake::open_table(url)
            .await
            .map_err(Error::delta(format!("{layer}.{name}")))
    }

    /// A handle on a table that has no commit yet, for a write that
    /// creates it with the schema of what it writes.
    pub fn uncreated(&self, layer: &str, name: &str) -> Result<DeltaTable> {
        let url = self.table_url(layer, name)?;
        DeltaTableBuilder::from_url(url)
            .and_then(|b| b.build())
            .map_err(Error::delta(format!("{layer}.{name}")))
    }

    /// Opens the table, creating it with its declared schema and partitioning
    /// the first time.
    pub async fn open_or_create(&self, def: &TableDef) -> Result<DeltaTable> {
        let name = def.qualified_name();
        if self.exists(def.layer, def.name) {
            return self.open(def.layer, def.name).await;
        }
        // Tasks of one process create a table one at a time; another process
        // racing us shows up as a conflict on version 0.
        let _creating = CREATING.lock().await;
        if self.exists(def.layer, def.name) {
            return self.open(def.layer, def.name).await;
        }
        let url = self.table_url(def.layer, def.name)?;
        let table = DeltaTableBuilder::from_url(url)
            .and_then(|b| b.build())
            .map_err(Error::delta(&name))?;
        let created = table
            .create()
            .with_table_name(def.name)
            .with_comment(def.description)
            .with_columns(def.delta_fields())
            .with_partition_columns(def.partition_by.iter().copied())
            .with_save_mode(SaveMode::Ignore)
            .await;
        match created {
            Ok(table) => Ok(table),
            Err(DeltaTableError::VersionAlreadyExists(_) | DeltaTableError::Transaction { .. })
                if self.exists(def.layer, def.name) =>
            {
                self.open(def.layer, def.name).await
            }
            Err(e) => Err(Error::Delta {
                table: name,
                source: e,
            }),
        }
    }
}

static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn has_commits(log: &Path) -> bool {
    std::fs::read_dir(log).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".json") || name.ends_with(".checkpoint.parquet")
        })
    })
}
