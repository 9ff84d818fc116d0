//! Integration tests for the synthetic traffic generator.

mod determinism;
mod laziness;
mod ordering;
mod shape;

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde_json::Value;
use strata_generate::{Generated, Generator, GeneratorConfig, Summary};

/// The default run (1000 users, 7 days), generated once for all tests.
pub fn default_run() -> &'static (Vec<Generated>, Summary) {
    static RUN: OnceLock<(Vec<Generated>, Summary)> = OnceLock::new();
    RUN.get_or_init(|| {
        let mut generator = Generator::new(GeneratorConfig::default());
        let messages: Vec<Generated> = generator.by_ref().collect();
        (messages, generator.summary().clone())
    })
}

pub fn small(seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        seed,
        users: 200,
        days: Some(4),
        ..GeneratorConfig::default()
    }
}

pub fn time(message: &Value, field: &str) -> Option<DateTime<Utc>> {
    let text = message.get(field)?.as_str()?;
    Some(DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc))
}

pub fn str_field<'a>(message: &'a Value, field: &str) -> Option<&'a str> {
    message.get(field).and_then(Value::as_str)
}

/// The ways the generator deliberately breaks messages.
pub fn is_malformed(message: &Value) -> bool {
    let known = matches!(
        str_field(message, "type"),
        Some("track" | "identify" | "page" | "screen" | "alias" | "group")
    );
    let no_ids = message.get("userId").is_none() && message.get("anonymousId").is_none();
    let bad_event = str_field(message, "type") == Some("track")
        && !message.get("event").is_some_and(Value::is_string);
    !known || no_ids || bad_event
}
