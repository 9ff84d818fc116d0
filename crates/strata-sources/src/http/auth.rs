//! Write keys: HTTP Basic user (`base64("KEY:")`) or a `writeKey` body field.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// What the Authorization header says about the write key.
pub enum HeaderKey {
    Absent,
    Present(String),
    Malformed,
}

pub fn basic_key(headers: &HeaderMap) -> HeaderKey {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return HeaderKey::Absent;
    };
    let Ok(text) = value.to_str() else {
        return HeaderKey::Malformed;
    };
    let Some(encoded) = text
        .strip_prefix("Basic ")
        .or_else(|| text.strip_prefix("basic "))
    else {
        return HeaderKey::Malformed;
    };
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return HeaderKey::Malformed;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return HeaderKey::Malformed;
    };
    let key = decoded.split(':').next().unwrap_or_default();
    if key.is_empty() {
        HeaderKey::Malformed
    } else {
        HeaderKey::Present(key.to_string())
    }
}
