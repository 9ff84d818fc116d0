//! The run store's schema version: a store migrated by a later Strata (a
//! migration this binary does not have) is refused with one sentence, on
//! SQLite and on PostgreSQL, and the store is left as it was.

use sqlx::{AnyConnection, Connection};

use crate::db::Db;
use crate::on_both_stores;

async fn a_store_with_a_newer_schema_is_refused(db: &Db) {
    db.open().await.close().await;
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&db.url).await.expect("connect");
    let checksum = if db.url.starts_with("sqlite") {
        "X'00'"
    } else {
        "'\\x00'::bytea"
    };
    sqlx::query(&format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (42, 'from a later release', TRUE, {checksum}, 0)"
    ))
    .execute(&mut conn)
    .await
    .expect("record a later migration");

    let err = strata_orchestrator::RunStore::open(&db.url)
        .await
        .err()
        .expect("a newer run store must not be used");
    let text = err.to_string();
    assert!(
        text.starts_with("the run store at ")
            && text.contains("has format version 42, newer than version 1")
            && text.contains("written by a later Strata release"),
        "{text}"
    );
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(count, 2, "nothing applied or removed");
    conn.close().await.ok();
}

on_both_stores!(a_store_with_a_newer_schema_is_refused);
