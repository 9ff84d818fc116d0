//! Dedup by `event_id` with a TTL in received time (default 1 h, at least
//! the allowed lateness).

use crate::harness::{MIN, Rig, SEC, T0, config, event, report};

#[tokio::test]
async fn a_retry_inside_the_ttl_is_dropped() {
    let rig = Rig::new(1, config());
    rig.append(
        0,
        &[
            event("same", "View", "p", T0, T0),
            event("other", "View", "q", T0 + SEC, T0 + SEC),
            // The retry, 30 minutes later, with the event's original time.
            event("same", "View", "p", T0, T0 + 30 * MIN),
        ],
    )
    .await;
    let mut p = rig.processor().await;
    Rig::drain(&mut p).await;
    p.checkpoint().await.unwrap();
    let r = report(&p, 60, T0);
    assert_eq!((r.duplicates, r.events_counted, r.too_late), (1, 2, 0));
    assert_eq!(rig.table().await, vec![(0, "View".into(), 2, 2)]);
}

#[tokio::test]
async fn a_retry_outside_the_ttl_is_too_late_not_counted_twice() {
    // TTL >= lateness: once the id is forgotten, the watermark has long
    // closed the event's window.
    let rig = Rig::new(1, config());
    rig.append(
        0,
        &[
            event("same", "View", "p", T0, T0),
            event("traffic", "Tick", "q", T0 + 70 * MIN, T0 + 70 * MIN),
        ],
    )
    .await;
    let mut p = rig.processor().await;
    Rig::drain(&mut p).await;
    rig.append(0, &[event("same", "View", "p", T0, T0 + 70 * MIN)])
        .await;
    Rig::drain(&mut p).await;
    p.checkpoint().await.unwrap();
    let r = report(&p, 60, T0 + 70 * MIN);
    assert_eq!((r.duplicates, r.too_late, r.events_counted), (0, 1, 2));
    assert_eq!(rig.table().await[0], (0, "View".into(), 1, 1));
}

#[tokio::test]
async fn dedup_state_survives_a_restart() {
    let rig = Rig::new(1, config());
    rig.append(0, &[event("once", "View", "p", T0, T0)]).await;
    {
        let mut p = rig.processor().await;
        Rig::drain(&mut p).await;
        p.checkpoint().await.unwrap();
    }
    rig.append(0, &[event("once", "View", "p", T0, T0 + MIN)])
        .await;
    let mut p = rig.processor().await;
    Rig::drain(&mut p).await;
    p.checkpoint().await.unwrap();
    assert_eq!(report(&p, 60, T0).duplicates, 1);
    assert_eq!(rig.table().await, vec![(0, "View".into(), 1, 1)]);
}

#[test]
fn ids_are_keyed_exactly_as_the_batch_path_compares_them() {
    use strata_stream::operators::dedup::id_key;
    let id = "0191d6c3-3c5e-7b1e-9f4a-1234567890ab";
    assert_eq!(id_key(id), uuid::Uuid::parse_str(id).unwrap().as_u128());
    // Another spelling is another id, as in silver's string comparison.
    assert_ne!(id_key(id), id_key(&id.to_uppercase()));
    assert_ne!(id_key("msg-1"), id_key("msg-2"));
    assert_eq!(id_key("msg-1"), id_key("msg-1"));
}
