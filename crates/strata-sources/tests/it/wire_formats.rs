//! Protobuf and Avro batches on `/v1/batch` (SPEC §7): the same answers,
//! limits, normalisation and quarantine as the same batch sent as JSON.

use std::io::Write;

use base64::Engine;
use serde_json::{Value, json};
use strata_core::BronzeEvent;
use strata_core::event::RejectReason;
use strata_wire::WireFormat;
use strata_wire::protobuf::{json_to_struct, pb};

use crate::harness::{Harness, json_of};

/// One message of every type, with objects, ids and times.
fn every_type() -> Vec<Value> {
    vec![
        json!({"type": "track", "messageId": "m-track", "userId": "u1", "event": "Order Completed",
               "timestamp": "2026-12-01T10:00:00.000Z",
               "properties": {"order_id": "o1", "revenue": 19.5, "count": 3, "tags": ["a", "b"], "gift": null},
               "context": {"library": {"name": "analytics-node"}, "ip": "10.0.0.1"}}),
        json!({"type": "identify", "messageId": "m-identify", "userId": "u1", "anonymousId": "a1",
               "timestamp": "2026-12-01T10:00:01Z", "traits": {"email": "u1@example.com", "plan": "pro"}}),
        json!({"type": "page", "messageId": "m-page", "anonymousId": "a1", "name": "Home",
               "timestamp": "2026-12-01T10:00:02Z", "properties": {"path": "/"},
               "context": {"page": {"url": "https://shop.example/"}, "userAgent": "Mozilla/5.0"}}),
        json!({"type": "screen", "messageId": "m-screen", "userId": "u2", "name": "Cart",
               "timestamp": "2026-12-01T10:00:03Z", "context": {"os": {"name": "iOS"}}}),
        json!({"type": "group", "messageId": "m-group", "userId": "u1", "groupId": "g1",
               "timestamp": "2026-12-01T10:00:04Z", "traits": {"name": "Acme"}}),
        json!({"type": "alias", "messageId": "m-alias", "userId": "u1", "previousId": "a1",
               "timestamp": "2026-12-01T10:00:05Z"}),
    ]
}

/// A request with only the format's content type (the harness's builders
/// already carry JSON's).
fn post_as(h: &Harness, format: WireFormat) -> reqwest::RequestBuilder {
    h.client
        .post(format!("{}/v1/batch", h.base))
        .header("content-type", format.content_type())
}

async fn send_as(h: &Harness, format: WireFormat, body: Vec<u8>) -> (u16, Value) {
    let response = post_as(h, format)
        .basic_auth(crate::harness::KEY, Some(""))
        .body(body)
        .send()
        .await
        .unwrap();
    json_of(response).await
}

/// Events with what only the moment of arrival decides blanked out.
fn comparable(mut events: Vec<BronzeEvent>) -> Vec<BronzeEvent> {
    for e in &mut events {
        e.received_at = 0;
    }
    events.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    events
}

async fn landed_as(format: WireFormat, body: Vec<u8>) -> (Value, Vec<BronzeEvent>) {
    let h = Harness::start().await;
    let (status, answer) = send_as(&h, format, body).await;
    assert_eq!(status, 200, "{format:?}: {answer}");
    (answer, comparable(h.events().await))
}

#[tokio::test]
async fn every_message_type_lands_as_the_same_batch_sent_as_json() {
    let messages = every_type();
    let (json_answer, from_json) = landed_as(
        WireFormat::Json,
        WireFormat::Json.encode_batch(&messages, None).unwrap(),
    )
    .await;
    assert_eq!(
        json_answer,
        json!({"success": true, "accepted": 6, "rejected": 0})
    );
    assert_eq!(from_json.len(), 6);
    for format in [WireFormat::Protobuf, WireFormat::Avro] {
        let body = format.encode_batch(&messages, None).unwrap();
        let (answer, events) = landed_as(format, body).await;
        assert_eq!(answer, json_answer, "{format:?}");
        assert_eq!(events, from_json, "{format:?}");
    }
}

