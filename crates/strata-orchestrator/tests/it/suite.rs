//! The scheduler's guarantees, each scenario on SQLite and on PostgreSQL:
//! dependency order, retries, blocking, timeouts, lapsed leases, resumed
//! backfills, schedules that fire once, and two schedulers that never run
//! the same partition twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_batch::Model;
use strata_orchestrator::backfill::{self, Request};
use strata_orchestrator::store::{ALL, now_micros};
use strata_orchestrator::{Run, RunKey, RunState, RunStore, Scheduler, SchedulerConfig};

use crate::db::Db;
use crate::on_both_stores;
use crate::scripted::{Scripted, settings};

fn key(model: Model, partition: &str) -> RunKey {
    RunKey::new(model.name(), partition)
}

async fn scheduler(
    store: RunStore,
    work: Arc<Scripted>,
    config: SchedulerConfig,
) -> Scheduler<Scripted> {
    Scheduler::new(store, work, config)
        .await
        .expect("scheduler")
}

async fn enqueue(s: &Scheduler<Scripted>, keys: &[RunKey]) {
    let runs = s
        .graph()
        .new_runs(keys.iter().cloned(), "test", None, |_| false)
        .unwrap();
    s.enqueue(&runs, now_micros()).await.unwrap();
}

/// Ticks until nothing is queued or running.
async fn drain(s: &mut Scheduler<Scripted>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tick = s.tick(now_micros()).await.expect("tick");
        if tick.executed.is_empty() {
            if s.store().pending().await.unwrap().is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "runs left pending: {:?}",
                s.store().pending().await.unwrap()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn latest(store: &RunStore) -> BTreeMap<RunKey, Run> {
    store
        .latest()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.key.clone(), r))
        .collect()
}

on_both_stores!(
    dependency_order_follows_inputs_and_rolling_windows,
    a_failed_attempt_is_retried_after_a_backoff,
    a_permanent_failure_blocks_what_reads_it,
    a_run_past_its_timeout_fails,
    a_run_whose_lease_lapsed_is_run_again,
    a_heartbeat_keeps_a_long_run_its_own,
    an_interrupted_backfill_resumes,
    a_schedule_fires_once_after_the_day_boundary,
    two_schedulers_never_run_one_partition_twice_and_finish_a_backfill,
    migrations_are_versioned,
);

async fn dependency_order_follows_inputs_and_rolling_windows(db: &Db) {
    let work = Arc::new(Scripted::default());
    let mut s = scheduler(db.open().await, work.clone(), settings()).await;
    // Queued downstream first, on purpose.
    enqueue(
        &s,
        &[
            key(Model::DailyActiveUsers, "2026-03-02"),
            key(Model::DimUsers, ALL),
            key(Model::Sessions, "2026-03-01"),
            key(Model::FunnelDaily, "2026-03-01"),
            key(Model::Events, "2026-03-03"),
            key(Model::ActiveDays, "2026-03-03"),
            key(Model::Identifies, "2026-03-03"),
            key(Model::Events, "2026-03-02"),
            key(Model::ActiveDays, "2026-03-01"),
            key(Model::Events, "2026-03-01"),
        ],
    )
    .await;
    drain(&mut s).await;
    let order = work.order();
    assert_eq!(order.len(), 10, "each partition once: {order:?}");
    let batch = |m: Model, p: &str| work.batch_of(&key(m, p));
    let pos = |m: Model, p: &str| order.iter().position(|k| *k == key(m, p)).unwrap();
    // Each date's sessions go on from the previous date's tail.
    assert!(pos(Model::Events, "2026-03-01") < pos(Model::Events, "2026-03-02"));
    assert!(pos(Model::Events, "2026-03-02") < pos(Model::Events, "2026-03-03"));
    // A session of the 1st may run past midnight: it waits for the 2nd.
    assert!(batch(Model::Sessions, "2026-03-01") > batch(Model::Events, "2026-03-02"));
    // A funnel entered on the 1st follows its steps into the 2nd (24 h).
    assert!(batch(Model::FunnelDaily, "2026-03-01") > batch(Model::Events, "2026-03-02"));
    // DAU's rolling windows read every active day, so the 3rd's as well.
    assert!(batch(Model::DailyActiveUsers, "2026-03-02") > batch(Model::ActiveDays, "2026-03-03"));
    // dim_users reads every date's identifies.
    assert!(batch(Model::DimUsers, ALL) > batch(Model::Identifies, "2026-03-03"));
    // Ready models of one level are claimed and built together.
    assert_eq!(
        batch(Model::ActiveDays, "2026-03-01"),
        batch(Model::Sessions, "2026-03-01")
    );
    assert!(
        latest(s.store())
            .await
            .values()
            .all(|r| r.state == RunState::Succeeded)
    );
}

