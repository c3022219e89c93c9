//! Where a request goes: its canonical path, the gateway's own endpoints,
//! and the route table with each route's auth mode.
//!
//! Routing and forwarding must agree on what the path *is*: if wxgate routed
//! `/%61dmin/x` by its raw bytes to a public route while the upstream decoded it
//! to `/admin/x`, the token check would be bypassed. So wxgate decides, once, on
//! the exact bytes it forwards, routes on those bytes, and sends those bytes:
//!
//! * percent-escapes of unreserved characters are decoded (`%61` → `a`,
//!   `%2e` → `.`), every other escape is kept with upper-case hex;
//! * bytes that may not appear raw in a path are percent-encoded;
//! * runs of `/` collapse to one;
//! * dot segments (`.`, `..`, also as `%2e`, also followed by `;params`), encoded `/` or `\` (`%2f`, `%5c`),
//!   a raw `\`, `%00`, control bytes, malformed escapes and paths that are not
//!   UTF-8 once decoded are refused (`invalid_path`).
//!
//! The query string is forwarded as received; only control bytes are refused.
//!
//! Upstream frameworks read paths more loosely than wxgate routes them, so
//! [`RouteTable::route`] also refuses (`invalid_path`) a path that another
//! reading would send to a *different* route:
//!
//! * ignoring ASCII case (Express and many others by default): `/API/secret`
//!   is refused when `/api/` is a route and `/API/secret` would otherwise go
//!   to `/`;
//! * dropping `;params` from each segment (Tomcat, Spring, Jetty): a path
//!   holding `;` is refused unless its route sets `allow_path_params`, and even
//!   then when `/api;x/secret` read as `/api/secret` would change route.
//!
//! Percent-escapes of unreserved characters are decoded first, so `/%41PI/x`
//! is `/API/x` for all of the above.

mod config;

pub use config::RouteConfig;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// A request target after canonicalisation: the path and query wxgate forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical<'a> {
    target: Cow<'a, [u8]>,
    path_len: usize,
}

impl Canonical<'_> {
    /// The canonical path, without the query. Always ASCII.
    pub fn path(&self) -> &str {
        // Canonical paths are ASCII by construction (see `canonicalize`).
        std::str::from_utf8(&self.target[..self.path_len]).unwrap_or("/")
    }

    /// Path and query: the exact request target forwarded upstream.
    pub fn target(&self) -> &[u8] {
        &self.target
    }

    /// Whether the forwarded target differs from what the client sent.
    pub fn is_rewritten(&self) -> bool {
        matches!(self.target, Cow::Owned(_))
    }
}

/// Canonicalise a raw origin-form request target (`/path?query`).
pub fn canonicalize(raw: &[u8]) -> Result<Canonical<'_>, ApiError> {
    if raw.first() != Some(&b'/') {
        return Err(ApiError::InvalidPath);
    }
    let (path, query) = match raw.iter().position(|&b| b == b'?') {
        Some(q) => (&raw[..q], Some(&raw[q..])),
        None => (raw, None),
    };
    if let Some(q) = query {
        if q.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'#') {
            return Err(ApiError::InvalidPath);
        }
    }
    // Fast path: nothing to decode, encode or collapse. Only dot segments to check.
    if path.iter().all(|&b| is_plain(b)) && !has_double_slash(path) {
        check_segments(path)?;
        return Ok(Canonical {
            target: Cow::Borrowed(raw),
            path_len: path.len(),
        });
    }
    let mut out = Vec::with_capacity(raw.len());
    // The decoded path, for the UTF-8 check.
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    path.get(i + 1).and_then(|&c| hex(c)),
                    path.get(i + 2).and_then(|&c| hex(c)),
                ) else {
                    return Err(ApiError::InvalidPath);
                };
                let v = h << 4 | l;
                if v == b'/' || v == b'\\' || v < 0x20 || v == 0x7f {
                    return Err(ApiError::InvalidPath);
                }
                if is_unreserved(v) {
                    out.push(v);
                } else {
                    push_escape(&mut out, v);
                }
                decoded.push(v);
                i += 3;
                continue;
            }
            b'\\' => return Err(ApiError::InvalidPath),
            _ if b < 0x20 || b == 0x7f => return Err(ApiError::InvalidPath),
            b'/' if out.last() == Some(&b'/') => {}
            _ if is_plain(b) => out.push(b),
            _ => push_escape(&mut out, b),
        }
        decoded.push(b);
        i += 1;
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(ApiError::InvalidPath);
    }
    check_segments(&out)?;
    let path_len = out.len();
    if let Some(q) = query {
        out.extend_from_slice(q);
    }
    if out == raw {
        return Ok(Canonical {
            target: Cow::Borrowed(raw),
            path_len,
        });
    }
    Ok(Canonical {
        target: Cow::Owned(out),
        path_len,
    })
}

