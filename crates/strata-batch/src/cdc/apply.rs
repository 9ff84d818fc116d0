//! Replaying changes: the current state (SCD1) over the rows a previous
//! build left, and the versions of every key (SCD2) from the beginning.
//!
//! Both follow the same rules. A snapshot or insert writes the whole row (a
//! column it lacks is null); an update writes the columns it carries over
//! the previous row (an absent column is an unchanged TOASTed value); an
//! update whose `before` holds another key moves the row to the new key; a
//! delete removes it; a truncate removes every row. The first row of a
//! snapshot at another LSN than the one the state came from starts a new
//! image of the table: rows it does not hold are gone.

use std::collections::{HashMap, HashSet};

use strata_core::event::ChangeOp;

use super::cell::Cell;
use super::changes::{Change, Key};

pub type Row = Vec<Cell>;

/// The row a change writes, over `previous` for an update.
fn next_row(change: &Change, previous: Option<Row>) -> Row {
    match (change.op, previous) {
        (ChangeOp::Update, Some(mut row)) => {
            for (cell, new) in row.iter_mut().zip(&change.after) {
                if let Some(new) = new {
                    *cell = new.clone();
                }
            }
            row
        }
        _ => change
            .after
            .iter()
            .map(|c| c.clone().unwrap_or(Cell::Null))
            .collect(),
    }
}

/// Rows by key, where a change reads and writes.
trait Rows {
    fn get(&mut self, key: &Key) -> Option<Row>;
    fn put(&mut self, key: &Key, row: Option<Row>, change: &Change);
    fn clear(&mut self);
}

/// Applies one change; `epoch` is the LSN of the snapshot the rows come from.
fn apply(rows: &mut impl Rows, epoch: &mut Option<i64>, change: &Change) {
    match change.op {
        ChangeOp::Truncate => rows.clear(),
        ChangeOp::Delete => rows.put(&change.key, None, change),
        ChangeOp::Snapshot | ChangeOp::Insert => {
            if change.op == ChangeOp::Snapshot && *epoch != Some(change.at.lsn) {
                rows.clear();
                *epoch = Some(change.at.lsn);
            }
            rows.put(&change.key, Some(next_row(change, None)), change);
        }
        ChangeOp::Update => {
            let previous = match &change.old_key {
                Some(old) => {
                    let previous = rows.get(old);
                    rows.put(old, None, change);
                    previous
                }
                None => rows.get(&change.key),
            };
            rows.put(&change.key, Some(next_row(change, previous)), change);
        }
    }
}

/// A row of the current state and the change that last wrote it.
#[derive(Debug, Clone)]
pub struct Live {
    pub row: Row,
    pub lsn: i64,
    pub commit_ts: i64,
}

/// The current state: the keys changes touched over a base (the rows a
/// previous build stored, looked up only for the touched keys).
pub struct State<B> {
    base: B,
    /// Touched keys: their row, or `None` once deleted.
    pub touched: HashMap<Key, Option<Live>>,
    /// A truncate or a new snapshot removed every base row.
    pub cleared: bool,
    pub epoch: Option<i64>,
}

impl<B: FnMut(&Key) -> Option<Row>> State<B> {
    pub fn new(base: B, epoch: Option<i64>) -> Self {
        Self {
            base,
            touched: HashMap::new(),
            cleared: false,
            epoch,
        }
    }

    pub fn apply(&mut self, change: &Change) {
        let mut epoch = self.epoch;
        apply(self, &mut epoch, change);
        self.epoch = epoch;
    }

    /// The touched keys, whether the base was cleared, and the epoch; the
    /// base (and what it borrows) is let go.
    pub fn finish(self) -> (HashMap<Key, Option<Live>>, bool, Option<i64>) {
        (self.touched, self.cleared, self.epoch)
    }
}

impl<B: FnMut(&Key) -> Option<Row>> Rows for State<B> {
    fn get(&mut self, key: &Key) -> Option<Row> {
        match self.touched.get(key) {
            Some(live) => live.as_ref().map(|l| l.row.clone()),
            None if self.cleared => None,
            None => (self.base)(key),
        }
    }

    fn put(&mut self, key: &Key, row: Option<Row>, change: &Change) {
        let live = row.map(|row| Live {
            row,
            lsn: change.at.lsn,
            commit_ts: change.commit_ts,
        });
        self.touched.insert(key.clone(), live);
    }

    fn clear(&mut self) {
        self.touched.clear();
        self.cleared = true;
    }
}

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub key: Key,
    pub row: Row,
    pub valid_from: i64,
    pub valid_to: Option<i64>,
    pub is_deleted: bool,
}

