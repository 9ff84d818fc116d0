//! PostgreSQL CDC against a real PostgreSQL 15 (`scripts/cdc-postgres`, on
//! 127.0.0.1:5433), a real embedded log and the real bronze loader: every
//! test has a database of its own, and the expected rows are written out.

#[path = "postgres_cdc_faults.rs"]
mod faults;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use strata_core::config::{LoaderConfig, SourceConfig};
use strata_lake::bronze::BronzeLoader;
use strata_lake::{Lake, SqlEngine};
use strata_log::{EmbeddedLog, EmbeddedLogConfig};
use strata_sources::postgres_cdc::PostgresCdc;
use strata_sources::{Producer, Source, SourceContext};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const PORT: u16 = 5433;
pub const SOURCE: &str = "shop";

pub fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cdc-postgres")
}

fn is_ready(port: u16) -> bool {
    std::process::Command::new("pg_isready")
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts the cluster on `port` with `scripts/cdc-postgres` unless it runs.
pub fn ensure_server(port: u16) {
    if is_ready(port) {
        return;
    }
    let status = std::process::Command::new(script())
        .env("STRATA_CDC_PG_PORT", port.to_string())
        .env(
            "STRATA_CDC_PG_DIR",
            format!("/var/lib/postgresql/strata-cdc-{port}"),
        )
        .status()
        .expect("scripts/cdc-postgres runs");
    assert!(
        status.success(),
        "scripts/cdc-postgres failed for port {port}"
    );
}

pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn psql(port: u16, database: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", database, "-Atqc", sql])
        .output()
        .expect("psql runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A database of the test's own, dropped with its slots at the end (also
/// when the test fails).
pub struct Db {
    pub port: u16,
    pub name: String,
}

impl Db {
    pub async fn create(port: u16) -> Db {
        ensure_server(port);
        let name = unique("strata_cdc");
        let mut admin =
            PgConnection::connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
                .await
                .unwrap();
        sqlx::raw_sql(&format!("create database {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        Db { port, name }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, self.name)
    }

    pub async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url()).await.unwrap()
    }

    pub async fn exec(&self, sql: &str) {
        let mut conn = self.conn().await;
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    }

    pub async fn text(&self, sql: &str) -> Option<String> {
        let mut conn = self.conn().await;
        sqlx::query_scalar::<_, Option<String>>(sql)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let db = &self.name;
        for _ in 0..50 {
            psql(
                self.port,
                "postgres",
                &format!(
                    "select pg_terminate_backend(active_pid) from pg_replication_slots \
                     where database = '{db}' and active_pid is not null; \
                     select pg_drop_replication_slot(slot_name) from pg_replication_slots \
                     where database = '{db}' and not active"
                ),
            );
            let left = psql(
                self.port,
                "postgres",
                &format!("select count(*) from pg_replication_slots where database = '{db}'"),
            );
            if left == "0" {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        psql(
            self.port,
            "postgres",
            &format!("drop database if exists {db} with (force)"),
        );
    }
}

/// A log, a lake and a state directory in a tempdir.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub log: Arc<EmbeddedLog>,
    pub lake: Lake,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(
            dir.path().join("log"),
            EmbeddedLogConfig {
                partitions: 3,
                consumers: vec!["bronze".into()],
                ..EmbeddedLogConfig::default()
            },
        )
        .unwrap();
        let lake = Lake::new(dir.path().join("lake"));
        Self { dir, log, lake }
    }

    pub fn state_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("sources").join(SOURCE)
    }

    pub fn context(&self) -> SourceContext {
        SourceContext {
            producer: Producer::new(self.log.clone()),
            lake: self.lake.clone(),
            state_dir: self.state_dir(),
        }
    }

    pub async fn loader(&self) -> BronzeLoader {
        BronzeLoader::open(&self.lake, self.log.clone(), LoaderConfig::default())
            .await
            .unwrap()
    }
}

pub fn config(db: &Db, publication: &str, tables: &[&str]) -> SourceConfig {
    config_with_url(&db.url(), publication, tables)
}

pub fn config_with_url(url: &str, publication: &str, tables: &[&str]) -> SourceConfig {
    let mut options = toml::Table::new();
    options.insert("url".into(), toml::Value::String(url.into()));
    options.insert(
        "publication".into(),
        toml::Value::String(publication.into()),
    );
    // Slots are the cluster's, not the database's: one per test.
    options.insert("slot".into(), toml::Value::String(unique("strata_t")));
    options.insert(
        "tables".into(),
        toml::Value::Array(
            tables
                .iter()
                .map(|t| toml::Value::String(t.to_string()))
                .collect(),
        ),
    );
    SourceConfig {
        name: SOURCE.into(),
        kind: "postgres_cdc".into(),
        options,
    }
}

/// The error `start` fails with.
pub async fn start_error(config: &SourceConfig, env: &Env) -> strata_sources::Error {
    let mut source = PostgresCdc::new(config, &env.context()).unwrap();
    match source.start().await {
        Ok(()) => panic!("start succeeded"),
        Err(e) => e,
    }
}

/// A source running as `strata serve` runs it.
pub struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<(PostgresCdc, strata_sources::Result<()>)>,
}

impl Running {
    pub async fn start(config: &SourceConfig, env: &Env) -> Running {
        let mut source = PostgresCdc::new(config, &env.context()).unwrap();
        source.start().await.unwrap();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let result = source.run(stopped).await;
            (source, result)
        });
        Running { stop, task }
    }

    /// Shuts it down and returns its positions.
    pub async fn stop(self) -> Vec<(String, String)> {
        self.stop.send_replace(true);
        let (source, result) = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the source stops within 30 s")
            .unwrap();
        result.unwrap();
        source.positions()
    }

    /// Drops it mid-flight, as a crash would.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// One row of `bronze.cdc_changes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub table: String,
    pub op: String,
    pub key: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub lsn: String,
    pub tx_id: Option<i64>,
    pub seq: i64,
}

