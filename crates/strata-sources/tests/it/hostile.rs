use strata_core::event::RejectReason;

use crate::harness::Harness;

/// Inputs a hostile or broken client sends: each gets a 4xx or a 200 with
/// rejections, the raw bytes are kept, and the server keeps serving.
#[tokio::test]
async fn hostile_bodies_get_clear_answers_and_are_kept() {
    let h = Harness::start().await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_batch = format!(
        "{{\"batch\":[{}{}]}}",
        "{\"a\":".repeat(5_000),
        "1}".repeat(5_000)
    );
    let many_empty = format!("{{\"batch\":[{}{{}}]}}", "{},".repeat(50_000));
    let many_empty_len = many_empty.len();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("/v1/batch", vec![0xff, 0xfe, 0x00, 0x7b], 400),
        ("/v1/batch", deep.into_bytes(), 400),
        ("/v1/batch", deep_batch.into_bytes(), 400),
        // More items than collector.max_batch_items: refused whole.
        ("/v1/batch", many_empty.into_bytes(), 413),
        ("/v1/batch", b"".to_vec(), 400),
        ("/v1/track", b"null".to_vec(), 400),
        (
            "/v1/batch",
            b"{\"batch\": [{\"type\": \"track\", \"userId\": \"\\ud800\", \"event\": \"A\"}]}"
                .to_vec(),
            200,
        ),
    ];
    for (path, body, expected) in cases {
        let preview = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
        let r = h.post_auth(path).body(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), expected, "{path} {preview}");
    }
    // A number no float can hold: the message is refused, never a 5xx.
    let r = h
        .post_auth("/v1/track")
        .body(r#"{"userId": 1e99999, "event": "A"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let q = h.quarantined().await;
    let infinite = q.iter().find(|q| q.raw.contains("1e99999")).unwrap();
    assert_eq!(infinite.reason, RejectReason::InvalidField);
    // The batch of 50,001 empty objects: kept once, not once per item.
    let many: Vec<_> = q
        .iter()
        .filter(|q| q.reason == RejectReason::TooManyItems)
        .collect();
    assert_eq!(many.len(), 1);
    assert_eq!(many[0].raw.len(), many_empty_len);
    assert!(q.len() < 20, "{}", q.len());
    let not_utf8 = q.iter().find(|q| q.raw.starts_with('\u{fffd}')).unwrap();
    assert_eq!(not_utf8.reason, RejectReason::InvalidJson);
    let r = h
        .post_auth("/v1/track")
        .body(r#"{"userId":"u","event":"Still alive"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
