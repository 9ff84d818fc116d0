//! Who is alive: workers and their heartbeats, dead local workers whose
//! leases end at once, and the schedules' last fires that workers claim.

use std::path::Path;
use std::time::Duration;

use sqlx::Row;

use super::{RunStore, ids_of, micros};
use crate::error::Result;

impl RunStore {
    /// Says `worker` is alive (shown by `strata status`).
    pub async fn beat_worker(&self, worker: &str, now: i64) -> Result<()> {
        self.stamp(
            "UPDATE workers SET heartbeat_at = $1 WHERE id = $2",
            now,
            worker,
        )
        .await
    }

    pub async fn schedule_last_fire(&self, name: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT last_fire FROM schedules WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("last_fire")).transpose()?)
    }

    /// Moves a schedule's last fire from `seen` to `fire`; false when another
    /// scheduler moved it first (that one fires).
    pub async fn claim_fire(&self, name: &str, seen: Option<i64>, fire: i64) -> Result<bool> {
        let n = match seen {
            None => sqlx::query(
                "INSERT INTO schedules (name, last_fire) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(fire)
            .execute(&self.pool)
            .await?
            .rows_affected(),
            Some(seen) => sqlx::query(
                "UPDATE schedules SET last_fire = $1 WHERE name = $2 AND last_fire = $3",
            )
            .bind(fire)
            .bind(name)
            .bind(seen)
            .execute(&self.pool)
            .await?
            .rows_affected(),
        };
        Ok(n == 1)
    }

    pub async fn register_worker(&self, id: &str, now: i64) -> Result<()> {
        let host = host_name();
        sqlx::query(
            "INSERT INTO workers (id, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(id)
        .bind(host)
        .bind(i64::from(std::process::id()))
        .bind(now)
        .execute(&self.pool)
        .await?;
        // Every command registers a worker; those silent for a week and
        // holding nothing are gone for good.
        sqlx::query(
            "DELETE FROM workers WHERE heartbeat_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM runs WHERE runs.worker = workers.id AND runs.state = 'running')",
        )
        .bind(now - micros(Duration::from_secs(7 * 24 * 3600)))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends the leases of running runs whose worker was a process on this
    /// host that no longer exists: a killed `strata backfill` is taken over
    /// at once, not a lease later. Returns how many leases were ended.
    pub async fn expire_dead_local_workers(&self) -> Result<u64> {
        let rows = sqlx::query(
            "SELECT DISTINCT w.id, w.host, w.pid FROM runs r JOIN workers w ON w.id = r.worker \
             WHERE r.state = 'running'",
        )
        .fetch_all(&self.pool)
        .await?;
        let host = host_name();
        let mut ended = 0;
        for row in rows {
            let worker: String = row.try_get("id")?;
            let pid: i64 = row.try_get("pid")?;
            if row.try_get::<String, _>("host")? != host
                || pid == i64::from(std::process::id())
                || process_alive(pid)
            {
                continue;
            }
            ended += sqlx::query(
                "UPDATE runs SET lease_until = 0 WHERE worker = $1 AND state = 'running'",
            )
            .bind(&worker)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(ended)
    }

    /// Workers that renewed their heartbeat at or after `since`.
    pub async fn live_workers(&self, since: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM workers WHERE heartbeat_at >= $1 ORDER BY id")
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        ids_of(&rows)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether a process of this host is running (not gone, not a zombie).
/// Where /proc is missing, every process counts as alive and only the
/// lease tells.
fn process_alive(pid: i64) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}