async fn a_failed_attempt_is_retried_after_a_backoff(db: &Db) {
    let events = key(Model::Events, "2026-03-01");
    let active = key(Model::ActiveDays, "2026-03-01");
    let work = Arc::new(Scripted::default());
    work.failures_left.lock().unwrap().insert(events.clone(), 1);
    let mut s = scheduler(db.open().await, work.clone(), settings()).await;
    enqueue(&s, &[events.clone(), active.clone()]).await;
    drain(&mut s).await;
    let runs = latest(s.store()).await;
    assert_eq!(runs[&events].state, RunState::Succeeded);
    assert_eq!(runs[&events].attempts, 2);
    assert_eq!(runs[&active].state, RunState::Succeeded);
    assert_eq!(runs[&active].attempts, 1);
    let executions = work.executions.lock().unwrap().clone();
    assert_eq!(executions.len(), 3, "{executions:?}");
    assert_eq!(executions[0].keys, std::slice::from_ref(&events));
    assert_eq!(executions[1].keys, std::slice::from_ref(&events));
    // The retry waited at least the first backoff (20 ms, plus jitter).
    assert!(executions[1].started - executions[0].ended >= Duration::from_millis(20));
    // The downstream run waited for the retry, not for the failure.
    assert_eq!(executions[2].keys, [active]);
}

async fn a_permanent_failure_blocks_what_reads_it(db: &Db) {
    let bad = key(Model::Events, "2026-03-02");
    let work = Arc::new(Scripted {
        always_fail: BTreeSet::from([bad.clone()]),
        ..Scripted::default()
    });
    let mut config = settings();
    config.max_attempts = 2;
    let mut s = scheduler(db.open().await, work.clone(), config).await;
    enqueue(
        &s,
        &[
            key(Model::Events, "2026-03-01"),
            bad.clone(),
            key(Model::ActiveDays, "2026-03-01"),
            key(Model::ActiveDays, "2026-03-02"),
            key(Model::Sessions, "2026-03-01"),
            key(Model::ExperimentEvents, "2026-03-01"),
            key(Model::DailyActiveUsers, ALL),
        ],
    )
    .await;
    drain(&mut s).await;
    let runs = latest(s.store()).await;
    let state = |m: Model, p: &str| runs[&key(m, p)].state;
    assert_eq!(state(Model::Events, "2026-03-02"), RunState::Failed);
    assert_eq!(runs[&bad].attempts, 2);
    assert!(runs[&bad].error.as_deref().unwrap().contains("disk full"));
    // Claimed with the bad date at first, the good one was retried alone.
    assert_eq!(state(Model::Events, "2026-03-01"), RunState::Succeeded);
    assert_eq!(state(Model::ActiveDays, "2026-03-01"), RunState::Succeeded);
    assert_eq!(
        state(Model::ExperimentEvents, "2026-03-01"),
        RunState::Succeeded
    );
    // What reads the failed date is blocked, not failed, and says why.
    assert_eq!(state(Model::ActiveDays, "2026-03-02"), RunState::Blocked);
    assert_eq!(state(Model::Sessions, "2026-03-01"), RunState::Blocked);
    assert_eq!(state(Model::DailyActiveUsers, ALL), RunState::Blocked);
    let why = runs[&key(Model::Sessions, "2026-03-01")]
        .error
        .clone()
        .unwrap();
    assert!(why.contains("silver.events 2026-03-02 failed"), "{why}");
    let blocked = key(Model::ActiveDays, "2026-03-02");
    assert!(
        !work.order().contains(&blocked),
        "a blocked run never executes"
    );
}

async fn a_run_past_its_timeout_fails(db: &Db) {
    let slow = key(Model::Events, "2026-03-01");
    let work = Arc::new(Scripted {
        slow: BTreeMap::from([(slow.clone(), Duration::from_secs(20))]),
        ..Scripted::default()
    });
    let mut config = settings();
    config.max_attempts = 1;
    config
        .timeouts
        .insert(Model::Events.name(), Duration::from_millis(200));
    let mut s = scheduler(db.open().await, work.clone(), config).await;
    enqueue(&s, &[slow.clone(), key(Model::Sessions, "2026-03-01")]).await;
    let started = Instant::now();
    drain(&mut s).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let runs = latest(s.store()).await;
    assert_eq!(runs[&slow].state, RunState::Failed);
    let error = runs[&slow].error.clone().unwrap();
    assert!(error.contains("timed out after 200ms"), "{error}");
    assert_eq!(
        runs[&key(Model::Sessions, "2026-03-01")].state,
        RunState::Blocked
    );
}

