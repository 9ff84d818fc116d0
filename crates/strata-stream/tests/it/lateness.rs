//! Event-time windows, watermarks and allowed lateness (SPEC §5), with
//! expected values worked out by hand from the rules: a window
//! [m, m+1min) takes events until the watermark (newest event time minus
//! 5 s) passes m + 1 min + 10 min.

use std::time::Duration;

use crate::harness::{MIN, Rig, SEC, T0, config, event, report};

#[tokio::test]
async fn out_of_order_events_land_in_their_own_minute() {
    let rig = Rig::new(1, config());
    rig.append(
        0,
        &[
            event("a", "View", "p1", T0 + 60 * SEC - 1, T0 + 2 * MIN),
            event("b", "View", "p2", T0 + 60 * SEC, T0 + 2 * MIN),
            event("c", "View", "p2", T0 + 30 * SEC, T0 + 2 * MIN),
            event("d", "Buy", "p1", T0 + 61 * SEC, T0 + 2 * MIN),
            event("e", "View", "p1", T0, T0 + 2 * MIN),
        ],
    )
    .await;
    let mut p = rig.processor().await;
    Rig::drain(&mut p).await;
    p.checkpoint().await.unwrap();
    assert_eq!(
        rig.table().await,
        vec![
            (0, "View".into(), 3, 2),
            (1, "Buy".into(), 1, 1),
            (1, "View".into(), 1, 1),
        ]
    );
    let r = report(&p, 5, T0 + 2 * MIN);
    assert_eq!(r.too_late, 0);
    assert_eq!(r.events_counted, 5);
    // Nothing is final: the watermark is at 1:01 - 5 s.
    assert!(r.series.iter().all(|s| !s.r#final));
    assert_eq!(r.active_users.last_5m, 2);
}

#[tokio::test]
async fn exactly_at_the_lateness_limit_counts_and_just_past_is_too_late() {
    let rig = Rig::new(1, config());
    let mut p = rig.processor().await;
    let limit = T0 + MIN + 10 * MIN; // end of minute 0 plus lateness
    let at = |id: &str, ts: i64| event(id, "View", id, ts, ts + SEC);

    rig.append(0, &[at("first", T0 + 5 * SEC)]).await;
    // Watermark = limit exactly: minute 0 still open.
    rig.append(0, &[at("pushes-to-limit", limit + 5 * SEC)])
        .await;
    Rig::drain(&mut p).await;
    rig.append(
        0,
        &[event(
            "late-ok",
            "View",
            "late-ok",
            T0 + 10 * SEC,
            limit + 6 * SEC,
        )],
    )
    .await;
    Rig::drain(&mut p).await;
    assert_eq!(report(&p, 60, limit).too_late, 0);

    // One microsecond more and minute 0 is closed.
    rig.append(0, &[at("pushes-past", limit + 5 * SEC + 1)])
        .await;
    Rig::drain(&mut p).await;
    rig.append(
        0,
        &[event(
            "too-late",
            "View",
            "too-late",
            T0 + 20 * SEC,
            limit + 7 * SEC,
        )],
    )
    .await;
    Rig::drain(&mut p).await;

    let r = report(&p, 60, limit);
    assert_eq!(r.too_late, 1);
    let minute0: Vec<_> = r
        .series
        .iter()
        .filter(|s| s.minute.ends_with("10:00:00Z"))
        .collect();
    assert_eq!(minute0.len(), 1);
    assert_eq!(
        (minute0[0].events, minute0[0].users, minute0[0].r#final),
        (2, 2, true)
    );
    p.checkpoint().await.unwrap();
    let table = rig.table().await;
    assert_eq!(table[0], (0, "View".into(), 2, 2));
    // Minute 11 holds the two watermark pushers and is still open.
    assert_eq!(table[1], (11, "View".into(), 2, 2));
}

#[tokio::test]
async fn an_idle_partition_does_not_hold_the_watermark_back() {
    let mut cfg = config();
    cfg.idle_timeout = Duration::from_millis(300);
    let rig = Rig::new(2, cfg);
    let mut p = rig.processor().await;
    rig.append(0, &[event("quiet", "View", "q", T0, T0 + SEC)])
        .await;
    rig.append(
        1,
        &[event("busy-0", "View", "b", T0 + 20 * MIN, T0 + 20 * MIN)],
    )
    .await;
    Rig::drain(&mut p).await;
    // Both partitions active: the quiet one holds the watermark at T0 - 5 s.
    let r = report(&p, 60, T0 + 20 * MIN);
    assert_eq!(r.watermark.as_deref(), Some("2026-03-01T09:59:55.000000Z"));

    tokio::time::sleep(Duration::from_millis(400)).await;
    rig.append(
        1,
        &[event("busy-1", "View", "b", T0 + 21 * MIN, T0 + 21 * MIN)],
    )
    .await;
    Rig::drain(&mut p).await;
    let r = report(&p, 60, T0 + 21 * MIN);
    assert_eq!(r.watermark.as_deref(), Some("2026-03-01T10:20:55.000000Z"));
    let minute0 = r
        .series
        .iter()
        .find(|s| s.minute.ends_with("10:00:00Z"))
        .unwrap();
    assert!(
        minute0.r#final,
        "minute 0 closes once the quiet partition is idle"
    );
}

#[tokio::test]
async fn a_client_clock_in_the_future_does_not_close_windows() {
    let rig = Rig::new(1, config());
    let mut p = rig.processor().await;
    // The collector allows event times up to 23 h after receipt.
    rig.append(0, &[event("future", "View", "f", T0 + 20 * 60 * MIN, T0)])
        .await;
    rig.append(0, &[event("now", "View", "n", T0 - 30 * SEC, T0 + SEC)])
        .await;
    Rig::drain(&mut p).await;
    let r = report(&p, 60, T0);
    assert_eq!(r.too_late, 0);
    assert_eq!(r.events_counted, 2);
}

#[tokio::test]
async fn undecodable_and_quarantine_records_are_skipped_not_fatal() {
    let rig = Rig::new(1, config());
    rig.append_raw(0, b"\x07garbage").await;
    rig.append_raw(0, &[1, 0]).await; // truncated event record
    rig.append(0, &[event("ok", "View", "p", T0, T0)]).await;
    let mut p = rig.processor().await;
    Rig::drain(&mut p).await;
    assert_eq!(report(&p, 60, T0).events_counted, 1);
    assert_eq!(p.positions(), &[3]);
}
