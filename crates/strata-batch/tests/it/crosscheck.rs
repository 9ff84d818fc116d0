//! The shop app's generated traffic (duplicates, late and anonymous events,
//! identifies) through the batch path, checked against a second, textbook
//! implementation of SPEC §4 in plain SQL: window functions, range joins and
//! distinct counts instead of the models' sorted passes.

use chrono::NaiveDate;
use strata_batch::dates::day_of;
use strata_lake::query::{OutputFormat, SqlEngine, format_batches};

use crate::harness::Env;
use crate::idempotency::generated;

async fn csv(engine: &SqlEngine, sql: &str) -> String {
    let batches = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    format_batches(&batches, OutputFormat::Csv).expect("csv")
}

fn assert_same(what: &str, reference: &str, built: &str) {
    if reference != built {
        let r: Vec<&str> = reference.lines().collect();
        let b: Vec<&str> = built.lines().collect();
        let first = r
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(r.len().min(b.len()));
        panic!(
            "{what}: {} reference rows, {} built rows; first difference at row {first}:\n  reference: {:?}\n  built:     {:?}",
            r.len(),
            b.len(),
            r.get(first),
            b.get(first)
        );
    }
    assert!(reference.lines().count() > 2, "{what}: nothing compared");
}

const ACTIVE: &str = "active AS (SELECT DISTINCT person_id, event_date FROM silver.events \
     WHERE event_type IN ('track', 'page', 'screen')), \
     firsts AS (SELECT person_id, min(event_date) AS first_date FROM active GROUP BY person_id)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_traffic_matches_a_plain_sql_reference() {
    let env = Env::new(strata_core::config::Config::default());
    env.land(generated(300, 12, 11)).await;
    let day = |d| day_of(NaiveDate::from_ymd_opt(2026, 3, d).unwrap());
    env.backfill(day(1), day(12)).await;
    let engine = SqlEngine::open(&env.lake()).await.expect("sql");

    // Dedup (first-received copy, ties by log position) and person resolution.
    let reference = csv(
        &engine,
        "WITH copies AS (SELECT *, row_number() OVER (PARTITION BY event_id \
           ORDER BY received_at, log_partition, log_offset) AS copy FROM bronze.events), \
         firsts AS (SELECT * FROM copies WHERE copy = 1), \
         links AS (SELECT anonymous_id, user_id, row_number() OVER (PARTITION BY anonymous_id \
           ORDER BY event_ts, event_id) AS n FROM firsts \
           WHERE user_id IS NOT NULL AND anonymous_id IS NOT NULL), \
         persons AS (SELECT f.*, coalesce(f.user_id, l.user_id) AS u FROM firsts f \
           LEFT JOIN links l ON l.n = 1 AND f.user_id IS NULL AND l.anonymous_id = f.anonymous_id) \
         SELECT event_id, CASE WHEN u LIKE 'anon:%' OR u LIKE 'user:%' THEN 'user:' || u \
           ELSE coalesce(u, 'anon:' || anonymous_id) END AS person_id, \
           received_at, log_partition, log_offset \
         FROM persons ORDER BY event_id",
    )
    .await;
    let built = csv(
        &engine,
        "SELECT event_id, person_id, received_at, log_partition, log_offset FROM silver.events ORDER BY event_id",
    )
    .await;
    assert_same("silver.events persons", &reference, &built);

    let reference = csv(
        &engine,
        &format!(
            "WITH {ACTIVE}, dates AS (SELECT DISTINCT event_date AS d FROM silver.events), \
             news AS (SELECT first_date, count(*) AS n FROM firsts GROUP BY first_date) \
             SELECT dates.d AS date, \
               count(DISTINCT CASE WHEN a.event_date = dates.d THEN a.person_id END) AS dau, \
               count(DISTINCT CASE WHEN a.event_date > dates.d - INTERVAL '7 days' THEN a.person_id END) AS wau, \
               count(DISTINCT a.person_id) AS mau, \
               coalesce(max(news.n), 0) AS new_users \
             FROM dates \
             LEFT JOIN active a ON a.event_date <= dates.d AND a.event_date > dates.d - INTERVAL '28 days' \
             LEFT JOIN news ON news.first_date = dates.d \
             GROUP BY dates.d ORDER BY dates.d"
        ),
    )
    .await;
    let built = csv(
        &engine,
        "SELECT date, dau, wau, mau, new_users FROM gold.daily_active_users ORDER BY date",
    )
    .await;
    assert_same("gold.daily_active_users", &reference, &built);

    let reference = csv(
        &engine,
        &format!(
            "WITH {ACTIVE}, sizes AS (SELECT first_date, count(*) AS size FROM firsts GROUP BY first_date) \
             SELECT f.first_date AS cohort_date, \
               arrow_cast(a.event_date, 'Int32') - arrow_cast(f.first_date, 'Int32') AS day_offset, \
               max(s.size) AS cohort_size, count(DISTINCT a.person_id) AS retained_users \
             FROM firsts f JOIN active a ON a.person_id = f.person_id \
             JOIN sizes s ON s.first_date = f.first_date \
             WHERE a.event_date <= f.first_date + INTERVAL '28 days' \
             GROUP BY 1, 2 ORDER BY 1, 2"
        ),
    )
    .await;
    let built = csv(
        &engine,
        "SELECT cohort_date, day_offset, cohort_size, retained_users FROM gold.retention \
         WHERE retained_users > 0 ORDER BY 1, 2",
    )
    .await;
    assert_same("gold.retention (non-zero cells)", &reference, &built);
    // And a row, zero or not, for every offset up to the last silver date.
    let reference = csv(
        &engine,
        &format!(
            "WITH {ACTIVE}, last AS (SELECT arrow_cast(max(event_date), 'Int32') AS l FROM silver.events) \
             SELECT first_date AS cohort_date, least(28, l - arrow_cast(first_date, 'Int32')) + 1 AS offsets \
             FROM (SELECT DISTINCT first_date FROM firsts) CROSS JOIN last ORDER BY 1"
        ),
    )
    .await;
    let built = csv(
        &engine,
        "SELECT cohort_date, count(*) AS offsets FROM gold.retention GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_same("gold.retention (grid)", &reference, &built);

    let reference = csv(
        &engine,
        "SELECT date_trunc('hour', event_ts) AS hour, event_name, count(*) AS events, \
           count(DISTINCT person_id) AS users FROM silver.events GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await;
    let built = csv(
        &engine,
        "SELECT hour, event_name, events, users FROM gold.hourly_events ORDER BY 1, 2",
    )
    .await;
    assert_same("gold.hourly_events", &reference, &built);

    let reference = csv(
        &engine,
        "WITH e AS (SELECT person_id, event_ts, event_id, \
           arrow_cast(event_ts, 'Int64') - lag(arrow_cast(event_ts, 'Int64')) OVER \
             (PARTITION BY person_id ORDER BY event_ts, event_id) AS gap FROM silver.events), \
         s AS (SELECT *, sum(CASE WHEN gap IS NULL OR gap > 1800000000 THEN 1 ELSE 0 END) OVER \
           (PARTITION BY person_id ORDER BY event_ts, event_id ROWS UNBOUNDED PRECEDING) AS n FROM e) \
         SELECT person_id, min(event_ts) AS session_start, max(event_ts) AS session_end, \
           count(*) AS event_count FROM s GROUP BY person_id, n ORDER BY 1, 2",
    )
    .await;
    let built = csv(
        &engine,
        "SELECT person_id, session_start, session_end, event_count FROM gold.fct_sessions ORDER BY 1, 2",
    )
    .await;
    assert_same("gold.fct_sessions", &reference, &built);
    let built = csv(
        &engine,
        "SELECT count(*) AS n, count(DISTINCT session_id) AS ids FROM gold.fct_sessions",
    )
    .await;
    let mut counts = built.lines().nth(1).expect("row").split(',');
    assert_eq!(counts.next(), counts.next(), "session ids are not unique");
}
