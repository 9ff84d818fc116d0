//! Consumer progress reports, persisted so retention survives restarts.
//!
//! The file is only an input to retention, so the failure modes are chosen
//! to never delete too early: a missing or unreadable entry counts as
//! "nothing processed yet".

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{LOG_FORMAT, io_error, write_atomically};
use crate::{LogError, Offset, Result};

const FILE_NAME: &str = "consumers";
const PREFIX: &str = "strata-log consumers";

#[derive(Debug)]
pub(crate) struct ConsumerPositions {
    dir: PathBuf,
    partitions: u32,
    fsync: bool,
    /// Registered consumer -> position per partition.
    positions: HashMap<String, Vec<Offset>>,
}

/// Consumer names end up as the last field of a line in the positions file.
pub(crate) fn validate_consumer_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().any(char::is_control) || name.trim() != name {
        return Err(LogError::InvalidConfig(format!(
            "consumer name {name:?} must be non-empty, without control characters \
             or surrounding whitespace"
        )));
    }
    Ok(())
}

impl ConsumerPositions {
    pub fn load(dir: &Path, registered: &[String], partitions: u32, fsync: bool) -> Result<Self> {
        let mut positions: HashMap<String, Vec<Offset>> = registered
            .iter()
            .map(|name| (name.clone(), vec![0; partitions as usize]))
            .collect();
        let path = dir.join(FILE_NAME);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let mut lines = text.lines();
                let version = crate::format_version(lines.next(), PREFIX);
                if let Some(found) = version.filter(|v| *v > LOG_FORMAT) {
                    return Err(LogError::NewerFormat {
                        what: "the log's consumer positions",
                        path,
                        found,
                        known: LOG_FORMAT,
                    });
                }
                if version.is_none() {
                    tracing::warn!(
                        path = %path.display(),
                        "ignoring consumer positions file with unknown format"
                    );
                } else {
                    for line in lines {
                        match parse_line(line) {
                            Some((partition, offset, name)) => {
                                if let Some(slot) = positions
                                    .get_mut(name)
                                    .and_then(|p| p.get_mut(partition as usize))
                                {
                                    *slot = offset;
                                }
                            }
                            None => tracing::warn!(
                                path = %path.display(),
                                line,
                                "ignoring malformed consumer position"
                            ),
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path)(e)),
        }
        Ok(ConsumerPositions {
            dir: dir.to_path_buf(),
            partitions,
            fsync,
            positions,
        })
    }

    pub fn position(&self, consumer: &str, partition: u32) -> Result<Offset> {
        self.positions
            .get(consumer)
            .ok_or_else(|| LogError::UnknownConsumer(consumer.to_string()))?
            .get(partition as usize)
            .copied()
            .ok_or(LogError::UnknownPartition {
                partition,
                partitions: self.partitions,
            })
    }

    /// Records that `consumer` passed `offset`. Positions only move forward:
    /// records below a reported position may already be deleted, so a lower
    /// report cannot bring them back. Returns whether anything changed.
    pub fn advance(&mut self, consumer: &str, partition: u32, offset: Offset) -> Result<bool> {
        let partitions = self.partitions;
        let slot = self
            .positions
            .get_mut(consumer)
            .ok_or_else(|| LogError::UnknownConsumer(consumer.to_string()))?
            .get_mut(partition as usize)
            .ok_or(LogError::UnknownPartition {
                partition,
                partitions,
            })?;
        if offset <= *slot {
            return Ok(false);
        }
        let previous = *slot;
        *slot = offset;
        if let Err(e) = self.persist() {
            // Keep memory and disk telling the same story.
            if let Some(slot) = self
                .positions
                .get_mut(consumer)
                .and_then(|p| p.get_mut(partition as usize))
            {
                *slot = previous;
            }
            return Err(e);
        }
        Ok(true)
    }

    /// Offset below which every registered consumer is done with
    /// `partition`; None when no consumers are registered (keep everything).
    pub fn retain_from(&self, partition: u32) -> Option<Offset> {
        self.positions
            .values()
            .map(|p| p.get(partition as usize).copied().unwrap_or(0))
            .min()
    }

    fn persist(&self) -> Result<()> {
        let mut consumers: Vec<(&String, &Vec<Offset>)> = self.positions.iter().collect();
        consumers.sort();
        let mut text = format!("{PREFIX} v{LOG_FORMAT}\n");
        for (name, offsets) in consumers {
            for (partition, offset) in offsets.iter().enumerate() {
                text.push_str(&format!("{partition}\t{offset}\t{name}\n"));
            }
        }
        write_atomically(&self.dir, FILE_NAME, text.as_bytes(), self.fsync)
    }
}

fn parse_line(line: &str) -> Option<(u32, Offset, &str)> {
    let mut fields = line.splitn(3, '\t');
    let partition = fields.next()?.parse().ok()?;
    let offset = fields.next()?.parse().ok()?;
    let name = fields.next()?;
    Some((partition, offset, name))
}
