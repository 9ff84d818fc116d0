use std::net::SocketAddr;

use chrono::NaiveDate;
use deltalake::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use serde_json::Value;
use serde_json::json;
use strata_api::Api;
use strata_batch::LakeIo;
use strata_batch::dates::day_of;
use strata_batch::tables::GOLD_DAILY_ACTIVE_USERS;
use strata_core::Config;
use strata_lake::Lake;
use strata_lake::schema::{ColumnType, TableDef};
use strata_orchestrator::RunStore;

pub const TOKEN: &str = "test-admin-token";

pub struct Served {
    pub url: String,
    pub client: reqwest::Client,
    pub store: RunStore,
    _dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

impl Served {
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// A data dir whose lake `fill` writes into, served by the API (with the
/// admin token when `admin`).
pub async fn serve(admin: bool, fill: impl AsyncFnOnce(&Lake)) -> Served {
    serve_configured(admin, |_| {}, fill).await
}

/// As [`serve`], with the config changed by `configure` first.
pub async fn serve_configured(
    admin: bool,
    configure: impl FnOnce(&mut Config),
    fill: impl AsyncFnOnce(&Lake),
) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        admin_token: admin.then(|| TOKEN.to_owned()),
        ..Config::default()
    };
    configure(&mut config);
    let lake = Lake::new(config.lake_dir());
    fill(&lake).await;
    let store = RunStore::for_data_dir(dir.path(), None).await.unwrap();
    let api = Api::builder(config).with_store(store.clone()).build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, strata_api::router(api))
            .await
            .unwrap();
    });
    Served {
        url: format!("http://{addr}"),
        client: reqwest::Client::new(),
        store,
        _dir: dir,
        _server: server,
    }
}

pub fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

/// Writes rows (JSON values in the table's column order) into `def`: one
/// commit per date partition, or one for an unpartitioned table.
pub async fn write(lake: &Lake, def: &TableDef, rows: &[Vec<Value>]) {
    let io = LakeIo::new(lake.clone());
    match def.partition_by.first() {
        None => {
            io.replace_all(def, vec![batch(def, rows)]).await.unwrap();
        }
        Some(column) => {
            let at = def.columns.iter().position(|c| c.name == *column).unwrap();
            let mut dates: Vec<&str> = rows.iter().map(|r| r[at].as_str().unwrap()).collect();
            dates.sort();
            dates.dedup();
            for d in dates {
                let part: Vec<Vec<Value>> = rows
                    .iter()
                    .filter(|r| r[at].as_str() == Some(d))
                    .cloned()
                    .collect();
                io.replace_partition(def, day_of(date(d)), vec![batch(def, &part)])
                    .await
                    .unwrap();
            }
        }
    }
}

fn batch(def: &TableDef, rows: &[Vec<Value>]) -> RecordBatch {
    let columns: Vec<ArrayRef> = def
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let values = rows.iter().map(|r| &r[i]);
            let array: ArrayRef = match c.data_type {
                ColumnType::String => std::sync::Arc::new(
                    values
                        .map(|v| v.as_str().map(str::to_owned))
                        .collect::<StringArray>(),
                ),
                ColumnType::Boolean => {
                    std::sync::Arc::new(values.map(Value::as_bool).collect::<BooleanArray>())
                }
                ColumnType::Int => std::sync::Arc::new(
                    values
                        .map(|v| v.as_i64().map(|n| n as i32))
                        .collect::<Int32Array>(),
                ),
                ColumnType::Long => {
                    std::sync::Arc::new(values.map(Value::as_i64).collect::<Int64Array>())
                }
                ColumnType::Double => {
                    std::sync::Arc::new(values.map(Value::as_f64).collect::<Float64Array>())
                }
                ColumnType::Date => std::sync::Arc::new(
                    values
                        .map(|v| v.as_str().map(|d| day_of(date(d))))
                        .collect::<Date32Array>(),
                ),
                ColumnType::Timestamp => std::sync::Arc::new(
                    values
                        .map(|v| {
                            v.as_str().map(|t| {
                                chrono::DateTime::parse_from_rfc3339(t)
                                    .unwrap()
                                    .timestamp_micros()
                            })
                        })
                        .collect::<TimestampMicrosecondArray>()
                        .with_timezone("UTC"),
                ),
            };
            array
        })
        .collect();
    RecordBatch::try_new(def.arrow_schema(), columns).unwrap()
}

/// gold.daily_active_users for 2026-03-01 (3 active, all new) and
/// 2026-03-02 (2 active, 1 new, 4 over the week and month).
pub async fn two_days_of_dau(lake: &Lake) {
    write(
        lake,
        &GOLD_DAILY_ACTIVE_USERS,
        &[
            vec![json!("2026-03-01"), json!(3), json!(3), json!(3), json!(3)],
            vec![json!("2026-03-02"), json!(2), json!(4), json!(4), json!(1)],
        ],
    )
    .await;
}
