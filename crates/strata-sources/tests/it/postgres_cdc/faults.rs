//! CDC when things go wrong: the source dies, PostgreSQL restarts under it,
//! the setup is bad, or nothing happens for a while.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use strata_core::event::parse_lsn;
use strata_lake::bronze::BronzeLoader;
use strata_sources::Error;
use strata_sources::postgres_cdc::slot_status;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::harness::{
    Change, Db, Env, PORT, Running, config, config_with_url, ensure_server, psql, start_error,
    unique, wait_for, wait_for_snapshot,
};

/// A bronze loader running beside the source, so bronze (and with it the
/// acknowledged position) moves while the source does.
struct Loading {
    stop: watch::Sender<bool>,
    task: JoinHandle<BronzeLoader>,
}

impl Loading {
    fn start(mut loader: BronzeLoader) -> Loading {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            while !*stopped.borrow() {
                loader.catch_up().await.unwrap();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stopped.changed() => {}
                }
            }
            loader
        });
        Loading { stop, task }
    }

    async fn stop(self) -> BronzeLoader {
        self.stop.send_replace(true);
        self.task.await.unwrap()
    }
}

/// Inserts `ids` one transaction each, riding out a server restart: an
/// insert whose connection broke is tried again (it may have committed).
async fn insert_each(url: String, ids: std::ops::RangeInclusive<i64>, pause: Duration) {
    let mut conn: Option<PgConnection> = None;
    for id in ids {
        loop {
            if conn.is_none() {
                conn = PgConnection::connect(&url).await.ok();
            }
            let Some(c) = conn.as_mut() else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let inserted = sqlx::query("insert into items values ($1, 0) on conflict do nothing")
                .bind(id)
                .execute(&mut *c)
                .await;
            if inserted.is_ok() {
                break;
            }
            conn = None;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(pause).await;
    }
}

/// Every change bronze holds, each exactly once: per (op, key), one row.
fn assert_each_once(rows: &[Change]) -> BTreeMap<String, usize> {
    let mut seen: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for row in rows {
        *seen
            .entry((row.op.clone(), row.key.clone(), row.lsn.clone()))
            .or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "changes in bronze twice: {twice:?}");
    let mut per_op = BTreeMap::new();
    for row in rows {
        *per_op.entry(row.op.clone()).or_default() += 1;
    }
    per_op
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_killed_mid_stream_and_started_again_lands_every_change_once() {
    let db = Db::create(PORT).await;
    db.exec(
        "create table items (id bigint primary key, n int); \
         insert into items select g, 0 from generate_series(1, 50) g; \
         create publication p for table items;",
    )
    .await;
    let env = Env::new();
    let config = config(&db, "p", &["items"]);
    let source = Running::start(&config, &env).await;
    wait_for_snapshot(&env).await;
    let loading = Loading::start(env.loader().await);

    let writer = tokio::spawn(insert_each(db.url(), 51..=400, Duration::from_millis(2)));
    tokio::time::sleep(Duration::from_millis(400)).await;
    // No shutdown: whatever was buffered, sent or acknowledged stays as is.
    source.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let source = Running::start(&config, &env).await;
    writer.await.unwrap();
    db.exec("update items set n = n + 1 where id <= 10").await;

    let mut loader = loading.stop().await;
    let rows = wait_for(&env, &mut loader, 50 + 350 + 10).await;
    source.stop().await;
    loader.catch_up().await.unwrap();
    let rows_after = super::changes(&env.lake).await;
    assert_eq!(rows_after.len(), rows.len());
    let per_op = assert_each_once(&rows_after);
    assert_eq!(
        per_op,
        BTreeMap::from([
            ("insert".to_string(), 350),
            ("snapshot".to_string(), 50),
            ("update".to_string(), 10),
        ])
    );
    let inserted: Vec<String> = rows_after
        .iter()
        .filter(|c| c.op == "insert")
        .map(|c| c.key.clone())
        .collect();
    let expected: Vec<String> = (51..=400).map(|id| format!("{{\"id\":{id}}}")).collect();
    assert_eq!(inserted, expected, "inserts land in commit order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarting_under_the_source_loses_and_doubles_nothing() {
    // A cluster of this test's own: restarting the shared one would break
    // every other test.
    const RESTARTED: u16 = 5434;
    ensure_server(RESTARTED);
    let db = Db::create(RESTARTED).await;
    db.exec(
        "create table items (id bigint primary key, n int); create publication p for table items;",
    )
    .await;
    let env = Env::new();
    let config = config(&db, "p", &["items"]);
    let source = Running::start(&config, &env).await;
    wait_for_snapshot(&env).await;
    let loading = Loading::start(env.loader().await);

    let writer = tokio::spawn(insert_each(db.url(), 1..=300, Duration::from_millis(3)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // With a log file of its own: a server holding our pipes open would
    // keep this waiting for their end forever.
    let data = format!("/var/lib/postgresql/strata-cdc-{RESTARTED}");
    let restarted = std::process::Command::new("su")
        .args([
            "postgres",
            "-c",
            &format!("/usr/lib/postgresql/15/bin/pg_ctl -D {data} -l {data}/server.log restart -m fast -w"),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(restarted.success(), "pg_ctl restart failed: {restarted:?}");
    writer.await.unwrap();
    assert_eq!(
        db.text("select count(*)::text from items").await.as_deref(),
        Some("300")
    );

    let mut loader = loading.stop().await;
    let rows = wait_for(&env, &mut loader, 300).await;
    source.stop().await;
    loader.catch_up().await.unwrap();
    let rows_after = super::changes(&env.lake).await;
    assert_eq!(rows_after.len(), rows.len());
    let per_op = assert_each_once(&rows_after);
    assert_eq!(per_op, BTreeMap::from([("insert".to_string(), 300)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_setup_fails_at_start_with_one_sentence_naming_it() {
    let db = Db::create(PORT).await;
    let role = unique("strata_norepl");
    db.exec(&format!(
        "create table accounts (id int primary key); \
         create table logs (msg text); \
         create table loose (id int primary key); \
         create publication p for table accounts, logs; \
         create role {role} login; \
         grant select on accounts to {role};"
    ))
    .await;
    let env = Env::new();
    let d = &db.name;
    let config_error = |e: Error| match e {
        Error::Config(message) => message,
        other => panic!("not a configuration error: {other}"),
    };

    let e = start_error(&config(&db, "nope", &["accounts"]), &env).await;
    assert_eq!(
        config_error(e),
        format!(
            "source \"shop\": publication \"nope\" does not exist in database \"{d}\"; create it with CREATE PUBLICATION \"nope\" FOR TABLE public.accounts"
        )
    );
    let e = start_error(&config(&db, "p", &["accounts", "public.logs"]), &env).await;
    assert_eq!(
        config_error(e),
        "source \"shop\": table public.logs has no primary key; CDC needs one to key silver.logs"
    );
    let e = start_error(&config(&db, "p", &["loose"]), &env).await;
    assert_eq!(
        config_error(e),
        "source \"shop\": table public.loose is not in publication \"p\"; add it with ALTER PUBLICATION \"p\" ADD TABLE public.loose"
    );
    let e = start_error(&config(&db, "p", &["sales.ghost"]), &env).await;
    assert_eq!(
        config_error(e),
        format!("source \"shop\": table sales.ghost does not exist in database \"{d}\"")
    );

    let url = format!("postgres://{role}@127.0.0.1:{PORT}/{d}");
    let e = start_error(&config_with_url(&url, "p", &["accounts"]), &env).await;
    assert_eq!(
        config_error(e),
        format!(
            "source \"shop\": role \"{role}\" lacks the REPLICATION privilege CDC needs; run ALTER ROLE \"{role}\" WITH REPLICATION, or connect as a superuser"
        )
    );
    psql(PORT, d, &format!("drop owned by {role}"));
    psql(PORT, "postgres", &format!("drop role {role}"));

    // The shared server has wal_level = replica.
    let e = start_error(
        &config_with_url(
            "postgres://postgres@127.0.0.1:5432/postgres",
            "p",
            &["accounts"],
        ),
        &env,
    )
    .await;
    assert_eq!(
        config_error(e),
        "source \"shop\": PostgreSQL at 127.0.0.1:5432 has wal_level = replica, but CDC needs logical; set wal_level = logical in postgresql.conf and restart PostgreSQL"
    );

    // Nothing listens on port 1: not the configuration's fault, maybe.
    let e = start_error(
        &config_with_url("postgres://postgres@127.0.0.1:1/x", "p", &["accounts"]),
        &env,
    )
    .await;
    match e {
        Error::Upstream(message) => assert!(
            message.starts_with("source \"shop\" cannot connect to PostgreSQL at 127.0.0.1:1: "),
            "{message}"
        ),
        other => panic!("not an upstream error: {other}"),
    }
}

#[test]
fn the_keys_of_an_entry_are_checked() {
    let check = |options: &str| {
        let toml = format!("[[sources]]\nname = \"shop\"\nkind = \"postgres_cdc\"\n{options}");
        let config = strata_core::Config::from_toml(&toml).unwrap();
        strata_sources::check_config(&config).map_err(|e| e.to_string())
    };
    let url = "url = \"postgres://postgres@127.0.0.1:5433/shop\"\npublication = \"p\"\n";
    check(&format!("{url}tables = [\"accounts\", \"crm.people\"]")).unwrap();
    assert_eq!(
        check(&format!("{url}tables = []")).unwrap_err(),
        "source \"shop\" (kind \"postgres_cdc\"): `tables` is empty; list the tables to capture, e.g. [\"public.accounts\"]"
    );
    assert_eq!(
        check(&format!("{url}tables = [\"a.b.c\"]")).unwrap_err(),
        "source \"shop\" (kind \"postgres_cdc\"): `tables` entry \"a.b.c\" is not a table name (schema.table, or table in public)"
    );
    assert_eq!(
        check(&format!("{url}slot = \"Bad-Slot\"\ntables = [\"a\"]")).unwrap_err(),
        "source \"shop\" (kind \"postgres_cdc\"): `slot` \"Bad-Slot\" is not a replication slot name (1 to 63 of a-z, 0-9 and _)"
    );
    assert_eq!(
        check("url = \"mysql://x\"\npublication = \"p\"\ntables = [\"a\"]").unwrap_err(),
        "source \"shop\" (kind \"postgres_cdc\"): `url` must be a postgres:// URL, not \"mysql://x\""
    );
}

async fn confirmed(config: &strata_core::config::SourceConfig) -> u64 {
    slot_status(config)
        .await
        .unwrap()
        .confirmed_flush_lsn
        .unwrap_or(0)
}

/// Waits until the slot is confirmed at or past `lsn`, loading bronze.
async fn wait_confirmed(
    config: &strata_core::config::SourceConfig,
    env: &Env,
    loader: &mut BronzeLoader,
    lsn: u64,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        loader.catch_up().await.unwrap();
        if confirmed(config).await >= lsn {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the slot is confirmed at {:X}, not yet {lsn:X}; bronze holds {:?}",
            confirmed(config).await,
            super::changes(&env.lake).await.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_is_confirmed_only_as_far_as_bronze_and_an_idle_slot_moves_on() {
    let db = Db::create(PORT).await;
    db.exec(
        "create table t (id int primary key); insert into t values (1); \
         create publication p for table t;",
    )
    .await;
    let env = Env::new();
    let config = config(&db, "p", &["t"]);
    let source = Running::start(&config, &env).await;
    wait_for_snapshot(&env).await;
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("snapshot.json")).unwrap())
            .unwrap();
    let consistent_point = parse_lsn(marker["consistent_point"].as_str().unwrap()).unwrap();

    // Without a loader bronze holds nothing, so nothing is acknowledged.
    db.exec("insert into t values (2)").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(confirmed(&config).await, consistent_point);
    let status = slot_status(&config).await.unwrap();
    assert!(status.exists && status.active, "{status:?}");

    let mut loader = env.loader().await;
    let rows = wait_for(&env, &mut loader, 2).await;
    let insert_lsn = parse_lsn(&rows[1].lsn).unwrap();
    wait_confirmed(&config, &env, &mut loader, insert_lsn).await;

    // WAL nobody captures: the keepalives carry the slot past it.
    db.exec("create table side (x int); insert into side select generate_series(1, 10000)")
        .await;
    let target = parse_lsn(&db.text("select pg_current_wal_lsn()::text").await.unwrap()).unwrap();
    wait_confirmed(&config, &env, &mut loader, target).await;
    let status = slot_status(&config).await.unwrap();
    assert!(
        status.lag_bytes.is_some() && status.wal_retained_bytes.is_some(),
        "{status:?}"
    );
    source.stop().await;
}

fn marker_point(env: &Env) -> Option<String> {
    let bytes = std::fs::read(env.state_dir().join("snapshot.json")).ok()?;
    let marker: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    marker["consistent_point"].as_str().map(str::to_string)
}

/// Waits for a snapshot other than the one at `old`.
async fn wait_for_new_snapshot(env: &Env, old: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(point) = marker_point(env).filter(|p| p != old) {
            return point;
        }
        assert!(Instant::now() < deadline, "no new snapshot within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_table_list_or_a_dropped_slot_takes_the_snapshot_again() {
    let db = Db::create(PORT).await;
    db.exec(
        "create table a (id int primary key); create table b (id int primary key); \
         insert into a values (1), (2); insert into b values (10); \
         create publication p for table a, b;",
    )
    .await;
    let env = Env::new();
    let mut config = config(&db, "p", &["a"]);
    let slot = config.options["slot"].as_str().unwrap().to_string();
    let source = Running::start(&config, &env).await;
    let mut loader = env.loader().await;
    wait_for(&env, &mut loader, 2).await;
    let first = marker_point(&env).unwrap();
    source.stop().await;

    // A table added to the list has no snapshot: all are taken again.
    config.options.insert(
        "tables".into(),
        toml::Value::Array(vec!["a".into(), "b".into()]),
    );
    let source = Running::start(&config, &env).await;
    let second = wait_for_new_snapshot(&env, &first).await;
    let rows = wait_for(&env, &mut loader, 5).await;
    assert_eq!(
        sorted_snapshot_rows(&rows[2..]),
        [
            "a snapshot {\"id\":1}",
            "a snapshot {\"id\":2}",
            "b snapshot {\"id\":10}"
        ]
    );
    assert!(rows[2..].iter().all(|c| c.lsn == second));
    assert!(parse_lsn(&second) > parse_lsn(&first));
    source.stop().await;

    // Someone drops the slot: what changed meanwhile is only in a new
    // snapshot, so one is taken.
    psql(
        PORT,
        "postgres",
        &format!("select pg_drop_replication_slot('{slot}')"),
    );
    db.exec("insert into b values (11)").await;
    let source = Running::start(&config, &env).await;
    let third = wait_for_new_snapshot(&env, &second).await;
    let rows = wait_for(&env, &mut loader, 9).await;
    assert_eq!(
        sorted_snapshot_rows(&rows[5..]),
        [
            "a snapshot {\"id\":1}",
            "a snapshot {\"id\":2}",
            "b snapshot {\"id\":10}",
            "b snapshot {\"id\":11}"
        ]
    );
    assert!(rows[5..].iter().all(|c| c.lsn == third));
    source.stop().await;
}

/// `table op key` of each change, sorted: a snapshot copies its tables in
/// no set order.
fn sorted_snapshot_rows(rows: &[Change]) -> Vec<String> {
    let mut lines: Vec<String> = rows
        .iter()
        .map(|c| format!("{} {} {}", c.table, c.op, c.key))
        .collect();
    lines.sort();
    lines
}
