use std::io::Write;

use serde_json::json;
use strata_core::event::{EventType, RejectReason};

use crate::harness::{Harness, KEY, json_of};

fn body(v: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn every_single_endpoint_accepts_its_type() {
    let h = Harness::start().await;
    for (path, t) in [
        ("/v1/track", EventType::Track),
        ("/v1/identify", EventType::Identify),
        ("/v1/page", EventType::Page),
        ("/v1/screen", EventType::Screen),
        ("/v1/group", EventType::Group),
        ("/v1/alias", EventType::Alias),
    ] {
        let msg = json!({"userId": "u1", "previousId": "a1", "event": "Clicked", "groupId": "g"});
        let (status, v) = h.send(path, body(msg)).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            v,
            json!({"success": true, "accepted": 1, "rejected": 0}),
            "{path}"
        );
        let events = h.events().await;
        assert!(events.iter().any(|e| e.event_type == t), "{path}");
    }
    assert_eq!(h.events().await.len(), 6);
}

#[tokio::test]
async fn batch_counts_accepted_and_rejected_and_keeps_rejects() {
    let h = Harness::start().await;
    let request = json!({"batch": [
        {"type": "track", "userId": "u1", "event": "A", "messageId": "m1"},
        {"type": "track", "event": "no identity", "messageId": "m2"},
        {"type": "teleport", "userId": "u1", "messageId": "m3"},
        {"type": "track", "userId": "u1", "messageId": "m4"},
        {"type": "page", "anonymousId": "a1", "messageId": "m5"},
        17
    ]});
    let (status, v) = h.send("/v1/batch", body(request)).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"success": true, "accepted": 2, "rejected": 4}));
    let mut ids: Vec<_> = h.events().await.into_iter().map(|e| e.event_id).collect();
    ids.sort();
    assert_eq!(ids, ["m1", "m5"]);
    let mut reasons: Vec<_> = h
        .quarantined()
        .await
        .into_iter()
        .map(|q| q.reason)
        .collect();
    reasons.sort_by_key(|r| r.as_str());
    assert_eq!(
        reasons,
        [
            RejectReason::MissingEvent,
            RejectReason::MissingIdentity,
            RejectReason::NotSegmentPayload,
            RejectReason::UnknownType
        ]
    );
    let q = h.quarantined().await;
    let missing = q
        .iter()
        .find(|q| q.reason == RejectReason::MissingIdentity)
        .unwrap();
    assert!(missing.raw.contains("no identity"));
    assert_eq!(missing.source, "web");
}

