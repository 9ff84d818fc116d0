//! PostgreSQL CDC against a real PostgreSQL 15 (`scripts/cdc-postgres`, on
//! 127.0.0.1:5433), a real embedded log and the real bronze loader: every
//! test has a database of its own, and the expected rows are written out.

mod faults;
pub mod harness;

use harness::*;

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