async fn a_run_whose_lease_lapsed_is_run_again(db: &Db) {
    let target = key(Model::ActiveDays, "2026-03-01");
    let work = Arc::new(Scripted::default());
    let mut s = scheduler(db.open().await, work.clone(), settings()).await;
    enqueue(&s, std::slice::from_ref(&target)).await;
    // Another worker claims it and dies without a word: no heartbeat.
    let other = db.open().await;
    let id = other.pending().await.unwrap()[0].id.clone();
    assert!(
        other
            .try_claim(
                &id,
                "worker-that-died",
                now_micros(),
                Duration::from_secs(1)
            )
            .await
            .unwrap()
    );
    let tick = s.tick(now_micros()).await.unwrap();
    assert!(
        tick.executed.is_empty(),
        "claimed by a worker whose lease holds"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let tick = s.tick(now_micros()).await.unwrap();
    assert_eq!(tick.requeued, 1);
    assert_eq!(tick.executed, [(target.clone(), RunState::Succeeded)]);
    let run = s.store().get(&id).await.unwrap().unwrap();
    assert_eq!(run.attempts, 2);
    assert_eq!(run.worker.as_deref(), Some(s.worker()));
    assert_eq!(work.order(), [target]);
}

async fn a_heartbeat_keeps_a_long_run_its_own(db: &Db) {
    let long = key(Model::ActiveDays, "2026-03-01");
    let work = Arc::new(Scripted {
        slow: BTreeMap::from([(long.clone(), Duration::from_millis(3500))]),
        ..Scripted::default()
    });
    let mut config = settings();
    config.lease = Duration::from_secs(1);
    let mut first = scheduler(db.open().await, work.clone(), config.clone()).await;
    let mut second = scheduler(db.open().await, work.clone(), config).await;
    enqueue(&first, std::slice::from_ref(&long)).await;
    let running = tokio::spawn(async move {
        let tick = first.tick(now_micros()).await.unwrap();
        (tick, first)
    });
    // Three leases pass while the run goes on; the second scheduler must
    // see it renewed every time.
    let until = Instant::now() + Duration::from_millis(3300);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let tick = second.tick(now_micros()).await.unwrap();
        assert_eq!(tick.requeued, 0);
        assert!(tick.executed.is_empty());
    }
    let (tick, _) = running.await.unwrap();
    assert_eq!(tick.executed, [(long.clone(), RunState::Succeeded)]);
    assert_eq!(work.order(), [long]);
}

async fn an_interrupted_backfill_resumes(db: &Db) {
    let work = Arc::new(Scripted::default());
    let mut config = settings();
    config.lease = Duration::from_secs(1);
    let mut s = scheduler(db.open().await, work.clone(), config).await;
    let dates = ["2026-03-01", "2026-03-02", "2026-03-03"];
    let request = Request {
        target: Model::ActiveDays.name(),
        from: dates[0].into(),
        to: dates[2].into(),
        partitions: dates
            .iter()
            .map(|d| (key(Model::ActiveDays, d), false))
            .collect(),
        reason: "backfill".into(),
    };
    let first = backfill::start(&s, &request).await.unwrap();
    assert!(!first.resumed);
    assert_eq!(first.runs, 3);
    // The process working it is killed holding one run.
    let victim = s.store().runs_of_backfill(&first.id).await.unwrap()[1].clone();
    assert!(
        s.store()
            .try_claim(&victim.id, "killed", now_micros(), Duration::from_secs(1))
            .await
            .unwrap()
    );
    let again = backfill::start(&s, &request).await.unwrap();
    assert!(again.resumed);
    assert_eq!((again.id.as_str(), again.runs), (first.id.as_str(), 3));
    let counts = backfill::work(&mut s, &again.id, Duration::from_millis(10), |_, _| {})
        .await
        .unwrap();
    assert_eq!(counts.succeeded, 3);
    let order = work.order();
    assert_eq!(order.len(), 3, "each date built once: {order:?}");
    assert!(order.contains(&victim.key));
    // Finished: the same request is a new backfill.
    let third = backfill::start(&s, &request).await.unwrap();
    assert!(!third.resumed);
    assert_ne!(third.id, first.id);
}

