//! Checkpoints: a restart resumes from the last one, whatever happened
//! after it, and ends with the table an uninterrupted run writes.

use strata_core::event::BronzeEvent;

use crate::harness::{MIN, Rig, SEC, T0, config, event};

/// 40 minutes of traffic over 3 partitions, with retries of every 13th
/// event a few seconds later.
fn traffic() -> Vec<(u32, BronzeEvent)> {
    let names = ["View", "Add", "Buy"];
    let mut out = Vec::new();
    for i in 0..2400i64 {
        let ts = T0 + i * SEC;
        let person = format!("p{}", i % 97);
        let partition = (i % 97 % 3) as u32;
        let e = event(
            &format!("id-{i}"),
            names[(i % 3) as usize],
            &person,
            ts,
            ts + SEC,
        );
        out.push((partition, e.clone()));
        if i % 13 == 0 {
            let mut retry = e;
            retry.received_at += 3 * SEC;
            out.push((partition, retry));
        }
    }
    out
}

async fn append(rig: &Rig, events: &[(u32, BronzeEvent)]) {
    for chunk in events.chunks(100) {
        for partition in 0..3 {
            let part: Vec<_> = chunk
                .iter()
                .filter(|(p, _)| *p == partition)
                .map(|(_, e)| e.clone())
                .collect();
            if !part.is_empty() {
                rig.append(partition, &part).await;
            }
        }
    }
}

async fn uninterrupted() -> Vec<(i64, String, i64, i64)> {
    let rig = Rig::new(3, config());
    append(&rig, &traffic()).await;
    let mut p = rig.processor().await;
    Rig::drain(&mut p).await;
    p.checkpoint().await.unwrap();
    rig.table().await
}

#[tokio::test]
async fn a_crash_after_the_checkpoint_replays_without_counting_twice() {
    let expected = uninterrupted().await;
    // Hand-checked anchor: minute 0 holds seconds 0..59, 20 of each name,
    // and none of the retries.
    assert_eq!(expected[0], (0, "Add".into(), 20, 20));
    assert_eq!(expected.iter().map(|r| r.2).sum::<i64>(), 2400);

    let rig = Rig::new(3, config());
    let events = traffic();
    let (first, second) = events.split_at(events.len() / 2);
    append(&rig, first).await;
    {
        let mut p = rig.processor().await;
        Rig::drain(&mut p).await;
        p.checkpoint().await.unwrap();
        append(&rig, second).await;
        Rig::drain(&mut p).await;
        // Dropped without a checkpoint: everything after the first is lost.
    }
    let mut p = rig.processor().await;
    Rig::drain(&mut p).await;
    p.checkpoint().await.unwrap();
    assert_eq!(rig.table().await, expected);
}

#[tokio::test]
async fn a_crash_between_the_sink_commit_and_the_manifest_is_harmless() {
    let expected = uninterrupted().await;
    let rig = Rig::new(3, config());
    let events = traffic();
    let (first, second) = events.split_at(events.len() / 3);
    append(&rig, first).await;
    let stream_dir = rig.dir.path().join("stream");
    let saved = rig.dir.path().join("stream-saved");
    {
        let mut p = rig.processor().await;
        Rig::drain(&mut p).await;
        p.checkpoint().await.unwrap();
        copy_dir(&stream_dir, &saved);
        append(&rig, second).await;
        Rig::drain(&mut p).await;
        // The sink commits and the manifest is written...
        p.checkpoint().await.unwrap();
    }
    // ...but the crash undoes the manifest: the table is ahead of it.
    std::fs::remove_dir_all(&stream_dir).unwrap();
    copy_dir(&saved, &stream_dir);
    let mut p = rig.processor().await;
    Rig::drain(&mut p).await;
    p.checkpoint().await.unwrap();
    assert_eq!(rig.table().await, expected);
}

#[tokio::test]
async fn a_damaged_checkpoint_file_is_a_clear_error() {
    let rig = Rig::new(1, config());
    rig.append(0, &[event("a", "View", "p", T0, T0 + MIN)])
        .await;
    {
        let mut p = rig.processor().await;
        Rig::drain(&mut p).await;
        p.checkpoint().await.unwrap();
    }
    let files = rig.dir.path().join("stream/files");
    let file = std::fs::read_dir(&files)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let err = rig
        .open_processor()
        .await
        .err()
        .expect("a damaged checkpoint must not load");
    let text = err.to_string();
    assert!(
        text.contains("checksum") && text.contains("dedup-"),
        "{text}"
    );
}

/// A checkpoint written by a later Strata is refused with one sentence and
/// left as it was, rather than misread or overwritten.
#[tokio::test]
async fn a_checkpoint_of_a_newer_format_is_refused() {
    let rig = Rig::new(1, config());
    rig.append(0, &[event("a", "View", "p", T0, T0 + MIN)])
        .await;
    {
        let mut p = rig.processor().await;
        Rig::drain(&mut p).await;
        p.checkpoint().await.unwrap();
    }
    let manifest = rig.dir.path().join("stream/checkpoint.json");
    let newer = r#"{"version": 2, "layout": "something this release does not know"}"#;
    std::fs::write(&manifest, newer).unwrap();
    let err = rig
        .open_processor()
        .await
        .err()
        .expect("a newer checkpoint must not load");
    let text = err.to_string();
    assert!(
        text.contains("the stream checkpoint at ")
            && text.contains("has format version 2, newer than version 1")
            && text.contains("written by a later Strata release"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), newer);
}

/// A restart reads the minutes of the last day back from the table, in
/// whatever Arrow layout DataFusion returns them (string views, zoned
/// timestamps): the minutes closed before the stop are still shown.
#[tokio::test]
async fn a_restart_shows_the_recent_minutes_it_wrote_before() {
    let now = chrono::Utc::now().timestamp_micros();
    let start = (now - 40 * MIN).div_euclid(MIN) * MIN;
    let rig = Rig::new(1, config());
    let events: Vec<BronzeEvent> = (0..30)
        .map(|i| {
            let ts = start + i * MIN;
            event(
                &format!("e{i}"),
                "View",
                &format!("p{}", i % 4),
                ts,
                ts + SEC,
            )
        })
        .collect();
    rig.append(0, &events).await;
    {
        let mut p = rig.processor().await;
        Rig::drain(&mut p).await;
        p.checkpoint().await.unwrap();
    }
    let p = rig.processor().await;
    let report = crate::harness::report(&p, 60, now);
    let shown: u64 = report
        .series
        .iter()
        .filter(|s| s.event_name == "View")
        .map(|s| s.events)
        .sum();
    assert_eq!(shown, 30, "{:?}", report.series);
    // The first minute is long past the watermark and the lateness: final.
    assert!(report.series.iter().any(|s| s.r#final && s.events == 1));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
