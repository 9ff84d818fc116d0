//! File feeds (SPEC §7): CSV, NDJSON, Parquet and Avro files dropped in a
//! directory land once each in `bronze.feed_<table>`, bad rows in the
//! quarantine, exactly once across crashes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use strata_core::config::{LoaderConfig, SourceConfig};
use strata_lake::Lake;
use strata_lake::bronze::BronzeLoader;
use strata_log::{EmbeddedLog, EmbeddedLogConfig};
use strata_sources::{Producer, Source, SourceContext};

use crate::harness::Running;
use crate::postgres_cdc::harness::query;

const SOURCE: &str = "partners";

struct Feed {
    dir: tempfile::TempDir,
    log: Arc<EmbeddedLog>,
    lake: Lake,
    options: toml::Table,
}

impl Feed {
    fn new(format: &str, table: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(
            dir.path().join("log"),
            EmbeddedLogConfig {
                partitions: 3,
                ..EmbeddedLogConfig::default()
            },
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("drops")).unwrap();
        let mut options = toml::Table::new();
        let drops = dir.path().join("drops").display().to_string();
        options.insert("path".into(), drops.into());
        options.insert("format".into(), format.into());
        options.insert("table".into(), table.into());
        let lake = Lake::new(dir.path().join("lake"));
        Self {
            dir,
            log,
            lake,
            options,
        }
    }

    fn drops(&self) -> PathBuf {
        self.dir.path().join("drops")
    }

    fn source(&self) -> Box<dyn Source> {
        let config = SourceConfig {
            name: SOURCE.into(),
            kind: "file".into(),
            options: self.options.clone(),
        };
        let context = SourceContext {
            producer: Producer::new(self.log.clone()),
            lake: self.lake.clone(),
            state_dir: self.dir.path().join("sources").join(SOURCE),
            limits: Default::default(),
        };
        (strata_sources::file_feed::KIND.build.unwrap())(&config, &context).unwrap()
    }

    async fn start(&self) -> Running {
        Running::run(self.source()).await
    }

