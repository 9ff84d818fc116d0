//! A fresh run store per test: a SQLite file in a temporary directory, or a
//! PostgreSQL database of its own, dropped when the test ends.

use sqlx::{AnyConnection, Connection};
use strata_orchestrator::RunStore;

pub struct Db {
    pub url: String,
    postgres: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

fn admin_url() -> String {
    std::env::var("STRATA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl Db {
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("runs.db").display());
        Db {
            url,
            postgres: None,
            _dir: Some(dir),
        }
    }

    /// A new database on the real server. Fails (does not skip) when the
    /// server is not there: CI starts it.
    pub async fn postgres() -> Db {
        sqlx::any::install_default_drivers();
        let admin = admin_url();
        let name = format!("strata_it_{}", uuid::Uuid::now_v7().simple());
        let mut conn = AnyConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        conn.close().await.ok();
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Db {
            url: format!("{base}/{name}"),
            postgres: Some(name),
            _dir: None,
        }
    }

    pub async fn open(&self) -> RunStore {
        RunStore::open(&self.url).await.expect("open run store")
    }

    pub async fn drop_database(self) {
        if let Some(name) = self.postgres {
            let mut conn = AnyConnection::connect(&admin_url()).await.expect("connect");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .expect("drop database");
        }
    }
}

/// One test per backend for a scenario `async fn(Db)`.
#[macro_export]
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::db::Db::sqlite().await;
                super::$scenario(&db).await;
                db.drop_database().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = $crate::db::Db::postgres().await;
                super::$scenario(&db).await;
                db.drop_database().await;
            }
        }
    )*};
}
