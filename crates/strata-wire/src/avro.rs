//! Avro object container files to and from the JSON body of a Segment
//! batch. The reader takes the schema from the file: any record whose
//! fields are Segment's (camelCase, or snake_case such as `message_id`)
//! is a message.

use std::sync::OnceLock;

use apache_avro::types::Value as Avro;
use apache_avro::{Reader, Schema, Writer};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::json_body::{BodyWriter, ObjectWriter};
use crate::protobuf::scalar_text;

/// File metadata keys a writer may set for what a JSON batch carries
/// beside its messages.
pub const WRITE_KEY_METADATA: &str = "strata.write_key";
pub const CONTEXT_METADATA: &str = "strata.context";
pub const SENT_AT_METADATA: &str = "strata.sent_at";

/// The record schema `strata generate --format avro` writes.
pub const MESSAGE_SCHEMA: &str = r#"{
  "type": "record", "name": "Message", "namespace": "strata.v1",
  "fields": [
    {"name": "type", "type": "string"},
    {"name": "messageId", "type": ["null", "string"], "default": null},
    {"name": "userId", "type": ["null", "string"], "default": null},
    {"name": "anonymousId", "type": ["null", "string"], "default": null},
    {"name": "previousId", "type": ["null", "string"], "default": null},
    {"name": "groupId", "type": ["null", "string"], "default": null},
    {"name": "event", "type": ["null", "string"], "default": null},
    {"name": "name", "type": ["null", "string"], "default": null},
    {"name": "category", "type": ["null", "string"], "default": null},
    {"name": "timestamp", "type": ["null", "string"], "default": null},
    {"name": "originalTimestamp", "type": ["null", "string"], "default": null},
    {"name": "sentAt", "type": ["null", "string"], "default": null},
    {"name": "properties", "type": ["null", "string"], "default": null},
    {"name": "context", "type": ["null", "string"], "default": null},
    {"name": "traits", "type": ["null", "string"], "default": null}
  ]
}"#;

const TEXT_FIELDS: [&str; 12] = [
    "type",
    "messageId",
    "userId",
    "anonymousId",
    "previousId",
    "groupId",
    "event",
    "name",
    "category",
    "timestamp",
    "originalTimestamp",
    "sentAt",
];

/// The schema of [`MESSAGE_SCHEMA`], parsed once.
pub fn message_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse_str(MESSAGE_SCHEMA).expect("the message schema parses"))
}

/// The JSON body of the batch an Avro container file holds.
pub fn decode_batch(bytes: &[u8]) -> Result<String> {
    let reader = Reader::new(bytes)?;
    let metadata = reader.user_metadata().clone();
    let mut body = BodyWriter::new(bytes.len() * 2);
    for (index, record) in reader.enumerate() {
        let Avro::Record(fields) = unwrap_union(record?) else {
            return Err(Error::Payload(format!(
                "record {} of the Avro file is not a record of Segment fields",
                index + 1
            )));
        };
        let mut out = body.message();
        for (name, value) in fields {
            field(&mut out, segment_name(&name), value)?;
        }
        out.close();
    }
    let mut top = body.top();
    let text = |key: &str| {
        metadata
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    if let Some(context) = text(CONTEXT_METADATA) {
        top.json_text("context", &context);
    }
    if let Some(sent_at) = text(SENT_AT_METADATA) {
        top.string("sentAt", &sent_at);
    }
    if let Some(key) = text(WRITE_KEY_METADATA) {
        top.string("writeKey", &key);
    }
    Ok(body.finish())
}

fn field(out: &mut ObjectWriter<'_>, name: &str, value: Avro) -> Result<()> {
    let value = unwrap_union(value);
    match value {
        Avro::Null => {}
        Avro::String(text) if matches!(name, "properties" | "context" | "traits") => {
            out.json_text(name, &text)
        }
        Avro::String(text) | Avro::Enum(_, text) => out.string(name, &text),
        Avro::TimestampMillis(ms) => out.string(name, &rfc3339(ms.saturating_mul(1_000))),
        Avro::TimestampMicros(us) => out.string(name, &rfc3339(us)),
        Avro::TimestampNanos(ns) => out.string(name, &rfc3339(ns / 1_000)),
        Avro::Uuid(id) => out.string(name, &id.to_string()),
        other => {
            let json = Value::try_from(other)
                .map_err(|e| Error::Payload(format!("field {name:?}: {e}")))?;
            out.value(name, &json);
        }
    }
    Ok(())
}

fn unwrap_union(value: Avro) -> Avro {
    match value {
        Avro::Union(_, inner) => unwrap_union(*inner),
        other => other,
    }
}

/// Segment's camelCase name of a field spelled in snake_case.
fn segment_name(name: &str) -> &str {
    match name {
        "message_id" => "messageId",
        "user_id" => "userId",
        "anonymous_id" => "anonymousId",
        "previous_id" => "previousId",
        "group_id" => "groupId",
        "sent_at" => "sentAt",
        "original_timestamp" => "originalTimestamp",
        other => other,
    }
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros).map_or_else(
        || micros.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    )
}

/// An Avro container file of Segment JSON messages, in
/// [`MESSAGE_SCHEMA`]; objects go as JSON text, so they land byte for byte
/// as JSON would land them.
pub fn encode_batch(messages: &[Value], write_key: Option<&str>) -> Result<Vec<u8>> {
    let schema = message_schema();
    let mut writer = Writer::new(schema, Vec::with_capacity(messages.len() * 512));
    if let Some(key) = write_key {
        writer.add_user_metadata(WRITE_KEY_METADATA.to_string(), key)?;
    }
    for message in messages {
        writer.append(to_record(message)?)?;
    }
    Ok(writer.into_inner()?)
}

fn to_record(json: &Value) -> Result<Avro> {
    let object = json
        .as_object()
        .ok_or_else(|| Error::Payload("a Segment message must be a JSON object".into()))?;
    let mut fields: Vec<(String, Avro)> = Vec::with_capacity(15);
    let optional = |text: Option<String>| match text {
        Some(text) => Avro::Union(1, Box::new(Avro::String(text))),
        None => Avro::Union(0, Box::new(Avro::Null)),
    };
    for name in TEXT_FIELDS {
        let text = object.get(name).and_then(scalar_text);
        let value = if name == "type" {
            Avro::String(text.unwrap_or_default())
        } else {
            optional(text)
        };
        fields.push((name.to_string(), value));
    }
    for name in ["properties", "context", "traits"] {
        let text = object
            .get(name)
            .filter(|v| !v.is_null())
            .map(Value::to_string);
        fields.push((name.to_string(), optional(text)));
    }
    Ok(Avro::Record(fields))
}

/// Writes Segment JSON messages into one Avro container file as they come,
/// in [`MESSAGE_SCHEMA`] (for `strata generate --out` of any size).
pub struct MessageFileWriter<W: std::io::Write> {
    writer: Writer<'static, W>,
}

impl<W: std::io::Write> MessageFileWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            writer: Writer::with_codec(
                message_schema(),
                out,
                apache_avro::Codec::Deflate(Default::default()),
            ),
        }
    }

    pub fn append(&mut self, message: &Value) -> Result<()> {
        self.writer.append(to_record(message)?)?;
        Ok(())
    }

    /// Writes what is buffered and returns the output.
    pub fn finish(self) -> Result<W> {
        Ok(self.writer.into_inner()?)
    }
}
