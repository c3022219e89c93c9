//! The gateway's own paths (health, JWKS, `/wx/*`), answered before any route.

use super::path::{prefix_matches_ignoring_case, strip_path_params};

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
    /// `GET {login.path_prefix}/sessions` (Bearer token required).
    Sessions,
    /// `DELETE {login.path_prefix}/sessions/{id}` (Bearer token required).
    EndSession,
}

impl Endpoint {
    /// Every endpoint, in a fixed order ([`Endpoint::index`]).
    pub const ALL: [Endpoint; 10] = [
        Endpoint::Healthz,
        Endpoint::Readyz,
        Endpoint::Login,
        Endpoint::Decrypt,
        Endpoint::Logout,
        Endpoint::Refresh,
        Endpoint::Phone,
        Endpoint::Jwks,
        Endpoint::Sessions,
        Endpoint::EndSession,
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
            Endpoint::Sessions => "sessions",
            Endpoint::EndSession => "end_session",
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
            Endpoint::Sessions => 8,
            Endpoint::EndSession => 9,
        }
    }

    /// [`Endpoint::method`] as an `Allow` header says it.
    pub fn allow(self) -> &'static str {
        match self {
            Endpoint::Healthz | Endpoint::Readyz | Endpoint::Jwks => "GET, HEAD",
            Endpoint::Sessions => "GET",
            Endpoint::EndSession => "DELETE",
            Endpoint::Login
            | Endpoint::Decrypt
            | Endpoint::Logout
            | Endpoint::Refresh
            | Endpoint::Phone => "POST",
        }
    }

    /// The one method the endpoint answers (`/healthz`, `/readyz` and the
    /// JWKS take `HEAD` as well, see their handlers).
    pub fn method(self) -> http::Method {
        match self {
            Endpoint::Healthz | Endpoint::Readyz | Endpoint::Jwks | Endpoint::Sessions => {
                http::Method::GET
            }
            Endpoint::EndSession => http::Method::DELETE,
            Endpoint::Login
            | Endpoint::Decrypt
            | Endpoint::Logout
            | Endpoint::Refresh
            | Endpoint::Phone => http::Method::POST,
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
    /// `[login] path_prefix`, when `[wechat]` is configured: every path
    /// under it is the gateway's.
    wx_prefix: Option<String>,
    /// `{path_prefix}/sessions/`: one session's path is this and its id.
    session_prefix: Option<String>,
}

/// Whether `id` could be a session id (a refresh family's: URL-safe base64).
fn plausible_session_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
                        ("sessions", Endpoint::Sessions),
                    ]
                    .into_iter()
                    .map(|(name, ep)| (format!("{p}/{name}"), ep))
                    .collect()
                })
                .unwrap_or_default(),
            wx_prefix: login_prefix.map(str::to_string),
            session_prefix: login_prefix.map(|p| format!("{p}/sessions/")),
        }
    }

    /// The session id in a path of [`Endpoint::EndSession`].
    pub fn session_id<'a>(&self, path: &'a str) -> Option<&'a str> {
        let prefix = self.session_prefix.as_deref()?;
        path.strip_prefix(prefix)
            .filter(|id| plausible_session_id(id))
    }

    /// Whether a canonical path lies under `[login] path_prefix`, read as
    /// loosely as an upstream might (ASCII case ignored, `;params` cut):
    /// such a path is the gateway's, answered 404 `no_route` when it is no
    /// endpoint, never forwarded (a client written for a newer gateway must
    /// not reach a backend by accident).
    pub fn owns(&self, path: &str) -> bool {
        let Some(prefix) = &self.wx_prefix else {
            return false;
        };
        prefix_matches_ignoring_case(prefix, path)
            || (path.contains(';')
                && prefix_matches_ignoring_case(prefix, &strip_path_params(path)))
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
        self.wx
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, ep)| *ep)
            .or_else(|| self.session_id(path).map(|_| Endpoint::EndSession))
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
