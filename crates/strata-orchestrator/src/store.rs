//! The run store: every model run, its state, lease and errors, in SQLite (a
//! file in the data dir) or PostgreSQL (`[orchestrator] database_url`). The
//! SQL is written once for both; the one difference is the row lock a
//! PostgreSQL claim takes (`FOR UPDATE SKIP LOCKED`), which SQLite has no
//! need for since it serializes writers.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, ConnectOptions, Row};

use crate::error::{Error, Result};
pub use crate::run::{ALL, Counts, NewRun, Run, RunKey, RunState};
use crate::run::{RUN_COLUMNS, run_of};
pub use listing::{Listing, Successes};

mod backfills;
mod listing;
mod workers;

/// True of a run `r` when no later run of its partition exists.
const IS_NEWEST: &str = "NOT EXISTS (SELECT 1 FROM runs s \
     WHERE s.model = r.model AND s.partition_key = r.partition_key \
     AND (s.enqueued_at > r.enqueued_at OR (s.enqueued_at = r.enqueued_at AND s.id > r.id)))";

/// Versioned migrations, applied in order and recorded with their checksums.
const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "runs", include_str!("../migrations/0001_runs.sql"))];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct RunStore {
    pool: AnyPool,
    backend: Backend,
}

impl RunStore {
    /// The store named by `database_url`, else `orchestrator.db` in the data dir.
    pub async fn for_data_dir(data_dir: &Path, database_url: Option<&str>) -> Result<Self> {
        match database_url {
            Some(url) => Self::open(url).await,
            None => {
                std::fs::create_dir_all(data_dir).map_err(|e| {
                    Error::Invalid(format!("cannot create {}: {e}", data_dir.display()))
                })?;
                let path = data_dir.join("orchestrator.db");
                Self::open(&format!("sqlite://{}?mode=rwc", path.display())).await
            }
        }
    }

