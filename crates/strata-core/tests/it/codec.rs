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
