//! What `strata status`, `GET /api/runs` and `GET /api/pipeline` read:
//! counts and listings of each partition's newest run, aggregated, filtered
//! and paged by the database. A store of hundreds of thousands of runs (a
//! backfill of a century) is then never read whole for one answer.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{IS_NEWEST, RunStore};
use crate::error::Result;
use crate::run::{Counts, RUN_COLUMNS, Run, RunState, run_of};

/// Which partitions a listing holds: the newest run of each, per model
/// those not succeeded by partition, then the newest successes; of that,
/// one page.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub model: Option<String>,
    /// Only partitions whose newest run is in one of these states; empty:
    /// every state.
    pub states: Vec<RunState>,
    /// Successful partitions listed per model, newest first.
    pub successes: u64,
    /// At most this many partitions of each model.
    pub per_model: Option<u64>,
    /// Partitions of the listing skipped, then at most `limit` listed.
    pub offset: u64,
    pub limit: Option<u64>,
}

/// A model's successful runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Successes {
    /// When a run of the model last succeeded.
    pub last_finished_at: Option<i64>,
    /// The newest partition ever built successfully.
    pub newest_partition: Option<String>,
}

fn bound(n: Option<u64>) -> i64 {
    n.map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

impl RunStore {
    /// Per model, partitions by the state of their newest run.
    pub async fn latest_counts(&self) -> Result<BTreeMap<String, Counts>> {
        let rows = sqlx::query(&format!(
            "SELECT model, state, COUNT(*) AS n FROM runs r WHERE {IS_NEWEST} GROUP BY model, state"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
        for row in rows {
            let state = RunState::parse(&row.try_get::<String, _>("state")?)?;
            counts
                .entry(row.try_get("model")?)
                .or_default()
                .add(state, row.try_get("n")?);
        }
        Ok(counts)
    }

    /// Per model that ever succeeded: its last success and newest partition.
    pub async fn successes(&self) -> Result<BTreeMap<String, Successes>> {
        let rows = sqlx::query(
            "SELECT model, MAX(finished_at) AS finished_at, MAX(partition_key) AS newest \
             FROM runs WHERE state = 'succeeded' GROUP BY model",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = BTreeMap::new();
        for row in rows {
            out.insert(
                row.try_get("model")?,
                Successes {
                    last_finished_at: row.try_get("finished_at")?,
                    newest_partition: row.try_get("newest")?,
                },
            );
        }
        Ok(out)
    }

    /// The runs `listing` asks for, in its order, each with when its
    /// partition last succeeded.
    pub async fn listing(&self, listing: &Listing) -> Result<Vec<(Run, Option<i64>)>> {
        // $1 to $4 are bound first, below.
        let mut params = 4;
        let model = listing.model.as_ref().map(|_| {
            params += 1;
            format!(" AND r.model = ${params}")
        });
        let states = if listing.states.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = (1..=listing.states.len())
                .map(|i| format!("${}", params + i))
                .collect();
            format!(" AND state IN ({})", list.join(", "))
        };
        // `done` puts successes after the rest; `nth` numbers successes
        // newest first; `place` is the order within a model.
        let sql = format!(
            "WITH newest AS (SELECT {RUN_COLUMNS}, \
             CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END AS done \
             FROM runs r WHERE {IS_NEWEST}{model}), \
             ranked AS (SELECT newest.*, ROW_NUMBER() OVER \
             (PARTITION BY model, done ORDER BY partition_key DESC) AS nth FROM newest), \
             listed AS (SELECT ranked.*, ROW_NUMBER() OVER (PARTITION BY model ORDER BY done, \
             CASE WHEN done = 0 THEN partition_key END, partition_key DESC) AS place \
             FROM ranked WHERE (done = 0 OR nth <= $1){states}), \
             page AS (SELECT * FROM listed WHERE place <= $2 \
             ORDER BY model, place LIMIT $3 OFFSET $4) \
             SELECT {RUN_COLUMNS}, (SELECT MAX(s.finished_at) FROM runs s \
             WHERE s.model = page.model AND s.partition_key = page.partition_key \
             AND s.state = 'succeeded') AS last_success_at \
             FROM page ORDER BY model, place",
            model = model.unwrap_or_default(),
        );
        let mut query = sqlx::query(&sql)
            .bind(bound(Some(listing.successes)))
            .bind(bound(listing.per_model))
            .bind(bound(listing.limit))
            .bind(bound(Some(listing.offset)));
        if let Some(model) = &listing.model {
            query = query.bind(model.clone());
        }
        for state in &listing.states {
            query = query.bind(state.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| Ok((run_of(row)?, row.try_get("last_success_at")?)))
            .collect()
    }
}
