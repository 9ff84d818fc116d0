use proptest::prelude::*;
use strata_core::event::{BronzeEvent, EventType, LogRecord, QuarantineRecord, RejectReason};

fn event_strategy() -> impl Strategy<Value = LogRecord> {
    (
        (any::<String>(), any::<bool>(), 0usize..6, any::<String>()),
        (
            proptest::option::of(any::<String>()),
            proptest::option::of(any::<String>()),
        ),
        (
            any::<i64>(),
            any::<bool>(),
            proptest::option::of(any::<i64>()),
            any::<i64>(),
        ),
        (
            any::<String>(),
            proptest::option::of(".*"),
            proptest::option::of(".*"),
            proptest::option::of(".*"),
        ),
    )
        .prop_map(
            |(
                (id, generated, t, name),
                (user, anon),
                (ts, clamped, sent, received),
                (source, p, c, tr),
            )| {
                LogRecord::Event(BronzeEvent {
                    event_id: id,
                    id_generated: generated,
                    event_type: EventType::ALL[t],
                    event_name: name,
                    user_id: user,
                    anonymous_id: anon,
                    event_ts: ts,
                    ts_clamped: clamped,
                    sent_at: sent,
                    received_at: received,
                    source,
                    properties: p,
                    context: c,
                    traits: tr,
                })
            },
        )
}

proptest! {
    #[test]
    fn events_round_trip(record in event_strategy()) {
        prop_assert_eq!(LogRecord::decode(&record.encode()).unwrap(), record);
    }

    #[test]
    fn quarantine_round_trips(received in any::<i64>(), source in ".*", detail in ".*", raw in ".*", r in 0usize..8) {
        let reasons = [
            RejectReason::InvalidJson, RejectReason::NotSegmentPayload, RejectReason::RequestTooLarge,
            RejectReason::MessageTooLarge, RejectReason::MissingIdentity, RejectReason::UnknownType,
            RejectReason::MissingEvent, RejectReason::InvalidField,
        ];
        let record = LogRecord::Quarantine(QuarantineRecord { received_at: received, source, reason: reasons[r], detail, raw });
        prop_assert_eq!(LogRecord::decode(&record.encode()).unwrap(), record);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = LogRecord::decode(&bytes);
    }

    #[test]
    fn every_truncation_is_an_error(record in event_strategy(), cut in any::<prop::sample::Index>()) {
        let bytes = record.encode();
        let at = cut.index(bytes.len());
        prop_assert!(LogRecord::decode(&bytes[..at]).is_err());
    }
}

/// A reason's byte in the log is its position in the codec's table: new
/// reasons are appended, so records already in a log decode as they did.
#[test]
fn every_reason_round_trips_and_keeps_its_byte() {
    let bytes = [
        (RejectReason::InvalidJson, 0u8),
        (RejectReason::NotSegmentPayload, 1),
        (RejectReason::RequestTooLarge, 2),
        (RejectReason::MessageTooLarge, 3),
        (RejectReason::MissingIdentity, 4),
        (RejectReason::UnknownType, 5),
        (RejectReason::MissingEvent, 6),
        (RejectReason::InvalidField, 7),
        (RejectReason::EventTsTooOld, 8),
        (RejectReason::EventNameTooLong, 9),
        (RejectReason::TooManyItems, 10),
    ];
    for (reason, byte) in bytes {
        let record = LogRecord::Quarantine(QuarantineRecord {
            received_at: 7,
            source: "web".into(),
            reason,
            detail: "d".into(),
            raw: "r".into(),
        });
        let encoded = record.encode();
        assert_eq!(encoded[..2], [2, byte], "{reason:?}");
        assert_eq!(LogRecord::decode(&encoded).unwrap(), record);
    }
    // A record as an older collector wrote it, byte by byte.
    let mut old = vec![2u8, 8];
    old.extend_from_slice(&7i64.to_le_bytes());
    for text in ["web", "d", "r"] {
        old.extend_from_slice(&(text.len() as u32).to_le_bytes());
        old.extend_from_slice(text.as_bytes());
    }
    let LogRecord::Quarantine(q) = LogRecord::decode(&old).unwrap() else {
        panic!("not a quarantine record");
    };
    assert_eq!(q.reason, RejectReason::EventTsTooOld);
    assert_eq!((q.received_at, q.source.as_str()), (7, "web"));
    // A byte past the table is an error, not a wrong reason.
    old[1] = 11;
    assert!(LogRecord::decode(&old).is_err());
}

#[test]
fn new_reasons_have_their_contract_names() {
    assert_eq!(
        RejectReason::EventNameTooLong.as_str(),
        "event_name_too_long"
    );
    assert_eq!(RejectReason::TooManyItems.as_str(), "too_many_items");
}
