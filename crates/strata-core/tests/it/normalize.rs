use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use strata_core::event::{EventType, RejectReason};
use strata_core::normalize::{Envelope, normalize};

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn micros(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_micros()
}

fn obj(v: Value) -> String {
    v.to_string()
}

fn envelope(implied: Option<EventType>) -> Envelope<'static> {
    Envelope {
        received_at: received(),
        source: "web",
        implied_type: implied,
        batch_context: None,
        batch_sent_at: None,
        max_event_name_bytes: 256,
    }
}

#[test]
fn skew_is_corrected_with_sent_at() {
    // Device clock 10 minutes fast: the event happened 30 s before it was sent.
    let msg = obj(json!({
        "userId": "u1", "event": "Signed Up", "messageId": "m1",
        "timestamp": "2026-03-01T12:09:30Z", "sentAt": "2026-03-01T12:10:00Z"
    }));
    let e = normalize(&msg, &envelope(Some(EventType::Track))).unwrap();
    assert_eq!(e.event_ts, micros("2026-03-01T11:59:30Z"));
    assert!(!e.ts_clamped);
    assert_eq!(e.sent_at, Some(micros("2026-03-01T12:10:00Z")));
    assert_eq!(e.received_at, micros("2026-03-01T12:00:00Z"));
    assert_eq!(e.event_id, "m1");
    assert!(!e.id_generated);
    assert_eq!(e.event_name, "Signed Up");
    assert_eq!(e.source, "web");
}

#[test]
fn timestamp_alone_is_taken_as_is_and_absent_falls_back_to_received_at() {
    let msg = obj(json!({"userId": "u1", "event": "A", "timestamp": "2026-02-27T08:00:00.250Z"}));
    let e = normalize(&msg, &envelope(Some(EventType::Track))).unwrap();
    assert_eq!(e.event_ts, micros("2026-02-27T08:00:00.250Z"));
    let msg = obj(json!({"userId": "u1", "event": "A"}));
    let e = normalize(&msg, &envelope(Some(EventType::Track))).unwrap();
    assert_eq!(e.event_ts, micros("2026-03-01T12:00:00Z"));
    // sentAt without timestamp says nothing about the event time.
    let msg = obj(json!({"userId": "u1", "event": "A", "sentAt": "2020-01-01T00:00:00Z"}));
    let e = normalize(&msg, &envelope(Some(EventType::Track))).unwrap();
    assert_eq!(e.event_ts, micros("2026-03-01T12:00:00Z"));
}

#[test]
fn more_than_23_hours_in_the_future_is_clamped_and_flagged() {
    let msg = obj(json!({"userId": "u1", "event": "A", "timestamp": "2026-03-02T11:00:01Z"}));
    let e = normalize(&msg, &envelope(Some(EventType::Track))).unwrap();
    assert_eq!(e.event_ts, micros("2026-03-01T12:00:00Z"));
    assert!(e.ts_clamped);
    // Exactly 23 hours ahead is still allowed.
    let msg = obj(json!({"userId": "u1", "event": "A", "timestamp": "2026-03-02T11:00:00Z"}));
    let e = normalize(&msg, &envelope(Some(EventType::Track))).unwrap();
    assert_eq!(e.event_ts, micros("2026-03-02T11:00:00Z"));
    assert!(!e.ts_clamped);
}

#[test]
fn event_names_of_each_type() {
    for (t, name) in [
        (EventType::Page, "$page"),
        (EventType::Screen, "$screen"),
        (EventType::Identify, "$identify"),
        (EventType::Group, "$group"),
    ] {
        let e = normalize(&obj(json!({"anonymousId": "a1"})), &envelope(Some(t))).unwrap();
        assert_eq!(e.event_name, name);
        assert_eq!(e.event_type, t);
    }
}

#[test]
fn alias_previous_id_is_the_anonymous_side() {
    let msg = obj(json!({"type": "alias", "previousId": "anon-7", "userId": "user-7"}));
    let e = normalize(&msg, &envelope(None)).unwrap();
    assert_eq!(e.event_name, "$alias");
    assert_eq!(e.anonymous_id.as_deref(), Some("anon-7"));
    assert_eq!(e.user_id.as_deref(), Some("user-7"));
}

#[test]
fn missing_message_id_gets_a_generated_uuid_v7() {
    let e = normalize(
        &obj(json!({"userId": "u", "event": "A"})),
        &envelope(Some(EventType::Track)),
    )
    .unwrap();
    assert!(e.id_generated);
    let id = uuid::Uuid::parse_str(&e.event_id).unwrap();
    assert_eq!(id.get_version_num(), 7);
}

