//! Reading request bodies without ever holding more than the configured limit.

use std::io::Read;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use bytes::{Bytes, BytesMut};
use flate2::read::GzDecoder;
use futures::StreamExt;

pub enum BodyError {
    /// The body (compressed or not) is larger than the limit; carries the
    /// first `limit` bytes read so they can be quarantined.
    TooLarge { prefix: Bytes },
    /// The body was declared gzip but does not decompress.
    BadGzip { raw: Bytes, message: String },
    /// The connection failed while reading.
    Io(String),
}

pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Io(e.to_string()))?;
        let room = limit - buffer.len();
        if chunk.len() > room {
            buffer.extend_from_slice(&chunk[..room]);
            return Err(BodyError::TooLarge {
                prefix: buffer.freeze(),
            });
        }
        buffer.extend_from_slice(&chunk);
    }
    let raw = buffer.freeze();
    if is_gzip(headers) {
        return gunzip(raw, limit);
    }
    Ok(raw)
}

fn is_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"))
}

/// Decompresses at most `limit` bytes, so a gzip bomb costs no more memory
/// than an honest request.
fn gunzip(raw: Bytes, limit: usize) -> Result<Bytes, BodyError> {
    let mut out = Vec::with_capacity((raw.len() * 4).min(limit + 1));
    let mut decoder = GzDecoder::new(&raw[..]).take(limit as u64 + 1);
    match decoder.read_to_end(&mut out) {
        Ok(_) if out.len() > limit => {
            out.truncate(limit);
            Err(BodyError::TooLarge {
                prefix: Bytes::from(out),
            })
        }
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(BodyError::BadGzip {
            raw,
            message: e.to_string(),
        }),
    }
}
