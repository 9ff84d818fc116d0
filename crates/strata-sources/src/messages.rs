//! The rules every Segment message is held to, whichever source it came
//! by (HTTP, a backend log file): size, normalisation (SPEC §2) and age.
//! One function, so a message cannot be accepted by one source and
//! rejected by another.

use chrono::{DateTime, Utc};
use strata_core::config::CollectorConfig;
use strata_core::event::{BronzeEvent, QuarantineRecord, RejectReason};
use strata_core::normalize::{Envelope, Rejection, normalize};

pub(crate) struct MessageRules {
    pub max_message: usize,
    /// Bytes of a batch context merged into each message.
    pub context_bytes: usize,
    /// `event_ts` below this (micros) is too old to be believed.
    oldest_event_ts: i64,
    max_age: std::time::Duration,
}

pub(crate) enum Outcome {
    Accepted(BronzeEvent),
    Rejected(QuarantineRecord),
}

impl MessageRules {
    pub fn new(limits: &CollectorConfig, received_at: DateTime<Utc>) -> Self {
        Self {
            max_message: limits.max_message_bytes,
            context_bytes: 0,
            oldest_event_ts: received_at.timestamp_micros().saturating_sub(
                i64::try_from(limits.max_event_age.as_micros()).unwrap_or(i64::MAX),
            ),
            max_age: limits.max_event_age,
        }
    }

    /// The event `message` becomes, or the quarantine row that keeps it
    /// with its reason.
    pub fn apply(&self, envelope: &Envelope<'_>, message: &str) -> Outcome {
        let max_message = self.max_message;
        if message.len() + self.context_bytes > max_message {
            let detail = if self.context_bytes > 0 && message.len() <= max_message {
                format!(
                    "message exceeds {max_message} bytes with the batch context ({} bytes) merged in",
                    self.context_bytes
                )
            } else {
                format!("message exceeds {max_message} bytes")
            };
            return rejected(envelope, message, RejectReason::MessageTooLarge, detail);
        }
        match normalize(message, envelope) {
            Ok(event) if event.event_ts < self.oldest_event_ts => {
                let when = DateTime::from_timestamp_micros(event.event_ts)
                    .map_or_else(|| event.event_ts.to_string(), |t| t.to_rfc3339());
                let detail = format!(
                    "event_ts {when} is more than {} days before received_at",
                    self.max_age.as_secs() / 86_400
                );
                rejected(envelope, message, RejectReason::EventTsTooOld, detail)
            }
            Ok(event) => Outcome::Accepted(event),
            Err(Rejection { reason, detail }) => rejected(envelope, message, reason, detail),
        }
    }
}

pub(crate) fn rejected(
    envelope: &Envelope<'_>,
    raw: &str,
    reason: RejectReason,
    detail: String,
) -> Outcome {
    Outcome::Rejected(quarantine_record(
        envelope.received_at,
        envelope.source,
        reason,
        detail,
        raw.to_string(),
    ))
}

pub(crate) fn quarantine_record(
    received_at: DateTime<Utc>,
    source: &str,
    reason: RejectReason,
    detail: String,
    raw: String,
) -> QuarantineRecord {
    metrics::counter!("strata_collector_rejected_total", "reason" => reason.as_str()).increment(1);
    QuarantineRecord {
        received_at: received_at.timestamp_micros(),
        source: source.to_string(),
        reason,
        detail,
        raw,
    }
}