struct Open {
    row: Row,
    valid_from: i64,
}

/// Every version of every key, from the beginning of the table's changes.
///
/// A transaction (the changes of one commit LSN; a snapshot counts as one)
/// is applied as a whole: only its net effect on each key makes versions,
/// at its commit time. So a row inserted and updated in one transaction
/// has one version, and no version lasts zero time.
#[derive(Default)]
pub struct History {
    live: HashMap<Key, Open>,
    closed: Vec<Version>,
    epoch: Option<i64>,
}

/// The changes of one transaction over the versions before it.
struct Transaction<'a> {
    live: &'a HashMap<Key, Open>,
    written: HashMap<Key, Option<Row>>,
    cleared: bool,
    /// Keys in the order first touched, each once.
    touched: Vec<Key>,
    seen: HashSet<Key>,
}

impl Transaction<'_> {
    fn touch(&mut self, key: &Key) {
        if self.seen.insert(key.clone()) {
            self.touched.push(key.clone());
        }
    }
}

impl Rows for Transaction<'_> {
    fn get(&mut self, key: &Key) -> Option<Row> {
        match self.written.get(key) {
            Some(row) => row.clone(),
            None if self.cleared => None,
            None => self.live.get(key).map(|open| open.row.clone()),
        }
    }

    fn put(&mut self, key: &Key, row: Option<Row>, _: &Change) {
        self.touch(key);
        self.written.insert(key.clone(), row);
    }

    fn clear(&mut self) {
        let keys: Vec<Key> = self.live.keys().cloned().collect();
        for key in &keys {
            self.touch(key);
        }
        self.written.clear();
        self.cleared = true;
    }
}

impl History {
    /// Continues from the open versions a previous build stored (those of
    /// the keys the next changes touch are enough, unless one of them
    /// closes every version) and the snapshot they come from.
    pub fn resume(open: Vec<(Key, Row, i64)>, epoch: Option<i64>) -> Self {
        Self {
            live: open
                .into_iter()
                .map(|(key, row, valid_from)| (key, Open { row, valid_from }))
                .collect(),
            closed: Vec::new(),
            epoch,
        }
    }

    /// The LSN of the snapshot the versions come from.
    pub fn epoch(&self) -> Option<i64> {
        self.epoch
    }

    /// Applies the changes, which must be in stream order; a transaction
    /// may not be split between calls.
    pub fn apply(&mut self, changes: &[Change]) {
        let mut start = 0;
        while start < changes.len() {
            let at = changes[start].at;
            let end = start
                + changes[start..]
                    .iter()
                    .take_while(|c| c.at.lsn == at.lsn && c.at.streamed == at.streamed)
                    .count();
            self.transaction(&changes[start..end]);
            start = end;
        }
    }

    fn transaction(&mut self, changes: &[Change]) {
        let at = changes[0].commit_ts;
        let mut tx = Transaction {
            live: &self.live,
            written: HashMap::new(),
            cleared: false,
            touched: Vec::new(),
            seen: HashSet::new(),
        };
        let mut epoch = self.epoch;
        for change in changes {
            apply(&mut tx, &mut epoch, change);
        }
        self.epoch = epoch;
        let Transaction {
            mut written,
            cleared,
            touched,
            ..
        } = tx;
        for key in touched {
            let after = match written.remove(&key) {
                Some(row) => row,
                None if cleared => None,
                None => continue,
            };
            let before = self.live.remove(&key);
            match (before, after) {
                (Some(open), Some(row)) if open.row == row => {
                    self.live.insert(key, open);
                }
                (before, after) => {
                    if let Some(open) = before {
                        self.closed.push(Version {
                            key: key.clone(),
                            row: open.row,
                            valid_from: open.valid_from,
                            valid_to: Some(at),
                            is_deleted: after.is_none(),
                        });
                    }
                    if let Some(row) = after {
                        self.live.insert(
                            key,
                            Open {
                                row,
                                valid_from: at,
                            },
                        );
                    }
                }
            }
        }
    }

    /// Every version, by key and then time.
    pub fn finish(self) -> Vec<Version> {
        let mut versions = self.closed;
        versions.extend(self.live.into_iter().map(|(key, open)| Version {
            key,
            row: open.row,
            valid_from: open.valid_from,
            valid_to: None,
            is_deleted: false,
        }));
        // Total, so a rebuild lists the same versions in the same order.
        let order = |v: &Version| (v.valid_from, v.valid_to.is_none(), v.valid_to, v.is_deleted);
        versions
            .sort_unstable_by(|a, b| (&a.key, order(a), &a.row).cmp(&(&b.key, order(b), &b.row)));
        versions
    }
}