    /// Loads the log into bronze until `sql` answers `n` (one count).
    async fn wait_for(&self, sql: &str, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut loader = BronzeLoader::open(&self.lake, self.log.clone(), LoaderConfig::default())
            .await
            .unwrap();
        loop {
            loader.catch_up().await.unwrap();
            let rows = query(&self.lake, sql).await;
            let got = rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0);
            if got == n {
                return;
            }
            assert!(Instant::now() < deadline, "{sql}: {got}, expected {n}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn rows(&self, sql: &str) -> Vec<Vec<Value>> {
        query(&self.lake, sql).await
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Written whole under a temporary name, then renamed into place.
fn drop_file(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

#[tokio::test]
async fn a_csv_with_quotes_newlines_a_bom_and_a_bad_row_lands_all_but_the_bad_row() {
    let feed = Feed::new("csv", "ad_spend");
    let csv = "\u{feff}date,campaign,spend,clicks\n\
               2026-12-01,\"Spring, sale\",10.5,3\n\
               2026-12-01,\"two\nlines\",7,1\n\
               2026-12-02,only two\n\
               2026-12-02,\"say \"\"hi\"\"\",0.25,\n";
    drop_file(&feed.drops(), "spend.csv", csv.as_bytes());
    let running = feed.start().await;
    feed.wait_for("select count(*) from bronze.feed_ad_spend", 3)
        .await;
    feed.wait_for("select count(*) from bronze.quarantine", 1)
        .await;
    running.stop().await;

    let rows = feed
        .rows(
            "select date::varchar, campaign, spend, clicks, _file, _row, _file_sha256 \
             from bronze.feed_ad_spend order by _row",
        )
        .await;
    let sha = sha256(csv.as_bytes());
    assert_eq!(
        rows,
        vec![
            vec![
                json!("2026-12-01"),
                json!("Spring, sale"),
                json!(10.5),
                json!(3),
                json!("spend.csv"),
                json!(1),
                json!(sha)
            ],
            vec![
                json!("2026-12-01"),
                json!("two\nlines"),
                json!(7.0),
                json!(1),
                json!("spend.csv"),
                json!(2),
                json!(sha)
            ],
            vec![
                json!("2026-12-02"),
                json!("say \"hi\""),
                json!(0.25),
                Value::Null,
                json!("spend.csv"),
                json!(4),
                json!(sha)
            ],
        ]
    );
    let bad = feed
        .rows("select source, reason, detail, raw from bronze.quarantine")
        .await;
    assert_eq!(
        bad,
        vec![vec![
            json!(SOURCE),
            json!("feed_bad_row"),
            json!("spend.csv:3: has 2 fields, the header has 4"),
            json!("2026-12-02,only two"),
        ]]
    );
}

#[tokio::test]
async fn a_declared_schema_types_the_rows_and_refuses_what_does_not_fit() {
    let mut feed = Feed::new("ndjson", "payments");
    let mut schema = toml::Table::new();
    schema.insert("id".into(), "long".into());
    schema.insert("amount".into(), "double".into());
    schema.insert("paid_at".into(), "timestamp".into());
    feed.options.insert("schema".into(), schema.into());
    let lines = "{\"id\": 1, \"amount\": 9.99, \"paid_at\": \"2026-12-01T10:00:00Z\", \"note\": \"x\"}\n\
                 \n\
                 {\"id\": \"two\", \"amount\": 1}\n\
                 not json\n\
                 {\"id\": 3, \"amount\": \"4.5\", \"paid_at\": \"2026-12-01 11:30:00\"}\n";
    drop_file(&feed.drops(), "payments.ndjson", lines.as_bytes());
    let running = feed.start().await;
    feed.wait_for("select count(*) from bronze.feed_payments", 2)
        .await;
    feed.wait_for("select count(*) from bronze.quarantine", 2)
        .await;
    running.stop().await;
    let rows = feed
        .rows("select id, amount, paid_at::varchar, _row from bronze.feed_payments order by id")
        .await;
    assert_eq!(
        rows,
        vec![
            vec![
                json!(1),
                json!(9.99),
                json!("2026-12-01T10:00:00Z"),
                json!(1)
            ],
            vec![
                json!(3),
                json!(4.5),
                json!("2026-12-01T11:30:00Z"),
                json!(4)
            ],
        ]
    );
    let details: Vec<Value> = feed
        .rows("select detail from bronze.quarantine order by detail")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(details.len(), 2);
    assert!(
        details[0]
            .as_str()
            .unwrap()
            .starts_with("payments.ndjson:2: column \"id\": \"two\" is not a long"),
        "{details:?}"
    );
    assert!(
        details[1]
            .as_str()
            .unwrap()
            .starts_with("payments.ndjson:3: line is not JSON"),
        "{details:?}"
    );
}

#[tokio::test]
async fn the_same_content_lands_once_whatever_its_name() {
    let feed = Feed::new("csv", "clicks");
    let csv = b"campaign,clicks\nspring,10\nsummer,20\n";
    drop_file(&feed.drops(), "day1.csv", csv);
    let running = feed.start().await;
    feed.wait_for("select count(*) from bronze.feed_clicks", 2)
        .await;
    // Dropped again under its name, and as a renamed copy.
    std::fs::remove_file(feed.drops().join("day1.csv")).unwrap();
    drop_file(&feed.drops(), "day1.csv", csv);
    drop_file(&feed.drops(), "day1-copy.csv", csv);
    // A changed file under the same name is new.
    drop_file(&feed.drops(), "day2.csv", b"campaign,clicks\nautumn,30\n");
    feed.wait_for("select count(*) from bronze.feed_clicks", 3)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.stop().await;
    feed.wait_for("select count(*) from bronze.feed_clicks", 3)
        .await;
    let files = feed
        .rows("select _file, count(*) from bronze.feed_clicks group by _file order by _file")
        .await;
    assert_eq!(
        files,
        vec![
            vec![json!("day1.csv"), json!(2)],
            vec![json!("day2.csv"), json!(1)]
        ]
    );
    // A file still being written (its .tmp name) is never read.
    std::fs::write(
        feed.drops().join("day3.csv.tmp"),
        b"campaign,clicks\nwinter,",
    )
    .unwrap();
    let running = feed.start().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.stop().await;
    feed.wait_for("select count(*) from bronze.feed_clicks", 3)
        .await;
}

fn parquet_file(columns: Vec<(&str, deltalake::arrow::array::ArrayRef)>) -> Vec<u8> {
    use deltalake::arrow::record_batch::RecordBatch;
    use deltalake::parquet::arrow::ArrowWriter;
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

#[tokio::test]
async fn a_parquet_file_with_an_extra_column_adds_it() {
    use deltalake::arrow::array::{Float64Array, Int64Array, StringArray};
    let feed = Feed::new("parquet", "orders");
    let first = parquet_file(vec![
        ("order_id", Arc::new(Int64Array::from(vec![1, 2])) as _),
        ("partner", Arc::new(StringArray::from(vec!["a", "b"])) as _),
    ]);
    drop_file(&feed.drops(), "orders-1.parquet", &first);
    let running = feed.start().await;
    feed.wait_for("select count(*) from bronze.feed_orders", 2)
        .await;
    let second = parquet_file(vec![
        ("order_id", Arc::new(Int64Array::from(vec![3])) as _),
        ("partner", Arc::new(StringArray::from(vec!["c"])) as _),
        ("fee", Arc::new(Float64Array::from(vec![1.25])) as _),
    ]);
    drop_file(&feed.drops(), "orders-2.parquet", &second);
    feed.wait_for("select count(*) from bronze.feed_orders", 3)
        .await;
    running.stop().await;
    let rows = feed
        .rows("select order_id, partner, fee, _file from bronze.feed_orders order by order_id")
        .await;
    assert_eq!(
        rows,
        vec![
            vec![json!(1), json!("a"), Value::Null, json!("orders-1.parquet")],
            vec![json!(2), json!("b"), Value::Null, json!("orders-1.parquet")],
            vec![json!(3), json!("c"), json!(1.25), json!("orders-2.parquet")],
        ]
    );
}

#[tokio::test]
async fn an_avro_file_lands_with_its_types() {
    use apache_avro::types::Value as Avro;
    let feed = Feed::new("avro", "installs");
    let schema = apache_avro::Schema::parse_str(
        r#"{"type": "record", "name": "Install", "fields": [
            {"name": "network", "type": "string"},
            {"name": "installs", "type": "long"},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "cost", "type": ["null", "double"]}
        ]}"#,
    )
    .unwrap();
    let mut writer = apache_avro::Writer::new(&schema, Vec::new());
    for (network, installs, day, cost) in
        [("ads", 12, 20_423, Some(3.5)), ("social", 7, 20_424, None)]
    {
        writer
            .append(Avro::Record(vec![
                ("network".into(), Avro::String(network.into())),
                ("installs".into(), Avro::Long(installs)),
                ("day".into(), Avro::Date(day)),
                (
                    "cost".into(),
                    match cost {
                        Some(c) => Avro::Union(1, Box::new(Avro::Double(c))),
                        None => Avro::Union(0, Box::new(Avro::Null)),
                    },
                ),
            ]))
            .unwrap();
    }
    drop_file(
        &feed.drops(),
        "installs.avro",
        &writer.into_inner().unwrap(),
    );
    let running = feed.start().await;
    feed.wait_for("select count(*) from bronze.feed_installs", 2)
        .await;
    running.stop().await;
    let rows = feed
        .rows("select network, installs, day::varchar, cost, _row from bronze.feed_installs order by _row")
        .await;
    // Day 20,423 after 1970-01-01 is 2025-12-01.
    assert_eq!(
        rows,
        vec![
            vec![
                json!("ads"),
                json!(12),
                json!("2025-12-01"),
                json!(3.5),
                json!(1)
            ],
            vec![
                json!("social"),
                json!(7),
                json!("2025-12-02"),
                Value::Null,
                json!(2)
            ],
        ]
    );
}

#[tokio::test]
async fn killed_mid_file_every_row_lands_exactly_once() {
    let feed = Feed::new("csv", "events");
    let rows = 60_000;
    let mut csv = String::from("id,name,value\n");
    for i in 1..=rows {
        csv.push_str(&format!("{i},row {i},{}\n", i * 3));
    }
    drop_file(&feed.drops(), "big.csv", csv.as_bytes());
    for round in 0..8u64 {
        let running = feed.start().await;
        tokio::time::sleep(Duration::from_millis(1_100 + round * 90)).await;
        running.task.abort();
        let _ = running.task.await;
        // An append handed to the log before the abort still completes (a
        // crash would have settled it either way before a restart).
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let running = feed.start().await;
    feed.wait_for("select count(*) from bronze.feed_events", rows)
        .await;
    running.stop().await;
    let check = feed
        .rows("select count(distinct id), count(distinct _row), min(id), max(id), sum(value) from bronze.feed_events")
        .await;
    let sum: i64 = (1..=rows).map(|i| i * 3).sum();
    assert_eq!(
        check,
        vec![vec![
            json!(rows),
            json!(rows),
            json!(1),
            json!(rows),
            json!(sum)
        ]]
    );
}
