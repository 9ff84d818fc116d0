//! The CDC tests' setting: a database of each test's own on the
//! `wal_level = logical` cluster, the source running against a real
//! embedded log, the real bronze loader, and bronze read back as text.

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
            limits: Default::default(),
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