#[tokio::test]
async fn protobuf_structs_land_as_the_json_objects_they_hold() {
    let messages = every_type();
    let to_struct = |v: &Value| v.as_object().map(json_to_struct);
    let batch = pb::Batch {
        batch: messages
            .iter()
            .map(|m| pb::Message {
                r#type: m["type"].as_str().unwrap().to_string(),
                message_id: m["messageId"].as_str().map(String::from),
                user_id: m["userId"].as_str().map(String::from),
                anonymous_id: m["anonymousId"].as_str().map(String::from),
                previous_id: m["previousId"].as_str().map(String::from),
                group_id: m["groupId"].as_str().map(String::from),
                event: m["event"].as_str().map(String::from),
                name: m["name"].as_str().map(String::from),
                timestamp: m["timestamp"].as_str().map(String::from),
                properties: to_struct(&m["properties"])
                    .map(pb::message::Properties::PropertiesStruct),
                context: to_struct(&m["context"]).map(pb::message::Context::ContextStruct),
                traits: to_struct(&m["traits"]).map(pb::message::Traits::TraitsStruct),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let (_, from_json) = landed_as(
        WireFormat::Json,
        WireFormat::Json.encode_batch(&messages, None).unwrap(),
    )
    .await;
    let (answer, from_structs) =
        landed_as(WireFormat::Protobuf, prost::Message::encode_to_vec(&batch)).await;
    assert_eq!(answer["accepted"], 6);
    assert_eq!(from_structs, from_json);
    // Whole numbers come back as integers, fractions as they were.
    let track = from_structs
        .iter()
        .find(|e| e.event_id == "m-track")
        .unwrap();
    let properties: Value = serde_json::from_str(track.properties.as_deref().unwrap()).unwrap();
    assert_eq!(properties["count"], json!(3));
    assert_eq!(properties["revenue"], json!(19.5));
}

#[tokio::test]
async fn batch_context_and_write_key_travel_in_the_protobuf_body() {
    let h = Harness::start().await;
    let batch = pb::Batch {
        batch: vec![pb::Message {
            r#type: "track".into(),
            user_id: Some("u1".into()),
            event: Some("Signed Up".into()),
            ..Default::default()
        }],
        context: Some(pb::batch::Context::ContextJson(
            r#"{"library":{"name":"analytics-go"}}"#.into(),
        )),
        write_key: Some(crate::harness::KEY.into()),
        ..Default::default()
    };
    // No Basic auth: the key in the body is the only one.
    let response = post_as(&h, WireFormat::Protobuf)
        .body(prost::Message::encode_to_vec(&batch))
        .send()
        .await
        .unwrap();
    let (status, answer) = json_of(response).await;
    assert_eq!((status, answer["accepted"].clone()), (200, json!(1)));
    let events = h.events().await;
    assert_eq!(events[0].source, "web");
    assert_eq!(
        events[0].context.as_deref(),
        Some(r#"{"library":{"name":"analytics-go"}}"#)
    );
}

#[tokio::test]
async fn gzip_protobuf_and_avro_are_read() {
    for format in [WireFormat::Protobuf, WireFormat::Avro] {
        let h = Harness::start().await;
        let body = format.encode_batch(&every_type(), None).unwrap();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&body).unwrap();
        let response = post_as(&h, format)
            .basic_auth(crate::harness::KEY, Some(""))
            .header("content-encoding", "gzip")
            .body(encoder.finish().unwrap())
            .send()
            .await
            .unwrap();
        let (status, answer) = json_of(response).await;
        assert_eq!(
            (status, answer["accepted"].clone()),
            (200, json!(6)),
            "{format:?}"
        );
    }
}

#[tokio::test]
async fn a_corrupt_body_is_400_and_kept_whole() {
    let cases = [
        (
            WireFormat::Protobuf,
            vec![0x0a, 0xff, 0xff, 0x01, 0x02],
            RejectReason::InvalidProtobuf,
        ),
        (
            WireFormat::Avro,
            b"Obj\x01 not really avro".to_vec(),
            RejectReason::InvalidAvro,
        ),
    ];
    for (format, body, reason) in cases {
        let h = Harness::start().await;
        let (status, answer) = send_as(&h, format, body.clone()).await;
        assert_eq!(status, 400, "{format:?}: {answer}");
        assert_eq!(answer["error"], reason.as_str());
        assert!(h.events().await.is_empty());
        let q = h.quarantined().await;
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].reason, reason);
        let kept = q[0].raw.strip_prefix("base64:").unwrap();
        let kept = base64::engine::general_purpose::STANDARD
            .decode(kept)
            .unwrap();
        assert_eq!(kept, body, "{format:?}: the raw body is kept byte for byte");
    }
}

#[tokio::test]
async fn an_oversize_message_is_rejected_and_the_rest_accepted() {
    let big = "z".repeat(33 * 1024);
    let messages = vec![
        json!({"type": "track", "messageId": "s1", "userId": "u", "event": "Small"}),
        json!({"type": "track", "messageId": "b1", "userId": "u", "event": "Big", "properties": {"blob": big}}),
        json!({"type": "track", "messageId": "s2", "userId": "u", "event": "Small"}),
        json!({"type": "track", "messageId": "n1", "event": "No Identity"}),
    ];
    for format in [WireFormat::Protobuf, WireFormat::Avro] {
        let h = Harness::start().await;
        let (status, answer) =
            send_as(&h, format, format.encode_batch(&messages, None).unwrap()).await;
        assert_eq!(status, 200, "{format:?}");
        assert_eq!(
            answer,
            json!({"success": true, "accepted": 2, "rejected": 2})
        );
        let mut reasons: Vec<_> = h.quarantined().await.iter().map(|q| q.reason).collect();
        reasons.sort_by_key(|r| r.as_str());
        assert_eq!(
            reasons,
            [RejectReason::MessageTooLarge, RejectReason::MissingIdentity]
        );
    }
}

#[tokio::test]
async fn an_avro_file_is_read_by_its_own_schema() {
    use apache_avro::types::Value as Avro;
    // A writer's own schema: snake_case names, a timestamp-millis time and
    // properties as a map rather than JSON text.
    let schema = apache_avro::Schema::parse_str(
        r#"{"type": "record", "name": "Event", "fields": [
            {"name": "type", "type": {"type": "enum", "name": "Kind", "symbols": ["track", "identify"]}},
            {"name": "message_id", "type": "string"},
            {"name": "user_id", "type": ["null", "string"]},
            {"name": "event", "type": "string"},
            {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "properties", "type": {"type": "map", "values": "long"}}
        ]}"#,
    )
    .unwrap();
    let mut writer = apache_avro::Writer::new(&schema, Vec::new());
    writer
        .append(Avro::Record(vec![
            ("type".into(), Avro::Enum(0, "track".into())),
            ("message_id".into(), Avro::String("e1".into())),
            (
                "user_id".into(),
                Avro::Union(1, Box::new(Avro::String("u9".into()))),
            ),
            ("event".into(), Avro::String("Played".into())),
            ("timestamp".into(), Avro::TimestampMillis(1_764_583_200_000)),
            (
                "properties".into(),
                Avro::Map([("level".to_string(), Avro::Long(4))].into()),
            ),
        ]))
        .unwrap();
    let h = Harness::start().await;
    let (status, answer) = send_as(&h, WireFormat::Avro, writer.into_inner().unwrap()).await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (200, json!(1)),
        "{answer}"
    );
    let e = &h.events().await[0];
    assert_eq!(
        (
            e.event_id.as_str(),
            e.user_id.as_deref(),
            e.event_name.as_str()
        ),
        ("e1", Some("u9"), "Played")
    );
    // 2025-12-01T10:00:00Z
    assert_eq!(e.event_ts, 1_764_583_200_000_000);
    assert_eq!(e.properties.as_deref(), Some(r#"{"level":4}"#));
}