fn has_double_slash(path: &[u8]) -> bool {
    path.windows(2).any(|w| w == b"//")
}

/// Refuse dot segments, also with path parameters (`..;x`): servlet containers
/// strip `;...` before resolving `..`.
fn check_segments(path: &[u8]) -> Result<(), ApiError> {
    let dot = |seg: &[u8]| {
        let name = seg.split(|&b| b == b';').next().unwrap_or(seg);
        name == b"." || name == b".."
    };
    if path.split(|&b| b == b'/').any(dot) {
        return Err(ApiError::InvalidPath);
    }
    Ok(())
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn push_escape(out: &mut Vec<u8>, v: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[(v >> 4) as usize], HEX[(v & 15) as usize]]);
}

/// RFC 3986 unreserved characters.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes that stand for themselves in a canonical path: pchar and '/', minus '%'.
fn is_plain(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'/' | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// How a route treats the Bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// A valid token is required (the default).
    Required,
    /// A valid token adds identity; no token is fine; an invalid one is refused.
    Optional,
    /// No token needed, no identity injected.
    Public,
}

/// One entry of the route table.
#[derive(Debug, Clone)]
pub struct Route {
    /// The canonical prefix.
    pub prefix: String,
    /// Token policy.
    pub auth: AuthMode,
    /// Index into the configured routes (and so into the upstream groups).
    pub index: usize,
    /// Whether paths on this route may carry `;` path parameters.
    pub path_params: bool,
}

/// A configured route, as the table needs it.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec<'a> {
    pub prefix: &'a str,
    pub auth: AuthMode,
    /// `allow_path_params`: `;` may appear in this route's paths.
    pub path_params: bool,
}

impl<'a> From<(&'a str, AuthMode)> for RouteSpec<'a> {
    fn from((prefix, auth): (&'a str, AuthMode)) -> Self {
        Self {
            prefix,
            auth,
            path_params: false,
        }
    }
}

/// Routes by longest matching prefix.
///
/// A prefix that ends in `/` matches every path that starts with it; any other
/// prefix matches itself and the paths below it (`/api` matches `/api` and
/// `/api/x`, not `/apix`).
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// Sorted longest prefix first.
    routes: Vec<Route>,
}

impl RouteTable {
    /// Build the table from validated routes (or `(prefix, auth)` pairs); a
    /// route's index is its position, as in the config.
    pub fn new<'a, S: Into<RouteSpec<'a>>>(routes: impl IntoIterator<Item = S>) -> Self {
        let mut routes: Vec<Route> = routes
            .into_iter()
            .enumerate()
            .map(|(index, spec)| {
                let spec = spec.into();
                Route {
                    prefix: spec.prefix.to_string(),
                    auth: spec.auth,
                    index,
                    path_params: spec.path_params,
                }
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Self { routes }
    }

    /// The route whose prefix matches a canonical path exactly, if any.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }

    /// The route for a canonical path, refusing (`invalid_path`) a path that
    /// an upstream reading it case-insensitively or without `;params` would
    /// take for another route's, and `;` on routes that do not allow it.
    pub fn route(&self, path: &str) -> Result<Option<&Route>, ApiError> {
        let exact = self.find(path);
        let index = |r: Option<&Route>| r.map(|r| r.index);
        if index(self.find_ignoring_case(path)) != index(exact) {
            return Err(ApiError::InvalidPath);
        }
        if path.contains(';') {
            if exact.is_some_and(|r| !r.path_params) {
                return Err(ApiError::InvalidPath);
            }
            let stripped = strip_path_params(path);
            if index(self.find(&stripped)) != index(exact)
                || index(self.find_ignoring_case(&stripped)) != index(exact)
            {
                return Err(ApiError::InvalidPath);
            }
        }
        Ok(exact)
    }

    /// The route a server that ignores ASCII case would pick.
    fn find_ignoring_case(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| prefix_matches_ignoring_case(&r.prefix, path))
    }
}

/// `path` with `;params` cut from every segment, as servlet containers read
/// it, and the `//` an emptied segment leaves merged (`/;x/api` is `/api`).
fn strip_path_params(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 && !out.ends_with('/') {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or(segment));
    }
    out
}

