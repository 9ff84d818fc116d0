//! One tracking request: authenticate, parse, normalise each message, append
//! accepted and rejected records to the log and wait until they are durable.

use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use strata_core::event::{EventType, LogRecord, QuarantineRecord, RejectReason};
use strata_core::normalize::{Envelope, person_key};

use bytes::Bytes;
use strata_wire::WireFormat;

use crate::messages::{MessageRules, Outcome};
use crate::producer::Outbox;

use super::Collector;
use super::auth::{HeaderKey, basic_key};
use super::body::{BodyError, read_limited};

#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    Single(EventType),
    Batch,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Single(t) => t.as_str(),
            Endpoint::Batch => "batch",
        }
    }
}

/// The success body, fields in the order SPEC §2 shows them.
#[derive(Serialize)]
struct Ack {
    success: bool,
    accepted: usize,
    rejected: usize,
}

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default, rename = "sentAt", borrow)]
    sent_at: Option<&'a RawValue>,
    #[serde(default, rename = "writeKey", borrow)]
    write_key: Option<Cow<'a, str>>,
}

/// A single-message body, read only for its write key.
#[derive(Deserialize)]
struct KeyOnly<'a> {
    #[serde(default, rename = "writeKey", borrow)]
    write_key: Option<Cow<'a, str>>,
}

