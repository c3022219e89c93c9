//! The admin API, on the internal listener only (`[metrics] listen`), with
//! a Bearer secret of its own (`[metrics] admin_secret`): a user's sessions
//! in every app, ending one or all of them, and bans.
//!
//! | Method and path (under `/internal/admin/users/{openid}`) | What |
//! |---|---|
//! | `GET /sessions?offset=&limit=` | the user's live sessions, oldest first |
//! | `DELETE /sessions/{id}` | end one (its client hears `session_ended`, `admin`) |
//! | `DELETE /sessions` | end all of them |
//! | `GET /ban` | the ban in force, or `null` |
//! | `PUT /ban` `{"duration"?: "7d", "reason"?}` | ban (no `duration`: until unbanned); every session ends |
//! | `DELETE /ban` | lift the ban |
//!
//! and `GET /internal/admin/sessions?uid=&offset=&limit=`: the sessions of
//! every openid the login hook gave that `uid` to, each with its `openid`.
//!
//! Every call is one line on the `wxgate::audit` log target, the user as
//! the access log's keyed hash.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::{Method, Request, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::bearer::{error_response, refused};
use crate::error::ApiError;
use crate::hook::MAX_UID_BYTES;
use crate::http1::response;
use crate::sessions::admin::MAX_BAN_REASON;
use crate::state::GatewayState;
use crate::store::MAX_TTL;

/// Where the admin API lives.
pub(super) const ADMIN_PREFIX: &str = "/internal/admin/";

/// Largest request body (a ban's).
const MAX_BODY: usize = 4096;

/// Most sessions one page lists (a user holds at most 100).
const MAX_PAGE: usize = 100;

/// One admin call, read from the method and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call<'a> {
    SessionsByUid,
    Sessions(&'a str),
    EndSession(&'a str, &'a str),
    EndAll(&'a str),
    GetBan(&'a str),
    PutBan(&'a str),
    Unban(&'a str),
}

impl Call<'_> {
    /// What the audit line calls it.
    fn event(&self) -> &'static str {
        match self {
            Call::SessionsByUid => "admin_list_uid_sessions",
            Call::Sessions(_) => "admin_list_sessions",
            Call::EndSession(..) => "admin_end_session",
            Call::EndAll(_) => "admin_end_sessions",
            Call::GetBan(_) => "admin_get_ban",
            Call::PutBan(_) => "admin_ban",
            Call::Unban(_) => "admin_unban",
        }
    }

    /// The user the path names (not a lookup by `uid`).
    fn openid(&self) -> Option<&str> {
        match self {
            Call::SessionsByUid => None,
            Call::Sessions(o)
            | Call::EndSession(o, _)
            | Call::EndAll(o)
            | Call::GetBan(o)
            | Call::PutBan(o)
            | Call::Unban(o) => Some(o),
        }
    }
}

/// The call `method` and `path` make: `Err(405)` for a known path and
/// another method, `Err(404)` for anything else.
fn route<'a>(method: &Method, path: &'a str) -> Result<Call<'a>, u16> {
    let rest = path.strip_prefix(ADMIN_PREFIX).ok_or(404u16)?;
    if rest == "sessions" {
        return match *method {
            Method::GET => Ok(Call::SessionsByUid),
            _ => Err(405),
        };
    }
    let rest = rest.strip_prefix("users/").ok_or(404u16)?;
    let mut parts = rest.split('/');
    let openid = parts.next().filter(|o| plain_id(o)).ok_or(404u16)?;
    let what = parts.next().ok_or(404u16)?;
    let id = parts.next();
    if parts.next().is_some() {
        return Err(404);
    }
    match (what, id) {
        ("sessions", None) => match *method {
            Method::GET => Ok(Call::Sessions(openid)),
            Method::DELETE => Ok(Call::EndAll(openid)),
            _ => Err(405),
        },
        ("sessions", Some(id)) if plain_id(id) => match *method {
            Method::DELETE => Ok(Call::EndSession(openid, id)),
            _ => Err(405),
        },
        ("ban", None) => match *method {
            Method::GET => Ok(Call::GetBan(openid)),
            Method::PUT => Ok(Call::PutBan(openid)),
            Method::DELETE => Ok(Call::Unban(openid)),
            _ => Err(405),
        },
        _ => Err(404),
    }
}