async fn a_schedule_fires_once_after_the_day_boundary(db: &Db) {
    let at = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .timestamp_micros()
    };
    let work = Arc::new(Scripted::default());
    let mut config = settings();
    config.fire_schedules = true;
    let mut one = scheduler(db.open().await, work.clone(), config.clone()).await;
    let mut two = scheduler(db.open().await, work.clone(), config).await;
    // Both start in the evening of the 10th: nothing fires for history.
    assert!(
        one.tick(at("2026-03-10T21:30:00Z"))
            .await
            .unwrap()
            .fired
            .is_empty()
    );
    assert!(
        two.tick(at("2026-03-10T21:30:00Z"))
            .await
            .unwrap()
            .fired
            .is_empty()
    );
    // Midnight passes; the daily runs wait out the 10-minute straggler delay.
    let t1 = one.tick(at("2026-03-11T00:05:00Z")).await.unwrap();
    assert_eq!(
        t1.fired,
        ["hourly"],
        "23:00's hourly run, not yet the daily"
    );
    let (a, b) = tokio::join!(
        one.tick(at("2026-03-11T00:10:30Z")),
        two.tick(at("2026-03-11T00:10:30Z"))
    );
    let daily_fires = [a.unwrap(), b.unwrap()]
        .iter()
        .filter(|t| t.fired.contains(&"daily".to_string()))
        .count();
    assert_eq!(daily_fires, 1, "one of the two schedulers fires midnight");
    let runs = latest(one.store()).await;
    assert!(runs.contains_key(&key(Model::DailyActiveUsers, "2026-03-10")));
    assert!(runs.contains_key(&key(Model::Sessions, "2026-03-10")));
    assert!(runs.contains_key(&key(Model::DimUsers, ALL)));
    assert!(!runs.keys().any(|k| k.partition == "2026-03-11"));
    assert!(
        runs[&key(Model::HourlyEvents, "2026-03-10")]
            .reason
            .starts_with("schedule:")
    );
    let again = one.tick(at("2026-03-11T00:20:00Z")).await.unwrap();
    assert!(again.fired.is_empty());
}

async fn two_schedulers_never_run_one_partition_twice_and_finish_a_backfill(db: &Db) {
    let work = Arc::new(Scripted {
        work: Duration::from_millis(15),
        ..Scripted::default()
    });
    let mut config = settings();
    config.max_batch = 2;
    let mut one = scheduler(db.open().await, work.clone(), config.clone()).await;
    let mut two = scheduler(db.open().await, work.clone(), config).await;
    let start = chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
    let dates: Vec<String> = start
        .iter_days()
        .take(30)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .collect();
    let mut keys: Vec<RunKey> = dates.iter().map(|d| key(Model::ActiveDays, d)).collect();
    keys.extend(dates[..6].iter().map(|d| key(Model::Events, d)));
    let request = Request {
        target: "all".into(),
        from: dates[0].clone(),
        to: dates[29].clone(),
        partitions: keys.iter().map(|k| (k.clone(), false)).collect(),
        reason: "backfill".into(),
    };
    let started = backfill::start(&one, &request).await.unwrap();
    let (workers_one, workers_two) = (one.worker().to_owned(), two.worker().to_owned());
    // Both work the same backfill until it is done.
    let poll = Duration::from_millis(5);
    let (a, b) = tokio::join!(
        backfill::work(&mut one, &started.id, poll, |_, _| {}),
        backfill::work(&mut two, &started.id, poll, |_, _| {})
    );
    assert_eq!(a.unwrap().succeeded, keys.len() as i64);
    assert_eq!(b.unwrap().succeeded, keys.len() as i64);
    let executions = work.executions.lock().unwrap().clone();
    let mut seen: BTreeMap<RunKey, usize> = BTreeMap::new();
    for e in &executions {
        for k in &e.keys {
            *seen.entry(k.clone()).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "run more than once: {twice:?}");
    assert_eq!(seen.len(), keys.len());
    // Every date's active days started after its events were written,
    // whichever scheduler built which.
    for d in &dates[..6] {
        let events = executions
            .iter()
            .find(|e| e.keys.contains(&key(Model::Events, d)))
            .unwrap();
        let active = executions
            .iter()
            .find(|e| e.keys.contains(&key(Model::ActiveDays, d)))
            .unwrap();
        assert!(
            active.started >= events.ended,
            "{d}: active days before events"
        );
    }
    let runs = latest(one.store()).await;
    let by_worker = |w: &str| {
        runs.values()
            .filter(|r| r.worker.as_deref() == Some(w))
            .count()
    };
    assert!(
        by_worker(&workers_one) > 0 && by_worker(&workers_two) > 0,
        "both schedulers worked"
    );
    assert_eq!(
        by_worker(&workers_one) + by_worker(&workers_two),
        keys.len()
    );
}

async fn migrations_are_versioned(db: &Db) {
    use sqlx::{AnyConnection, Connection, Row};
    db.open().await.close().await;
    // Opening again applies nothing twice.
    db.open().await.close().await;
    let mut conn = AnyConnection::connect(&db.url).await.unwrap();
    let rows = sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let versions: Vec<i64> = rows.iter().map(|r| r.get::<i64, _>("version")).collect();
    assert_eq!(versions, [1]);
}
