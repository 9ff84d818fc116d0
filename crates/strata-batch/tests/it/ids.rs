//! Hostile ids (issue 23): event ids that are not lower-case UUIDs are
//! keyed in the bronze index by 128 bits like the rest, and user ids that
//! look like the person ids of anonymous visitors do not merge with them.

use std::path::{Path, PathBuf};

use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::ipc::reader::FileReader;
use strata_batch::Model;
use strata_core::event::{BronzeEvent, EventType};

use crate::harness::{Cell, Env, fixture_range, track};

const SECOND: i64 = 1_000_000;
/// 2026-03-02T10:00:00Z
const T: i64 = 1_772_445_600 * SECOND;

const UPPER: &str = "E621E1F8-C36C-495A-93FC-0C247A3E6E5F";
const LOWER: &str = "e621e1f8-c36c-495a-93fc-0c247a3e6e5f";
const AJS: &str = "ajs-next-1772445600000-3b1f0c2e5d7e4a8f";
const PLAIN: &str = "msg-1";

fn index_dir(env: &Env) -> PathBuf {
    strata_batch::state_dir(env.dir.path()).join("index")
}

/// The index's Arrow files by name, with their row count and whether any
/// column holds text.
fn index_files(dir: &Path) -> Vec<(String, usize, bool)> {
    let mut files: Vec<(String, usize, bool)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "arrow"))
        .map(|path| {
            let reader = FileReader::try_new(std::fs::File::open(&path).unwrap(), None).unwrap();
            let text = reader
                .schema()
                .fields()
                .iter()
                .any(|f| f.data_type() == &DataType::Utf8);
            let rows = reader.map(|b| b.unwrap().num_rows()).sum();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, rows, text)
        })
        .collect();
    files.sort();
    files
}

fn meta_version(dir: &Path) -> u64 {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    meta["version"].as_u64().unwrap()
}

/// `(event_id, event_name)` of every silver row, sorted.
async fn silver_names(env: &Env) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = env
        .rows(Model::Events.table(), &["event_id", "event_name"])
        .await
        .into_iter()
        .map(|r| (r[0].to_string(), r[1].to_string()))
        .collect();
    rows.sort();
    rows
}

fn named(rows: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = rows
        .iter()
        .map(|(id, name)| (id.to_string(), name.to_string()))
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_are_not_lower_case_uuids_dedup_and_no_text_is_kept_in_the_index() {
    let env = Env::new(strata_core::config::Config::default());
    // Each id: its original on partition 0, a retry received later on 1.
    let ids = [UPPER, LOWER, AJS, PLAIN];
    let mut first = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let n64 = n as i64;
        first.push((
            0,
            n as u64,
            track(id, "u1", "Original", T + n64 * SECOND, T + SECOND),
        ));
        first.push((
            1,
            n as u64,
            track(id, "u1", "Retry", T + n64 * SECOND, T + 5 * SECOND),
        ));
    }
    env.land(first.clone()).await;
    let (from, to) = fixture_range(&first);
    env.backfill(from, to).await;
    // The upper- and lower-case spellings are two ids, as in the stream.
    let expected = named(&[
        (UPPER, "Original"),
        (LOWER, "Original"),
        (AJS, "Original"),
        (PLAIN, "Original"),
    ]);
    assert_eq!(silver_names(&env).await, expected);
    let dir = index_dir(&env);
    assert_eq!(meta_version(&dir), 2);
    let files = index_files(&dir);
    // Every id is in the base: no delta of text ids beside it.
    assert!(
        files.contains(&("base-1.arrow".to_string(), 4, false)),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|(name, _, _)| name.starts_with("delta-")),
        "{files:?}"
    );

    // Extended by a run: a copy of the ajs- id received before the original
    // displaces it, one more retry of the upper-case id loses.
    let second = vec![
        (2, 0, track(AJS, "u1", "Earlier", T + 2 * SECOND, T)),
        (2, 1, track(UPPER, "u1", "Late retry", T, T + 9 * SECOND)),
    ];
    env.land(second).await;
    let step = env.run_dirty().await;
    assert_eq!(step.bronze_rows_read, 2, "the saved index was extended");
    let expected = named(&[
        (UPPER, "Original"),
        (LOWER, "Original"),
        (AJS, "Earlier"),
        (PLAIN, "Original"),
    ]);
    assert_eq!(silver_names(&env).await, expected);
    // The delta holds the one new winner, keyed by 128 bits like the base.
    let files = index_files(&dir);
    let winners: Vec<_> = files
        .iter()
        .filter(|(name, _, _)| name.starts_with("base-") || name.starts_with("delta-"))
        .cloned()
        .collect();
    assert_eq!(
        winners,
        [
            ("base-1.arrow".to_string(), 4, false),
            ("delta-2.arrow".to_string(), 1, false)
        ]
    );

    // A data dir whose index an older version wrote: rebuilt from bronze,
    // never refused, and the tables stay as they were.
    let meta = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    let older = meta.replacen("\"version\":2", "\"version\":1", 1);
    assert_ne!(meta, older);
    std::fs::write(dir.join("meta.json"), older).unwrap();
    let rebuilt = env.run_dirty().await;
    assert_eq!(rebuilt.bronze_rows_read, 10, "rebuilt from all of bronze");
    assert_eq!(rebuilt.partitions(), 0, "nothing changed: {rebuilt:?}");
    assert_eq!(silver_names(&env).await, expected);
    assert_eq!(meta_version(&dir), 2);
}