/// An openid or a session id: 1 to 64 of `A-Z a-z 0-9 - _`.
fn plain_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The body of `PUT /ban`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BanRequest {
    /// How long (`"7d"`, `"12h"`); absent: until unbanned.
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// Answer one request under [`ADMIN_PREFIX`].
pub(super) async fn handle(
    state: &GatewayState,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let Some(secret) = state.admin_secret() else {
        return response(404, "text/plain", "metrics are at /metrics\n");
    };
    if let Some(r) = refused(req.headers(), secret, r#"Bearer realm="wxgate-admin""#) {
        let call = route(req.method(), req.uri().path()).ok();
        state.audit().admin(
            "admin_refused",
            call.as_ref().and_then(Call::openid),
            "token_invalid",
            None,
        );
        return r;
    }
    let path = req.uri().path().to_string();
    let call = match route(req.method(), &path) {
        Ok(call) => call,
        Err(405) => {
            return error_response(&ApiError::MethodNotAllowed {
                allow: "GET, PUT, DELETE",
            })
        }
        Err(_) => return error_response(&ApiError::NoRoute),
    };
    let query = req.uri().query().map(str::to_string);
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    let result = answer(state, &call, query.as_deref(), &body).await;
    let (outcome, detail) = match &result {
        Ok(v) => {
            match call {
                Call::PutBan(_) => state.metrics().ban("ban"),
                Call::Unban(_) if v["unbanned"] == true => state.metrics().ban("unban"),
                _ => {}
            }
            ("ok", audit_detail(state, &call, v))
        }
        Err(e) => (e.code(), None),
    };
    state
        .audit()
        .admin(call.event(), call.openid(), outcome, detail);
    let mut r = match result {
        Ok(v) => response(200, "application/json", v.to_string()),
        Err(e) => error_response(&e),
    };
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// What an audit line says of a call that succeeded: sessions ended, ban.
fn audit_detail(state: &GatewayState, call: &Call<'_>, answer: &Value) -> Option<String> {
    match call {
        // Whose sessions were read, as the access log names users.
        Call::SessionsByUid => Some(format!(
            "users={}",
            answer["users"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|o| state.user_hash(o))
                .collect::<Vec<_>>()
                .join(",")
        )),
        Call::EndSession(..) | Call::EndAll(_) => Some(format!(
            "ended={}",
            answer["ended"].as_array().map_or(0, Vec::len)
        )),
        Call::PutBan(_) => Some(format!(
            "until_ms={} sessions_ended={}",
            answer["ban"]["until_ms"], answer["sessions_ended"]
        )),
        Call::Unban(_) => Some(format!("unbanned={}", answer["unbanned"])),
        Call::Sessions(_) | Call::GetBan(_) => None,
    }
}

async fn answer(
    state: &GatewayState,
    call: &Call<'_>,
    query: Option<&str>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let sessions = state.sessions();
    let param = |name: &str| {
        query
            .into_iter()
            .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let number = |name: &str, default: usize| match param(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::InvalidRequest("`offset` and `limit` are numbers")),
    };
    // Read only by the two lists: a stray `limit` on another call is no error.
    let page = || -> Result<(usize, usize), ApiError> {
        Ok((
            number("offset", 0)?,
            number("limit", MAX_PAGE)?.clamp(1, MAX_PAGE),
        ))
    };
    match *call {
        Call::SessionsByUid => {
            let uid = param("uid")
                .filter(|u| {
                    (1..=MAX_UID_BYTES).contains(&u.len())
                        && u.bytes().all(|b| b.is_ascii_graphic())
                })
                .ok_or(ApiError::InvalidRequest(
                    "`uid` (1-128 visible ASCII characters) is required",
                ))?;
            let (offset, limit) = page()?;
            let (openids, all) = sessions.sessions_of_uid(&uid).await?;
            let page: Vec<Value> = all
                .iter()
                .skip(offset)
                .take(limit)
                .map(|(openid, e)| {
                    let mut v = json!(e);
                    v["openid"] = json!(openid);
                    v
                })
                .collect();
            let next = offset.saturating_add(page.len());
            Ok(json!({
                "uid": uid,
                "users": openids,
                "sessions": page,
                "total": all.len(),
                "next_offset": (next < all.len()).then_some(next),
            }))
        }
        Call::Sessions(openid) => {
            let (offset, limit) = page()?;
            let all = sessions.sessions_of(openid).await?;
            let page: Vec<_> = all.iter().skip(offset).take(limit).collect();
            let next = offset.saturating_add(page.len());
            Ok(json!({
                "sessions": page,
                "total": all.len(),
                "next_offset": (next < all.len()).then_some(next),
            }))
        }
        Call::EndSession(openid, id) => Ok(json!({
            "ended": sessions.end_for_admin(openid, Some(id)).await?,
        })),
        Call::EndAll(openid) => Ok(json!({
            "ended": sessions.end_for_admin(openid, None).await?,
        })),
        Call::GetBan(openid) => Ok(json!({ "ban": sessions.ban_of(openid).await? })),
        Call::PutBan(openid) => {
            let req: BanRequest = if body.is_empty() {
                BanRequest::default()
            } else {
                serde_json::from_slice(body).map_err(|_| {
                    ApiError::InvalidRequest("the body is not {\"duration\"?, \"reason\"?}")
                })?
            };
            let duration = req
                .duration
                .as_deref()
                .map(|d| {
                    humantime::parse_duration(d.trim())
                        .ok()
                        .filter(|d| !d.is_zero() && *d <= MAX_TTL)
                        .ok_or(ApiError::InvalidRequest(
                            "`duration` is not a duration like \"7d\" of at most 400d (none: until lifted)",
                        ))
                })
                .transpose()?;
            if req.reason.as_deref().is_some_and(|r| {
                r.chars().count() > MAX_BAN_REASON || r.chars().any(char::is_control)
            }) {
                return Err(ApiError::InvalidRequest(
                    "`reason` is over 256 characters or holds a control character",
                ));
            }
            let (ban, ended) = sessions.ban(openid, duration, req.reason).await?;
            Ok(json!({ "ban": ban, "sessions_ended": ended }))
        }
        Call::Unban(openid) => Ok(json!({ "unbanned": sessions.unban(openid).await? })),
    }
}

/// The whole body, at most [`MAX_BODY`] bytes.
async fn read_body(req: Request<hyper::body::Incoming>) -> Result<Bytes, ApiError> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| ApiError::InvalidRequest("the body is over 4096 bytes or broken"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_one_call_each() {
        let p = "/internal/admin/users/oABC_12-x";
        assert_eq!(
            route(&Method::GET, &format!("{p}/sessions")),
            Ok(Call::Sessions("oABC_12-x"))
        );
        assert_eq!(
            route(&Method::DELETE, &format!("{p}/sessions")),
            Ok(Call::EndAll("oABC_12-x"))
        );
        assert_eq!(
            route(&Method::DELETE, &format!("{p}/sessions/s1")),
            Ok(Call::EndSession("oABC_12-x", "s1"))
        );
        assert_eq!(
            route(&Method::PUT, &format!("{p}/ban")),
            Ok(Call::PutBan("oABC_12-x"))
        );
        assert_eq!(
            route(&Method::GET, &format!("{p}/ban")),
            Ok(Call::GetBan("oABC_12-x"))
        );
        assert_eq!(
            route(&Method::DELETE, &format!("{p}/ban")),
            Ok(Call::Unban("oABC_12-x"))
        );
        assert_eq!(route(&Method::POST, &format!("{p}/ban")), Err(405));
        assert_eq!(route(&Method::GET, &format!("{p}/sessions/s1")), Err(405));
        for bad in [
            "/internal/admin/users//sessions",
            "/internal/admin/users/o/../ban",
            "/internal/admin/users/o%2F/ban",
            "/internal/admin/users/o/sessions/a/b",
            "/internal/admin/users/o/other",
            "/internal/admin/users/o",
            "/internal/admin/sessions/x",
            "/internal/admin/uids",
        ] {
            assert_eq!(route(&Method::GET, bad), Err(404), "{bad}");
        }
        assert_eq!(
            route(&Method::GET, "/internal/admin/sessions"),
            Ok(Call::SessionsByUid)
        );
        assert_eq!(route(&Method::DELETE, "/internal/admin/sessions"), Err(405));
        let long = "o".repeat(65);
        assert_eq!(
            route(&Method::GET, &format!("/internal/admin/users/{long}/ban")),
            Err(404)
        );
    }
}