#[test]
fn rejections_carry_their_reason() {
    let cases = [
        (
            json!({"type": "track", "event": "A"}),
            RejectReason::MissingIdentity,
        ),
        (
            json!({"type": "track", "userId": "", "anonymousId": null, "event": "A"}),
            RejectReason::MissingIdentity,
        ),
        (
            json!({"type": "purchase", "userId": "u"}),
            RejectReason::UnknownType,
        ),
        (json!({"userId": "u"}), RejectReason::UnknownType),
        (
            json!({"type": "track", "userId": "u"}),
            RejectReason::MissingEvent,
        ),
        (
            json!({"type": "track", "userId": "u", "event": ""}),
            RejectReason::MissingEvent,
        ),
        (
            json!({"type": "track", "userId": "u", "event": 5}),
            RejectReason::InvalidField,
        ),
        (
            json!({"type": "track", "userId": {"a": 1}, "event": "A"}),
            RejectReason::InvalidField,
        ),
        (
            json!({"type": "track", "userId": "u", "event": "A", "timestamp": "yesterday"}),
            RejectReason::InvalidField,
        ),
        (
            json!({"type": "track", "userId": "u", "event": "A", "properties": [1, 2]}),
            RejectReason::InvalidField,
        ),
    ];
    for (msg, reason) in cases {
        let err = normalize(&obj(msg.clone()), &envelope(None)).unwrap_err();
        assert_eq!(err.reason, reason, "{msg}");
        assert!(!err.detail.is_empty());
    }
}

#[test]
fn numeric_user_ids_become_strings() {
    let e = normalize(
        &obj(json!({"userId": 12345, "event": "A"})),
        &envelope(Some(EventType::Track)),
    )
    .unwrap();
    assert_eq!(e.user_id.as_deref(), Some("12345"));
}

/// One message whose id fields are the given raw JSON number literals, as
/// `json!` would respell them.
fn with_ids(user: &str, anon: &str, message: &str) -> String {
    format!(
        r#"{{"type":"track","event":"A","userId":{user},"anonymousId":{anon},"messageId":{message}}}"#
    )
}

#[test]
fn numeric_ids_are_spelled_as_javascript_string_spells_them() {
    // (literal, String(n) of the Segment libraries), written out by hand.
    let cases = [
        ("1", "1"),
        ("1.0", "1"),
        ("1e0", "1"),
        ("-0", "0"),
        ("0", "0"),
        ("-0.0", "0"),
        ("1e2", "100"),
        ("1E2", "100"),
        ("100", "100"),
        ("1.5", "1.5"),
        ("-1.5", "-1.5"),
        ("0.1", "0.1"),
        ("2.5e-3", "0.0025"),
        ("1.23e+5", "123000"),
        ("12345678.9", "12345678.9"),
        ("1e20", "100000000000000000000"),
        ("1e21", "1e+21"),
        ("1.5e300", "1.5e+300"),
        ("0.000001", "0.000001"),
        ("1e-7", "1e-7"),
        ("-1.25e-10", "-1.25e-10"),
        ("1e-999", "0"),
        // Integer literals are kept as written, even beyond 2^53.
        ("-7", "-7"),
        (
            "123456789012345678901234567890",
            "123456789012345678901234567890",
        ),
    ];
    for (literal, expected) in cases {
        let msg = with_ids(literal, literal, literal);
        let e = normalize(&msg, &envelope(None)).unwrap_or_else(|r| panic!("{literal}: {r:?}"));
        assert_eq!(e.user_id.as_deref(), Some(expected), "userId {literal}");
        assert_eq!(
            e.anonymous_id.as_deref(),
            Some(expected),
            "anonymousId {literal}"
        );
        assert_eq!(e.event_id, expected, "messageId {literal}");
        assert!(!e.id_generated);
    }
    let alias = r#"{"type":"alias","userId":"u","previousId":1.0}"#;
    let e = normalize(alias, &envelope(None)).unwrap();
    assert_eq!(e.anonymous_id.as_deref(), Some("1"));
}

#[test]
fn a_number_id_that_is_not_a_finite_double_is_rejected() {
    for (msg, field) in [
        (with_ids("1e999", "\"a\"", "\"m\""), "userId"),
        (with_ids("\"u\"", "-1e999", "\"m\""), "anonymousId"),
        (with_ids("\"u\"", "\"a\"", "1E400"), "messageId"),
        (
            r#"{"type":"alias","userId":"u","previousId":1e999}"#.to_string(),
            "previousId",
        ),
    ] {
        let err = normalize(&msg, &envelope(None)).unwrap_err();
        assert_eq!(err.reason, RejectReason::InvalidField, "{msg}");
        assert!(
            err.detail.contains(field) && err.detail.contains("finite"),
            "{}",
            err.detail
        );
    }
}

