//! Format versions of the batch state and the bronze index: a state file
//! from before versions were written still opens; a newer one is refused
//! with one sentence and left as it was.

use strata_batch::{Model, Plan, StateFile};
use strata_core::config::Config;

use crate::harness::{Env, fixture_range};
use crate::idempotency::generated;

fn state_path(env: &Env) -> std::path::PathBuf {
    strata_batch::state_dir(env.dir.path()).join("state.json")
}

#[test]
fn a_state_file_without_a_version_is_the_first_format() {
    let env = Env::new(Config::default());
    let dir = strata_batch::state_dir(env.dir.path());
    std::fs::create_dir_all(&dir).unwrap();
    // The layout written before the format field existed.
    std::fs::write(
        state_path(&env),
        r#"{"bronze_seen":{"0":12},"dirty":{},"built_with":{}}"#,
    )
    .unwrap();
    let state = StateFile::open(&dir).unwrap();
    assert_eq!(state.state.format, 1);
    assert_eq!(state.state.bronze_seen.get(&0), Some(&12));
    state.save().unwrap();
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_path(&env)).unwrap()).unwrap();
    assert_eq!(saved["format"], 1);
    assert_eq!(saved["bronze_seen"]["0"], 12);
}

#[test]
fn a_state_file_of_a_newer_format_is_refused_untouched() {
    let env = Env::new(Config::default());
    let dir = strata_batch::state_dir(env.dir.path());
    std::fs::create_dir_all(&dir).unwrap();
    let newer = r#"{"format":3,"bronze_seen":{},"something_new":true}"#;
    std::fs::write(state_path(&env), newer).unwrap();
    let err = StateFile::open(&dir).err().expect("refused");
    let text = err.to_string();
    assert!(
        text.starts_with("the batch state at ")
            && text.contains("has format version 3, newer than version 1")
            && text.contains("written by a later Strata release"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(state_path(&env)).unwrap(), newer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bronze_index_of_a_newer_format_stops_the_run() {
    let events = generated(10, 2, 5);
    let (from, to) = fixture_range(&events);
    let env = Env::new(Config::default());
    env.land(events).await;
    env.backfill(from, to).await;
    let meta = strata_batch::state_dir(env.dir.path()).join("index/meta.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    value["version"] = 9.into();
    std::fs::write(&meta, value.to_string()).unwrap();

    let err = env
        .runner()
        .execute(Plan::range(&Model::ALL, from, to))
        .await
        .err()
        .expect("a newer index must not be used or rebuilt over");
    let text = err.to_string();
    assert!(
        text.contains("the bronze index at ")
            && text.contains("has format version 9, newer than version 2"),
        "{text}"
    );
}