#[tokio::test]
async fn write_key_in_body_authenticates() {
    let h = Harness::start().await;
    let msg = json!({"writeKey": KEY, "userId": "u", "event": "A"});
    let (status, _) = json_of(h.post("/v1/track").body(body(msg)).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let msg = json!({"writeKey": KEY, "batch": [{"type": "track", "userId": "u", "event": "A"}]});
    let (status, v) = json_of(h.post("/v1/batch").body(body(msg)).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(v["accepted"], 1);
}

#[tokio::test]
async fn unknown_or_missing_key_is_401_and_stores_nothing() {
    let h = Harness::start().await;
    let msg = json!({"userId": "u", "event": "A"});
    let r = h
        .post("/v1/track")
        .body(body(msg.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = h
        .post("/v1/track")
        .basic_auth("wk_wrong", Some(""))
        .body(body(msg.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = h
        .post("/v1/track")
        .header("authorization", "Basic !!!")
        .body(body(msg))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let wrong = json!({"writeKey": "nope", "userId": "u", "event": "A"});
    let r = h.post("/v1/track").body(body(wrong)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = h.post("/v1/track").body("not json").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(h.records().await.is_empty());
}

#[tokio::test]
async fn non_json_body_is_400_and_quarantined() {
    let h = Harness::start().await;
    let (status, v) = h.send("/v1/track", "{not json").await;
    assert_eq!(status, 400);
    assert_eq!(v["success"], false);
    assert_eq!(v["error"], "invalid_json");
    let q = h.quarantined().await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].reason, RejectReason::InvalidJson);
    assert_eq!(q[0].raw, "{not json");
}

#[tokio::test]
async fn json_that_is_not_a_segment_payload_is_400_and_quarantined() {
    let h = Harness::start().await;
    let r = h
        .post_auth("/v1/track")
        .body("[1,2,3]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = h
        .post_auth("/v1/batch")
        .body(r#"{"batch": "nope"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = h
        .post_auth("/v1/batch")
        .body(r#"{"events": []}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let q = h.quarantined().await;
    assert_eq!(q.len(), 3);
    assert!(
        q.iter()
            .all(|q| q.reason == RejectReason::NotSegmentPayload)
    );
    assert!(q.iter().any(|q| q.raw == "[1,2,3]"));
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    let h = Harness::start().await;
    let msg = body(json!({"batch": [
        {"type": "track", "userId": "u", "event": "Zipped", "messageId": "z1"}
    ]}));
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&msg).unwrap();
    let gz = encoder.finish().unwrap();
    let r = h
        .post_auth("/v1/batch")
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(h.events().await[0].event_name, "Zipped");
    // A body that claims gzip but is not: 400, kept in quarantine.
    let r = h
        .post_auth("/v1/batch")
        .header("content-encoding", "gzip")
        .body("plain")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let q = h.quarantined().await;
    assert_eq!(q.len(), 1);
    assert!(q[0].raw.starts_with("base64:"));
}

#[tokio::test]
async fn batch_context_and_sent_at_reach_each_message() {
    let h = Harness::start().await;
    let request = json!({
        "context": {"library": {"name": "analytics-python"}, "ip": "1.2.3.4"},
        "batch": [
            {"type": "track", "userId": "u", "event": "A", "messageId": "c1", "context": {"locale": "fr"}},
            {"type": "track", "userId": "u", "event": "B", "messageId": "c2"}
        ]
    });
    let r = h
        .post_auth("/v1/batch")
        .body(body(request))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for e in h.events().await {
        let context: serde_json::Value =
            serde_json::from_str(e.context.as_deref().unwrap()).unwrap();
        assert_eq!(context["ip"], "1.2.3.4");
        assert_eq!(context["library"]["name"], "analytics-python");
        if e.event_id == "c1" {
            assert_eq!(context["locale"], "fr");
        }
    }
}

#[tokio::test]
async fn skew_correction_uses_the_server_receive_time() {
    let h = Harness::start().await;
    // Device clock two hours ahead; event 5 s before send.
    let now = chrono::Utc::now();
    let ts = now + chrono::Duration::hours(2) - chrono::Duration::seconds(5);
    let sent = now + chrono::Duration::hours(2);
    let msg = json!({"userId": "u", "event": "A", "timestamp": ts.to_rfc3339(), "sentAt": sent.to_rfc3339()});
    let r = h
        .post_auth("/v1/track")
        .body(body(msg))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let e = &h.events().await[0];
    assert_eq!(e.received_at - e.event_ts, 5_000_000);
    let msg = json!({"userId": "u", "event": "A", "timestamp": (now + chrono::Duration::days(2)).to_rfc3339()});
    h.post_auth("/v1/track")
        .body(body(msg))
        .send()
        .await
        .unwrap();
    let clamped: Vec<_> = h
        .events()
        .await
        .into_iter()
        .filter(|e| e.ts_clamped)
        .collect();
    assert_eq!(clamped.len(), 1);
    assert_eq!(clamped[0].event_ts, clamped[0].received_at);
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let h = Harness::start().await;
    h.post_auth("/v1/track")
        .body(body(json!({"userId": "u", "event": "A"})))
        .send()
        .await
        .unwrap();
    let r = h
        .client
        .get(format!("{}/health", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = h
        .client
        .get(format!("{}/ready", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = h
        .client
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("strata_collector_requests_total"), "{text}");
}

#[tokio::test]
async fn one_persons_events_share_a_partition() {
    let h = Harness::start().await;
    let batch: Vec<_> = (0..30)
        .map(|i| json!({"type": "track", "userId": format!("user-{}", i % 3), "event": "A", "messageId": format!("p{i}")}))
        .collect();
    h.post_auth("/v1/batch")
        .body(body(json!({"batch": batch})))
        .send()
        .await
        .unwrap();
    for p in 0..3 {
        let entries = strata_log::Log::read(h.log.as_ref(), p, 0, 1 << 20)
            .await
            .unwrap();
        let mut users = std::collections::BTreeSet::new();
        for entry in entries {
            if let strata_core::LogRecord::Event(e) =
                strata_core::LogRecord::decode(&entry.payload).unwrap()
            {
                users.insert(e.user_id.unwrap());
            }
        }
        for u in &users {
            assert_eq!(strata_log::partition_for_key(u, 3), p);
        }
    }
}
