//! Identity links (SPEC §4, Person), tallied per (anonymous id, user id)
//! pair so that new link events fold into the saved tally without
//! rereading bronze.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringBuilder};
use deltalake::arrow::datatypes::{DataType, Field, Schema};

use crate::error::{Error, Result};
use crate::io::column;

/// The winning link of one anonymous id (SPEC §4, Person).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub user_id: String,
    pub linked_at: i64,
    pub link_event_id: String,
    pub ignored_links: i64,
}

/// Link events seen for one (anonymous id, user id) pair.
#[derive(Debug, Clone)]
struct Pair {
    user: String,
    count: i64,
    /// The earliest link event of the pair, by `(event_ts, event_id)`.
    first: (i64, String),
}

#[derive(Debug, Default)]
pub struct LinkTally {
    by_anon: HashMap<String, Vec<Pair>>,
}

impl LinkTally {
    /// Counts one deduplicated event carrying both ids. Most repeat a known
    /// pair and only bump a count, without allocating.
    pub fn add(&mut self, anon: &str, user: &str, ts: i64, event_id: &str) {
        self.add_n(anon, user, 1, ts, event_id);
    }

    fn add_n(&mut self, anon: &str, user: &str, count: i64, ts: i64, event_id: &str) {
        let pairs = match self.by_anon.get_mut(anon) {
            Some(pairs) => pairs,
            None => self.by_anon.entry(anon.to_owned()).or_default(),
        };
        match pairs.iter_mut().find(|p| p.user == user) {
            Some(pair) => {
                pair.count += count;
                if (ts, event_id) < (pair.first.0, pair.first.1.as_str()) {
                    pair.first = (ts, event_id.to_owned());
                }
            }
            None => pairs.push(Pair {
                user: user.to_owned(),
                count,
                first: (ts, event_id.to_owned()),
            }),
        }
    }

    /// The earliest link of each anonymous id wins; later links naming
    /// another user are counted as ignored.
    pub fn links(&self) -> BTreeMap<String, Link> {
        self.by_anon
            .iter()
            .filter_map(|(anon, pairs)| {
                let winner = pairs
                    .iter()
                    .min_by(|a, b| (a.first.0, &a.first.1).cmp(&(b.first.0, &b.first.1)))?;
                let ignored_links = pairs
                    .iter()
                    .filter(|p| p.user != winner.user)
                    .map(|p| p.count)
                    .sum();
                Some((
                    anon.clone(),
                    Link {
                        user_id: winner.user.clone(),
                        linked_at: winner.first.0,
                        link_event_id: winner.first.1.clone(),
                        ignored_links,
                    },
                ))
            })
            .collect()
    }

    pub fn to_batch(&self) -> Result<RecordBatch> {
        let mut anon = StringBuilder::new();
        let mut user = StringBuilder::new();
        let mut first_id = StringBuilder::new();
        let (mut count, mut first_ts) = (Vec::new(), Vec::new());
        for (a, pairs) in &self.by_anon {
            for p in pairs {
                anon.append_value(a);
                user.append_value(&p.user);
                count.push(p.count);
                first_ts.push(p.first.0);
                first_id.append_value(&p.first.1);
            }
        }
        Ok(RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(anon.finish()) as ArrayRef,
                Arc::new(user.finish()),
                Arc::new(Int64Array::from(count)),
                Arc::new(Int64Array::from(first_ts)),
                Arc::new(first_id.finish()),
            ],
        )?)
    }

    pub fn load(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.schema().fields().len() != 5 {
            return Err(Error::Invalid(
                "saved link tally has an unknown layout".into(),
            ));
        }
        let (anon, user, first_id) = (
            column::strings_at(batch, 0)?,
            column::strings_at(batch, 1)?,
            column::strings_at(batch, 4)?,
        );
        let count = column::longs_at(batch, 2)?;
        let first_ts = column::longs_at(batch, 3)?;
        for i in 0..batch.num_rows() {
            if anon.is_null(i) || user.is_null(i) {
                continue;
            }
            self.add_n(
                anon.value(i),
                user.value(i),
                count.value(i),
                first_ts.value(i),
                first_id.value(i),
            );
        }
        Ok(())
    }
}

pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("anonymous_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("link_events", DataType::Int64, false),
        Field::new("first_ts", DataType::Int64, false),
        Field::new("first_event_id", DataType::Utf8, false),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_link_wins_and_others_are_ignored_across_a_save() {
        let mut tally = LinkTally::default();
        tally.add("a1", "u1", 20, "e2");
        tally.add("a1", "u2", 10, "e9");
        tally.add("a1", "u1", 30, "e3");
        let mut reloaded = LinkTally::default();
        reloaded.load(&tally.to_batch().unwrap()).unwrap();
        // The same event time breaks the tie on event id.
        reloaded.add("a1", "u3", 10, "e1");
        let links = reloaded.links();
        assert_eq!(
            links["a1"],
            Link {
                user_id: "u3".into(),
                linked_at: 10,
                link_event_id: "e1".into(),
                ignored_links: 3,
            }
        );
    }
}
