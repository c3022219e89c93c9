//! One audit event: what its log line says and what the webhook delivers.

use serde::Serialize;

/// An audit event. Fields that do not apply are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Record {
    /// Unique per event: a delivery may be retried, the backend drops repeats.
    pub id: String,
    /// Unix milliseconds.
    pub time_ms: u64,
    /// `login`, `refresh`, `logout`, `session_ended`, `admin_*`.
    pub event: &'static str,
    /// The access log's keyed hash of the openid.
    pub user: String,
    /// The openid itself, only with `[audit] openid = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The first characters of the session's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The client's address at login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// What a logout ended: `token`, `all` or `others`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what: Option<&'static str>,
    /// Who ended a session: `user`, `admin`, `limit`, `lifetime`, `gateway`, `hook`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<&'static str>,
    /// Why a session ended (what its client is told, or what the gateway saw).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// An admin call's outcome: `ok` or the error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    /// What an admin call did: sessions ended, a ban's end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The body of one webhook delivery.
#[derive(Debug, Serialize)]
pub(crate) struct Batch<'a> {
    pub events: &'a [Record],
}
