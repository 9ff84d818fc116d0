//! The binary wire formats of `POST /v1/batch` (SPEC §7): Protobuf
//! (`proto/strata/v1/batch.proto`) and Avro object container files.
//!
//! Both are read into the JSON body the same batch would have had, so the
//! collector answers, limits, normalises and quarantines them by the one
//! path JSON takes: a message's answer cannot depend on how it was spelled.
//! Both are also written from Segment JSON messages, for `strata generate`
//! and the benchmarks.

pub mod avro;
mod error;
mod json_body;
pub mod protobuf;

pub use error::{Error, Result};

/// How a batch is spelled on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    Json,
    Protobuf,
    Avro,
}

impl WireFormat {
    pub const ALL: [WireFormat; 3] = [WireFormat::Json, WireFormat::Protobuf, WireFormat::Avro];

    pub fn name(self) -> &'static str {
        match self {
            WireFormat::Json => "json",
            WireFormat::Protobuf => "protobuf",
            WireFormat::Avro => "avro",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            WireFormat::Json => "application/json",
            WireFormat::Protobuf => "application/x-protobuf",
            WireFormat::Avro => "application/avro",
        }
    }

    /// The format a `Content-Type` header names; anything that is not one
    /// of the binary types is read as JSON, as Segment's API does.
    pub fn from_content_type(value: &str) -> WireFormat {
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/x-protobuf")
            || media.eq_ignore_ascii_case("application/protobuf")
            || media.eq_ignore_ascii_case("application/vnd.google.protobuf")
        {
            WireFormat::Protobuf
        } else if media.eq_ignore_ascii_case("application/avro")
            || media.eq_ignore_ascii_case("avro/binary")
        {
            WireFormat::Avro
        } else {
            WireFormat::Json
        }
    }

    pub fn parse(name: &str) -> Option<WireFormat> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// A batch of Segment JSON messages in this format.
    pub fn encode_batch(
        self,
        messages: &[serde_json::Value],
        write_key: Option<&str>,
    ) -> Result<Vec<u8>> {
        match self {
            WireFormat::Json => {
                let mut body = serde_json::Map::new();
                body.insert("batch".into(), serde_json::Value::from(messages.to_vec()));
                if let Some(key) = write_key {
                    body.insert("writeKey".into(), key.into());
                }
                Ok(serde_json::to_vec(&body)?)
            }
            WireFormat::Protobuf => protobuf::encode_batch(messages, write_key),
            WireFormat::Avro => avro::encode_batch(messages, write_key),
        }
    }
}
