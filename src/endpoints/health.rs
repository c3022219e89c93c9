//! `GET /healthz` and `GET /readyz`.
//!
//! `/healthz` says the process answers. `/readyz` says whether to send it
//! traffic: listeners bound, not shutting down and, unless `on_error =
//! "fail_open"`, the store answering. Its body carries a stable reason code;
//! what went wrong in detail goes to the log, never into the response.

use bytes::Bytes;

use crate::error::chain;
use crate::state::GatewayState;
use crate::store::Eviction;
use crate::store::OnError;

/// `/readyz` reason: the gateway is not (or no longer) accepting requests.
pub(crate) const REASON_SHUTTING_DOWN: &str = "shutting_down";
/// `/readyz` reason: the store did not answer.
pub(crate) const REASON_STORE_UNAVAILABLE: &str = "store_unavailable";

/// `/readyz` reason: Redis may evict keys (its `maxmemory-policy` is not `noeviction`).
pub(crate) const REASON_STORE_EVICTS: &str = "store_evicts";

/// `/readyz` reason: the revocations held in memory are not known to be
/// complete (the revocation feed is behind by more than `max_staleness`).
pub(crate) const REASON_REVOCATIONS_STALE: &str = "revocations_stale";

/// `/healthz`: the process is alive.
pub(crate) fn healthz() -> (u16, Bytes) {
    (200, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// `/readyz`: listeners bound and, unless `fail_open`, the store answering.
pub(crate) async fn readyz(state: &GatewayState) -> (u16, Bytes) {
    if !state.is_ready() {
        let body = serde_json::json!({"status": "not_ready", "reason": REASON_SHUTTING_DOWN});
        return (503, Bytes::from(body.to_string()));
    }
    let sessions = state.sessions();
    let store = sessions.store();
    // A shared store names its topology and feed (no secret, and not the
    // master's address: /readyz is served on the public listener; the
    // metrics, on the internal one, name it).
    let shared = store.status().map(|s| {
        serde_json::json!({
            "topology": s.topology,
            "revocations_live": s.revocations_live,
            "feed_following": s.feed_following,
            "feed_staleness_ms": s.staleness.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        })
    });
    let reason = match store.ping().await {
        Ok(()) => match store.eviction().await {
            Ok(Eviction::Evicts { policy }) => {
                tracing::warn!(%policy, "readiness check: Redis evicts keys; set maxmemory-policy noeviction");
                REASON_STORE_EVICTS
            }
            _ if store.status().is_some_and(|s| s.stale) => REASON_REVOCATIONS_STALE,
            _ => {
                let body = match shared {
                    Some(shared) => {
                        serde_json::json!({"status": "ready", "shared_store": shared}).to_string()
                    }
                    None => r#"{"status":"ready"}"#.to_string(),
                };
                return (200, Bytes::from(body));
            }
        },
        Err(e) => {
            // The store logs its own failures as they happen; probes come often.
            tracing::debug!(error = %chain(&e), "readiness check: the store does not answer");
            REASON_STORE_UNAVAILABLE
        }
    };
    let (status, body) = match sessions.on_error() {
        OnError::FailClosed => (
            503,
            serde_json::json!({"status": "not_ready", "reason": reason}),
        ),
        OnError::FailOpen => (200, serde_json::json!({"status": "ready", "store": reason})),
    };
    let body = match shared {
        Some(shared) => {
            let mut body = body;
            body["shared_store"] = shared;
            body
        }
        None => body,
    };
    (status, Bytes::from(body.to_string()))
}
