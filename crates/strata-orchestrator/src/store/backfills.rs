//! Backfills in the run store: open or resume one, count its runs, retry
//! what failed, close it.

use sqlx::Row;

use super::RunStore;
use crate::error::Result;
use crate::run::{Counts, RunState};

impl RunStore {
    pub async fn backfill_counts(&self, backfill: &str) -> Result<Counts> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM runs WHERE backfill_id = $1 GROUP BY state",
        )
        .bind(backfill)
        .fetch_all(&self.pool)
        .await?;
        let mut counts = Counts::default();
        for row in rows {
            let state = RunState::parse(&row.try_get::<String, _>("state")?)?;
            counts.add(state, row.try_get("n")?);
        }
        Ok(counts)
    }

    /// The unfinished backfill of the same target and dates, to resume; else
    /// a new one. Returns its id and whether it was resumed.
    pub async fn open_backfill(
        &self,
        target: &str,
        from: &str,
        to: &str,
        now: i64,
    ) -> Result<(String, bool)> {
        let row = sqlx::query(
            "SELECT id FROM backfills WHERE target = $1 AND from_date = $2 AND to_date = $3 \
             AND finished_at IS NULL ORDER BY created_at DESC LIMIT 1",
        )
        .bind(target)
        .bind(from)
        .bind(to)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return Ok((row.try_get("id")?, true));
        }
        let id = uuid::Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO backfills (id, target, from_date, to_date, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(target)
        .bind(from)
        .bind(to)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok((id, false))
    }

    /// Gives a resumed backfill's failed and blocked runs a fresh set of
    /// attempts (unless their partition has another run pending).
    pub async fn retry_backfill(&self, id: &str, now: i64) -> Result<u64> {
        let n = sqlx::query(
            "UPDATE runs SET state = 'queued', attempts = 0, not_before = $1, finished_at = NULL \
             WHERE backfill_id = $2 AND state IN ('failed', 'blocked') AND NOT EXISTS \
             (SELECT 1 FROM runs p WHERE p.model = runs.model \
             AND p.partition_key = runs.partition_key AND p.state IN ('queued', 'running'))",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }

    pub async fn finish_backfill(&self, id: &str, now: i64) -> Result<()> {
        self.stamp(
            "UPDATE backfills SET finished_at = $1 WHERE id = $2",
            now,
            id,
        )
        .await
    }
}
