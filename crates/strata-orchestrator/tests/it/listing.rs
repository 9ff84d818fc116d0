//! The listing behind `strata status`, `GET /api/runs` and the pipeline
//! panel, on SQLite and on PostgreSQL: counts aggregated by the database,
//! each partition's newest run in the status order, and pages of it that
//! neither overlap nor skip.

use std::time::Duration;

use strata_orchestrator::run::NewRun;
use strata_orchestrator::store::{Counts, Listing, Successes, now_micros};
use strata_orchestrator::{RunKey, RunState, RunStore};

use crate::db::Db;
use crate::on_both_stores;

const DAU: &str = "gold.daily_active_users";
const RETENTION: &str = "gold.retention";

async fn queue(store: &RunStore, model: &str, partition: &str, at: i64) -> String {
    let run = NewRun {
        key: RunKey::new(model, partition),
        level: 1,
        reason: "test".into(),
        backfill_id: None,
        if_stale: false,
    };
    assert_eq!(store.enqueue(&[run], 3, at).await.unwrap(), 1);
    store
        .pending()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.key.model == model && r.key.partition == partition)
        .unwrap()
        .id
}

async fn take(store: &RunStore, id: &str, at: i64) {
    let taken = store
        .claim_many(&[id.to_owned()], "w1", at, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
}

/// DAU: 2026-03-01 to 03-09 built (03-01 finishing first), 03-10 queued,
/// and 03-05 run again and failed. Retention: 03-01 blocked.
async fn fill(store: &RunStore, t0: i64) {
    for day in 1..=9 {
        let id = queue(store, DAU, &format!("2026-03-{day:02}"), t0).await;
        take(store, &id, t0 + 1).await;
        let done = store
            .succeed(&[(id, Some(day))], "w1", t0 + 10 + day)
            .await
            .unwrap();
        assert_eq!(done, 1);
    }
    queue(store, DAU, "2026-03-10", t0 + 50).await;
    let again = queue(store, DAU, "2026-03-05", t0 + 100).await;
    take(store, &again, t0 + 101).await;
    assert!(
        store
            .fail(&again, "w1", "disk full", None, t0 + 200)
            .await
            .unwrap()
    );
    let blocked = queue(store, RETENTION, "2026-03-01", t0 + 300).await;
    assert!(
        store
            .block(&blocked, "input failed", t0 + 301)
            .await
            .unwrap()
    );
}

fn keys(listed: &[(strata_orchestrator::Run, Option<i64>)]) -> Vec<String> {
    listed
        .iter()
        .map(|(r, _)| format!("{} {} {}", r.key.model, r.key.partition, r.state.as_str()))
        .collect()
}

fn status_listing() -> Listing {
    Listing {
        successes: 7,
        ..Listing::default()
    }
}

async fn counts_and_pages_come_from_the_database(db: &Db) {
    let store = db.open().await;
    let t0 = now_micros();
    fill(&store, t0).await;

    let counts = store.latest_counts().await.unwrap();
    assert_eq!(
        counts.get(DAU),
        Some(&Counts {
            queued: 1,
            running: 0,
            succeeded: 8,
            failed: 1,
            blocked: 0
        })
    );
    assert_eq!(counts.get(RETENTION).map(Counts::total), Some(1));
    assert_eq!(counts.get(RETENTION).unwrap().blocked, 1);
    assert_eq!(counts.len(), 2);
    let successes = store.successes().await.unwrap();
    assert_eq!(
        successes.get(DAU),
        Some(&Successes {
            last_finished_at: Some(t0 + 19),
            newest_partition: Some("2026-03-09".into()),
        })
    );
    assert!(!successes.contains_key(RETENTION));

    // Not succeeded by partition, then the seven newest successes.
    let whole = store.listing(&status_listing()).await.unwrap();
    let expected = [
        "gold.daily_active_users 2026-03-05 failed",
        "gold.daily_active_users 2026-03-10 queued",
        "gold.daily_active_users 2026-03-09 succeeded",
        "gold.daily_active_users 2026-03-08 succeeded",
        "gold.daily_active_users 2026-03-07 succeeded",
        "gold.daily_active_users 2026-03-06 succeeded",
        "gold.daily_active_users 2026-03-04 succeeded",
        "gold.daily_active_users 2026-03-03 succeeded",
        "gold.daily_active_users 2026-03-02 succeeded",
        "gold.retention 2026-03-01 blocked",
    ];
    assert_eq!(keys(&whole), expected);
    // The failed partition had succeeded before; the queued one never did.
    assert_eq!(whole[0].1, Some(t0 + 15));
    assert_eq!(whole[1].1, None);
    assert_eq!(whole[2].1, Some(t0 + 19));

    let mut paged = Vec::new();
    for offset in [0, 4, 8, 12] {
        let page = store
            .listing(&Listing {
                offset,
                limit: Some(4),
                ..status_listing()
            })
            .await
            .unwrap();
        paged.extend(keys(&page));
    }
    assert_eq!(paged, expected);

    let problems = store
        .listing(&Listing {
            states: vec![RunState::Failed, RunState::Blocked],
            per_model: Some(1),
            ..Listing::default()
        })
        .await
        .unwrap();
    assert_eq!(
        keys(&problems),
        [
            "gold.daily_active_users 2026-03-05 failed",
            "gold.retention 2026-03-01 blocked"
        ]
    );
    let built = store
        .listing(&Listing {
            model: Some(DAU.into()),
            states: vec![RunState::Succeeded],
            ..status_listing()
        })
        .await
        .unwrap();
    assert_eq!(keys(&built), expected[2..9]);
    store.close().await;
}

on_both_stores!(counts_and_pages_come_from_the_database);
