//! A workload whose outcome per partition is set by the test (fail so many
//! times, fail always, take so long), recording every execution; the
//! partition graph, the store and the scheduler are the real ones.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata_orchestrator::workload::{Workload, Written};
use strata_orchestrator::{Run, RunKey, SchedulerConfig};

#[derive(Debug, Clone)]
pub struct Execution {
    pub keys: Vec<RunKey>,
    pub started: Instant,
    pub ended: Instant,
}

#[derive(Default)]
pub struct Scripted {
    pub executions: Mutex<Vec<Execution>>,
    pub failures_left: Mutex<BTreeMap<RunKey, usize>>,
    pub always_fail: BTreeSet<RunKey>,
    pub slow: BTreeMap<RunKey, Duration>,
    /// Every execution takes at least this long.
    pub work: Duration,
    pub dirty: Mutex<Vec<RunKey>>,
}

impl Scripted {
    /// Partitions in the order their executions ended.
    pub fn order(&self) -> Vec<RunKey> {
        self.executions
            .lock()
            .unwrap()
            .iter()
            .flat_map(|e| e.keys.clone())
            .collect()
    }

    /// The index of the execution that built `key` (the first, if several).
    pub fn batch_of(&self, key: &RunKey) -> usize {
        self.executions
            .lock()
            .unwrap()
            .iter()
            .position(|e| e.keys.contains(key))
            .unwrap_or_else(|| panic!("{key} never ran"))
    }
}

impl Workload for Scripted {
    async fn execute(&self, runs: &[Run]) -> Result<Written, String> {
        let started = Instant::now();
        let keys: Vec<RunKey> = runs.iter().map(|r| r.key.clone()).collect();
        let slowest = keys.iter().filter_map(|k| self.slow.get(k)).max().copied();
        tokio::time::sleep(slowest.unwrap_or(self.work)).await;
        let failing = keys.iter().find(|k| {
            self.always_fail.contains(*k)
                || self
                    .failures_left
                    .lock()
                    .unwrap()
                    .get_mut(*k)
                    .is_some_and(|n| {
                        let fail = *n > 0;
                        *n = n.saturating_sub(1);
                        fail
                    })
        });
        self.executions.lock().unwrap().push(Execution {
            keys: keys.clone(),
            started,
            ended: Instant::now(),
        });
        if let Some(key) = failing {
            return Err(format!("{key}: disk full (scripted)"));
        }
        Ok(keys.into_iter().map(|k| (k, 10)).collect())
    }

    async fn dirty(&self, _scan: bool) -> Result<Vec<RunKey>, String> {
        Ok(std::mem::take(&mut *self.dirty.lock().unwrap()))
    }
}

/// Scheduler settings for tests: fast retries, short leases, no automatic
/// schedules or sensing unless a test turns them on.
pub fn settings() -> SchedulerConfig {
    let mut config = SchedulerConfig::from_config(&Default::default(), 1).expect("defaults");
    config.retry_delay = Duration::from_millis(20);
    config.max_retry_delay = Duration::from_millis(100);
    config.lease = Duration::from_secs(2);
    config.poll_interval = Duration::from_millis(10);
    config.sense_dirty = false;
    config.fire_schedules = false;
    config
}