impl Change {
    /// `op key before after`, NULL for null.
    pub fn line(&self) -> String {
        format!(
            "{} {} {} {}",
            self.op,
            self.key,
            self.before.as_deref().unwrap_or("NULL"),
            self.after.as_deref().unwrap_or("NULL")
        )
    }
}

pub async fn query(lake: &Lake, sql: &str) -> Vec<Vec<serde_json::Value>> {
    let Ok(engine) = SqlEngine::open(lake).await else {
        return Vec::new();
    };
    let Ok(batches) = engine.query(sql).await else {
        return Vec::new();
    };
    strata_lake::query::json_rows(&batches, usize::MAX)
        .unwrap()
        .1
}

fn text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Every change bronze holds of the source, in log order.
pub async fn changes(lake: &Lake) -> Vec<Change> {
    query(
        lake,
        &format!(
            "select table_name, op, key, before, after, lsn, tx_id, seq from bronze.cdc_changes \
             where source = '{SOURCE}' order by log_offset"
        ),
    )
    .await
    .iter()
    .map(|row| Change {
        table: text(&row[0]).unwrap_or_default(),
        op: text(&row[1]).unwrap_or_default(),
        key: text(&row[2]).unwrap_or_default(),
        before: text(&row[3]),
        after: text(&row[4]),
        lsn: text(&row[5]).unwrap_or_default(),
        tx_id: row[6].as_i64(),
        seq: row[7].as_i64().unwrap_or(-1),
    })
    .collect()
}

