//! Request bodies of the `/wx/*` endpoints: size limit, content type, decoding.
//!
//! A body is read whole but never past `[login] max_body_bytes` (a declared
//! `Content-Length` over the limit is refused before reading), and decoded as
//! JSON (also without `Content-Type`, which is what `wx.request` sends) or as
//! a form. Every field is an optional string: which ones are required is the
//! endpoint's business, so that a missing field gets a message naming it.

use bytes::{Bytes, BytesMut};
use http::header;
use pingora_proxy::Session;
use serde::Deserialize;

use crate::error::ApiError;

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Json,
    Form,
}

/// A request body, read and bounded, with its encoding.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    kind: BodyKind,
    bytes: Bytes,
}

impl Body {
    /// Check the content type, then read the body (at most `max` bytes).
    pub(crate) async fn read(session: &mut Session, max: usize) -> Result<Self, ApiError> {
        let kind = body_kind(
            session
                .req_header()
                .headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
        )?;
        let bytes = read_body(session, max).await?;
        Ok(Self { kind, bytes })
    }

    /// A body read elsewhere (wxgate's own HTTP/1 path), of `kind`.
    pub(crate) fn of(kind: BodyKind, bytes: Bytes) -> Self {
        Self { kind, bytes }
    }

    /// Decode into `T`.
    pub(crate) fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ApiError> {
        parse_body(self.kind, &self.bytes)
    }

    /// Decode into `T`; an empty (or all-blank) body is `T::default()`.
    pub(crate) fn parse_or_default<T: for<'de> Deserialize<'de> + Default>(
        &self,
    ) -> Result<T, ApiError> {
        if self.bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        self.parse()
    }
}

/// Decide the body encoding from `Content-Type` (missing: JSON, what `wx.request` sends).
pub(crate) fn body_kind(content_type: Option<&[u8]>) -> Result<BodyKind, ApiError> {
    let Some(ct) = content_type else {
        return Ok(BodyKind::Json);
    };
    let ct = std::str::from_utf8(ct).map_err(|_| ApiError::UnsupportedMediaType)?;
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" | "" => Ok(BodyKind::Json),
        m if m.starts_with("application/") && m.ends_with("+json") => Ok(BodyKind::Json),
        "application/x-www-form-urlencoded" => Ok(BodyKind::Form),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// Parse a JSON or form body into `T` (all fields optional strings).
pub(crate) fn parse_body<T: for<'de> Deserialize<'de>>(
    kind: BodyKind,
    body: &[u8],
) -> Result<T, ApiError> {
    match kind {
        BodyKind::Json => {
            // serde would also read a JSON array into a struct, field by field.
            if body.trim_ascii_start().first() != Some(&b'{') {
                return Err(ApiError::InvalidRequest(
                    "the body is not a JSON object with string fields",
                ));
            }
            serde_json::from_slice(body)
                .map_err(|e| refusal(&e, "the body is not a JSON object with string fields"))
        }
        BodyKind::Form => {
            let map: serde_json::Map<String, serde_json::Value> = form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
                .collect();
            serde_json::from_value(serde_json::Value::Object(map))
                .map_err(|e| refusal(&e, "the form body is malformed"))
        }
    }
}

/// Why a body was refused: a field the endpoint does not know (endpoints
/// that end or change something refuse them, `deny_unknown_fields`), or
/// `otherwise`.
fn refusal(e: &serde_json::Error, otherwise: &'static str) -> ApiError {
    // serde words it "unknown field `x`, expected ...".
    if e.is_data() && e.to_string().starts_with("unknown field") {
        ApiError::InvalidRequest("the body has a field this endpoint does not know")
    } else {
        ApiError::InvalidRequest(otherwise)
    }
}

/// Two fields that come together or not at all (empty counts as absent).
pub(crate) fn pair(
    a: Option<String>,
    b: Option<String>,
    message: &'static str,
) -> Result<Option<(String, String)>, ApiError> {
    let a = a.filter(|s| !s.is_empty());
    let b = b.filter(|s| !s.is_empty());
    match (a, b) {
        (Some(a), Some(b)) => Ok(Some((a, b))),
        (None, None) => Ok(None),
        _ => Err(ApiError::InvalidRequest(message)),
    }
}

/// Read the whole body, refusing it (413) as soon as it exceeds `max`.
async fn read_body(session: &mut Session, max: usize) -> Result<Bytes, ApiError> {
    let declared = session
        .req_header()
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut buf = BytesMut::new();
    loop {
        let chunk = session
            .read_request_body()
            .await
            .map_err(|_| ApiError::InvalidRequest("the request body could not be read"))?;
        let Some(chunk) = chunk else {
            return Ok(buf.freeze());
        };
        if buf.len().saturating_add(chunk.len()) > max {
            return Err(ApiError::PayloadTooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
}
