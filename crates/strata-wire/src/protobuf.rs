//! `strata.v1.Batch` (`proto/strata/v1/batch.proto`) to and from the JSON
//! body of a Segment batch.

use prost::Message as _;
use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};
use crate::json_body::{BodyWriter, ObjectWriter};

/// The types compiled from `proto/strata/v1/batch.proto`.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/strata.v1.rs"));
}

use pb::{batch, message};

/// The JSON body of the batch a Protobuf body holds.
pub fn decode_batch(bytes: &[u8]) -> Result<String> {
    let batch = pb::Batch::decode(bytes)?;
    let mut body = BodyWriter::new(bytes.len() * 2);
    for m in &batch.batch {
        let mut out = body.message();
        if !m.r#type.is_empty() {
            out.string("type", &m.r#type);
        }
        let strings = [
            ("messageId", &m.message_id),
            ("userId", &m.user_id),
            ("anonymousId", &m.anonymous_id),
            ("previousId", &m.previous_id),
            ("groupId", &m.group_id),
            ("event", &m.event),
            ("name", &m.name),
            ("category", &m.category),
            ("timestamp", &m.timestamp),
            ("originalTimestamp", &m.original_timestamp),
            ("sentAt", &m.sent_at),
        ];
        for (name, value) in strings {
            if let Some(value) = value {
                out.string(name, value);
            }
        }
        match &m.properties {
            Some(message::Properties::PropertiesJson(text)) => out.json_text("properties", text),
            Some(message::Properties::PropertiesStruct(s)) => object(&mut out, "properties", s),
            None => {}
        }
        match &m.context {
            Some(message::Context::ContextJson(text)) => out.json_text("context", text),
            Some(message::Context::ContextStruct(s)) => object(&mut out, "context", s),
            None => {}
        }
        match &m.traits {
            Some(message::Traits::TraitsJson(text)) => out.json_text("traits", text),
            Some(message::Traits::TraitsStruct(s)) => object(&mut out, "traits", s),
            None => {}
        }
        out.close();
    }
    let mut top = body.top();
    match &batch.context {
        Some(batch::Context::ContextJson(text)) => top.json_text("context", text),
        Some(batch::Context::ContextStruct(s)) => object(&mut top, "context", s),
        None => {}
    }
    if let Some(sent_at) = &batch.sent_at {
        top.string("sentAt", sent_at);
    }
    if let Some(key) = &batch.write_key {
        top.string("writeKey", key);
    }
    Ok(body.finish())
}

fn object(out: &mut ObjectWriter<'_>, name: &str, fields: &prost_types::Struct) {
    out.value(name, &struct_to_json(fields));
}

/// A `google.protobuf.Struct` as JSON. Struct numbers are doubles: whole
/// ones within 2^53 are written as integers, as the JSON they came from
/// most likely spelled them.
pub fn struct_to_json(fields: &prost_types::Struct) -> Value {
    Value::Object(
        fields
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(value: &prost_types::Value) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::NumberValue(n)) => number(*n),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.iter().map(value_to_json).collect())
        }
    }
}

fn number(n: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= EXACT {
        return Value::Number(Number::from(n as i64));
    }
    Number::from_f64(n).map_or(Value::Null, Value::Number)
}

/// A JSON object as a `google.protobuf.Struct`.
pub fn json_to_struct(object: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: object
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

fn json_to_value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(json_to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A `strata.v1.Batch` of Segment JSON messages; their objects go as JSON
/// text, so they land byte for byte as JSON would land them.
pub fn encode_batch(messages: &[Value], write_key: Option<&str>) -> Result<Vec<u8>> {
    let batch = pb::Batch {
        batch: messages.iter().map(to_message).collect::<Result<_>>()?,
        context: None,
        sent_at: None,
        write_key: write_key.map(str::to_string),
    };
    Ok(batch.encode_to_vec())
}

/// As [`encode_batch`], with the varint length in front: batches one after
/// another in a file, as `prost`'s and protobuf's `parseDelimitedFrom` read
/// them.
pub fn encode_batch_delimited(messages: &[Value]) -> Result<Vec<u8>> {
    let batch = pb::Batch {
        batch: messages.iter().map(to_message).collect::<Result<_>>()?,
        ..Default::default()
    };
    Ok(batch.encode_length_delimited_to_vec())
}

fn to_message(json: &Value) -> Result<pb::Message> {
    let object = json
        .as_object()
        .ok_or_else(|| Error::Payload("a Segment message must be a JSON object".into()))?;
    let text = |name: &str| object.get(name).and_then(scalar_text);
    let blob = |name: &str| {
        object
            .get(name)
            .filter(|v| !v.is_null())
            .map(|v| v.to_string())
    };
    Ok(pb::Message {
        r#type: text("type").unwrap_or_default(),
        message_id: text("messageId"),
        user_id: text("userId"),
        anonymous_id: text("anonymousId"),
        previous_id: text("previousId"),
        group_id: text("groupId"),
        event: text("event"),
        name: text("name"),
        category: text("category"),
        timestamp: text("timestamp"),
        original_timestamp: text("originalTimestamp"),
        sent_at: text("sentAt"),
        properties: blob("properties").map(message::Properties::PropertiesJson),
        context: blob("context").map(message::Context::ContextJson),
        traits: blob("traits").map(message::Traits::TraitsJson),
    })
}

/// A field's text: strings as they are, numbers and booleans as JSON
/// spells them (an id may be a number in JSON); null is absent.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}
