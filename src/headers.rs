//! Header hygiene: what the upstream may trust.
//!
//! The upstream believes `X-OpenID` because wxgate guarantees that it set it.
//! So before injecting identity, wxgate removes every client header that could
//! pass for an identity header (`X-OpenID`, `x-openid`, `X_OpenID`: names are
//! compared lower-cased with `_` read as `-`; the same goes for the
//! `X-Forwarded-*` headers wxgate sets), every hop-by-hop header and
//! every header the client's `Connection` names, and it *sets* (never appends)
//! `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Real-IP`.
//! A client's `Forwarded` header is dropped for the same reason, and so are
//! the headers of `[headers] strip` (by default [`DEFAULT_STRIP`]: client-IP
//! and URL-rewrite headers other proxies set and backends believe). `Authorization` is dropped
//! unless `forward_authorization = true`. Then the identity from the verified
//! token is inserted, exactly once per header.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::Method;
use pingora_http::RequestHeader;
use serde::Serialize;

use crate::error::ApiError;
use crate::token::Identity;

/// `X-Forwarded-For`.
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// Cloud Run's client address header: always removed, whatever `[headers] strip` says.
const X_ORIGINAL_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-original-forwarded-for");
/// `X-Real-IP`: set to the client address wxgate believes.
pub(crate) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The headers wxgate sets itself: client copies of them (in any spelling)
/// never reach the upstream.
const SET_BY_WXGATE: [HeaderName; 5] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_REAL_IP,
    FORWARDED,
];

/// `[headers] strip` by default: headers that name the client's address or
/// rewrite the URL for the backend, which a client could forge.
pub(crate) const DEFAULT_STRIP: [&str; 6] = [
    "True-Client-IP",
    "X-Client-IP",
    "CF-Connecting-IP",
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-Original-Forwarded-For",
];

/// Header namespaces wxgate owns: every client header in them is removed.
/// `X-WX-` is also WeChat Cloud Run's (`X-WX-OPENID`, `X-WX-UNIONID`,
/// `X-WX-SOURCE`, ...), which a backend written for Cloud Run trusts as ours
/// trusts `X-OpenID`; `X-WXGate-` is the gateway's own.
const OWNED_PREFIXES: [&[u8]; 2] = [b"x-wx-", b"x-wxgate-"];

/// Whether a (lower-case) header name lies in a namespace wxgate owns, in
/// any spelling with `_` or `-`.
fn in_owned_namespace(name: &[u8]) -> bool {
    OWNED_PREFIXES
        .iter()
        .any(|p| name.get(..p.len()).is_some_and(|head| same_name(head, p)))
}

/// Hop-by-hop headers, always removed (`Upgrade` survives a real WebSocket upgrade).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    FORWARDED,
];

/// Headers a `Connection` token may not remove: they frame the message or route it.
const FRAMING: [HeaderName; 3] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
];

/// Whether a header name cannot be configured as an identity header.
pub(crate) fn is_reserved(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
        || FRAMING.contains(name)
        || name.as_str().eq_ignore_ascii_case(RISK_RANK)
        || [
            header::AUTHORIZATION,
            X_FORWARDED_FOR,
            X_FORWARDED_PROTO,
            X_FORWARDED_HOST,
            X_REAL_IP,
        ]
        .contains(name)
}

/// Whether a header may not be stripped: it frames or routes the message.
pub(crate) fn is_framing(name: &HeaderName) -> bool {
    FRAMING.contains(name)
}

/// `[headers]`, validated: the identity headers wxgate owns.
#[derive(Debug, Clone, Serialize)]
pub struct HeadersConfig {
    pub openid: IdentityHeaderName,
    pub unionid: IdentityHeaderName,
    pub appid: IdentityHeaderName,
    /// The login hook's `uid` (default `X-User-ID`).
    pub user_id: IdentityHeaderName,
    /// The login hook's `roles`, comma-separated (default `X-User-Roles`).
    pub user_roles: IdentityHeaderName,
    pub forward_authorization: bool,
    /// Client headers removed before forwarding (any spelling with `_` or `-`).
    pub strip: Vec<IdentityHeaderName>,
    /// The login hook's extra claims and their headers (from `[login.hook] claims`).
    #[serde(skip)]
    pub claims: Vec<ClaimHeader>,
    /// Also inject the identity as WeChat Cloud Run names it ([`CLOUD_RUN`]).
    pub cloud_run: bool,
}

