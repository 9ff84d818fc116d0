//! The wire formats by themselves: content types, and bodies read into the
//! JSON a batch stands for.

use serde_json::{Value, json};
use strata_wire::WireFormat;
use strata_wire::protobuf::{json_to_struct, pb, struct_to_json};

#[test]
fn content_types_name_their_formats() {
    for (header, format) in [
        ("application/x-protobuf", WireFormat::Protobuf),
        (
            "application/x-protobuf; charset=binary",
            WireFormat::Protobuf,
        ),
        ("Application/Avro", WireFormat::Avro),
        ("application/json", WireFormat::Json),
        ("text/plain", WireFormat::Json),
        ("", WireFormat::Json),
    ] {
        assert_eq!(WireFormat::from_content_type(header), format, "{header}");
    }
}

#[test]
fn a_protobuf_batch_reads_as_its_json_body_with_object_text_kept_verbatim() {
    let batch = pb::Batch {
        batch: vec![pb::Message {
            r#type: "track".into(),
            user_id: Some("u\"1".into()),
            event: Some("Played".into()),
            properties: Some(pb::message::Properties::PropertiesJson(
                "{\"z\": 1, \"a\": 2.50}".into(),
            )),
            traits: Some(pb::message::Traits::TraitsJson("not json".into())),
            ..Default::default()
        }],
        sent_at: Some("2026-12-07T10:00:00Z".into()),
        ..Default::default()
    };
    let body = strata_wire::protobuf::decode_batch(&prost::Message::encode_to_vec(&batch)).unwrap();
    assert_eq!(
        body,
        r#"{"batch":[{"type":"track","userId":"u\"1","event":"Played","properties":{"z": 1, "a": 2.50},"traits":"not json"}],"sentAt":"2026-12-07T10:00:00Z"}"#
    );
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed["batch"][0]["properties"]["a"], json!(2.5));
}

#[test]
fn struct_numbers_come_back_as_json_spelled_them() {
    let object = json!({"n": 3, "x": 2.5, "big": 9007199254740993u64, "neg": -4, "list": [1, "a", null, true]});
    let back = struct_to_json(&json_to_struct(object.as_object().unwrap()));
    // 2^53 + 1 is not a double: it comes back as the nearest one.
    assert_eq!(
        back,
        json!({"n": 3, "x": 2.5, "big": 9007199254740992u64, "neg": -4, "list": [1, "a", null, true]})
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for body in [&b"\xff\xff\xff\xff"[..], b"Obj\x01", b"", b"\x0a\x05abc"] {
        let _ = strata_wire::protobuf::decode_batch(body);
        assert!(strata_wire::avro::decode_batch(body).is_err());
    }
}

#[test]
fn every_format_encodes_what_it_decodes() {
    let messages = vec![
        json!({"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "m1"}),
        json!({"type": "track", "anonymousId": "a1", "event": "E", "properties": {"k": [1, 2]}}),
    ];
    for format in [WireFormat::Protobuf, WireFormat::Avro] {
        let body = format.encode_batch(&messages, Some("wk")).unwrap();
        let json = match format {
            WireFormat::Protobuf => strata_wire::protobuf::decode_batch(&body).unwrap(),
            _ => strata_wire::avro::decode_batch(&body).unwrap(),
        };
        let parsed: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["batch"], Value::from(messages.clone()), "{format:?}");
        assert_eq!(parsed["writeKey"], "wk", "{format:?}");
    }
}
