//! Delivery: when each message reaches the server, and what goes wrong on the way.

use crate::messages::{Breakage, Draft, Kind, Pending};
use crate::population::DeviceInfo;
use crate::{ConfigError, FLAG_DUPLICATE, FLAG_LATE, FLAG_MALFORMED};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How often delivery goes wrong. Each rate is a probability in `0..=1`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultRates {
    /// Share of messages delivered a second time, minutes later.
    pub duplicate: f64,
    /// Share of messages held in offline mobile batches and sent hours to
    /// days after the event.
    pub late: f64,
    /// Share of devices whose clock is minutes to hours off.
    pub clock_skew: f64,
    /// Share of messages that are broken (no ids, no or bad `event`, bad `type`).
    pub malformed: f64,
}

impl Default for FaultRates {
    fn default() -> Self {
        Self {
            duplicate: 0.01,
            late: 0.02,
            clock_skew: 0.05,
            malformed: 0.001,
        }
    }
}

impl FaultRates {
    fn fields(&self) -> [(&'static str, f64); 4] {
        [
            ("duplicate", self.duplicate),
            ("late", self.late),
            ("clock_skew", self.clock_skew),
            ("malformed", self.malformed),
        ]
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in self.fields() {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::Rate { name, value });
            }
        }
        Ok(())
    }

    pub(crate) fn clamped(self) -> Self {
        let c = |v: f64| if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
        Self {
            duplicate: c(self.duplicate),
            late: c(self.late),
            clock_skew: c(self.clock_skew),
            malformed: c(self.malformed),
        }
    }
}

/// Late delivery only happens on mobile, where the SDK queues events while
/// offline; this is roughly the mobile share of messages, so that the late
/// rate applies to messages overall rather than to mobile ones.
const MOBILE_MESSAGE_SHARE: f64 = 0.4;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

/// Decides each draft's id, send time and faults and hands the resulting
/// messages to `push(send_ms, flags, pending)`.
pub(crate) fn deliver(
    drafts: &mut Vec<Draft>,
    rng: &mut ChaCha8Rng,
    rates: &FaultRates,
    device: DeviceInfo,
    mut push: impl FnMut(i64, u8, Pending),
) {
    let Some(last) = drafts.last() else { return };
    // A whole offline session goes out in one batch when the phone is back
    // online, so all its messages share one (late) send time.
    let batch_send = (device.mobile
        && rng.random_bool((rates.late / MOBILE_MESSAGE_SHARE).min(1.0)))
    .then(|| {
        // Log-uniform between 1 hour and 3 days: most come back soon.
        let hours = (72f64.ln() * rng.random::<f64>()).exp();
        last.time_ms + (hours * HOUR_MS as f64) as i64
    });
    for draft in drafts.drain(..) {
        let sent_ms = batch_send.unwrap_or_else(|| {
            // analytics.js sends right away; mobile SDKs flush every ~30 s.
            let delay = if device.mobile {
                rng.random_range(200..30_000)
            } else {
                rng.random_range(5..400)
            };
            draft.time_ms + delay
        });
        let mut flags = if batch_send.is_some() { FLAG_LATE } else { 0 };
        let mut pending = Pending {
            message_id: rng.random(),
            skew_ms: device.skew_ms,
            sent_ms,
            breakage: None,
            draft,
        };
        if rng.random_bool(rates.malformed) {
            pending.breakage = Some(breakage(pending.draft.kind, rng));
            flags |= FLAG_MALFORMED;
        } else if rng.random_bool(rates.duplicate) {
            // A retry after a lost acknowledgement: identical payload except
            // for the SDK re-stamping `sentAt`.
            let again = sent_ms + rng.random_range(MINUTE_MS..30 * MINUTE_MS);
            let copy = Pending {
                draft: pending.draft.clone(),
                sent_ms: again,
                ..pending
            };
            push(again, flags | FLAG_DUPLICATE, copy);
        }
        push(sent_ms, flags, pending);
    }
}

/// Breaks a message the way buggy clients and hand-rolled integrations do.
fn breakage(kind: Kind, rng: &mut ChaCha8Rng) -> Breakage {
    let choices = if kind == Kind::Track { 4 } else { 2 };
    match rng.random_range(0..choices) {
        0 => Breakage::NoIds,
        1 => Breakage::BogusType(["trak", "pageview", "event"][rng.random_range(0..3)]),
        2 => Breakage::NoEvent,
        _ => Breakage::NumericEvent(rng.random_range(0..1000)),
    }
}