/// Whether `prefix` may stand in the route table as written: a canonical path
/// (what [`canonicalize`] would route on) starting with `/`, without a query.
pub fn is_canonical_prefix(prefix: &str) -> bool {
    !prefix.contains('?') && canonicalize(prefix.as_bytes()).is_ok_and(|c| c.path() == prefix)
}

/// A path wxgate answers itself, before any route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /healthz`: the process is alive.
    Healthz,
    /// `GET /readyz`: config loaded, listeners bound, store answering.
    Readyz,
    /// `POST {login.path_prefix}/login`.
    Login,
    /// `POST {login.path_prefix}/decrypt` (Bearer token required).
    Decrypt,
    /// `POST {login.path_prefix}/logout` (Bearer token required).
    Logout,
    /// `POST {login.path_prefix}/refresh`.
    Refresh,
    /// `POST {login.path_prefix}/phone` (Bearer token required).
    Phone,
    /// `GET /.well-known/jwks.json`: the public token keys.
    Jwks,
}

impl Endpoint {
    /// Every endpoint, in a fixed order ([`Endpoint::index`]).
    pub const ALL: [Endpoint; 8] = [
        Endpoint::Healthz,
        Endpoint::Readyz,
        Endpoint::Login,
        Endpoint::Decrypt,
        Endpoint::Logout,
        Endpoint::Refresh,
        Endpoint::Phone,
        Endpoint::Jwks,
    ];

    /// The endpoint's short name, in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Healthz => "healthz",
            Endpoint::Readyz => "readyz",
            Endpoint::Login => "login",
            Endpoint::Decrypt => "decrypt",
            Endpoint::Logout => "logout",
            Endpoint::Refresh => "refresh",
            Endpoint::Phone => "phone",
            Endpoint::Jwks => "jwks",
        }
    }

    /// The endpoint's place in [`Endpoint::ALL`].
    pub fn index(self) -> usize {
        match self {
            Endpoint::Healthz => 0,
            Endpoint::Readyz => 1,
            Endpoint::Login => 2,
            Endpoint::Decrypt => 3,
            Endpoint::Logout => 4,
            Endpoint::Refresh => 5,
            Endpoint::Phone => 6,
            Endpoint::Jwks => 7,
        }
    }
}

/// Where the public token keys are served (RFC 8615, as OpenID providers do).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The paths of the gateway's own endpoints, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Endpoints {
    healthz: String,
    readyz: String,
    /// Under `[login] path_prefix`, when `[wechat]` is configured.
    wx: Vec<(String, Endpoint)>,
}

impl Endpoints {
    /// Paths for the health prefix and, when login is enabled, the login prefix.
    pub fn new(health_prefix: &str, login_prefix: Option<&str>) -> Self {
        Self {
            healthz: format!("{health_prefix}/healthz"),
            readyz: format!("{health_prefix}/readyz"),
            wx: login_prefix
                .map(|p| {
                    [
                        ("login", Endpoint::Login),
                        ("decrypt", Endpoint::Decrypt),
                        ("logout", Endpoint::Logout),
                        ("refresh", Endpoint::Refresh),
                        ("phone", Endpoint::Phone),
                    ]
                    .into_iter()
                    .map(|(name, ep)| (format!("{p}/{name}"), ep))
                    .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The endpoint at a canonical path, if any.
    pub fn find(&self, path: &str) -> Option<Endpoint> {
        if path == self.healthz {
            return Some(Endpoint::Healthz);
        }
        if path == self.readyz {
            return Some(Endpoint::Readyz);
        }
        if path == JWKS_PATH {
            return Some(Endpoint::Jwks);
        }
        self.wx.iter().find(|(p, _)| p == path).map(|(_, ep)| *ep)
    }

    /// Each endpoint that is served, with its path.
    pub fn paths(&self) -> Vec<(Endpoint, String)> {
        [
            (Endpoint::Healthz, self.healthz.clone()),
            (Endpoint::Readyz, self.readyz.clone()),
            (Endpoint::Jwks, JWKS_PATH.to_string()),
        ]
        .into_iter()
        .chain(self.wx.iter().map(|(p, ep)| (*ep, p.clone())))
        .collect()
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

fn prefix_matches_ignoring_case(prefix: &str, path: &str) -> bool {
    let (p, q) = (prefix.as_bytes(), path.as_bytes());
    match q.get(..p.len()) {
        Some(head) if head.eq_ignore_ascii_case(p) => {
            let rest = &q[p.len()..];
            p.ends_with(b"/") || rest.is_empty() || rest.starts_with(b"/")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
