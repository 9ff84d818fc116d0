use std::io::Write;
use std::time::Duration;

use serde_json::json;
use strata_core::config::CollectorConfig;
use strata_core::event::RejectReason;
use tokio::io::AsyncWriteExt;

use crate::harness::Harness;

#[tokio::test]
async fn request_over_500_kb_is_413() {
    let h = Harness::start().await;
    let big = "x".repeat(600 * 1024);
    let request = json!({"batch": [{"type": "track", "userId": "u", "event": "A", "properties": {"p": big}}]});
    let r = h
        .post_auth("/v1/batch")
        .body(serde_json::to_vec(&request).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert!(h.events().await.is_empty());
    // The rejected bytes are kept (up to the limit) with their reason.
    let q = h.quarantined().await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].reason, RejectReason::RequestTooLarge);
    assert_eq!(q[0].raw.len(), 500 * 1024);
}

#[tokio::test]
async fn gzip_bomb_is_413_after_decompression() {
    let h = Harness::start().await;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(b"{\"batch\": [").unwrap();
    encoder.write_all(&vec![b' '; 20 * 1024 * 1024]).unwrap();
    encoder.write_all(b"]}").unwrap();
    let gz = encoder.finish().unwrap();
    assert!(gz.len() < 100 * 1024);
    let r = h
        .post_auth("/v1/batch")
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
}

#[tokio::test]
async fn message_over_32_kb_is_rejected_and_the_rest_accepted() {
    let h = Harness::start().await;
    let big = "y".repeat(33 * 1024);
    let request = json!({"batch": [
        {"type": "track", "userId": "u", "event": "Small", "messageId": "s1"},
        {"type": "track", "userId": "u", "event": "Big", "messageId": "b1", "properties": {"blob": big}},
        {"type": "track", "userId": "u", "event": "Small", "messageId": "s2"}
    ]});
    let (status, v) = h.send_json("/v1/batch", &request).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"success": true, "accepted": 2, "rejected": 1}));
    let q = h.quarantined().await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].reason, RejectReason::MessageTooLarge);
    assert!(q[0].raw.contains("\"b1\""));
    // A single-message endpoint with an oversized message: 200, rejected 1.
    let msg = json!({"userId": "u", "event": "Big", "properties": {"blob": big}});
    let (status, v) = h.send_json("/v1/track", &msg).await;
    assert_eq!(status, 200);
    assert_eq!(v["rejected"], 1);
}

#[tokio::test]
async fn overload_is_503_with_retry_after() {
    let h = Harness::with_limits(CollectorConfig {
        max_inflight_requests: 1,
        ..CollectorConfig::default()
    })
    .await;
    // Hold the only slot with a request whose body never finishes arriving.
    let addr = h.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic d2tfdGVzdDo=\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"userId\":"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = h
        .post_auth("/v1/track")
        .body(serde_json::to_vec(&json!({"userId": "u", "event": "A"})).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers().get("retry-after").unwrap(), "1");
    drop(slow);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = h
        .post_auth("/v1/track")
        .body(serde_json::to_vec(&json!({"userId": "u", "event": "A"})).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

fn ones(n: usize) -> String {
    format!("{{\"batch\":[{}]}}", vec!["1"; n].join(","))
}

#[tokio::test]
async fn a_batch_of_more_than_2000_items_is_413_and_quarantined_once() {
    let h = Harness::start().await;
    let body = ones(2_001);
    let (status, v) = h.send("/v1/batch", body.clone()).await;
    assert_eq!(status, 413);
    assert_eq!(v["success"], false);
    assert_eq!(v["error"], "too_many_items");
    assert!(h.events().await.is_empty());
    let q = h.quarantined().await;
    assert_eq!(
        q.len(),
        1,
        "one row for the whole request, not one per item"
    );
    assert_eq!(q[0].reason, RejectReason::TooManyItems);
    assert_eq!(q[0].reason.as_str(), "too_many_items");
    assert_eq!(q[0].raw, body);
    assert!(q[0].detail.contains("2001"), "{}", q[0].detail);

    // At the limit each item is judged on its own: 2,000 rejected `1`s.
    let (status, v) = h.send("/v1/batch", ones(2_000)).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"success": true, "accepted": 0, "rejected": 2000}));
}

#[tokio::test]
async fn max_batch_items_is_configurable_and_valid_items_are_not_accepted_either() {
    let h = Harness::with_limits(CollectorConfig {
        max_batch_items: 2,
        ..CollectorConfig::default()
    })
    .await;
    let track = |id: &str| json!({"type": "track", "userId": "u", "event": "A", "messageId": id});
    let request = json!({"batch": [track("m1"), track("m2"), track("m3")]});
    let (status, v) = h.send_json("/v1/batch", &request).await;
    assert_eq!(status, 413);
    assert_eq!(v["error"], "too_many_items");
    assert!(h.events().await.is_empty());
    assert_eq!(h.quarantined().await.len(), 1);
    let request = json!({"batch": [track("m1"), track("m2")]});
    let r = h
        .post_auth("/v1/batch")
        .body(serde_json::to_vec(&request).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(h.events().await.len(), 2);
}

#[tokio::test]
async fn an_event_name_over_256_bytes_is_quarantined_and_the_rest_accepted() {
    let h = Harness::start().await;
    let at_limit = "n".repeat(256);
    let over = "n".repeat(257);
    let request = json!({"batch": [
        {"type": "track", "userId": "u", "event": at_limit, "messageId": "ok"},
        {"type": "track", "userId": "u", "event": over, "messageId": "long"}
    ]});
    let (status, v) = h.send_json("/v1/batch", &request).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"success": true, "accepted": 1, "rejected": 1}));
    let events = h.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_name, at_limit);
    let q = h.quarantined().await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].reason, RejectReason::EventNameTooLong);
    assert!(q[0].raw.contains("\"long\""));
}

#[tokio::test]
async fn max_event_name_bytes_is_configurable() {
    let h = Harness::with_limits(CollectorConfig {
        max_event_name_bytes: 5,
        ..CollectorConfig::default()
    })
    .await;
    for (name, accepted) in [("Click", 1), ("Clicks", 0)] {
        let (status, v) = h
            .send_json("/v1/track", &json!({"userId": "u", "event": name}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(v["accepted"], accepted, "{name}");
    }
    let q = h.quarantined().await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].reason, RejectReason::EventNameTooLong);
}
