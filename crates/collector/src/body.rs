//! Capped request bodies: the wire size is capped while streaming (a
//! declared `Content-Length` above the cap is refused before reading a byte),
//! and gzip is inflated under a second cap, so neither a huge upload nor a
//! zip bomb costs more memory than the caps.

use std::io::Read as _;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use flate2::read::MultiGzDecoder;
use http_body_util::BodyExt as _;

use crate::error::ApiError;

/// The body encodings accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

pub fn content_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str()) {
        None => Ok(Encoding::Identity),
        Some(Ok(v)) if v.trim().eq_ignore_ascii_case("identity") => Ok(Encoding::Identity),
        Some(Ok(v)) if v.trim().eq_ignore_ascii_case("gzip") => Ok(Encoding::Gzip),
        Some(_) => Err(ApiError::UnsupportedMediaType {
            code: "unsupported_encoding",
            message: "Content-Encoding must be gzip or identity".into(),
        }),
    }
}

fn too_large(cap: usize) -> ApiError {
    ApiError::too_large(
        "body_too_large",
        format!("request body exceeds the {cap} byte cap"),
    )
}

/// Reads at most `cap` bytes of `body`, refusing anything longer.
pub async fn read_capped(body: Body, headers: &HeaderMap, cap: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large(cap));
    }
    let mut body = body;
    let mut buf = Vec::with_capacity(declared.map_or(64 * 1024, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request("body_read", format!("reading the request body failed: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > cap {
                return Err(too_large(cap));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// Undoes `encoding`, refusing output above `cap` bytes (CPU-bound for
/// gzip: call it off the async runtime, e.g. on a verifying thread).
pub fn decode(encoding: Encoding, raw: Bytes, cap: usize) -> Result<Bytes, ApiError> {
    match encoding {
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => {
            let mut out = Vec::with_capacity((raw.len() * 4).min(cap));
            // One byte past the cap tells "exactly at the cap" from "above".
            MultiGzDecoder::new(&raw[..])
                .take(cap as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::bad_request("bad_gzip", format!("invalid gzip body: {e}"))
                })?;
            if out.len() > cap {
                return Err(ApiError::too_large(
                    "decompressed_too_large",
                    format!("decompressed body exceeds the {cap} byte cap"),
                ));
            }
            Ok(Bytes::from(out))
        }
    }
}
