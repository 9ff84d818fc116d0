//! Hostile clients: slow ones that would hold admission permits or
//! connections, batch contexts that would multiply a request's memory, and
//! event times from before any product existed.

use std::time::Duration;

use serde_json::json;
use strata_core::config::CollectorConfig;
use strata_core::event::RejectReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::Harness;

fn one_slot(body_read_timeout: Duration) -> CollectorConfig {
    CollectorConfig {
        max_inflight_requests: 1,
        body_read_timeout,
        ..CollectorConfig::default()
    }
}

async fn track(h: &Harness) -> u16 {
    h.post_auth("/v1/track")
        .body(serde_json::to_vec(&json!({"userId": "u", "event": "A"})).unwrap())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Everything the server sends until it closes the connection (or 5 s pass).
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn a_body_that_never_finishes_is_408_and_frees_its_permit() {
    let h = Harness::with_limits(one_slot(Duration::from_millis(400))).await;
    let mut slow = tokio::net::TcpStream::connect(&h.addr).await.unwrap();
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic d2tfdGVzdDo=\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"userId\":",
        h.addr
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The slow client holds the only permit for now...
    assert_eq!(track(&h).await, 503);
    // ...until its body is overdue.
    let answer = read_until_closed(&mut slow)
        .await
        .expect("the server answers the slow client");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert_eq!(track(&h).await, 200);
    // Nothing of the half-sent request was stored.
    assert_eq!(h.records().await.len(), 1);
}

#[tokio::test]
async fn a_request_head_that_never_finishes_is_disconnected() {
    let h = Harness::with_limits(CollectorConfig {
        header_read_timeout: Duration::from_millis(300),
        ..CollectorConfig::default()
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(&h.addr).await.unwrap();
    slow.write_all(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let answer = read_until_closed(&mut slow).await;
    assert!(answer.is_some(), "the connection is still open after 5 s");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The server goes on serving everyone else.
    assert_eq!(track(&h).await, 200);
}

#[tokio::test]
async fn a_wrong_header_key_is_401_even_when_every_permit_is_taken() {
    let h = Harness::with_limits(one_slot(Duration::from_secs(30))).await;
    let mut slow = tokio::net::TcpStream::connect(&h.addr).await.unwrap();
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic d2tfdGVzdDo=\r\nContent-Length: 100\r\n\r\n{{",
        h.addr
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = h
        .post("/v1/track")
        .basic_auth("wk_wrong", Some(""))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    drop(slow);
}

#[tokio::test]
async fn a_batch_context_counts_once_per_message_against_the_request_limit() {
    let h = Harness::start().await;
    // 20 KB of context into 30 messages: a 21 KB body that would expand to
    // 600 KB, over the 500 KB request limit.
    let context = json!({"blob": "c".repeat(20 * 1024)});
    let batch: Vec<_> = (0..30)
        .map(|i| json!({"type": "track", "userId": format!("u{i}"), "event": "A"}))
        .collect();
    let body = serde_json::to_vec(&json!({"batch": batch, "context": context})).unwrap();
    assert!(body.len() < 22 * 1024);
    let (status, v) = h.send("/v1/batch", body.clone()).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"], "request_too_large");
    assert!(h.events().await.is_empty());
    let kept = h.quarantined().await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].reason, RejectReason::RequestTooLarge);
    assert_eq!(kept[0].raw.as_bytes(), &body[..]);
    assert!(kept[0].detail.contains("30 messages"), "{}", kept[0].detail);
}

#[tokio::test]
async fn a_batch_context_counts_against_each_message_limit() {
    let h = Harness::start().await;
    // 30 KB of context: a 3 KB message goes over 32 KB once it is merged in,
    // a small one does not.
    let context = json!({"blob": "c".repeat(30 * 1024)});
    let big = json!({"type": "track", "userId": "big", "event": "A", "properties": {"p": "p".repeat(3 * 1024)}});
    let small = json!({"type": "track", "userId": "small", "event": "A"});
    let body = json!({"batch": [big, small], "context": context});
    let (status, v) = h
        .send("/v1/batch", serde_json::to_vec(&body).unwrap())
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    let events = h.events().await;
    assert_eq!(events[0].user_id.as_deref(), Some("small"));
    let kept = h.quarantined().await;
    assert_eq!(kept[0].reason, RejectReason::MessageTooLarge);
    assert!(
        kept[0].detail.contains("batch context"),
        "{}",
        kept[0].detail
    );
    assert!(kept[0].raw.contains("\"userId\":\"big\""));
}

#[tokio::test]
async fn an_event_older_than_max_event_age_is_quarantined() {
    let h = Harness::start().await;
    let four_years_ago = (chrono::Utc::now() - chrono::Duration::days(4 * 365)).to_rfc3339();
    let batch = json!({"batch": [
        {"type": "track", "userId": "u0", "event": "A", "timestamp": "0000-01-01T00:00:00Z"},
        {"type": "track", "userId": "u1", "event": "A", "timestamp": "2019-06-01T00:00:00Z"},
        {"type": "track", "userId": "u2", "event": "A", "timestamp": four_years_ago},
    ]});
    let (status, v) = h
        .send("/v1/batch", serde_json::to_vec(&batch).unwrap())
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(h.events().await[0].user_id.as_deref(), Some("u2"));
    let mut kept = h.quarantined().await;
    kept.sort_by(|a, b| a.raw.cmp(&b.raw));
    for (q, year) in kept.iter().zip(["0000", "2019"]) {
        assert_eq!(q.reason, RejectReason::EventTsTooOld);
        assert_eq!(q.reason.as_str(), "event_ts_too_old");
        assert!(
            q.detail.contains(year) && q.detail.contains("1826 days"),
            "{}",
            q.detail
        );
    }
}

#[tokio::test]
async fn max_event_age_is_configurable() {
    let h = Harness::with_limits(CollectorConfig {
        max_event_age: Duration::from_secs(2 * 24 * 3600),
        ..CollectorConfig::default()
    })
    .await;
    let three_days_ago = (chrono::Utc::now() - chrono::Duration::days(3)).to_rfc3339();
    let one_day_ago = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let batch = json!({"batch": [
        {"type": "track", "userId": "old", "event": "A", "timestamp": three_days_ago},
        {"type": "track", "userId": "new", "event": "A", "timestamp": one_day_ago},
    ]});
    let (_, v) = h
        .send("/v1/batch", serde_json::to_vec(&batch).unwrap())
        .await;
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    let detail = &h.quarantined().await[0].detail;
    assert!(detail.contains("2 days"), "{detail}");
}
