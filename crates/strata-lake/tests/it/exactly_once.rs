use crate::harness::Env;

#[tokio::test]
async fn every_record_lands_once_in_its_table() {
    let env = Env::new();
    env.append(0, 1000, 10).await;
    let mut loader = env.loader().await;
    let stats = loader.catch_up().await.unwrap();
    assert_eq!(stats.events, 900);
    assert_eq!(stats.quarantined, 100);
    assert_eq!(env.count("select count(*) from bronze.events").await, 900);
    assert_eq!(
        env.count("select count(distinct event_id) from bronze.events")
            .await,
        900
    );
    assert_eq!(
        env.count("select count(*) from bronze.quarantine").await,
        100
    );
    // Nothing new: a second catch-up writes nothing.
    assert_eq!(loader.catch_up().await.unwrap().events, 0);
}

#[tokio::test]
async fn crash_after_the_delta_commit_writes_nothing_twice() {
    let env = Env::new();
    env.append(0, 500, 0).await;
    // The first loader reads and commits, then "dies" before anything else
    // happens: no progress report, no cursor kept.
    let mut first = env.loader().await;
    let entries = first.read_available(10_000).await.unwrap();
    assert_eq!(entries.len(), 500);
    first.write(&entries).await.unwrap();
    drop(first);

    // Its successor starts from the positions inside the Delta commit.
    env.append(500, 100, 0).await;
    let mut second = env.loader().await;
    let loaded = strata_lake::bronze::loaded_records(&env.lake, crate::harness::PARTITIONS)
        .await
        .unwrap();
    assert_eq!(loaded, 500);
    let stats = second.catch_up().await.unwrap();
    assert_eq!(stats.events, 100);
    assert_eq!(env.count("select count(*) from bronze.events").await, 600);
    assert_eq!(
        env.count("select count(distinct event_id) from bronze.events")
            .await,
        600
    );
}

#[tokio::test]
async fn redelivery_from_an_older_position_is_skipped() {
    let env = Env::new();
    env.append(0, 300, 5).await;
    let mut loader = env.loader().await;
    let old = loader.read_available(10_000).await.unwrap();
    loader.write(&old).await.unwrap();

    // The same records again, as a restarted consumer would re-deliver them.
    let again = loader.write(&old).await.unwrap();
    assert_eq!(
        (again.events, again.quarantined, again.skipped),
        (0, 0, 300)
    );

    // A second, independent loader re-delivering overlapping records.
    env.append(300, 50, 5).await;
    let mut other = env.loader().await;
    let fresh = other.read_available(10_000).await.unwrap();
    let mut overlapping = old;
    overlapping.extend(fresh);
    let stats = other.write(&overlapping).await.unwrap();
    assert_eq!(stats.events + stats.quarantined, 50);
    assert_eq!(stats.skipped, 300);
    assert_eq!(env.count("select count(*) from bronze.events").await, 280);
    assert_eq!(
        env.count("select count(*) from bronze.quarantine").await,
        70
    );
    assert_eq!(
        env.count("select count(*) from (select log_partition, log_offset from bronze.events group by 1, 2 having count(*) > 1)").await,
        0
    );
}

#[tokio::test]
async fn stale_loader_does_not_duplicate_a_newer_loaders_commit() {
    let env = Env::new();
    env.append(0, 200, 0).await;
    // Two loaders opened at the same positions; both try to write the same
    // records. The check before each write makes the second one a no-op.
    let mut a = env.loader().await;
    let mut b = env.loader().await;
    let entries_a = a.read_available(10_000).await.unwrap();
    let entries_b = b.read_available(10_000).await.unwrap();
    a.write(&entries_a).await.unwrap();
    let stats = b.write(&entries_b).await.unwrap();
    assert_eq!(stats.events, 0);
    assert_eq!(env.count("select count(*) from bronze.events").await, 200);
}

#[tokio::test]
async fn tables_open_with_a_fresh_delta_reader() {
    let env = Env::new();
    env.append(0, 50, 0).await;
    env.loader().await.catch_up().await.unwrap();
    let path = env.dir.path().join("lake/bronze/events");
    let url = url::Url::from_directory_path(std::path::absolute(&path).unwrap()).unwrap();
    let table = deltalake::open_table(url).await.unwrap();
    let snapshot = table.snapshot().unwrap();
    assert_eq!(
        snapshot.metadata().partition_columns(),
        &vec!["ingest_date".to_string()]
    );
    let files: Vec<_> = table.get_file_uris().unwrap().collect();
    assert!(!files.is_empty());
    assert!(
        files.iter().all(|f| f.contains("ingest_date=2026-03-01")),
        "{files:?}"
    );
}

#[tokio::test]
async fn compaction_keeps_every_row() {
    let env = Env::new();
    let mut loader = env.loader().await;
    for round in 0..5 {
        env.append(round * 20, 20, 0).await;
        loader.catch_up().await.unwrap();
    }
    loader.optimize().await.unwrap();
    assert_eq!(env.count("select count(*) from bronze.events").await, 100);
    assert_eq!(
        env.count("select count(distinct event_id) from bronze.events")
            .await,
        100
    );
}