#[test]
fn event_names_longer_than_the_limit_are_rejected() {
    let track = |name: &str| obj(json!({"userId": "u", "event": name}));
    // 256 bytes in 128 two-byte characters: the limit is in bytes.
    let at_limit = "é".repeat(128);
    assert_eq!(at_limit.len(), 256);
    let e = normalize(&track(&at_limit), &envelope(Some(EventType::Track))).unwrap();
    assert_eq!(e.event_name, at_limit);
    let over = format!("{at_limit}a");
    let err = normalize(&track(&over), &envelope(Some(EventType::Track))).unwrap_err();
    assert_eq!(err.reason, RejectReason::EventNameTooLong);
    assert_eq!(err.reason.as_str(), "event_name_too_long");
    assert!(err.detail.contains("257 bytes"), "{}", err.detail);
    // The limit comes from the envelope (collector.max_event_name_bytes).
    let small = Envelope {
        max_event_name_bytes: 4,
        ..envelope(Some(EventType::Track))
    };
    assert!(normalize(&track("Buy!"), &small).is_ok());
    let err = normalize(&track("Buy!!"), &small).unwrap_err();
    assert_eq!(err.reason, RejectReason::EventNameTooLong);
    // Other types' names are fixed and unaffected by any limit.
    let page = normalize(
        &obj(json!({"anonymousId": "a"})),
        &Envelope {
            max_event_name_bytes: 1,
            ..envelope(Some(EventType::Page))
        },
    );
    assert!(page.is_ok());
}

#[test]
fn batch_context_merges_under_the_message_context() {
    let batch_context =
        json!({"library": {"name": "analytics-node", "version": "1"}, "ip": "10.0.0.1"})
            .as_object()
            .unwrap()
            .clone();
    let env = Envelope {
        batch_context: Some(&batch_context),
        ..envelope(None)
    };
    let msg = obj(json!({
        "type": "track", "userId": "u", "event": "A",
        "context": {"library": {"version": "2"}, "locale": "de-DE"}
    }));
    let e = normalize(&msg, &env).unwrap();
    let context: Value = serde_json::from_str(e.context.as_deref().unwrap()).unwrap();
    assert_eq!(
        context,
        json!({"library": {"name": "analytics-node", "version": "2"}, "ip": "10.0.0.1", "locale": "de-DE"})
    );
    // A message with no context of its own gets the batch's.
    let e = normalize(&obj(json!({"type": "page", "anonymousId": "a"})), &env).unwrap();
    let context: Value = serde_json::from_str(e.context.as_deref().unwrap()).unwrap();
    assert_eq!(context["ip"], "10.0.0.1");
}

#[test]
fn batch_sent_at_applies_to_messages_without_their_own() {
    let sent = serde_json::value::RawValue::from_string("\"2026-03-01T12:10:00Z\"".into()).unwrap();
    let env = Envelope {
        batch_sent_at: Some(&sent),
        ..envelope(None)
    };
    let msg = obj(
        json!({"type": "track", "userId": "u", "event": "A", "timestamp": "2026-03-01T12:09:00Z"}),
    );
    let e = normalize(&msg, &env).unwrap();
    assert_eq!(e.event_ts, micros("2026-03-01T11:59:00Z"));
}

#[test]
fn blobs_are_kept_as_sent_and_non_objects_are_not_payloads() {
    let msg = r#"{"userId":"u","event":"A","properties":{"price": 9.5, "tags":["a","b"]}}"#;
    let e = normalize(msg, &envelope(Some(EventType::Track))).unwrap();
    assert_eq!(
        e.properties.as_deref(),
        Some(r#"{"price": 9.5, "tags":["a","b"]}"#)
    );
    for item in ["17", "\"text\"", "[1]", "null"] {
        let err = normalize(item, &envelope(None)).unwrap_err();
        assert_eq!(err.reason, RejectReason::NotSegmentPayload, "{item}");
    }
    let err = normalize(
        r#"{"userId":"u","userId":"v","event":"A"}"#,
        &envelope(Some(EventType::Track)),
    )
    .unwrap_err();
    assert_eq!(err.reason, RejectReason::InvalidField);
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("type".to_string()),
                        Just("userId".to_string()),
                        Just("anonymousId".to_string()),
                        Just("event".to_string()),
                        Just("timestamp".to_string()),
                        Just("sentAt".to_string()),
                        Just("properties".to_string()),
                        Just("context".to_string()),
                        Just("messageId".to_string()),
                        Just("previousId".to_string()),
                        ".{0,8}".prop_map(|s| s),
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = normalize(&text, &envelope(None));
            let _ = normalize(&text, &envelope(Some(EventType::Track)));
        }

        #[test]
        fn arbitrary_messages_are_accepted_or_rejected_with_a_reason(v in json_value()) {
            match normalize(&v.to_string(), &envelope(None)) {
                Ok(e) => {
                    prop_assert!(e.user_id.is_some() || e.anonymous_id.is_some());
                    prop_assert!(!e.event_name.is_empty());
                    prop_assert!(e.event_ts <= e.received_at + strata_core::normalize::MAX_FUTURE_MICROS);
                }
                Err(r) => prop_assert!(!r.detail.is_empty()),
            }
        }
    }
}