/// WeChat Cloud Run's identity headers, as it spells them, and the field
/// each carries (`source`: [`CLOUD_RUN_SOURCE`]), for `[headers] cloud_run`.
pub(crate) const CLOUD_RUN: [(&str, &str); 4] = [
    ("X-WX-OPENID", "openid"),
    ("X-WX-APPID", "appid"),
    ("X-WX-UNIONID", "unionid"),
    ("X-WX-SOURCE", "source"),
];

/// WeChat's risk rank of the login (`[login.risk]`), from the token.
pub(crate) const RISK_RANK: &str = "X-WX-Risk-Rank";

/// `X-WX-SOURCE` with `[headers] cloud_run`: the request came through wxgate.
pub(crate) const CLOUD_RUN_SOURCE: &str = "wxgate";

/// A header name as configured: the lookup name and the spelling sent upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaderName {
    /// Lower-case name for matching.
    pub name: HeaderName,
    /// The configured spelling, e.g. `X-OpenID`.
    pub spelling: String,
}

impl IdentityHeaderName {
    /// Parse a header name, keeping its spelling.
    pub fn parse(text: &str) -> Option<Self> {
        let name = HeaderName::from_bytes(text.as_bytes()).ok()?;
        Some(Self {
            name,
            spelling: text.to_string(),
        })
    }
}

impl Serialize for IdentityHeaderName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.spelling)
    }
}

/// Facts about the downstream connection that the upstream should learn.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    /// The client address as wxgate sees it.
    pub ip: Option<IpAddr>,
    /// Whether the client connected over TLS.
    pub https: bool,
}

/// One identity header: the case it is sent in.
#[derive(Debug, Clone)]
struct IdentityHeader {
    /// As configured, e.g. `X-OpenID` (HTTP/1 upstreams see this case).
    wire: Bytes,
}

/// The header rules, built once from `[headers]`.
#[derive(Debug, Clone)]
pub struct HeaderPolicy {
    openid: IdentityHeader,
    unionid: IdentityHeader,
    appid: IdentityHeader,
    user_id: IdentityHeader,
    user_roles: IdentityHeader,
    /// The login hook's extra claims: claim name and header, in claim order.
    claims: Vec<(String, IdentityHeader)>,
    forward_authorization: bool,
    /// `[headers] cloud_run`: Cloud Run's headers for openid, appid,
    /// unionid (those not already sent under the same name), and its source.
    cloud_run: Vec<(&'static str, IdentityHeader)>,
    /// The value of `X-WX-SOURCE`.
    source: HeaderValue,
    /// `X-WX-Risk-Rank`: WeChat's risk rank of the login, when the token has one.
    risk: IdentityHeader,
    /// Lower-case names whose client copies are removed, in any spelling:
    /// the identity headers, the ones wxgate sets, and `[headers] strip`.
    spoofable: Vec<HeaderName>,
}

impl HeaderPolicy {
    /// Build the policy from the validated config.
    pub fn new(cfg: &HeadersConfig) -> Self {
        let mk = |h: &IdentityHeaderName| IdentityHeader {
            wire: Bytes::copy_from_slice(h.spelling.as_bytes()),
        };
        let spoofable = [
            &cfg.openid,
            &cfg.unionid,
            &cfg.appid,
            &cfg.user_id,
            &cfg.user_roles,
        ]
        .into_iter()
        .chain(cfg.claims.iter().map(|c| &c.header))
        .chain(&cfg.strip)
        .map(|h| h.name.clone())
        .chain(SET_BY_WXGATE)
        .chain([X_ORIGINAL_FORWARDED_FOR])
        .collect();
        Self {
            openid: mk(&cfg.openid),
            unionid: mk(&cfg.unionid),
            appid: mk(&cfg.appid),
            user_id: mk(&cfg.user_id),
            user_roles: mk(&cfg.user_roles),
            claims: cfg
                .claims
                .iter()
                .map(|c| (c.claim.clone(), mk(&c.header)))
                .collect(),
            forward_authorization: cfg.forward_authorization,
            cloud_run: if cfg.cloud_run {
                let ours = [
                    (&cfg.openid, "openid"),
                    (&cfg.appid, "appid"),
                    (&cfg.unionid, "unionid"),
                ];
                CLOUD_RUN
                    .iter()
                    .filter(|(name, field)| {
                        // Already sent under that name (X-WX-AppID): once is enough.
                        !ours.iter().any(|(h, f)| {
                            f == field
                                && same_name(
                                    h.name.as_str().as_bytes(),
                                    name.to_ascii_lowercase().as_bytes(),
                                )
                        })
                    })
                    .map(|(name, field)| {
                        let wire = Bytes::from_static(name.as_bytes());
                        (*field, IdentityHeader { wire })
                    })
                    .collect()
            } else {
                Vec::new()
            },
            source: HeaderValue::from_static(CLOUD_RUN_SOURCE),
            risk: IdentityHeader {
                wire: Bytes::from_static(RISK_RANK.as_bytes()),
            },
            spoofable,
        }
    }