fn anonymous(id: &str, anon: &str, ts: i64) -> BronzeEvent {
    BronzeEvent {
        user_id: None,
        anonymous_id: Some(anon.into()),
        ..track(id, "", "Product Viewed", ts, ts)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_id_that_looks_like_an_anonymous_person_is_another_person() {
    let env = Env::new(strata_core::config::Config::default());
    let identify = BronzeEvent {
        event_type: EventType::Identify,
        event_name: "$identify".into(),
        anonymous_id: Some("a2".into()),
        ..track("e5", "anon:Z", "", T + 4 * SECOND, T + 4 * SECOND)
    };
    let events = vec![
        (0, 0, anonymous("e1", "X", T)),
        (
            0,
            1,
            track("e2", "anon:X", "Product Viewed", T + SECOND, T + SECOND),
        ),
        (
            0,
            2,
            track(
                "e3",
                "user:Y",
                "Product Viewed",
                T + 2 * SECOND,
                T + 2 * SECOND,
            ),
        ),
        (
            0,
            3,
            track("e4", "u1", "Product Viewed", T + 3 * SECOND, T + 3 * SECOND),
        ),
        (0, 4, identify),
        // Linked to the user `anon:Z` by e5, retroactively.
        (0, 5, anonymous("e6", "a2", T - 60 * SECOND)),
    ];
    env.land(events.clone()).await;
    let (from, to) = fixture_range(&events);
    env.backfill(from, to).await;
    let mut persons: Vec<(String, String)> = env
        .rows(Model::Events.table(), &["event_id", "person_id"])
        .await
        .into_iter()
        .map(|r| (r[0].to_string(), r[1].to_string()))
        .collect();
    persons.sort();
    let expected: Vec<(String, String)> = [
        ("e1", "anon:X"),
        ("e2", "user:anon:X"),
        ("e3", "user:user:Y"),
        ("e4", "u1"),
        ("e5", "user:anon:Z"),
        ("e6", "user:anon:Z"),
    ]
    .iter()
    .map(|(e, p)| (e.to_string(), p.to_string()))
    .collect();
    assert_eq!(persons, expected);
    // Active persons of the day (the identify e5 is not activity): five,
    // with the visitor X and the user anon:X apart.
    let dau = env
        .rows(Model::DailyActiveUsers.table(), &["date", "dau"])
        .await;
    assert_eq!(
        dau,
        [vec![
            Cell::Text("2026-03-02".into()),
            Cell::Text("5".into())
        ]]
    );
}