enum Payload<'a> {
    Single(EventType, KeyOnly<'a>),
    Batch(BatchBody<'a>),
}

/// Records of one request on their way to the log, and their tally.
struct Pending {
    outbox: Outbox,
    accepted: usize,
    rejected: usize,
}

impl Pending {
    fn new(outbox: Outbox) -> Self {
        Self {
            outbox,
            accepted: 0,
            rejected: 0,
        }
    }
}

pub async fn handle(
    collector: Collector,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let response = handle_inner(&collector, endpoint, &headers, body).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("strata_collector_requests_total", "endpoint" => endpoint.label(), "status" => status)
        .increment(1);
    metrics::histogram!("strata_collector_request_seconds", "endpoint" => endpoint.label())
        .record(started.elapsed().as_secs_f64());
    response
}

async fn handle_inner(
    collector: &Collector,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    // The header key is checked before a permit is taken, so requests with a
    // wrong key cannot crowd out the ones with a right one.
    let header_source = match basic_key(headers) {
        HeaderKey::Present(key) => match collector.source_for_key(&key) {
            Some(source) => Some(source.to_string()),
            None => return unauthorized("unknown write key"),
        },
        HeaderKey::Malformed => return unauthorized("malformed Authorization header"),
        HeaderKey::Absent => None,
    };
    // Bounded work in flight is what keeps memory bounded under overload.
    let Ok(_permit) = collector.inner.inflight.clone().try_acquire_owned() else {
        return overloaded("too many requests in flight");
    };
    let limit = collector.inner.limits.max_request_bytes;
    let received_at = Utc::now();
    // A client slower than this gives its permit back.
    let read_timeout = collector.inner.limits.body_read_timeout;
    let read = tokio::time::timeout(read_timeout, read_limited(headers, body, limit)).await;
    let Ok(read) = read else {
        metrics::counter!("strata_collector_body_timeouts_total").increment(1);
        let detail = format!("the request body did not arrive within {read_timeout:?}");
        return error_response(StatusCode::REQUEST_TIMEOUT, "request_timeout", &detail);
    };
    let raw = match read {
        Ok(raw) => raw,
        Err(BodyError::Io(message)) => {
            return error_response(StatusCode::BAD_REQUEST, "body_read_failed", &message);
        }
        Err(BodyError::TooLarge { prefix }) => {
            let detail = format!("request body exceeds {limit} bytes");
            let Some(source) = &header_source else {
                // Without a key in the header there is no source to keep it under.
                return error_response(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", &detail);
            };
            let raw = String::from_utf8_lossy(&prefix).into_owned();
            return reject_request(
                collector,
                source,
                raw,
                received_at,
                RejectReason::RequestTooLarge,
                &detail,
            )
            .await;
        }
        Err(BodyError::BadGzip { raw, message }) => {
            let Some(source) = &header_source else {
                return unauthorized("missing write key");
            };
            let detail = format!("body is not valid gzip: {message}");
            let encoded = format!(
                "base64:{}",
                base64::engine::general_purpose::STANDARD.encode(&raw)
            );
            return reject_request(
                collector,
                source,
                encoded,
                received_at,
                RejectReason::InvalidJson,
                &detail,
            )
            .await;
        }
    };

    // A binary batch becomes the JSON body it stands for, so every answer,
    // limit and normalisation below is JSON's own.
    let format = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or(WireFormat::Json, WireFormat::from_content_type);
    let raw = match (format, endpoint) {
        (WireFormat::Json, _) | (_, Endpoint::Single(_)) => raw,
        (format, Endpoint::Batch) => match transcode(format, &raw) {
            Ok(json) => Bytes::from(json),
            Err((reason, detail)) => {
                let Some(source) = &header_source else {
                    return unauthorized("missing write key");
                };
                let kept = format!(
                    "base64:{}",
                    base64::engine::general_purpose::STANDARD.encode(&raw)
                );
                return reject_request(collector, source, kept, received_at, reason, &detail).await;
            }
        },
    };

    // One pass finds the write key (and, for a batch, the items as raw
    // slices); each message is then parsed once, by `normalize`.
    let text = std::str::from_utf8(&raw);
    let parsed: Result<Payload<'_>, serde_json::Error> = match (&text, endpoint) {
        // JSON is UTF-8: let the parser name the bad byte as a syntax error.
        (Err(_), _) => Err(serde_json::from_slice::<serde::de::IgnoredAny>(&raw)
            .err()
            .unwrap_or_else(|| serde::de::Error::custom("body is not UTF-8"))),
        // Serde would also read a struct from an array; a payload is an object.
        (Ok(text), _) if !text.trim_start().starts_with('{') => Err(not_an_object(text)),
        (Ok(text), Endpoint::Batch) => {
            serde_json::from_str::<BatchBody<'_>>(text).map(Payload::Batch)
        }
        (Ok(text), Endpoint::Single(t)) => {
            serde_json::from_str::<KeyOnly<'_>>(text).map(|k| Payload::Single(t, k))
        }
    };
    let body_key = match &parsed {
        Ok(Payload::Batch(b)) => b.write_key.clone(),
        Ok(Payload::Single(_, k)) => k.write_key.clone(),
        // A rejected body may still name its key: parse just that, if it can be.
        Err(_) => text
            .ok()
            .and_then(|t| serde_json::from_str::<KeyOnly<'_>>(t).ok())
            .and_then(|k| k.write_key),
    };
    let source = match (&header_source, body_key) {
        (Some(source), _) => source.clone(),
        (None, Some(key)) => match collector.source_for_key(&key) {
            Some(source) => source.to_string(),
            None => return unauthorized("unknown write key"),
        },
        (None, None) => return unauthorized("missing write key"),
    };
    let body = match parsed {
        Ok(body) => body,
        Err(e) => {
            let (reason, detail) = if e.is_data() {
                (
                    RejectReason::NotSegmentPayload,
                    format!("not a Segment payload: {e}"),
                )
            } else {
                (RejectReason::InvalidJson, format!("body is not JSON: {e}"))
            };
            let raw = String::from_utf8_lossy(&raw).into_owned();
            return reject_request(collector, &source, raw, received_at, reason, &detail).await;
        }
    };

    let limits = &collector.inner.limits;
    let mut checks = MessageRules::new(limits, received_at);
    let mut pending = Pending::new(collector.inner.producer.outbox());
    match body {
        Payload::Single(event_type, _) => {
            let envelope = Envelope {
                received_at,
                source: &source,
                implied_type: Some(event_type),
                batch_context: None,
                batch_sent_at: None,
                max_event_name_bytes: limits.max_event_name_bytes,
            };
            let text = text.unwrap_or_default();
            check_and_normalize(&mut pending, &envelope, text, &checks);
        }
        Payload::Batch(batch) => {
            // Each item is at least one quarantine or event record: refused
            // whole, a flood of tiny items costs one row, not one per item.
            if batch.batch.len() > limits.max_batch_items {
                let detail = format!(
                    "batch has {} items, more than the limit of {}",
                    batch.batch.len(),
                    limits.max_batch_items
                );
                let kept = String::from_utf8_lossy(&raw).into_owned();
                return reject_request(
                    collector,
                    &source,
                    kept,
                    received_at,
                    RejectReason::TooManyItems,
                    &detail,
                )
                .await;
            }
            // The batch context is copied into every message: count each
            // copy, or a 400 KB context in a thousand messages would cost
            // 400 MB from one request of the allowed size.
            checks.context_bytes = batch.context.as_ref().map_or(0, context_len);
            let expanded = batch
                .batch
                .iter()
                .map(|item| item.get().len() + checks.context_bytes)
                .sum::<usize>();
            if checks.context_bytes > 0 && expanded > limit {
                let detail = format!(
                    "request body exceeds {limit} bytes once the batch context is merged into each of its {} messages ({expanded} bytes)",
                    batch.batch.len()
                );
                let kept = String::from_utf8_lossy(&raw[..raw.len().min(limit)]).into_owned();
                return reject_request(
                    collector,
                    &source,
                    kept,
                    received_at,
                    RejectReason::RequestTooLarge,
                    &detail,
                )
                .await;
            }
            let envelope = Envelope {
                received_at,
                source: &source,
                implied_type: None,
                batch_context: batch.context.as_ref(),
                batch_sent_at: batch.sent_at,
                max_event_name_bytes: limits.max_event_name_bytes,
            };
            for item in &batch.batch {
                check_and_normalize(&mut pending, &envelope, item.get(), &checks);
            }
        }
    }

    let (accepted, rejected) = (pending.accepted, pending.rejected);
    if let Err(response) = append_all(collector, pending.outbox).await {
        return response;
    }
    metrics::counter!("strata_collector_messages_total", "outcome" => "accepted")
        .increment(accepted as u64);
    metrics::counter!("strata_collector_messages_total", "outcome" => "rejected")
        .increment(rejected as u64);
    (
        StatusCode::OK,
        axum::Json(Ack {
            success: true,
            accepted,
            rejected,
        }),
    )
        .into_response()
}

/// The JSON body of a Protobuf or Avro batch, or why it has none.
fn transcode(format: WireFormat, raw: &[u8]) -> Result<String, (RejectReason, String)> {
    let decoded = match format {
        WireFormat::Protobuf => strata_wire::protobuf::decode_batch(raw),
        WireFormat::Avro => strata_wire::avro::decode_batch(raw),
        WireFormat::Json => return Ok(String::from_utf8_lossy(raw).into_owned()),
    };
    decoded.map_err(|e| {
        let reason = match e {
            strata_wire::Error::Payload(_) => RejectReason::NotSegmentPayload,
            _ if format == WireFormat::Avro => RejectReason::InvalidAvro,
            _ => RejectReason::InvalidProtobuf,
        };
        (reason, e.to_string())
    })
}

/// Valid JSON that is not an object is a data error (not a Segment payload);
/// anything else a syntax error.
fn not_an_object(text: &str) -> serde_json::Error {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => serde::de::Error::custom("body must be a JSON object"),
        Err(e) => e,
    }
}

fn context_len(context: &Map<String, Value>) -> usize {
    serde_json::to_string(context).map_or(0, |text| text.len())
}

fn check_and_normalize(
    pending: &mut Pending,
    envelope: &Envelope<'_>,
    message: &str,
    rules: &MessageRules,
) {
    match rules.apply(envelope, message) {
        Outcome::Accepted(event) => {
            let partition = pending.outbox.partition_of(person_key(&event));
            pending.outbox.push_to(partition, &LogRecord::Event(event));
            pending.accepted += 1;
        }
        Outcome::Rejected(record) => {
            // Rejects have no trustworthy person key; their bytes spread them evenly.
            let partition = pending.outbox.partition_of(&record.raw);
            pending
                .outbox
                .push_to(partition, &LogRecord::Quarantine(record));
            pending.rejected += 1;
        }
    }
}

fn quarantine(
    received_at: chrono::DateTime<Utc>,
    source: &str,
    reason: RejectReason,
    detail: &str,
    raw: String,
) -> LogRecord {
    LogRecord::Quarantine(QuarantineRecord {
        received_at: received_at.timestamp_micros(),
        source: source.to_string(),
        reason,
        detail: detail.to_string(),
        raw,
    })
}

/// A whole request refused: keep its body with the reason, then answer 413
/// (too large or too many items) or 400 (anything else).
async fn reject_request(
    collector: &Collector,
    source: &str,
    raw: String,
    received_at: chrono::DateTime<Utc>,
    reason: RejectReason,
    detail: &str,
) -> Response {
    metrics::counter!("strata_collector_rejected_total", "reason" => reason.as_str()).increment(1);
    let record = quarantine(received_at, source, reason, detail, raw);
    if let Err(response) = store_single(collector, &record).await {
        return response;
    }
    let status = match reason {
        RejectReason::RequestTooLarge | RejectReason::TooManyItems => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    error_response(status, reason.as_str(), detail)
}

async fn store_single(collector: &Collector, record: &LogRecord) -> Result<(), Response> {
    let mut outbox = collector.inner.producer.outbox();
    outbox.push_to(0, record);
    append_all(collector, outbox).await
}

async fn append_all(collector: &Collector, outbox: Outbox) -> Result<(), Response> {
    let Err(e) = collector.inner.producer.send(outbox).await else {
        return Ok(());
    };
    if e.is_disk_full() {
        metrics::counter!("strata_collector_disk_full_total").increment(1);
        return Err(unavailable(
            "disk_full",
            "the log's disk is full; this request was not acknowledged, retry later",
        ));
    }
    tracing::error!(error = %e, "log append failed");
    Err(overloaded("the log cannot take writes right now"))
}

fn error_response(status: StatusCode, error: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"success": false, "error": error, "message": message})),
    )
        .into_response()
}

fn unauthorized(message: &str) -> Response {
    let mut response = error_response(StatusCode::UNAUTHORIZED, "unauthorized", message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"strata\""),
    );
    response
}

fn overloaded(message: &str) -> Response {
    unavailable("overloaded", message)
}

/// `503` with `Retry-After`: the client should try again.
fn unavailable(error: &str, message: &str) -> Response {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, error, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
