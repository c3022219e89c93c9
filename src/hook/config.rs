//! `[login.hook]`, validated: where and how the backend is asked about a login.

use std::time::Duration;

use serde::Serialize;

use crate::headers::ClaimHeader;
use crate::secret::Secret;
use crate::ser::{ser_duration, ser_secret};

/// `[login.hook]`: where wxgate asks the backend about a user before issuing tokens.
#[derive(Debug, Clone, Serialize)]
pub struct HookConfig {
    /// The backend's internal endpoint (http or https).
    pub url: String,
    /// One call, connect to last byte.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Signs each call (`X-WXGate-Signature`).
    #[serde(serialize_with = "ser_secret")]
    pub secret: Secret,
    pub secret_source: String,
    /// Ask the hook again on every refresh (a banned user stops refreshing).
    pub on_refresh: bool,
    /// The extra claims the hook may set, and the headers they travel in.
    #[serde(serialize_with = "ser_claims")]
    pub claims: Vec<ClaimHeader>,
    /// The most the extra claims (names and values) may take, in bytes.
    pub max_claims_bytes: usize,
}

/// `claims` as written: a table of claim name to header.
fn ser_claims<S: serde::Serializer>(v: &[ClaimHeader], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|c| (&c.claim, &c.header.spelling)))
}
