//! A PostgreSQL database replicated by `strata serve` as a user would set it
//! up: changes flow while the server is killed with -9 (also between a
//! bronze commit and the slot's acknowledgement) and restarted, and in the
//! end `silver.accounts` equals the table and bronze holds every change
//! once. Needs the wal_level = logical cluster on 127.0.0.1:5433
//! (`scripts/cdc-postgres`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::process::{KEY, free_port, run, strata};

const PORT: &str = "5433";

fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", PORT, "-U", "postgres", "-d", db])
        .args(["-v", "ON_ERROR_STOP=1", "-At", "-F", "|", "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// A database of its own per test, dropped with its slot at the end.
struct Database {
    name: String,
    slot: String,
}

impl Database {
    fn create(tag: &str) -> Self {
        let name = format!("strata_it_{tag}_{}", std::process::id());
        let slot = format!("strata_it_{tag}_{}", std::process::id());
        let db = Self { name, slot };
        db.drop_all();
        psql("postgres", &format!("create database {}", db.name));
        db
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{PORT}/{}", self.name)
    }

    /// Best effort, also while a failed test unwinds: a killed server's
    /// walsender may still hold the slot for a moment.
    fn drop_all(&self) {
        // Each `-c` is a transaction of its own: `drop database` refuses
        // to run inside one with other statements.
        let slot = &self.slot;
        let _ = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                PORT,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-q",
            ])
            .args([
                "-c",
                &format!(
                    "select pg_terminate_backend(active_pid) from pg_replication_slots \
                 where slot_name = '{slot}' and active"
                ),
            ])
            .args(["-c", "select pg_sleep(0.2)"])
            .args([
                "-c",
                &format!(
                    "select pg_drop_replication_slot(slot_name) from pg_replication_slots \
                 where slot_name = '{slot}' and not active"
                ),
            ])
            .args([
                "-c",
                &format!("drop database if exists {} with (force)", self.name),
            ])
            .output();
    }

    fn config(&self, dir: &Path, publication: &str, tables: &str) -> std::path::PathBuf {
        let path = dir.join("strata.toml");
        std::fs::write(
            &path,
            format!(
                "[[sources]]\nname = \"shop\"\nkind = \"postgres_cdc\"\nurl = \"{}\"\n\
                 publication = \"{publication}\"\nslot = \"{}\"\ntables = [{tables}]\n\n\
                 [cdc]\nusers_table = \"accounts\"\n",
                self.url(),
                self.slot
            ),
        )
        .unwrap();
        path
    }

    /// The slot's confirmed position as a number, if it has one.
    fn confirmed_lsn(&self) -> Option<u64> {
        let text = psql(
            "postgres",
            &format!(
                "select confirmed_flush_lsn - '0/0'::pg_lsn from pg_replication_slots \
                 where slot_name = '{}'",
                self.slot
            ),
        );
        text.parse().ok()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.drop_all();
    }
}

/// `strata serve` with its stderr read line by line, so a test can kill it
/// right after a phase it logs.
struct Server {
    child: Child,
    phases: mpsc::Receiver<String>,
}