    /// A client header that could pass for one wxgate sets (an identity
    /// header, `X-Forwarded-*`, `X-Real-IP`, `Forwarded`, anything in the
    /// `X-WX-` and `X-WXGate-` namespaces) or one of `[headers] strip`, in any spelling with `_` or `-` (CGI/WSGI backends
    /// read `X_OpenID` and `X-OpenID` as the same variable).
    fn is_look_alike(&self, name: &HeaderName) -> bool {
        let n = name.as_str().as_bytes();
        in_owned_namespace(n)
            || self
                .spoofable
                .iter()
                .any(|h| same_name(n, h.as_str().as_bytes()))
    }

    /// Remove spoofable and hop-by-hop headers and set `X-Forwarded-*`.
    pub fn sanitize(&self, req: &mut RequestHeader, client: ClientInfo) {
        let websocket = is_websocket_upgrade(req);

        // Names to drop that depend on the request: look-alikes of the headers
        // wxgate sets and the headers `Connection` lists. Empty (no allocation)
        // for most requests.
        let mut drop: Vec<HeaderName> = Vec::new();
        for name in req.headers.keys() {
            if self.is_look_alike(name) {
                drop.push(name.clone());
            }
        }
        for value in req.headers.get_all(header::CONNECTION) {
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.is_empty()
                    || token.eq_ignore_ascii_case(b"close")
                    || token.eq_ignore_ascii_case(b"keep-alive")
                    || token.eq_ignore_ascii_case(b"upgrade")
                {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token) {
                    if !FRAMING.contains(&name) && name != crate::access::X_REQUEST_ID {
                        drop.push(name);
                    }
                }
            }
        }
        for name in &drop {
            req.remove_header(name);
        }
        for name in &HOP_BY_HOP {
            if websocket && *name == header::UPGRADE {
                continue;
            }
            req.remove_header(name);
        }
        if !self.forward_authorization {
            req.remove_header(&header::AUTHORIZATION);
        }
        if websocket {
            // The one Connection token an upstream needs to see.
            let _ = req.insert_header(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }

        match client.ip {
            Some(ip) => {
                let ip = ip.to_string();
                let _ = req.insert_header(X_REAL_IP, &ip);
                let _ = req.insert_header(X_FORWARDED_FOR, ip);
            }
            None => {
                req.remove_header(&X_FORWARDED_FOR);
                req.remove_header(&X_REAL_IP);
            }
        }
        let proto = if client.https { "https" } else { "http" };
        let _ = req.insert_header(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        let host = req.headers.get(header::HOST).cloned().or_else(|| {
            req.uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        match host {
            Some(h) => {
                let _ = req.insert_header(X_FORWARDED_HOST, h);
            }
            None => {
                req.remove_header(&X_FORWARDED_HOST);
            }
        }
    }

    /// The header values of a verified identity, checked once per request.
    ///
    /// A signed claim that cannot be a header value (control bytes) is refused,
    /// not forwarded in some mangled form.
    pub fn identity_values(&self, id: &Identity) -> Result<IdentityValues, ApiError> {
        let value = |s: &str| HeaderValue::from_str(s).map_err(|_| ApiError::TokenInvalid);
        let user = &id.user;
        let roles = match user.roles.as_slice() {
            [] => None,
            [one] => Some(value(one)?),
            many => Some(value(&many.join(","))?),
        };
        let mut claims = Vec::new();
        for (i, (name, _)) in self.claims.iter().enumerate() {
            if let Some(v) = user.ext.get(name) {
                claims.push((i, value(v)?));
            }
        }
        Ok(IdentityValues {
            openid: value(&id.openid)?,
            unionid: id.unionid.as_deref().map(value).transpose()?,
            appid: id.appid.as_deref().map(value).transpose()?,
            uid: user.uid.as_deref().map(value).transpose()?,
            roles,
            claims,
            risk: user.risk.map(|r| HeaderValue::from(u16::from(r))),
        })
    }

    /// Insert the identity headers. Call after [`Self::sanitize`].
    pub fn inject(&self, req: &mut RequestHeader, id: &IdentityValues) {
        for (wire, v) in self.identity_fields(id) {
            // Inserting a valid name and value into a header map cannot fail.
            let _ = req.insert_header(wire.clone(), v.clone());
        }
    }

    /// The identity headers of a token's values, each in its configured
    /// spelling: the ids and the hook's `uid` and `roles`, then its claims.
    fn identity_fields<'a>(
        &'a self,
        id: &'a IdentityValues,
    ) -> impl Iterator<Item = (&'a Bytes, &'a HeaderValue)> {
        [
            (&self.openid, Some(&id.openid)),
            (&self.unionid, id.unionid.as_ref()),
            (&self.appid, id.appid.as_ref()),
            (&self.user_id, id.uid.as_ref()),
            (&self.user_roles, id.roles.as_ref()),
            (&self.risk, id.risk.as_ref()),
        ]
        .into_iter()
        .filter_map(|(h, v)| Some((&h.wire, v?)))
        .chain(
            id.claims
                .iter()
                .filter_map(|(i, v)| Some((&self.claims.get(*i)?.1.wire, v))),
        )
        .chain(self.cloud_run.iter().filter_map(|(field, h)| {
            let v = match *field {
                "openid" => Some(&id.openid),
                "appid" => id.appid.as_ref(),
                "unionid" => id.unionid.as_ref(),
                _ => Some(&self.source),
            };
            Some((&h.wire, v?))
        }))
    }
}

/// Identity header values of a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityValues {
    pub openid: HeaderValue,
    pub unionid: Option<HeaderValue>,
    pub appid: Option<HeaderValue>,
    /// The login hook's `uid`.
    pub uid: Option<HeaderValue>,
    /// The login hook's `roles`, comma-separated.
    pub roles: Option<HeaderValue>,
    /// Extra claims the token carries, by their index in `[login.hook] claims`.
    pub claims: Vec<(usize, HeaderValue)>,
    /// WeChat's risk rank of the login.
    pub risk: Option<HeaderValue>,
}

/// Header names are equal when lower-cased and with `_` read as `-`.
/// `a` is a lower-case name from the request, `b` a lower-case configured one.
fn same_name(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| x == y || (x == b'_' && y == b'-') || (x == b'-' && y == b'_'))
}

/// A WebSocket handshake: `GET`, `Upgrade: websocket`, `Connection: upgrade`.
pub(crate) fn is_websocket_upgrade(req: &RequestHeader) -> bool {
    req.method == Method::GET
        && req
            .headers
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && req.headers.get_all(header::CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}

mod client;
pub(crate) mod raw;

pub(crate) use client::Client;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;

/// An extra claim the login hook may set, and the header it is injected as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimHeader {
    pub claim: String,
    pub header: IdentityHeaderName,
}
