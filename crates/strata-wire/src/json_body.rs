//! Writes the JSON text of a Segment batch body field by field, so that a
//! JSON object sent as text keeps its exact bytes (bronze stores the
//! `properties`, `context` and `traits` text verbatim).

use serde_json::value::RawValue;

pub(crate) struct BodyWriter {
    messages: String,
    count: usize,
    /// Batch-level fields, each written with its leading comma.
    top: String,
}

impl BodyWriter {
    pub fn new(capacity: usize) -> Self {
        let mut messages = String::with_capacity(capacity);
        messages.push_str("{\"batch\":[");
        Self {
            messages,
            count: 0,
            top: String::new(),
        }
    }

    /// The next message; call [`ObjectWriter::close`] when it is written.
    pub fn message(&mut self) -> ObjectWriter<'_> {
        if self.count > 0 {
            self.messages.push(',');
        }
        self.count += 1;
        self.messages.push('{');
        ObjectWriter {
            out: &mut self.messages,
            fields: 0,
        }
    }

    /// The batch-level fields (`context`, `sentAt`, `writeKey`).
    pub fn top(&mut self) -> ObjectWriter<'_> {
        ObjectWriter {
            out: &mut self.top,
            fields: 1,
        }
    }

    pub fn finish(mut self) -> String {
        self.messages.push(']');
        self.messages.push_str(&self.top);
        self.messages.push('}');
        self.messages
    }
}

pub(crate) struct ObjectWriter<'a> {
    out: &'a mut String,
    fields: usize,
}

impl ObjectWriter<'_> {
    fn key(&mut self, name: &str) {
        if self.fields > 0 {
            self.out.push(',');
        }
        self.fields += 1;
        push_string(self.out, name);
        self.out.push(':');
    }

    pub fn string(&mut self, name: &str, value: &str) {
        self.key(name);
        push_string(self.out, value);
    }

    pub fn value(&mut self, name: &str, value: &serde_json::Value) {
        self.key(name);
        self.out.push_str(&value.to_string());
    }

    /// A JSON object sent as text: kept verbatim when it is JSON, else sent
    /// on as a string, which normalisation rejects with its reason.
    pub fn json_text(&mut self, name: &str, text: &str) {
        self.key(name);
        match serde_json::from_str::<&RawValue>(text) {
            Ok(raw) => self.out.push_str(raw.get()),
            Err(_) => push_string(self.out, text),
        }
    }

    /// Ends a message.
    pub fn close(self) {
        self.out.push('}');
    }
}

fn push_string(out: &mut String, text: &str) {
    // Writing a &str to JSON cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}