impl Server {
    fn start(data: &Path, config: &Path) -> Self {
        let port = free_port();
        let mut child = strata()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .env("STRATA_WRITE_KEY", KEY)
            .env("STRATA_LOG", "warn,strata::phase=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, phases) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, phases }
    }

    /// Waits for a logged line containing `what`.
    fn wait_for(&self, what: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.phases.recv_timeout(left) {
                Ok(line) if line.contains(what) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

/// A failed assertion must not leave a server replicating behind it.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sql_rows(data: &Path, sql: &str) -> Vec<String> {
    let out = run(&["sql", sql, "--format", "csv"], data);
    if !out.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

fn bronze_lsn(data: &Path) -> Option<u64> {
    sql_rows(
        data,
        "select max(lsn_value) from bronze.cdc_changes where source = 'shop'",
    )
    .first()
    .and_then(|v| v.parse().ok())
}

const SOURCE_ROWS: &str = "select id || '|' || user_id || '|' || coalesce(email, '-') || '|' || plan \
     || '|' || coalesce(country, '-') || '|' || balance::text || '|' || coalesce(to_json(tags)::text, '-') \
     from accounts order by id";
const SILVER_ROWS: &str = "select concat_ws('|', cast(id as varchar), user_id, coalesce(email, '-'), \
     plan, coalesce(country, '-'), cast(balance as varchar), coalesce(tags, '-')) as row \
     from silver.accounts order by id";

/// One change per statement, each in its own transaction, until `stop` is
/// set; returns how many.
fn change_rows(db: &str, from: i64, stop: &AtomicBool) -> usize {
    let mut psql = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", PORT, "-U", "postgres", "-d", db])
        .args(["-v", "ON_ERROR_STOP=1", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = psql.stdin.take().unwrap();
    let mut statements = 0;
    // Whole groups of five, so every update and delete finds its row.
    while statements % 5 != 0 || !stop.load(Ordering::Relaxed) {
        let i = statements as i64;
        let id = from + i;
        let sql = match i % 5 {
            0 | 1 => format!(
                "insert into accounts values ({id}, 'usr_{id}', 'u{id}@shop.test', 'free', 'DE', {id}.25, '{{a,\"b c\"}}');"
            ),
            2 => format!(
                "update accounts set plan = 'pro', balance = balance + 1 where id = {};",
                id - 2
            ),
            3 => format!(
                "update accounts set email = null, country = 'FR' where id = {};",
                id - 2
            ),
            _ => format!("delete from accounts where id = {};", id - 3),
        };
        writeln!(stdin, "{sql}").unwrap();
        statements += 1;
        if statements % 10 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(stdin);
    assert!(psql.wait().unwrap().success());
    statements
}

/// The `row` column of a query's answer, read as JSON so no CSV quoting
/// gets in the way.
fn silver_rows(data: &Path) -> Vec<String> {
    let out = run(&["sql", SILVER_ROWS, "--format", "json"], data);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    rows.iter()
        .filter_map(|r| r["row"].as_str().map(str::to_string))
        .collect()
}

fn wait_until_silver_matches(data: &Path, db: &str) -> (Vec<String>, Vec<String>) {
    let expected: Vec<String> = psql(db, SOURCE_ROWS).lines().map(str::to_string).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let actual = silver_rows(data);
        if actual == expected || Instant::now() > deadline {
            return (expected, actual);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn silver_equals_the_source_through_kill_minus_nine_and_every_change_lands_once() {
    let db = Database::create("kill");
    psql(
        &db.name,
        "create table accounts (id bigint primary key, user_id text not null, email text, \
         plan text not null, country text, balance numeric(12,2) not null, tags text[]); \
         insert into accounts select g, 'usr_' || g, 'u' || g || '@shop.test', 'free', 'US', g, null \
         from generate_series(1, 300) g; \
         create publication strata for table accounts",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = db.config(dir.path(), "strata", "\"public.accounts\"");
    let data = dir.path().join("data");

    let mut changes = 0;
    let mut next_id = 1_000;
    let mut killed_before_ack = 0;
    for round in 0..3 {
        let server = Server::start(&data, &config);
        if round == 0 {
            // The slot exists once the snapshot is in bronze: changes made
            // before it would be part of the snapshot, not changes.
            assert!(server.wait_for("bronze_commit", Duration::from_secs(60)));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (db_name, from, writer_stop) = (db.name.clone(), next_id, stop.clone());
        let writer = std::thread::spawn(move || change_rows(&db_name, from, &writer_stop));
        next_id += 100_000;
        // Past the snapshot (round 0) and at least one batch of changes,
        // then right after a bronze commit: before the slot hears of it.
        assert!(server.wait_for("bronze_commit", Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(150 + 100 * round));
        assert!(server.wait_for("bronze_commit", Duration::from_secs(30)));
        // The line comes as the commit starts: 20 ms later is mid-commit,
        // 300-500 ms after it is done and the once-a-second ack most
        // likely not yet sent.
        std::thread::sleep(Duration::from_millis([300, 500, 20][round as usize]));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        changes += writer.join().unwrap();
        if let (Some(acked), Some(bronze)) = (db.confirmed_lsn(), bronze_lsn(&data))
            && acked < bronze
        {
            killed_before_ack += 1;
        }
    }
    assert!(
        killed_before_ack > 0,
        "no kill landed between a bronze commit and the slot's acknowledgement"
    );

    let server = Server::start(&data, &config);
    let (expected, actual) = wait_until_silver_matches(&data, &db.name);
    let missing: Vec<_> = expected
        .iter()
        .filter(|r| !actual.contains(r))
        .take(10)
        .collect();
    let extra: Vec<_> = actual
        .iter()
        .filter(|r| !expected.contains(r))
        .take(10)
        .collect();
    assert!(
        actual == expected,
        "silver.accounts differs from the source ({} rows, source {}): missing {missing:?}, extra {extra:?}",
        actual.len(),
        expected.len()
    );
    assert!(server.terminate().success());

    // Every change exactly once: the snapshot's 300 rows and one row per
    // statement, no (lsn, seq) twice.
    let counts = sql_rows(
        &data,
        "select count(*) filter (where op = 'snapshot'), count(*) filter (where op <> 'snapshot'), \
         count(distinct concat(lsn, '/', seq)) from bronze.cdc_changes",
    );
    assert_eq!(
        counts,
        [format!("300,{changes},{}", 300 + changes)],
        "bronze.cdc_changes lost or doubled a change"
    );
}

#[test]
fn a_bad_setup_stops_serve_with_one_sentence() {
    let db = Database::create("bad");
    psql(
        &db.name,
        "create table accounts (id bigint primary key, plan text); \
         create table visits (at timestamptz, page text); \
         create publication strata for table accounts, visits",
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (publication, tables, expected) in [
        ("nope", "\"public.accounts\"", "nope"),
        ("strata", "\"public.visits\"", "public.visits"),
    ] {
        let config = db.config(dir.path(), publication, tables);
        let out = strata()
            .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .env("STRATA_WRITE_KEY", KEY)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let last = stderr.trim_end().lines().last().unwrap_or_default();
        assert!(last.contains(expected), "{stderr}");
    }
}
