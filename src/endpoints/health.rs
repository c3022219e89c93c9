//! `GET /healthz` and `GET /readyz`.
//!
//! `/healthz` says the process answers. `/readyz` says whether to send it
//! traffic: listeners bound, not shutting down and, unless `on_error =
//! "fail_open"`, the store answering. Its body carries a stable reason code;
//! what went wrong in detail goes to the log, never into the response.

use bytes::Bytes;

use crate::config::OnError;
use crate::error::chain;
use crate::state::GatewayState;

/// `/readyz` reason: the gateway is not (or no longer) accepting requests.
pub const REASON_SHUTTING_DOWN: &str = "shutting_down";
/// `/readyz` reason: the store did not answer.
pub const REASON_STORE_UNAVAILABLE: &str = "store_unavailable";

/// `/healthz`: the process is alive.
pub fn healthz() -> (u16, Bytes) {
    (200, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// `/readyz`: listeners bound and, unless `fail_open`, the store answering.
pub async fn readyz(state: &GatewayState) -> (u16, Bytes) {
    if !state.is_ready() {
        let body = serde_json::json!({"status": "not_ready", "reason": REASON_SHUTTING_DOWN});
        return (503, Bytes::from(body.to_string()));
    }
    let sessions = state.sessions();
    match sessions.store().ping().await {
        Ok(()) => (200, Bytes::from_static(br#"{"status":"ready"}"#)),
        Err(e) => {
            // The store logs its own failures as they happen; probes come often.
            tracing::debug!(error = %chain(&e), "readiness check: the store does not answer");
            let (status, body) = match sessions.on_error() {
                OnError::FailClosed => (
                    503,
                    serde_json::json!({"status": "not_ready", "reason": REASON_STORE_UNAVAILABLE}),
                ),
                OnError::FailOpen => (
                    200,
                    serde_json::json!({"status": "ready", "store": REASON_STORE_UNAVAILABLE}),
                ),
            };
            (status, Bytes::from(body.to_string()))
        }
    }
}
