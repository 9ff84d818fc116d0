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
        (RejectReason::InvalidProtobuf, 11),
        (RejectReason::InvalidAvro, 12),
        (RejectReason::FeedBadRow, 13),
        (RejectReason::InvalidLine, 14),
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
    old[1] = 15;
    assert!(LogRecord::decode(&old).is_err());
}

#[test]
fn new_reasons_have_their_contract_names() {
    assert_eq!(
        RejectReason::EventNameTooLong.as_str(),
        "event_name_too_long"
    );
    assert_eq!(RejectReason::TooManyItems.as_str(), "too_many_items");
    assert_eq!(RejectReason::InvalidProtobuf.as_str(), "invalid_protobuf");
    assert_eq!(RejectReason::InvalidAvro.as_str(), "invalid_avro");
    assert_eq!(RejectReason::FeedBadRow.as_str(), "feed_bad_row");
    assert_eq!(RejectReason::InvalidLine.as_str(), "invalid_line");
}

fn change_strategy() -> impl Strategy<Value = LogRecord> {
    use strata_core::event::{ChangeOp, ChangeRecord};
    (
        (any::<String>(), any::<String>(), any::<String>(), 0usize..5),
        (
            any::<u64>(),
            any::<i64>(),
            proptest::option::of(any::<u32>()),
            any::<u64>(),
        ),
        (
            ".*",
            proptest::option::of(".*"),
            proptest::option::of(".*"),
            any::<i64>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (source, schema, table, op),
                (lsn, commit_ts, tx_id, seq),
                (key, before, after, received_at, tx_end),
            )| {
                LogRecord::Change(ChangeRecord {
                    source,
                    table_schema: schema,
                    table_name: table,
                    op: ChangeOp::ALL[op],
                    lsn,
                    commit_ts,
                    tx_id,
                    seq,
                    key,
                    before,
                    after,
                    received_at,
                    tx_end,
                })
            },
        )
}

proptest! {
    #[test]
    fn change_records_round_trip(record in change_strategy()) {
        let bytes = record.encode();
        prop_assert_eq!(LogRecord::decode(&bytes).unwrap(), record);
        // The realtime path skips them without decoding their blobs.
        prop_assert_eq!(strata_core::codec::decode_view(&bytes).unwrap(), None);
        // Cut anywhere, a change record is an error, never a panic.
        for cut in 0..bytes.len() {
            prop_assert!(LogRecord::decode(&bytes[..cut]).is_err());
        }
    }
}

#[test]
fn relation_records_round_trip_and_lsns_print_as_postgres_does() {
    use strata_core::event::{RelationColumn, RelationRecord, format_lsn, parse_lsn};
    let record = LogRecord::Relation(RelationRecord {
        source: "shop".into(),
        table_schema: "public".into(),
        table_name: "accounts".into(),
        lsn: 0x16B_3748,
        columns: vec![RelationColumn {
            name: "balance".into(),
            type_name: "numeric".into(),
            type_modifier: (12 << 16 | 2) + 4,
            key: false,
        }],
        received_at: 9,
    });
    assert_eq!(LogRecord::decode(&record.encode()).unwrap(), record);
    assert_eq!(format_lsn(0x16B_3748), "0/16B3748");
    assert_eq!(format_lsn(0x1_0000_0000), "1/0");
    assert_eq!(parse_lsn("0/16B3748"), Some(0x16B_3748));
    assert_eq!(parse_lsn("A/FF"), Some(0xA_0000_00FF));
    assert_eq!(parse_lsn("16B3748"), None);
    assert_eq!(parse_lsn("1/100000000"), None);
}

#[test]
fn change_positions_order_snapshot_rows_before_a_commit_at_the_same_lsn() {
    use strata_core::event::{ChangeOp, ChangeRecord};
    let at = |op, lsn, seq| {
        ChangeRecord {
            source: "s".into(),
            table_schema: "public".into(),
            table_name: "t".into(),
            op,
            lsn,
            commit_ts: 0,
            tx_id: None,
            seq,
            key: "{}".into(),
            before: None,
            after: None,
            received_at: 0,
            tx_end: false,
        }
        .position()
    };
    assert!(at(ChangeOp::Snapshot, 100, 5_000) < at(ChangeOp::Insert, 100, 0));
    assert!(at(ChangeOp::Insert, 100, 0) < at(ChangeOp::Update, 100, 1));
    assert!(at(ChangeOp::Delete, 100, 9) < at(ChangeOp::Insert, 101, 0));
}