    /// Connects and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(Error::Config(format!(
                "orchestrator.database_url must start with postgres:// or sqlite: (got {})",
                redact(url)
            )));
        };
        let connect = |source| Error::Connect {
            url: redact(url),
            source,
        };
        // Statement logging would put every heartbeat in the log at info.
        let options = AnyConnectOptions::from_str(url)
            .map_err(connect)?
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(2));
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                // One writer at a time in SQLite anyway; more connections
                // would only wait on its lock.
                Backend::Sqlite => 1,
                Backend::Postgres => 4,
            })
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(connect)?;
        if backend == Backend::Sqlite {
            // Readers (status, the API) do not wait for a writer.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        let store = Self { pool, backend };
        store.migrate(url).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the migrations this binary has. A schema version it does not
    /// have was applied by a later Strata: refused, not run against.
    async fn migrate(&self, url: &str) -> Result<()> {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect::<Vec<_>>();
        let migrator = Migrator {
            migrations: Cow::Owned(migrations),
            ..Migrator::DEFAULT
        };
        match migrator.run(&self.pool).await {
            Err(sqlx::migrate::MigrateError::VersionMissing(found)) => {
                let known = MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0);
                Err(Error::NewerFormat(strata_core::format::newer_format(
                    "the run store",
                    redact(url),
                    u32::try_from(found).unwrap_or(u32::MAX),
                    u32::try_from(known).unwrap_or(0),
                )))
            }
            other => Ok(other?),
        }
    }

    /// Queues runs; a partition already queued or running is not queued
    /// twice (a backfill then adopts the pending run). Returns how many
    /// runs were added.
    pub async fn enqueue(&self, runs: &[NewRun], max_attempts: i64, now: i64) -> Result<usize> {
        let mut added = 0;
        let mut tx = self.pool.begin().await?;
        for run in runs {
            let inserted = sqlx::query(
                "INSERT INTO runs (id, model, partition_key, level, state, reason, backfill_id, \
                 if_stale, attempts, max_attempts, not_before, enqueued_at) \
                 VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, 0, $8, $9, $9) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(&run.key.model)
            .bind(&run.key.partition)
            .bind(run.level)
            .bind(&run.reason)
            .bind(run.backfill_id.clone())
            .bind(i64::from(run.if_stale))
            .bind(max_attempts)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            added += inserted as usize;
            if inserted == 0 && run.backfill_id.is_some() {
                sqlx::query(
                    "UPDATE runs SET backfill_id = $1 WHERE model = $2 AND partition_key = $3 \
                     AND state IN ('queued', 'running') AND backfill_id IS NULL",
                )
                .bind(run.backfill_id.clone())
                .bind(&run.key.model)
                .bind(&run.key.partition)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Every queued or running run, in claim order.
    pub async fn pending(&self) -> Result<Vec<Run>> {
        self.select(
            "WHERE state IN ('queued', 'running') ORDER BY level, partition_key, enqueued_at, id",
        )
        .await
    }

    async fn select(&self, clause: &str) -> Result<Vec<Run>> {
        let rows = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs {clause}"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_of).collect()
    }

    pub async fn get(&self, id: &str) -> Result<Option<Run>> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_of).transpose()
    }

    /// Takes a queued run for `worker` unless another worker took it first.
    pub async fn try_claim(
        &self,
        id: &str,
        worker: &str,
        now: i64,
        lease: Duration,
    ) -> Result<bool> {
        Ok(!self
            .claim_many(&[id.to_owned()], worker, now, lease)
            .await?
            .is_empty())
    }

    /// Takes those of these queued runs that no other worker took first, in
    /// one statement; returns the ids taken. The state check in the update
    /// makes each claim a compare-and-set, and in PostgreSQL the row lock
    /// lets concurrent claimers skip each other's rows instead of queueing
    /// behind them.
    pub async fn claim_many(
        &self,
        ids: &[String],
        worker: &str,
        now: i64,
        lease: Duration,
    ) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let list: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "UPDATE runs SET state = 'running', worker = $1, started_at = $2, lease_until = $3, \
             attempts = attempts + 1, finished_at = NULL \
             WHERE id IN (SELECT id FROM runs WHERE id IN ({}) AND state = 'queued' \
             AND not_before <= $2{lock}) AND state = 'queued' RETURNING id",
            list.join(", ")
        );
        let mut query = sqlx::query(&sql)
            .bind(worker)
            .bind(now)
            .bind(now + micros(lease));
        for id in ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        ids_of(&rows)
    }

    /// Extends the leases of `worker`'s running runs to `now + lease`;
    /// returns the ids it still holds (a run whose lease lapsed may have
    /// gone to another worker).
    pub async fn heartbeat(&self, worker: &str, now: i64, lease: Duration) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "UPDATE runs SET lease_until = $1 WHERE worker = $2 AND state = 'running' RETURNING id",
        )
        .bind(now + micros(lease))
        .bind(worker)
        .fetch_all(&self.pool)
        .await?;
        self.beat_worker(worker, now).await?;
        ids_of(&rows)
    }

    /// Runs a statement meant for one row; whether it changed one (a
    /// compare-and-set that lost changes none).
    async fn one_row<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<bool> {
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Runs an update of one row's time: `$1` the time, `$2` the row's id.
    async fn stamp(&self, sql: &str, time: i64, id: &str) -> Result<()> {
        sqlx::query(sql)
            .bind(time)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Runs whose worker stopped renewing its lease (killed, hung, cut off)
    /// go back to the queue, or fail when they are out of attempts.
    pub async fn requeue_stale(&self, now: i64) -> Result<Vec<Run>> {
        let stale = self
            .select(&format!(
                "WHERE state = 'running' AND lease_until < {now} ORDER BY id"
            ))
            .await?;
        let mut requeued = Vec::new();
        for run in stale {
            let message = format!(
                "worker {} stopped renewing its lease; attempt {} abandoned",
                run.worker.as_deref().unwrap_or("?"),
                run.attempts
            );
            let out_of_attempts = run.attempts >= run.max_attempts;
            let n = sqlx::query(
                "UPDATE runs SET state = $1, error = $2, worker = NULL, lease_until = NULL, \
                 not_before = $3, finished_at = $4 \
                 WHERE id = $5 AND state = 'running' AND lease_until < $3",
            )
            .bind(if out_of_attempts { "failed" } else { "queued" })
            .bind(&message)
            .bind(now)
            .bind(out_of_attempts.then_some(now))
            .bind(&run.id)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if n == 1 {
                requeued.push(run);
            }
        }
        Ok(requeued)
    }

    /// Records the success of runs `worker` holds, with the rows each
    /// wrote, in one transaction. Returns how many were still this
    /// worker's (a run whose lease lapsed may have been taken again).
    pub async fn succeed(
        &self,
        runs: &[(String, Option<i64>)],
        worker: &str,
        now: i64,
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let mut recorded = 0;
        for (id, rows) in runs {
            recorded += sqlx::query(
                "UPDATE runs SET state = 'succeeded', finished_at = $1, rows_written = $2, \
                 lease_until = NULL, error = NULL WHERE id = $3 AND worker = $4 AND state = 'running'",
            )
            .bind(now)
            .bind(*rows)
            .bind(id)
            .bind(worker)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// Deletes the succeeded runs of `model` that finished before `before`,
    /// but its latest: for models run every few seconds (the fast lane),
    /// whose every run would otherwise stay in the store for good.
    pub async fn prune_succeeded(&self, model: &str, before: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM runs WHERE model = $1 AND state = 'succeeded' AND finished_at < $2 \
             AND id NOT IN (SELECT id FROM runs WHERE model = $1 AND state = 'succeeded' \
             ORDER BY finished_at DESC, id DESC LIMIT 1)",
        )
        .bind(model)
        .bind(before)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Records partitions a run built beyond those it was asked for (the
    /// dates new identity links reach): a queued run of such a partition
    /// is done, otherwise a finished run is added, so status shows them.
    pub async fn record_follow_on(
        &self,
        built: &[(RunKey, i64, i64)],
        worker: &str,
        started: i64,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (key, level, rows) in built {
            let adopted = sqlx::query(
                "UPDATE runs SET state = 'succeeded', worker = $1, started_at = $2, \
                 finished_at = $3, rows_written = $4, attempts = attempts + 1 \
                 WHERE model = $5 AND partition_key = $6 AND state = 'queued'",
            )
            .bind(worker)
            .bind(started)
            .bind(now)
            .bind(*rows)
            .bind(&key.model)
            .bind(&key.partition)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if adopted == 0 {
                sqlx::query(
                    "INSERT INTO runs (id, model, partition_key, level, state, reason, attempts, \
                     max_attempts, not_before, enqueued_at, started_at, finished_at, worker, \
                     rows_written) VALUES ($1, $2, $3, $4, 'succeeded', 'follow-on', 1, 1, $5, $5, \
                     $5, $6, $7, $8)",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&key.model)
                .bind(&key.partition)
                .bind(*level)
                .bind(started)
                .bind(now)
                .bind(worker)
                .bind(*rows)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed attempt: queued again at `retry_at`, or failed for
    /// good when `retry_at` is None.
    pub async fn fail(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<bool> {
        self.one_row(
            sqlx::query(
                "UPDATE runs SET state = $1, error = $2, not_before = $3, finished_at = $4, \
                 lease_until = NULL WHERE id = $5 AND worker = $6 AND state = 'running'",
            )
            .bind(if retry_at.is_some() {
                "queued"
            } else {
                "failed"
            })
            .bind(error)
            .bind(retry_at.unwrap_or(now))
            .bind(retry_at.is_none().then_some(now))
            .bind(id)
            .bind(worker),
        )
        .await
    }

    /// Gives a claimed run back to the queue without counting the attempt
    /// (its worker is shutting down).
    pub async fn release(&self, id: &str, worker: &str) -> Result<bool> {
        self.one_row(
            sqlx::query(
                "UPDATE runs SET state = 'queued', attempts = attempts - 1, worker = NULL, \
                 lease_until = NULL WHERE id = $1 AND worker = $2 AND state = 'running'",
            )
            .bind(id)
            .bind(worker),
        )
        .await
    }

    /// Marks a queued run blocked by a failed input.
    pub async fn block(&self, id: &str, error: &str, now: i64) -> Result<bool> {
        self.one_row(
            sqlx::query(
                "UPDATE runs SET state = 'blocked', error = $1, finished_at = $2 \
                 WHERE id = $3 AND state = 'queued'",
            )
            .bind(error)
            .bind(now)
            .bind(id),
        )
        .await
    }

    /// The newest run of every partition that has one.
    pub async fn latest(&self) -> Result<Vec<Run>> {
        self.select(&format!(
            "r WHERE {IS_NEWEST} ORDER BY model, partition_key"
        ))
        .await
    }

    /// Partitions whose newest run failed or was blocked: what reads them
    /// is blocked until they are run again.
    pub async fn broken(&self) -> Result<Vec<Run>> {
        self.select(&format!(
            "r WHERE state IN ('failed', 'blocked') AND {IS_NEWEST} ORDER BY model, partition_key"
        ))
        .await
    }

    /// The newest successful run of each partition.
    pub async fn last_successes(&self) -> Result<Vec<Run>> {
        self.select(
            "r WHERE state = 'succeeded' AND NOT EXISTS (SELECT 1 FROM runs s \
             WHERE s.model = r.model AND s.partition_key = r.partition_key \
             AND s.state = 'succeeded' AND s.finished_at > r.finished_at) \
             ORDER BY model, partition_key",
        )
        .await
    }

    pub async fn runs_of_backfill(&self, backfill: &str) -> Result<Vec<Run>> {
        self.select_by("backfill_id", backfill).await
    }

    /// The runs `worker` executed last (its attempts others took over
    /// afterwards are not among them).
    pub async fn runs_of_worker(&self, worker: &str) -> Result<Vec<Run>> {
        self.select_by("worker", worker).await
    }

    async fn select_by(&self, column: &str, value: &str) -> Result<Vec<Run>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE {column} = $1 ORDER BY level, partition_key"
        ))
        .bind(value)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_of).collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The `id` column of each row.
fn ids_of(rows: &[sqlx::any::AnyRow]) -> Result<Vec<String>> {
    rows.iter()
        .map(|r| r.try_get::<String, _>("id").map_err(Error::from))
        .collect()
}

pub fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A database URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}
