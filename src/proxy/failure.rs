//! What a client hears when proxying fails: Pingora's error, by where it
//! came from and what it was, as one of the gateway's errors.

use pingora_error::{Error, ErrorSource, ErrorType};

use crate::error::ApiError;

/// What the client should hear about a Pingora error; `None` when the client is gone.
pub(super) fn classify(e: &Error) -> Option<ApiError> {
    use ErrorType::*;
    match e.esource() {
        ErrorSource::Upstream => Some(match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout => ApiError::UpstreamTimeout,
            _ => ApiError::UpstreamUnavailable,
        }),
        ErrorSource::Downstream => match e.etype() {
            ReadError | WriteError | ConnectionClosed => None,
            ReadTimedout | WriteTimedout => None,
            _ => Some(ApiError::InvalidRequest("the request is malformed")),
        },
        ErrorSource::Internal | ErrorSource::Unset => match e.etype() {
            ConnectTimedout => Some(ApiError::UpstreamTimeout),
            ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure => {
                Some(ApiError::UpstreamUnavailable)
            }
            _ => Some(ApiError::Internal),
        },
    }
}
