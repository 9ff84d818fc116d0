//! CDC fixtures: change and table-definition records as a PostgreSQL CDC
//! source writes them, landed in `bronze.cdc_changes` / `bronze.cdc_schemas`
//! by the loader's own row conversion, and silver rows read back as text.

use std::sync::atomic::{AtomicU64, Ordering};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::protocol::SaveMode;
use serde_json::{Value, json};
use strata_batch::plan::Outcome;
use strata_batch::{LakeIo, Model};
use strata_core::config::Config;
use strata_core::event::{ChangeOp, ChangeRecord, LogRecord, RelationColumn, RelationRecord};
use strata_lake::bronze::{Decoded, Rows, Table};
use strata_lake::{Lake, SqlEngine};

pub const SOURCE: &str = "db";
/// 2026-03-01T12:00:00Z
pub const T0: i64 = 1_772_366_400_000_000;

/// `T0` plus whole minutes.
pub fn at(minutes: i64) -> i64 {
    T0 + minutes * 60_000_000
}

/// A configuration capturing `public.accounts` from source `db`, with
/// `[cdc] users_table` when `users` is set.
pub fn config(users: bool) -> Config {
    let mut text = String::from(
        "[[sources]]\nname = \"db\"\nkind = \"postgres_cdc\"\ntables = [\"public.accounts\"]\n",
    );
    if users {
        text.push_str("\n[cdc]\nusers_table = \"accounts\"\n");
    }
    let config = Config::from_toml(&text).expect("config");
    strata_batch::configure(&config).expect("cdc tables");
    config
}

/// `public.accounts` as the tests capture it.
pub const ACCOUNTS: [(&str, &str, i32, bool); 3] = [
    ("id", "int8", -1, true),
    ("email", "text", -1, false),
    ("plan", "text", -1, false),
];

pub const CURRENT: &str =
    "select id, email, plan, _lsn, _updated_at from silver.accounts order by id";
pub const VERSIONS: &str = "select id, email, plan, valid_from, valid_to, is_current, \
                            is_deleted from silver.accounts_history order by id, valid_from";

pub fn state() -> Model {
    Model::parse("silver.accounts").expect("registered")
}

pub fn history() -> Model {
    Model::parse("silver.accounts_history").expect("registered")
}

/// `(name, type_name, type_modifier, key)`.
pub fn relation(lsn: u64, columns: &[(&str, &str, i32, bool)]) -> Decoded {
    Decoded::Relation(RelationRecord {
        source: SOURCE.into(),
        table_schema: "public".into(),
        table_name: "accounts".into(),
        lsn,
        columns: columns
            .iter()
            .map(|(name, type_name, type_modifier, key)| RelationColumn {
                name: (*name).into(),
                type_name: (*type_name).into(),
                type_modifier: *type_modifier,
                key: *key,
            })
            .collect(),
        received_at: T0,
    })
}

pub fn change(
    op: ChangeOp,
    lsn: u64,
    seq: u64,
    commit_ts: i64,
    key: Value,
    before: Option<Value>,
    after: Option<Value>,
) -> Decoded {
    Decoded::Change(ChangeRecord {
        source: SOURCE.into(),
        table_schema: "public".into(),
        table_name: "accounts".into(),
        op,
        lsn,
        commit_ts,
        tx_id: (op != ChangeOp::Snapshot).then_some(700 + lsn as u32),
        seq,
        key: key.to_string(),
        before: before.map(|v| v.to_string()),
        after: after.map(|v| v.to_string()),
        received_at: commit_ts + 1_000_000,
        tx_end: false,
    })
}

/// A snapshot, insert or update row of `accounts` keyed by `id`.
pub fn row(op: ChangeOp, lsn: u64, seq: u64, minute: i64, after: Value) -> Decoded {
    let key = json!({ "id": after["id"].clone() });
    change(op, lsn, seq, at(minute), key, None, Some(after))
}

/// A whole row of `accounts` (the columns of [`ACCOUNTS`]).
pub fn account(
    op: ChangeOp,
    lsn: u64,
    seq: u64,
    minute: i64,
    id: i64,
    email: &str,
    plan: &str,
) -> Decoded {
    row(
        op,
        lsn,
        seq,
        minute,
        json!({"id": id, "email": email, "plan": plan}),
    )
}

pub fn delete(lsn: u64, seq: u64, minute: i64, id: i64) -> Decoded {
    change(
        ChangeOp::Delete,
        lsn,
        seq,
        at(minute),
        json!({ "id": id }),
        Some(json!({ "id": id })),
        None,
    )
}

static OFFSET: AtomicU64 = AtomicU64::new(0);

/// Appends the records to bronze in one commit per table, as the loader's
/// row conversion writes them.
pub async fn land(lake: &Lake, records: Vec<Decoded>) {
    let mut rows = Rows::default();
    for record in records {
        rows.push(0, OFFSET.fetch_add(1, Ordering::Relaxed), record);
    }
    for table in [Table::CdcSchemas, Table::CdcChanges] {
        if rows.count(table) == 0 {
            continue;
        }
        let batch = rows.batch(table).expect("batch");
        lake.open_or_create(table.def())
            .await
            .expect("bronze table")
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .await
            .expect("append");
    }
}

/// Lands the records through a log in `dir` and the real bronze loader,
/// which keeps each source's marks: so `tx_end` counts, as it does when a
/// source writes them.
pub async fn land_logged(dir: &std::path::Path, lake: &Lake, records: Vec<Decoded>) {
    use strata_log::Log;
    let log = strata_log::EmbeddedLog::open(
        dir.join("log"),
        strata_log::EmbeddedLogConfig {
            partitions: 1,
            consumers: vec!["bronze".into()],
            ..strata_log::EmbeddedLogConfig::default()
        },
    )
    .expect("log");
    let encoded = records
        .into_iter()
        .map(|record| {
            let record = match record {
                Decoded::Change(c) => LogRecord::Change(c),
                Decoded::Relation(r) => LogRecord::Relation(r),
                _ => panic!("only CDC records are landed here"),
            };
            bytes::Bytes::from(record.encode())
        })
        .collect();
    log.append(0, encoded).await.expect("append");
    strata_lake::bronze::BronzeLoader::open(lake, log, Default::default())
        .await
        .expect("loader")
        .catch_up()
        .await
        .expect("load");
}

/// `record` marked as the last change of its transaction.
pub fn ends(record: Decoded) -> Decoded {
    match record {
        Decoded::Change(mut c) => {
            c.tx_end = true;
            Decoded::Change(c)
        }
        other => other,
    }
}

pub async fn build(io: &LakeIo, model: Model) -> Outcome {
    strata_batch::cdc::build(io, model)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", model.name()))
}

/// The rows of a query, each as its values joined by `|` (null as `∅`).
pub async fn rows(lake: &Lake, sql: &str) -> Vec<String> {
    let engine = SqlEngine::open(lake).await.expect("engine");
    let batches = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    lines(&batches)
}

pub fn lines(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("∅");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for r in 0..batch.num_rows() {
            let cells: Vec<String> = formatters.iter().map(|f| f.value(r).to_string()).collect();
            out.push(cells.join("|"));
        }
    }
    out
}