/// Loads the log into bronze until it holds at least `n` changes.
pub async fn wait_for(env: &Env, loader: &mut BronzeLoader, n: usize) -> Vec<Change> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        loader.catch_up().await.unwrap();
        let rows = changes(&env.lake).await;
        if rows.len() >= n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} changes reached bronze: {:#?}",
            rows.len(),
            rows.iter().map(Change::line).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the source's snapshot is durable (its marker written), so
/// what the test writes next streams as changes.
pub async fn wait_for_snapshot(env: &Env) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !env.state_dir().join("snapshot.json").exists() {
        assert!(Instant::now() < deadline, "no snapshot within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn lines(rows: &[Change]) -> Vec<String> {
    rows.iter().map(Change::line).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_then_every_kind_of_change_lands_in_commit_order() {
    let db = Db::create(PORT).await;
    db.exec(
        "create table accounts (id int primary key, email text not null, plan text, \
             balance numeric(12,2), score float8, tags text[], active boolean, created date); \
         create table notes (id bigint primary key, body text); \
         insert into accounts values \
             (1, 'a@x.io', 'free', 10.50, 1.5, '{a,b}', true, '2026-01-02'), \
             (2, 'b@x.io', null, 'NaN', null, '{}', false, null); \
         create publication strata_pub for table accounts, notes;",
    )
    .await;
    let env = Env::new();
    let config = config(&db, "strata_pub", &["accounts"]);
    let source = Running::start(&config, &env).await;
    let mut loader = env.loader().await;
    let snapshot = wait_for(&env, &mut loader, 2).await;
    assert_eq!(
        lines(&snapshot),
        [
            r#"snapshot {"id":1} NULL {"id":1,"email":"a@x.io","plan":"free","balance":10.50,"score":1.5,"tags":"{a,b}","active":"t","created":"2026-01-02"}"#,
            r#"snapshot {"id":2} NULL {"id":2,"email":"b@x.io","plan":null,"balance":"NaN","score":null,"tags":"{}","active":"f","created":null}"#,
        ]
    );
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.state_dir().join("snapshot.json")).unwrap())
            .unwrap();
    let slot = config.options["slot"].as_str().unwrap();
    assert_eq!(marker["slot"], slot);
    assert_eq!(marker["tables"], serde_json::json!(["public.accounts"]));
    assert_eq!(marker["consistent_point"], snapshot[0].lsn.as_str());
    assert_eq!(
        (snapshot[0].tx_id, snapshot[0].seq, snapshot[1].seq),
        (None, 0, 1)
    );

    db.exec(
        "insert into accounts values (3, 'c@x.io', 'pro', 0, 2e10, '{\"x y\"}', true, '2026-02-03'); \
         insert into notes values (1, 'not listed');",
    )
    .await;
    db.exec("update accounts set plan = 'pro', balance = 99999999.99 where id = 1")
        .await;
    db.exec("update accounts set id = 20 where id = 2").await;
    db.exec(
        "begin; insert into accounts values (99, 'rolled@back', null, null, null, null, null, null); rollback;",
    )
    .await;
    db.exec(
        "begin; delete from accounts where id = 3; \
         insert into accounts values (4, 'd@x.io', 'team', 1, -0.5, null, null, null); commit;",
    )
    .await;
    db.exec("truncate accounts").await;

    let rows = wait_for(&env, &mut loader, 8).await;
    let streamed = &rows[2..];
    assert_eq!(
        lines(streamed),
        [
            r#"insert {"id":3} NULL {"id":3,"email":"c@x.io","plan":"pro","balance":0.00,"score":20000000000,"tags":"{\"x y\"}","active":"t","created":"2026-02-03"}"#,
            r#"update {"id":1} NULL {"id":1,"email":"a@x.io","plan":"pro","balance":99999999.99,"score":1.5,"tags":"{a,b}","active":"t","created":"2026-01-02"}"#,
            r#"update {"id":20} {"id":2} {"id":20,"email":"b@x.io","plan":null,"balance":"NaN","score":null,"tags":"{}","active":"f","created":null}"#,
            r#"delete {"id":3} {"id":3} NULL"#,
            r#"insert {"id":4} NULL {"id":4,"email":"d@x.io","plan":"team","balance":1.00,"score":-0.5,"tags":null,"active":null,"created":null}"#,
            r#"truncate {} NULL NULL"#,
        ]
    );
    assert!(
        streamed
            .iter()
            .all(|c| c.table == "accounts" && c.tx_id.is_some())
    );
    // One transaction: one commit LSN, one id, its order inside.
    assert_eq!(streamed[3].lsn, streamed[4].lsn);
    assert_eq!(streamed[3].tx_id, streamed[4].tx_id);
    assert_eq!((streamed[3].seq, streamed[4].seq), (0, 1));
    // Separate transactions commit in increasing LSNs, after the snapshot.
    let lsn = |c: &Change| strata_core::event::parse_lsn(&c.lsn).unwrap();
    assert!(lsn(&rows[1]) < lsn(&streamed[0]));
    for pair in streamed.windows(2) {
        assert!(lsn(&pair[0]) <= lsn(&pair[1]), "{pair:?}");
    }

    let schemas = query(
        &env.lake,
        &format!("select table_name, columns from bronze.cdc_schemas where source = '{SOURCE}'"),
    )
    .await;
    assert!(
        schemas.iter().all(|row| row[0] == "accounts"),
        "{schemas:?}"
    );
    let columns: serde_json::Value = serde_json::from_str(schemas[0][1].as_str().unwrap()).unwrap();
    assert_eq!(
        columns,
        serde_json::json!([
            {"name": "id", "type_name": "int4", "type_modifier": -1, "key": true},
            {"name": "email", "type_name": "text", "type_modifier": -1, "key": false},
            {"name": "plan", "type_name": "text", "type_modifier": -1, "key": false},
            {"name": "balance", "type_name": "numeric", "type_modifier": (12 << 16 | 2) + 4, "key": false},
            {"name": "score", "type_name": "float8", "type_modifier": -1, "key": false},
            {"name": "tags", "type_name": "_text", "type_modifier": -1, "key": false},
            {"name": "active", "type_name": "bool", "type_modifier": -1, "key": false},
            {"name": "created", "type_name": "date", "type_modifier": -1, "key": false},
        ])
    );

    let positions = source.stop().await;
    assert_eq!(positions[0], ("slot".to_string(), slot.to_string()));
    assert_eq!(
        positions[1],
        (
            "snapshot".to_string(),
            format!("complete at {}", rows[0].lsn)
        )
    );
    // Nothing more came after the shutdown drained.
    loader.catch_up().await.unwrap();
    assert_eq!(changes(&env.lake).await.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_of_twenty_thousand_rows_lands_whole_and_in_order() {
    let db = Db::create(PORT).await;
    db.exec(
        "create table events (id bigint primary key, name text); \
         create publication p for table events;",
    )
    .await;
    let env = Env::new();
    let source = Running::start(&config(&db, "p", &["public.events"]), &env).await;
    let mut loader = env.loader().await;
    // The snapshot of an empty table is its definition alone.
    wait_for_snapshot(&env).await;
    db.exec("insert into events select g, 'e' || g from generate_series(1, 20000) g")
        .await;
    let rows = wait_for(&env, &mut loader, 20_000).await;
    assert_eq!(rows.len(), 20_000);
    assert!(
        rows.iter()
            .all(|c| c.op == "insert" && c.lsn == rows[0].lsn && c.tx_id == rows[0].tx_id)
    );
    for (i, change) in rows.iter().enumerate() {
        assert_eq!(change.seq, i as i64);
        assert_eq!(change.key, format!("{{\"id\":{}}}", i + 1));
    }
    assert_eq!(
        rows[19_999].after.as_deref(),
        Some(r#"{"id":20000,"name":"e20000"}"#)
    );
    // Sent in several outboxes, the transaction is marked whole by its
    // last change alone.
    let marks = strata_lake::bronze::ChangePositions::new(env.lake.clone())
        .marks(SOURCE)
        .await
        .unwrap()
        .unwrap();
    let end = strata_core::event::ChangePosition {
        lsn: strata_core::event::parse_lsn(&rows[0].lsn).unwrap(),
        rank: strata_core::event::STREAMED_RANK | 19_999,
    };
    assert_eq!((marks.last, marks.through), (end, end));
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toasted_values_left_unchanged_are_absent_and_full_identity_sends_the_old_row() {
    let db = Db::create(PORT).await;
    db.exec(
        "create table docs (id int primary key, title text, body text); \
         alter table docs alter column body set storage external; \
         create table wide (id int primary key, a text, b int); \
         alter table wide replica identity full; \
         insert into docs values (1, 't', repeat('x', 10000)); \
         insert into wide values (1, 'one', 1); \
         create publication p for table docs, wide;",
    )
    .await;
    let env = Env::new();
    let source = Running::start(&config(&db, "p", &["docs", "public.wide"]), &env).await;
    let mut loader = env.loader().await;
    let snapshot = wait_for(&env, &mut loader, 2).await;
    let body = "x".repeat(10_000);
    let mut snapshot_lines = lines(&snapshot);
    snapshot_lines.sort();
    assert_eq!(
        snapshot_lines,
        [
            r#"snapshot {"id":1} NULL {"id":1,"a":"one","b":1}"#.to_string(),
            format!(r#"snapshot {{"id":1}} NULL {{"id":1,"title":"t","body":"{body}"}}"#),
        ]
    );
    db.exec("update docs set title = 't2' where id = 1").await;
    db.exec("update wide set b = 2 where id = 1").await;
    db.exec("delete from wide where id = 1").await;
    let rows = wait_for(&env, &mut loader, 5).await;
    assert_eq!(
        lines(&rows[2..]),
        [
            r#"update {"id":1} NULL {"id":1,"title":"t2"}"#,
            r#"update {"id":1} {"id":1,"a":"one","b":1} {"id":1,"a":"one","b":2}"#,
            r#"delete {"id":1} {"id":1,"a":"one","b":2} NULL"#,
        ]
    );
    assert_eq!(
        rows[2..]
            .iter()
            .map(|c| c.table.as_str())
            .collect::<Vec<_>>(),
        ["docs", "wide", "wide"]
    );
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_column_writes_the_table_definition_again() {
    let db = Db::create(PORT).await;
    db.exec(
        "create table accounts (id int primary key, plan text); \
         insert into accounts values (1, 'free'); \
         create publication p for table accounts;",
    )
    .await;
    let env = Env::new();
    let source = Running::start(&config(&db, "p", &["accounts"]), &env).await;
    let mut loader = env.loader().await;
    wait_for(&env, &mut loader, 1).await;
    // One transaction: the definition holds from its commit on.
    db.exec(
        "alter table accounts add column country varchar(2); \
         update accounts set country = 'NL' where id = 1;",
    )
    .await;
    db.exec("insert into accounts values (2, 'pro', 'DE')")
        .await;
    let rows = wait_for(&env, &mut loader, 3).await;
    assert_eq!(
        lines(&rows[1..]),
        [
            r#"update {"id":1} NULL {"id":1,"plan":"free","country":"NL"}"#,
            r#"insert {"id":2} NULL {"id":2,"plan":"pro","country":"DE"}"#,
        ]
    );
    let schemas = query(
        &env.lake,
        &format!(
            "select lsn, columns from bronze.cdc_schemas where source = '{SOURCE}' order by log_offset"
        ),
    )
    .await;
    assert_eq!(schemas.len(), 2, "{schemas:?}");
    assert_eq!(schemas[0][0], rows[0].lsn.as_str());
    assert_eq!(schemas[1][0], rows[1].lsn.as_str());
    let columns: serde_json::Value = serde_json::from_str(schemas[1][1].as_str().unwrap()).unwrap();
    assert_eq!(
        columns,
        serde_json::json!([
            {"name": "id", "type_name": "int4", "type_modifier": -1, "key": true},
            {"name": "plan", "type_name": "text", "type_modifier": -1, "key": false},
            {"name": "country", "type_name": "varchar", "type_modifier": 6, "key": false},
        ])
    );
    source.stop().await;
}
