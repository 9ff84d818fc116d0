//! The windows' memory is bounded by bytes (`max_window_state_bytes`), so a
//! flood of distinct event names cannot grow it: an open window is charged
//! its name plus a full sketch (2^12 one-byte registers) plus 96 bytes of
//! bookkeeping, a closed minute's row its name plus 48 bytes.

use strata_core::config::StreamConfig;

use crate::harness::{MIN, Rig, SEC, T0, config, event, report};

/// `open_cost` of a window whose name is `len` bytes long.
fn open_cost(len: usize) -> usize {
    len + 4096 + 96
}

fn bounded(max_window_state_bytes: usize) -> StreamConfig {
    StreamConfig {
        max_window_state_bytes,
        ..config()
    }
}

fn name(prefix: &str, i: usize, len: usize) -> String {
    let head = format!("{prefix}{i:03}");
    format!("{head}{}", "x".repeat(len - head.len()))
}

#[tokio::test]
async fn a_flood_of_names_opens_windows_only_up_to_the_byte_bound() {
    // 64 KiB hold 15 windows of 4-byte names (15 × 4,196 = 62,940).
    let rig = Rig::new(1, bounded(64 * 1024));
    let flood: Vec<_> = (0..100)
        .map(|i| {
            let n = name("e", i, 4);
            event(&format!("id{i}"), &n, "p1", T0 + i as i64, T0 + SEC)
        })
        .collect();
    rig.append(0, &flood).await;
    let mut p = rig.processor().await;
    Rig::drain(&mut p).await;
    let r = report(&p, 5, T0 + MIN);
    assert_eq!(r.events_counted, 15);
    assert_eq!(r.dropped, 85);
    assert_eq!(r.series.len(), 15);

    // A new name while minute 0 is open finds no room; the watermark it
    // moves closes minute 0, whose windows then cost only their rows, and
    // new names are counted again.
    rig.append(0, &[event("push", "g", "p2", T0 + 30 * MIN, T0 + 30 * MIN)])
        .await;
    Rig::drain(&mut p).await;
    let later: Vec<_> = (0..10)
        .map(|i| {
            let n = name("f", i, 4);
            event(&format!("later{i}"), &n, "p2", T0 + 30 * MIN, T0 + 30 * MIN)
        })
        .collect();
    rig.append(0, &later).await;
    Rig::drain(&mut p).await;
    let r = report(&p, 60, T0 + 31 * MIN);
    assert_eq!(r.dropped, 85 + 1);
    assert_eq!(r.events_counted, 15 + 10);
}

#[tokio::test]
async fn old_closed_minutes_make_room_for_new_windows() {
    let len = 100;
    // Room for four open windows.
    let rig = Rig::new(1, bounded(4 * open_cost(len)));
    let mut p = rig.processor().await;
    let minute0: Vec<_> = (0..3)
        .map(|i| event(&format!("a{i}"), &name("A", i, len), "p1", T0, T0))
        .collect();
    rig.append(0, &minute0).await;
    Rig::drain(&mut p).await;
    // A fourth window, twenty minutes on: the watermark closes minute 0,
    // whose three windows shrink to rows of 148 bytes each.
    let pusher = name("A", 0, len);
    rig.append(
        0,
        &[event("push", &pusher, "p1", T0 + 20 * MIN, T0 + 20 * MIN)],
    )
    .await;
    Rig::drain(&mut p).await;
    p.checkpoint().await.unwrap();

    // 3 × 148 + 4 × 4,292 is over the bound: the third new window fits
    // only because minute 0's rows, already written, are given up.
    let minute20: Vec<_> = (0..3)
        .map(|i| {
            let n = name("B", i, len);
            event(&format!("b{i}"), &n, "p2", T0 + 20 * MIN, T0 + 20 * MIN)
        })
        .collect();
    rig.append(0, &minute20).await;
    Rig::drain(&mut p).await;
    let r = report(&p, 60, T0 + 21 * MIN);
    assert_eq!(r.dropped, 0);
    assert_eq!(r.events_counted, 7);
    // The realtime table still has minute 0: only memory gave it up.
    p.checkpoint().await.unwrap();
    let table = rig.table().await;
    assert_eq!(table.iter().filter(|r| r.0 == 0).count(), 3);
    assert_eq!(table.iter().filter(|r| r.0 == 20).count(), 4);
}
