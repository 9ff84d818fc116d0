//! The bronze dedup index is saved between runs and extended with only the
//! new rows. Landing traffic in steps, with a dirty run after each, must
//! give the same silver and gold rows as landing it all and backfilling,
//! including when a late copy displaces an indexed winner and when the
//! saved index is lost or out of step with the batch state.

use strata_core::event::{BronzeEvent, EventType};

use crate::harness::{Env, fixture_range};
use crate::idempotency::{generated, snapshot};

const SECOND: i64 = 1_000_000;

fn next_offset(events: &[(u32, u64, BronzeEvent)], partition: u32) -> u64 {
    events
        .iter()
        .filter(|(p, _, _)| *p == partition)
        .map(|(_, o, _)| o + 1)
        .max()
        .unwrap_or(0)
}

fn assert_same_tables(a: &Env, b: &Env, what: &str) -> impl std::future::Future<Output = ()> {
    let what = what.to_owned();
    async move {
        let (left, right) = (snapshot(a).await, snapshot(b).await);
        for (table, rows) in &right {
            assert_eq!(
                left[table].len(),
                rows.len(),
                "{what}: {table} row count differs"
            );
            assert!(left[table] == *rows, "{what}: {table} rows differ");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_in_steps_gives_the_rows_of_one_backfill() {
    let mut all = generated(80, 6, 11);
    let cut = all.len() * 7 / 10;
    let later = all.split_off(cut);
    let first = all;

    // A copy of an early identify, received a second before the original
    // and naming another user: it wins the event id and so the link.
    let identify = first
        .iter()
        .map(|(_, _, e)| e)
        .find(|e| {
            e.event_type == EventType::Identify && e.anonymous_id.is_some() && e.user_id.is_some()
        })
        .expect("an identify with both ids")
        .clone();
    let mut displacing = identify.clone();
    displacing.user_id = Some("late-winner".into());
    displacing.received_at = identify.received_at - SECOND;
    // A plain duplicate of an early event, received days later: it loses.
    let mut duplicate = first[first.len() / 2].2.clone();
    duplicate.received_at += 3 * 86_400 * SECOND;

    let mut second = later;
    let everything_so_far: Vec<_> = first.iter().chain(&second).cloned().collect();
    second.push((0, next_offset(&everything_so_far, 0), displacing));
    second.push((0, next_offset(&everything_so_far, 0) + 1, duplicate));

    let stepped = Env::new(strata_core::config::Config::default());
    let (from, to) = fixture_range(&first);
    stepped.land(first.clone()).await;
    let initial = stepped.backfill(from, to).await;
    assert_eq!(initial.bronze_rows_read, first.len());
    let saved_index = tempfile::tempdir().unwrap();
    copy_dir(&index_dir(&stepped), saved_index.path());

    stepped.land(second.clone()).await;
    let step = stepped.run_dirty().await;
    assert_eq!(
        step.bronze_rows_read,
        second.len(),
        "only the new rows are read"
    );
    assert_eq!(step.still_dirty, 0, "{step:?}");

    let whole = Env::new(strata_core::config::Config::default());
    let together: Vec<_> = first.iter().chain(&second).cloned().collect();
    whole.land(together.clone()).await;
    let (from, to) = fixture_range(&together);
    whole.backfill(from, to).await;
    assert_same_tables(&stepped, &whole, "after the second step").await;
    let links = whole
        .rows(
            strata_batch::Model::Identity.table(),
            &["anonymous_id", "user_id"],
        )
        .await;
    assert!(
        links
            .iter()
            .any(|r| r[1] == crate::harness::Cell::Text("late-winner".into())),
        "the displacing copy's link wins"
    );

    // As if the run had stopped after saving the batch state but before
    // saving the index: the old index no longer matches and is rebuilt.
    std::fs::remove_dir_all(index_dir(&stepped)).unwrap();
    copy_dir(saved_index.path(), &index_dir(&stepped));
    let mut late = track_like(&first[0].2, "late-person", "late-event-1");
    late.received_at = together
        .iter()
        .map(|(_, _, e)| e.received_at)
        .max()
        .unwrap();
    let third = vec![(1, next_offset(&together, 1), late)];
    stepped.land(third.clone()).await;
    whole.land(third.clone()).await;
    let rebuilt = stepped.run_dirty().await;
    assert_eq!(
        rebuilt.bronze_rows_read,
        together.len() + 1,
        "rebuilt from all of bronze"
    );
    let extended = whole.run_dirty().await;
    assert_eq!(extended.bronze_rows_read, 1);
    assert_same_tables(&stepped, &whole, "after an index out of step").await;

    // A missing index is rebuilt too, and with nothing new nothing is dirty.
    std::fs::remove_dir_all(index_dir(&stepped)).unwrap();
    let idle = stepped.run_dirty().await;
    assert_eq!(idle.bronze_rows_read, together.len() + 1);
    assert_eq!(idle.partitions(), 0, "{idle:?}");
    let idle = stepped.run_dirty().await;
    assert_eq!(idle.bronze_rows_read, 0);
}

fn index_dir(env: &Env) -> std::path::PathBuf {
    strata_batch::state_dir(env.dir.path()).join("index")
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn track_like(template: &BronzeEvent, person: &str, id: &str) -> BronzeEvent {
    BronzeEvent {
        event_id: id.into(),
        event_type: EventType::Track,
        event_name: "Product Viewed".into(),
        user_id: Some(person.into()),
        anonymous_id: None,
        ..template.clone()
    }
}
